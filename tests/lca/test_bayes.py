"""Bayes-optimal ceiling: exact against brute-force enumeration, and above every predictor."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from assocmem.errors import ConfigError
from assocmem.lca import bayes
from assocmem.lca.analysis import evaluate_weights, model_logits
from assocmem.lca.constructions import theorem1_weights
from assocmem.lca.task import LCAConfig, sample_batch


def brute_tables(config: LCAConfig) -> tuple[list[list[float]], list[list[float]]]:
    """p(z|z*) and π(z|z*) written out from §4.1 in plain Python, independent of task.py."""
    m, V = config.m, config.V

    def in_neighborhood(zs: int, z: int) -> bool:
        dist = bin(zs ^ z).count("1")
        shared = {"all": 0, "hamming1": 0, "cluster1": 1, "cluster2": 2}[config.neighborhood]
        if z == zs or (config.neighborhood == "hamming1" and dist != 1):
            return False
        return (zs >> (m - shared)) == (z >> (m - shared))

    pi, p = [], []
    for zs in range(V):
        w = [math.exp(-bin(zs ^ z).count("1") / config.beta) if in_neighborhood(zs, z) else 0.0 for z in range(V)]
        row = [v / sum(w) for v in w]
        pi.append(row)
        p.append([config.omega * v + (1 - config.omega) / V for v in row])
    return p, pi


def enumerate_joint(config: LCAConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """Every (x, y) with its probability p(x, y), the exact Bayes accuracy Σ_x max_y p(x, y), and per
    (x, y) the chance 1[y ∈ argmax]/|argmax| that a fair tie-breaking Bayes predictor answers y."""
    p, pi = brute_tables(config)
    V, L = config.V, config.L
    xs, ys, ws, hits, exact = [], [], [], [], 0.0
    for x in itertools.product(range(V), repeat=L):
        joint = [math.prod(p[y][t] for t in x[:-1]) * pi[y][x[-1]] / V for y in range(V)]
        best = max(joint)
        exact += best
        ties = [j >= best * (1 - 1e-9) for j in joint]
        for y in range(V):
            xs.append(x)
            ys.append(y)
            ws.append(joint[y])
            hits.append(ties[y] / sum(ties))
    return (torch.tensor(xs), torch.tensor(ys), torch.tensor(ws, dtype=torch.float64), exact,
            torch.tensor(hits, dtype=torch.float64))


SETTINGS = [
    LCAConfig(m=3, L=1, omega=0.5, beta=1.0, neighborhood="all"),
    LCAConfig(m=3, L=2, omega=0.5, beta=1.0, neighborhood="all"),
    LCAConfig(m=3, L=3, omega=1.0, beta=1.0, neighborhood="all"),  # zero-probability tokens: −inf
    LCAConfig(m=3, L=3, omega=1.0, beta=1.0, neighborhood="hamming1"),  # many exact ties
    LCAConfig(m=3, L=3, omega=0.3, beta=0.5, neighborhood="cluster1"),
    LCAConfig(m=3, L=2, omega=0.7, beta=2.0, neighborhood="cluster2"),
]


@pytest.mark.parametrize("config", SETTINGS, ids=lambda c: f"L{c.L}-w{c.omega}-{c.neighborhood}")
def test_expected_accuracy_equals_brute_force_enumeration(config: LCAConfig) -> None:
    x, y, w, exact, hits = enumerate_joint(config)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    assert bayes.expected_accuracy_on(config, x, y, weights=w) == pytest.approx(exact, abs=1e-12)
    # The weighted sum is the same for any tie rule; the per-context answer checks the uniform one.
    torch.testing.assert_close(bayes.expected_correct(bayes.log_likelihood(config, x), y), hits, rtol=0, atol=1e-12)


@pytest.mark.parametrize("config", SETTINGS[1:4], ids=lambda c: f"L{c.L}-w{c.omega}-{c.neighborhood}")
def test_log_likelihood_matches_brute_force(config: LCAConfig) -> None:
    p, pi = brute_tables(config)
    x = torch.tensor(list(itertools.product(range(config.V), repeat=config.L)))
    ll = bayes.log_likelihood(config, x)
    expected = torch.tensor(
        [[math.prod(p[y][t] for t in row[:-1]) * pi[y][row[-1]] for y in range(config.V)] for row in x.tolist()],
        dtype=torch.float64,
    ).log()
    assert ll.shape == (x.shape[0], config.V)
    assert torch.equal(torch.isneginf(ll), torch.isneginf(expected))
    finite = torch.isfinite(expected)
    torch.testing.assert_close(ll[finite], expected[finite], rtol=0, atol=1e-12)
    possible = finite.any(-1)
    totals = bayes.posterior(config, x[possible]).sum(-1)
    assert torch.allclose(totals, torch.ones_like(totals))


def test_monte_carlo_estimate_agrees_with_exact_value() -> None:
    config = LCAConfig(m=3, L=3, omega=0.5, beta=1.0)
    exact = enumerate_joint(config)[3]
    n = 20_000
    estimate = bayes.bayes_optimal_accuracy(config, n, torch.Generator().manual_seed(0))
    assert abs(estimate - exact) < 4 * math.sqrt(exact * (1 - exact) / n)


def test_batch_shape_is_kept() -> None:
    config = LCAConfig(m=3, L=5)
    x, _ = sample_batch(config, (2, 7), torch.Generator().manual_seed(1))
    assert bayes.log_likelihood(config, x).shape == (2, 7, 8)


def test_most_frequent_token_and_chance() -> None:
    config = LCAConfig(m=2, L=4)
    x = torch.tensor([[1, 1, 2, 3], [1, 2, 1, 2], [0, 1, 2, 3], [3, 3, 3, 0]])
    y = torch.tensor([1, 1, 3, 0])
    # mode 1 → hit; modes {1, 2} → 1/2; all four tied → 1/4; mode 3 ≠ 0 → miss
    assert bayes.most_frequent_token_accuracy(config, x, y) == pytest.approx((1 + 0.5 + 0.25 + 0) / 4)
    assert bayes.chance_accuracy(LCAConfig(m=5)) == 1 / 32


def test_bayes_is_above_every_predictor_on_the_same_samples() -> None:
    """Theorem 1's construction, W_V = I, the context mode and chance never beat the ceiling."""
    config = LCAConfig(m=4, L=16, omega=0.5, beta=1.0, neighborhood="all")
    gen = torch.Generator().manual_seed(2)
    x, y = sample_batch(config, 20_000, gen)
    ceiling = bayes.expected_correct(bayes.log_likelihood(config, x), y)  # (n,)
    weights = theorem1_weights(config, config.V, gen)
    identity = {**weights, "W_V": torch.eye(config.V).unsqueeze(0)}
    for w in (weights, identity):
        guess = bayes.expected_correct(model_logits(w, x)[0], y, rtol=1e-5)
        diff = ceiling - guess  # paired: same samples
        assert float(diff.mean()) > -3 * float(diff.std()) / math.sqrt(len(diff))
    mode = bayes.most_frequent_token_accuracy(config, x, y)
    assert float(ceiling.mean()) > max(mode, bayes.chance_accuracy(config)) + 0.1


def test_bayes_is_above_a_briefly_trained_model() -> None:
    train = pytest.importorskip("assocmem.lca.train")
    from assocmem.lca.model import ModelConfig

    config = LCAConfig(m=3, L=16, omega=0.5, beta=1.0)
    result = train.train_models(
        config, ModelConfig(d=8), train.TrainConfig(steps=100, batch_size=64, eval_every=100, eval_samples=256,
                                                    warmup_steps=10, bayes=False), seeds=[0, 1]
    )
    x, y = sample_batch(config, 8_000, torch.Generator().manual_seed(3))
    trained = evaluate_weights(result.weights, config, x, y)  # (2,)
    ceiling = bayes.expected_accuracy_on(config, x, y)
    assert float(trained.min()) > 0.2  # above chance 1/8: it learned, so the comparison means something
    assert float(trained.max()) <= ceiling + 3 * math.sqrt(0.25 / len(y))


def test_bad_input_names_the_option() -> None:
    config = LCAConfig(m=3, L=4)
    with pytest.raises(ConfigError, match="L=4"):
        bayes.log_likelihood(config, torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ConfigError, match="tokens outside"):
        bayes.log_likelihood(config, torch.full((2, 4), 8))
    with pytest.raises(ConfigError, match="n_samples"):
        bayes.bayes_optimal_accuracy(config, 0, torch.Generator())
    with pytest.raises(ConfigError, match="omega"):
        LCAConfig(m=3, omega=1.5)
