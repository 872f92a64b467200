"""The claims of §5 as tests on small m: Theorem 1, Lemma 2, Lemma 5, Lemma 6."""

from __future__ import annotations

import math

import torch

from assocmem.lca import bayes, theory
from assocmem.lca.analysis import evaluate_weights, model_logits, singular_values
from assocmem.lca.constructions import eq52_embedding, theorem1_weights
from assocmem.lca.model import forward_last
from assocmem.lca.task import LCAConfig, sample_batch


def test_theorem1_error_falls_towards_zero_as_L_grows() -> None:
    """Theorem 1 (ω = 1, N = all, m ≥ 3): orthonormal W_E, W_K = W_Q = 0, W_V of Eq. 5.1 has error → 0."""
    n = 3000
    gen = torch.Generator().manual_seed(0)
    for m in (3, 4):
        errors = []
        for L in (4, 16, 64, 256):
            task = LCAConfig(m=m, L=L, omega=1.0, beta=1.0, neighborhood="all")
            weights = theorem1_weights(task, task.V + 2, gen, dtype=torch.float64)
            x, y = sample_batch(task, n, gen)
            errors.append(1.0 - float(evaluate_weights(weights, task, x, y)[0]))
        noise = 3 * math.sqrt(0.25 / n)
        assert all(later < earlier + noise for earlier, later in zip(errors, errors[1:])), (m, errors)
        assert errors[0] > 0.2, (m, errors)  # short contexts are hard: the decrease is real
        assert errors[-1] < 0.01, (m, errors)


def test_lemma2_construction_is_exact_and_identity_value_is_not() -> None:
    """Lemma 2 (ω = 1, N = hamming1): the Eq. 5.1 construction never ranks a wrong token above y and is
    Bayes-optimal sample by sample; W_V = I has error > 0 (here it is always wrong).

    Error exactly 0 needs the context to single out y: with m = 3 two targets at Hamming distance 2
    share two neighbours, and a context made only of those is equally likely under both, so no
    predictor can be right on it for sure (probability ≤ 3·(2/3)^L). We check (a) y always attains the
    maximal logit, (b) the tie-aware accuracy equals the Bayes-optimal one per sample, (c) at L = 64
    the error is exactly 0 on every sample.
    """
    gen = torch.Generator().manual_seed(1)
    for L in (2, 8, 64):
        task = LCAConfig(m=3, L=L, omega=1.0, beta=1.0, neighborhood="hamming1")
        weights = theorem1_weights(task, 8, gen, dtype=torch.float64)
        x, y = sample_batch(task, 4000, gen)
        logits = model_logits(weights, x)[0]  # (B, V)
        assert torch.allclose(logits.gather(1, y[:, None]).squeeze(1), logits.max(dim=1).values, atol=1e-9)
        construction = bayes.expected_correct(logits, y, rtol=1e-9)
        optimal = bayes.expected_correct(bayes.log_likelihood(task, x), y)
        torch.testing.assert_close(construction, optimal)
        identity = {**weights, "W_V": torch.eye(8, dtype=torch.float64).unsqueeze(0)}
        assert 1.0 - float(evaluate_weights(identity, task, x, y)[0]) > 0.5
    assert float(construction.min()) == 1.0  # L = 64: error exactly 0


def test_lemma5_eq52_with_b_equal_b0_has_rank_at_most_m_plus_2() -> None:
    m, tol = 4, 1e-8
    low = singular_values(eq52_embedding(m, b0=3.0, b=3.0, a=1.0, generator=torch.Generator().manual_seed(0),
                                         dtype=torch.float64))[0]
    assert int((low > tol * low[0]).sum()) <= m + 2
    # b0 > b: the identity part makes W_E full rank, so the rank bound is specific to b = b0.
    full = singular_values(eq52_embedding(m, b0=4.0, b=3.0, a=1.0, dtype=torch.float64))[0]
    assert int((full > tol * full[0]).sum()) == 2**m


def test_lemma6_score_gradient_matches_autograd() -> None:
    """Lemma 6 with α_t on both terms (lca.theory) is autograd's gradient; the printed form agrees only where
    α_t = 1 (more draws in tests/lca/test_theory.py)."""
    gen = torch.Generator().manual_seed(3)
    V, d, d_a = 8, 6, 4
    W_E = torch.randn(d, V, generator=gen, dtype=torch.float64)
    W_V = torch.randn(d, d, generator=gen, dtype=torch.float64)
    W_Q, W_K = (torch.randn(d_a, d, generator=gen, dtype=torch.float64) for _ in range(2))
    x = torch.tensor([1, 3, 3, 5, 0, 3, 6, 1, 2, 5])  # repeats (α = 3, 2) and singletons; t_L = 5 twice
    u = theory.attention_scores(W_E, W_Q, W_K, int(x[-1]))
    model = forward_last(W_E[None], W_Q[None], W_K[None], W_V[None], x[None]).logits[0, 0]
    torch.testing.assert_close(theory.last_logits_from_scores(W_E, W_V, u, x), model)  # the model's own scores
    g = theory.score_gradients(W_E, W_V, u, x, 4)
    torch.testing.assert_close(g.closed, g.autograd, rtol=1e-10, atol=1e-12)
    assert float(g.autograd[g.alpha == 0].abs().max()) == 0.0 and float(g.autograd.abs().max()) > 1e-3
    once = g.alpha == 1
    torch.testing.assert_close(g.printed[once], g.autograd[once], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(g.printed[g.alpha > 1], g.autograd[g.alpha > 1])
