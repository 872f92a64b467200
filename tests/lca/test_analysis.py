"""Analyses of lca/analysis.py against hand computations and loop references."""

from __future__ import annotations

import math

import pytest
import torch

from assocmem.errors import ConfigError
from assocmem.lca import analysis as A
from assocmem.lca import analysis as A_
from assocmem.lca.constructions import eq52_embedding, random_pairs_value, theorem1_value, theorem1_weights
from assocmem.lca.model import forward_last
from assocmem.lca.task import LCAConfig, hamming_matrix, sample_batch


def random_weights(V: int, d: int, E: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"W_E": (E, d, V), "W_Q": (E, 3, d), "W_K": (E, 3, d), "W_V": (E, d, d)}
    return {k: torch.randn(s, generator=g, dtype=torch.float64) for k, s in shapes.items()}


def test_evaluate_weights_matches_argmax_and_splits_ties() -> None:
    task = LCAConfig(m=3, L=6)
    x, y = sample_batch(task, 500, torch.Generator().manual_seed(0))
    w = random_weights(8, 5, 2, seed=1)
    logits = forward_last(w["W_E"], w["W_Q"], w["W_K"], w["W_V"], x).logits
    torch.testing.assert_close(A.evaluate_weights(w, task, x, y), (logits.argmax(-1) == y).double().mean(1))
    # One batch per model: model e on (x[e], y[e]) is model e alone on them.
    x2, y2 = sample_batch(task, (2, 300), torch.Generator().manual_seed(11))
    per_model = A.evaluate_weights(w, task, x2, y2)
    for e in range(2):
        alone = {k: v[e : e + 1] for k, v in w.items()}
        torch.testing.assert_close(per_model[e : e + 1], A.evaluate_weights(alone, task, x2[e], y2[e]))
    # All-zero value matrix: every logit ties, so the expected accuracy is exactly 1/V.
    zero = {**w, "W_V": torch.zeros_like(w["W_V"])}
    torch.testing.assert_close(A.evaluate_weights(zero, task, x, y), torch.full((2,), 1 / 8, dtype=torch.float64))
    with pytest.raises(ConfigError, match="L=6"):
        A.evaluate_weights(w, task, x[:, :5], y)


def test_accuracy_with_value_swaps_in_a_construction() -> None:
    task = LCAConfig(m=4, L=32, omega=0.5)
    gen = torch.Generator().manual_seed(2)
    w = theorem1_weights(task, 16, gen, E=2, dtype=torch.float64)
    x, y = sample_batch(task, 2000, gen)
    base = A.evaluate_weights(w, task, x, y)
    torch.testing.assert_close(A.accuracy_with_value({**w, "W_V": torch.zeros_like(w["W_V"])},
                                                     theorem1_value(w["W_E"], 4), task, x, y), base)
    random = A.accuracy_with_value(w, random_pairs_value(w["W_E"], 4, gen), task, x, y)
    assert (random < base - 0.1).all()  # structure, not the number of pairs, carries the accuracy
    shared = A.accuracy_with_value(w, torch.eye(16, dtype=torch.float64), task, x, y)
    assert shared.shape == (2,)


def test_low_rank_and_principal_angles() -> None:
    g = torch.Generator().manual_seed(3)
    M = torch.randn(2, 6, 6, generator=g, dtype=torch.float64)
    R = A.low_rank(M, 2)
    assert torch.linalg.matrix_rank(R).tolist() == [2, 2]
    s = torch.linalg.svdvals(M)
    torch.testing.assert_close(torch.linalg.matrix_norm(M - R), s[:, 2:].norm(dim=-1))  # Eckart–Young
    e = torch.eye(6, dtype=torch.float64)
    theta = math.radians(30)
    rotated = math.cos(theta) * e[:, :1] + math.sin(theta) * e[:, 1:2]
    B = torch.stack([e[:, :1] @ e[:, :1].T, e[:, 2:3] @ e[:, 2:3].T])  # (2, 6, 6): span e1, span e3
    angles = A.smallest_principal_angle(B, rotated @ rotated.T, rank=1)  # broadcast (2,...) vs (...)
    torch.testing.assert_close(angles, torch.tensor([30.0, 90.0], dtype=torch.float64))
    torch.testing.assert_close(A.smallest_principal_angle(M, 3 * M, rank=2), torch.zeros(2, dtype=torch.float64),
                               atol=1e-5, rtol=0)


def test_inner_products_by_hamming_and_eq52_fit() -> None:
    m, b0, b, a = 4, 5.0, 3.0, 0.75
    W_E = eq52_embedding(m, b0, b, a, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    table = A.inner_product_by_hamming(W_E, m)
    assert list(table.columns) == ["hamming", "mean", "std", "count"]
    assert table["count"].tolist() == [16] + [16 * math.comb(m, h) // 2 for h in range(1, m + 1)]
    expected = [b0] + [b - a * h for h in range(1, m + 1)]
    assert table["mean"].tolist() == pytest.approx(expected, abs=1e-9)
    assert table["std"].max() < 1e-9
    fit = A.fit_eq52(W_E, m)
    assert fit["b0"] == pytest.approx(b0) and fit["b"] == pytest.approx(b) and fit["a"] == pytest.approx(a)
    assert fit["r2"] == pytest.approx(1.0)
    noisy = W_E + 0.3 * torch.randn(W_E.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert A.fit_eq52(noisy, m)["r2"] < 0.999


def test_singular_values_and_eigengap() -> None:
    W_E = eq52_embedding(4, b0=3.0, b=3.0, a=1.0, dtype=torch.float64)  # rank m + 1 = 5 (Lemma 5)
    svals = A.singular_values(torch.cat([W_E, W_E.flip(-1)]))
    assert svals.shape == (2, 16)
    index, ratio = A.eigengap(svals)
    assert index.tolist() == [5, 5] and (ratio > 1e6).all()
    index, ratio = A.eigengap(torch.tensor([[8.0, 4.0, 3.0, 2.9]]))
    assert index.tolist() == [1] and float(ratio[0]) == pytest.approx(2.0)


def _attention_loop(weights, task, x):
    """Reference: per (t_L, t) sums and counts by plain loops over samples and positions."""
    att = forward_last(weights["W_E"], weights["W_Q"], weights["W_K"], weights["W_V"], x).attention
    sums = torch.zeros(task.V, task.V, dtype=torch.float64)
    counts = torch.zeros(task.V, task.V, dtype=torch.float64)
    for e in range(att.shape[0]):
        for b in range(x.shape[0]):
            for pos in range(task.L - 1):
                sums[x[b, -1], x[b, pos]] += att[e, b, pos]
                counts[x[b, -1], x[b, pos]] += 1
    return sums, counts


def test_attention_by_token_and_cluster_match_a_loop() -> None:
    task = LCAConfig(m=3, L=5, omega=0.5, neighborhood="cluster1")
    x, _ = sample_batch(task, 60, torch.Generator().manual_seed(6))
    w = random_weights(8, 4, 2, seed=7)
    sums, counts = _attention_loop(w, task, x)
    torch.testing.assert_close(A.attention_by_token(w, task, x), sums / counts, equal_nan=True)
    table = A.attention_by_cluster(w, task, x, n_cluster_bits=1)
    same = torch.tensor([[(i >> 2) == (j >> 2) for j in range(8)] for i in range(8)])
    t = 5
    expected_same = float(sums[t][same[t]].sum() / counts[t][same[t]].sum())
    expected_other = float(sums[t][~same[t]].sum() / counts[t][~same[t]].sum())
    row = table.iloc[t]
    assert row["same_cluster"] == pytest.approx(expected_same) and row["other_cluster"] == pytest.approx(expected_other)
    assert row["ratio"] == pytest.approx(expected_same / expected_other)
    uniform = theorem1_weights(task, 8, torch.Generator().manual_seed(8), dtype=torch.float64)  # W_Q = W_K = 0
    seen = A.attention_by_token(uniform, task, x)
    assert torch.allclose(seen[~seen.isnan()], torch.tensor(1 / task.L, dtype=torch.float64))


def test_mixed_contexts_follow_the_design() -> None:
    task = LCAConfig(m=4, L=9, omega=1.0, neighborhood="hamming1")  # every token is one bit from its source
    x, y_true, y_int = A.sample_mixed_contexts(task, 3, 500, torch.Generator().manual_seed(9))
    assert x.shape == (500, 9) and (y_true != y_int).all()
    D = hamming_matrix(4)
    assert (D[x[:, :3], y_int[:, None]] == 1).all()
    assert (D[x[:, 3:], y_true[:, None]] == 1).all()
    with pytest.raises(ConfigError, match="k_intruder"):
        A.sample_mixed_contexts(task, 9, 5, torch.Generator())


def test_mixing_rates_and_accuracy_vs_length() -> None:
    task = LCAConfig(m=4, L=33, omega=1.0, neighborhood="all")
    gen = torch.Generator().manual_seed(10)
    w = theorem1_weights(task, 16, gen, dtype=torch.float64)
    rates = A.mixing_rates(w, task, [0, 16, 32], 1000, gen)
    assert list(rates.columns) == ["k", "model", "share_true", "share_intruder"]
    assert rates["share_true"].is_monotonic_decreasing and rates["share_intruder"].is_monotonic_increasing
    assert rates["share_true"].iloc[0] > 0.9 and rates["share_intruder"].iloc[-1] > 0.5
    by_length = A.accuracy_vs_length(w, task, [4, 16, 64], 1000, gen)
    assert by_length["L"].tolist() == [4, 16, 64]
    assert by_length["accuracy"].is_monotonic_increasing
    assert (by_length["accuracy"] <= by_length["bayes_optimal"] + 0.05).all()


def test_block_gap_reads_a_drop_spread_over_two_steps() -> None:
    one_step = torch.tensor([[4.0, 4.0, 1.0, 1.0]])
    two_steps = torch.tensor([[4.0, 4.0, 2.0, 1.0, 1.0, 1.0]])  # the drop after the top block in two steps
    assert float(A.block_gap(one_step, 2)[0]) == pytest.approx(4.0)
    assert float(A.block_gap(two_steps, 2)[0]) == pytest.approx(4.0 / 1.25)
    assert float(A.eigengap(two_steps)[1][0]) == pytest.approx(2.0)  # the consecutive ratio halves the drop
    with pytest.raises(ConfigError):
        A.block_gap(one_step, 4)


def test_numerical_rank_and_line_r2() -> None:
    W_E = eq52_embedding(4, b0=3.0, b=3.0, a=1.0, dtype=torch.float64)
    assert A.numerical_rank(A.singular_values(W_E)).tolist() == [5]
    assert A.line_r2([5.0, 3.0, 1.0, -1.0]) == pytest.approx(1.0)
    assert A.line_r2([0.0, 1.0, 0.0, 1.0]) < 0.5
    assert math.isnan(A.line_r2([1.0, 1.0, 1.0]))


@pytest.mark.parametrize("space", ["column", "row"])
def test_smallest_principal_angle_against_scipy_on_random_matrices(space) -> None:
    """Rank-r approximations of random matrices; the authors' measure is the row space:
    scipy.linalg.subspace_angles(A_r.T, B_r.T)[-1] (angles come in descending order)."""
    from scipy.linalg import subspace_angles

    g = torch.Generator().manual_seed(5)
    for n, k, rank in ((12, 12, 3), (16, 9, 5), (8, 8, 1)):
        A = torch.randn(4, n, k, generator=g, dtype=torch.float64)
        B = torch.randn(4, n, k, generator=g, dtype=torch.float64)
        ours = A_.smallest_principal_angle(A, B, rank, space=space)
        for e in range(4):
            a, b = A_.low_rank(A[e], rank).numpy(), A_.low_rank(B[e], rank).numpy()
            if space == "row":
                a, b = a.T, b.T
            expected = math.degrees(subspace_angles(a, b)[-1])
            assert float(ours[e]) == pytest.approx(expected, abs=1e-4)  # arccos near 1: ~1e-6 degrees of noise
