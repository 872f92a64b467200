"""lca.theory: the closed forms behind the theorem rows, each against a direct computation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from assocmem.errors import ConfigError
from assocmem.lca.constructions import gram_eq52, hamming1_adjacency, theorem1_value
from assocmem.lca.model import forward_last
from assocmem.lca.task import LCAConfig, latent_bits, sample_batch
from assocmem.lca.theory import (attention_scores, eq52_embedding_low_dim, eq52_rank, eq52_spectrum,
                                 last_logits_from_scores, pi_mass_by_distance, score_gradients, theorem4_weights)

FAST = settings(max_examples=25, deadline=None)


@FAST
@given(m=st.integers(1, 6), a=st.floats(0.1, 3.0), offset=st.floats(0.0, 4.0), excess=st.floats(0.0, 4.0))
def test_eq52_spectrum_is_the_gram_matrix_spectrum(m, a, offset, excess) -> None:
    b = a * m / 2 + offset
    G = gram_eq52(m, b + excess, b, a)
    torch.testing.assert_close(eq52_spectrum(m, b + excess, b, a), torch.linalg.eigvalsh(G).flip(0),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("m", [2, 3, 5, 7])
def test_lemma5_rank_is_m_plus_1_below_the_bound(m) -> None:
    a = 1.0
    for offset, expected in ((1.0, m + 1), (0.0, m)):  # b − am/2 = 0 removes the all-ones direction
        b = a * m / 2 + offset
        assert eq52_rank(m, b, b, a) == expected <= m + 2
        assert int(torch.linalg.matrix_rank(gram_eq52(m, b, b, a))) == expected
    assert eq52_rank(m, 3.0 + m, 2.0 + m, a) == 2**m  # b0 > b: full rank


def test_pi_mass_by_distance() -> None:
    for m, beta in ((8, 1.0), (5, 2.0), (4, 0.25)):
        mass = pi_mass_by_distance(LCAConfig(m=m, beta=beta))
        q = math.exp(-1 / beta)
        expected = [0.0] + [math.comb(m, k) * q**k / ((1 + q) ** m - 1) for k in range(1, m + 1)]
        torch.testing.assert_close(mass, torch.tensor(expected, dtype=torch.float64))
    assert float(pi_mass_by_distance(LCAConfig(m=8, beta=1.0))[1]) == pytest.approx(0.2614, abs=1e-4)
    assert pi_mass_by_distance(LCAConfig(m=4, neighborhood="hamming1")).tolist() == [0, 1, 0, 0, 0]


def test_low_dim_eq52_is_exact_on_the_diagonal_and_the_low_rank_part() -> None:
    m, a, b, gen = 5, 1.0, 3.5, torch.Generator().manual_seed(0)
    W = eq52_embedding_low_dim(m, b, b, a, d=m + 2, generator=gen)[0]  # b0 = b: Eq. 5.2 exactly, in m + 2 dims
    torch.testing.assert_close(W.T @ W, gram_eq52(m, b, b, a))
    W = eq52_embedding_low_dim(m, b + 9.0, b, a, d=20, generator=gen)[0]  # (20, 32): d < V
    G = W.T @ W
    torch.testing.assert_close(G.diagonal(), torch.full((32,), b + 9.0, dtype=torch.float64))
    assert float((G - gram_eq52(m, b + 9.0, b, a)).abs().max()) > 0.1  # the identity part is only approximate
    with pytest.raises(ConfigError):
        eq52_embedding_low_dim(m, b, a * m / 2 - 0.5, a, d=20, generator=gen)  # b < am/2: not PSD


def test_theorem4_readout_is_count_plus_majority() -> None:
    """The logits' dependence on the candidate is (b0 − b)²·A c + (m − 2)·a·((b0 − b) + aV/4)·X Xᵀ c."""
    m, a, b, b0 = 4, 1.0, 3.0, 7.0
    task = LCAConfig(m=m, L=16, omega=1.0)
    w = theorem4_weights(task, b0, b, a, None, torch.Generator().manual_seed(0))
    G = w["W_E"][0].T @ w["W_E"][0]
    torch.testing.assert_close(G, gram_eq52(m, b0, b, a))
    torch.testing.assert_close(w["W_V"], theorem1_value(w["W_E"], m))
    c = torch.rand(2**m, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    X = (2 * latent_bits(m) - 1).to(torch.float64)
    readout = G @ hamming1_adjacency(m) @ G @ c
    parts = (b0 - b) ** 2 * hamming1_adjacency(m) @ c + (m - 2) * a * ((b0 - b) + a * 2**m / 4) * X @ X.T @ c
    rest = readout - parts
    assert float(rest.max() - rest.min()) < 1e-9  # a constant over candidates: no effect on the argmax


def _random_instance(seed: int, V: int = 16, d: int = 6):
    gen = torch.Generator().manual_seed(seed)
    W_E, W_V = (torch.randn(shape, generator=gen, dtype=torch.float64) for shape in ((d, V), (d, d)))
    W_Q, W_K = (torch.randn(4, d, generator=gen, dtype=torch.float64) for _ in range(2))
    return W_E, W_V, W_Q, W_K, gen


@FAST
@given(seed=st.integers(0, 10_000), L=st.integers(2, 24))
def test_lemma6_derived_form_is_autograd_and_printed_form_only_where_alpha_is_one(seed, L) -> None:
    W_E, W_V, W_Q, W_K, gen = _random_instance(seed)
    x, y = sample_batch(LCAConfig(m=4, L=L, neighborhood="cluster1"), 1, gen)
    x, y = x[0], int(y[0])
    u = attention_scores(W_E, W_Q, W_K, int(x[-1]))
    model = forward_last(W_E[None], W_Q[None], W_K[None], W_V[None], x[None]).logits[0, 0]
    torch.testing.assert_close(last_logits_from_scores(W_E, W_V, u, x), model)  # the model's own scores
    g = score_gradients(W_E, W_V, u, x, y)
    torch.testing.assert_close(g.closed, g.autograd, rtol=1e-9, atol=1e-12)
    assert float(g.autograd[g.alpha == 0].abs().sum()) == 0.0
    once, repeated = g.alpha == 1, g.alpha >= 2
    torch.testing.assert_close(g.printed[once], g.autograd[once], rtol=1e-9, atol=1e-12)
    # On repeated tokens the printed form is off by exactly (α_t − 1)·p̂_t·∇ℓᵀW_EᵀW_V h: the missing α_t. So
    # (derived − printed) / ((1 − α_t) p̂_t) is one number (∇ℓᵀW_EᵀW_V h) for every repeated token.
    if bool(repeated.any()):
        p_hat = torch.exp(u - torch.logsumexp(u[x], dim=0))
        per_token = (g.closed - g.printed)[repeated] / ((1 - g.alpha[repeated]) * p_hat[repeated])
        torch.testing.assert_close(per_token, per_token[:1].expand_as(per_token), rtol=1e-7, atol=1e-9)
        assert float(per_token.abs().min()) > 1e-12  # and it is not zero: the printed form is wrong there
