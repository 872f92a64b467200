"""The LCA sampler (§4.1) against its own tables: chi-square frequency tests, support, seeding."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from assocmem.errors import ConfigError
from assocmem.lca.task import (
    MAX_M,
    NEIGHBORHOODS,
    LCAConfig,
    context_table,
    neighborhood_mask,
    pi_table,
    sample_batch,
)

N_DRAWS = 100_000
P_MIN = 1e-4  # seeds are fixed, so a pass is reproducible; this only guards against a bad seed choice


def assert_frequencies(observed: torch.Tensor, expected_p: torch.Tensor) -> None:
    """Chi-square goodness of fit on the support of expected_p; no draw outside it."""
    observed, expected_p = observed.flatten().double(), expected_p.flatten().double()
    support = expected_p > 0
    assert observed[~support].sum() == 0, "a token with probability 0 was drawn"
    n = observed.sum()
    expected = expected_p[support] / expected_p[support].sum() * n
    p_value = chisquare(observed[support].numpy(), expected.numpy()).pvalue
    assert p_value > P_MIN, f"chi-square p = {p_value:.2e}"


def counts(tokens: torch.Tensor, V: int) -> torch.Tensor:
    return torch.bincount(tokens.flatten(), minlength=V)


def joint_counts(y: torch.Tensor, tokens: torch.Tensor, V: int) -> torch.Tensor:
    """(V, V) counts of (z*, token) pairs, over every position of `tokens` (B, P)."""
    pairs = y[:, None] * V + tokens
    return torch.bincount(pairs.flatten(), minlength=V * V).view(V, V)


@pytest.mark.parametrize("neighborhood", NEIGHBORHOODS)
def test_fixed_target_frequencies_match_tables(neighborhood):
    config = LCAConfig(m=4, L=3, omega=0.5, beta=1.0, neighborhood=neighborhood)
    z_star = 6
    targets = torch.full((N_DRAWS,), z_star)
    x, y = sample_batch(config, N_DRAWS, torch.Generator().manual_seed(0), targets=targets)
    assert (y == z_star).all()
    assert_frequencies(counts(x[:, :-1], config.V), context_table(config)[z_star])
    assert_frequencies(counts(x[:, -1], config.V), pi_table(config)[z_star])


@pytest.mark.parametrize("neighborhood", NEIGHBORHOODS)
def test_joint_frequencies_over_random_targets(neighborhood):
    config = LCAConfig(m=3, L=4, omega=0.3, beta=0.7, neighborhood=neighborhood)
    V = config.V
    x, y = sample_batch(config, N_DRAWS, torch.Generator().manual_seed(1))
    assert_frequencies(counts(y, V), torch.full((V,), 1.0 / V))
    # p(z*, z) = p(z*) p(z | z*) with a uniform z*: the conditional for every target at once.
    assert_frequencies(joint_counts(y, x[:, :-1], V), context_table(config) / V)
    assert_frequencies(joint_counts(y, x[:, -1:], V), pi_table(config) / V)
    # and the marginal of the query token over y
    assert_frequencies(counts(x[:, -1], V), pi_table(config).mean(0))


@pytest.mark.parametrize("neighborhood", NEIGHBORHOODS)
def test_last_token_is_never_the_target_and_lies_in_the_neighborhood(neighborhood):
    config = LCAConfig(m=5, L=2, omega=1.0, neighborhood=neighborhood)
    x, y = sample_batch(config, 20_000, torch.Generator().manual_seed(2))
    assert (x[:, -1] != y).all()
    assert neighborhood_mask(config.m, neighborhood)[y, x[:, -1]].all()
    # omega = 1: the whole context comes from pi
    assert neighborhood_mask(config.m, neighborhood)[y[:, None], x].all()


def test_sampler_is_seeded_and_shaped():
    config = LCAConfig(m=4, L=16)
    a = sample_batch(config, (3, 50), torch.Generator().manual_seed(7))
    b = sample_batch(config, (3, 50), torch.Generator().manual_seed(7))
    c = sample_batch(config, (3, 50), torch.Generator().manual_seed(8))
    assert a[0].shape == (3, 50, 16) and a[1].shape == (3, 50)
    assert a[0].dtype == torch.long
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_context_length_one_is_the_query_alone():
    config = LCAConfig(m=3, L=1, neighborhood="hamming1")
    x, y = sample_batch(config, 1000, torch.Generator().manual_seed(3))
    assert x.shape == (1000, 1)
    assert neighborhood_mask(3, "hamming1")[y, x[:, 0]].all()


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(-2, MAX_M + 3),
    L=st.integers(-2, 300),
    omega=st.one_of(st.floats(-0.5, 1.5), st.just(float("nan"))),
    beta=st.one_of(st.floats(-1.0, 5.0), st.just(float("nan"))),
    neighborhood=st.sampled_from([*NEIGHBORHOODS, "hamming2", ""]),
)
def test_config_accepts_exactly_the_valid_settings(m, L, omega, beta, neighborhood):
    min_m = {"all": 1, "hamming1": 1, "cluster1": 2, "cluster2": 3}.get(neighborhood)
    valid = (
        1 <= m <= MAX_M and L >= 1 and 0.0 <= omega <= 1.0 and beta > 0.0
        and min_m is not None and m >= min_m
    )
    if valid:
        LCAConfig(m=m, L=L, omega=omega, beta=beta, neighborhood=neighborhood)
        return
    with pytest.raises(ConfigError) as info:
        LCAConfig(m=m, L=L, omega=omega, beta=beta, neighborhood=neighborhood)
    message = str(info.value)
    assert "\n" not in message and "allowed" in message
    assert message.split("=")[0] in {"m", "L", "omega", "beta", "neighborhood"}


def test_paper_preset_sampler_against_the_exact_conditional():
    """The authors' data: 2^m + 1 tokens, the extra one never drawn; the uniform part covers all 2^m latent
    tokens, z* included, so a context position is z* with probability (1 − ω)/V and never the query."""
    from assocmem.lca.protocols import protocol

    config = protocol("paper").task(m=4, L=5)
    assert (config.V, config.vocab_size) == (16, 17)
    z_star = 9
    x, y = sample_batch(config, N_DRAWS, torch.Generator().manual_seed(4), targets=torch.full((N_DRAWS,), z_star))
    assert int(x.max()) < config.V  # the extra token (id 16) is never drawn
    exact = context_table(config)[z_star]
    assert float(exact[z_star]) == pytest.approx((1 - config.omega) / config.V)  # z* through the uniform part
    assert_frequencies(counts(x[:, :-1], config.V), exact)
    assert_frequencies(counts(x[:, -1], config.V), pi_table(config)[z_star])
    assert (x[:, -1] != z_star).all() and (x[:, :-1] == z_star).any()
    # the share of z* among context tokens is (1 − ω)/V within 4 binomial SE
    share, p = float((x[:, :-1] == z_star).double().mean()), float(exact[z_star])
    assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / x[:, :-1].numel())


def test_sampler_draws_only_its_uniforms_so_a_fixed_target_keeps_the_stream():
    """A fixed target reuses the rest of the stream: the same contexts up to the XOR with the target."""
    config = LCAConfig(m=3, L=6)
    x, y = sample_batch(config, 200, torch.Generator().manual_seed(5))
    x_fixed, _ = sample_batch(config, 200, torch.Generator().manual_seed(5), targets=torch.zeros(200, dtype=torch.long))
    assert torch.equal(x ^ y[:, None], x_fixed)  # the offsets z XOR z* are the same draws


def test_extra_tokens_are_validated():
    with pytest.raises(ConfigError, match="extra_tokens"):
        LCAConfig(m=3, extra_tokens=-1)


@pytest.mark.parametrize("omega", [0.5, 0.9, 1.0])
def test_guide_table_lookup_is_exactly_binary_search(omega):
    """The sampler's guide-table inverse CDF gives searchsorted's offset for every u, zero-probability offsets
    (cluster neighbourhoods) included, on both of its paths (a few steps per slice, or binary search)."""
    from assocmem.lca.task import Sampler

    configs = [LCAConfig(m=6, L=3, omega=omega, beta=b, neighborhood=n) for b, n in ((1.0, "all"), (0.3, "cluster2"))]
    sampler = Sampler(configs)
    u = torch.rand(2, 50_000, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    u[:, :3] = torch.tensor([0.0, 1 - 2**-53, 0.5])  # the ends of [0, 1)
    u[:, 3:3 + 64] = sampler.context_cdf  # exactly on CDF values (1.0 excluded below)
    u = u.clamp(max=1 - 2**-53)
    expected = torch.searchsorted(sampler.context_cdf, u, right=True)
    assert torch.equal(sampler._context_offsets(u), expected)
