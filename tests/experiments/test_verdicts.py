"""The functions that decide the report's verdicts, on made-up tables: each gives "supported" on a table
built to meet its criterion and "NOT supported" on one built to miss it (so every criterion can fail)."""

from __future__ import annotations

import dataclasses

import pytest

from assocmem.experiments import lca_attention, lca_context, theory_structure as T
from assocmem.experiments.common import training
from assocmem.lca.task import LCAConfig

# ---------------------------------------------------------------- Lemma 5

RANK = T.RankStudy(ms=(3, 4))


def _lemma5_table(rank_of, closed_of=None) -> list[dict]:
    """Rows as `lemma5_table` writes them; rank_of(m, case) gives the 'found' rank."""
    rows = []
    for m in RANK.ms:
        for case in T._cases(RANK, m):
            found = rank_of(m, case)
            closed = closed_of(m, case) if closed_of else found
            key = {"m": m, "case": case, "b0_equals_b": "b0 = b =" in case}
            rows += [{**key, "quantity": "rank by SVD", "k": None, "value": found},
                     {**key, "quantity": "rank, closed form", "k": None, "value": closed}]
            if m == max(RANK.ms):
                rows += [{**key, "quantity": "singular value", "k": k + 1, "value": 1.0 / (k + 1)} for k in range(4)]
    return rows


def _paper_rank(m: int, case: str) -> int:
    """The closed form: m + 1 (m at the PSD edge) with b0 = b, full rank V = 2^m with b0 > b."""
    return (m if "+ 0" in case.split(",")[0] else m + 1) if "b0 = b =" in case else 2**m


def test_lemma5_is_supported_when_every_equal_b_rank_is_at_most_m_plus_2():
    result = T.judge_lemma5(_lemma5_table(_paper_rank), RANK)
    (claim,) = result.claims
    assert claim.supported and claim.claim == "lemma5-rank"
    assert "m=3, b0 = b = am/2 + 0: 3" in claim.numbers and "m=4, b0 = b = am/2 + 1: 5" in claim.numbers
    assert claim.numbers.endswith("the closed form agrees everywhere: True")
    ranks = {r["setting"]: r["ours"] for r in result.rows}
    assert ranks["m=4, b0 = b + 2, b = am/2 + 1"] == 16 and result.data["ranks"]["b0 = b = am/2 + 1"] == [4, 5]


def test_lemma5_is_not_supported_when_one_equal_b_rank_exceeds_m_plus_2():
    def one_too_many(m, case):
        return m + 3 if (m, case) == (4, "b0 = b = am/2 + 1") else _paper_rank(m, case)

    (claim,) = T.judge_lemma5(_lemma5_table(one_too_many, _paper_rank), RANK).claims
    assert not claim.supported and "m=4, b0 = b = am/2 + 1: 7" in claim.numbers
    assert claim.numbers.endswith("agrees everywhere: False")
    # a full rank where b0 > b is no counter-example: the bound is stated for b0 = b only
    (claim,) = T.judge_lemma5(_lemma5_table(lambda m, case: 2**m if "b0 = b +" in case else m + 2), RANK).claims
    assert claim.supported


# ---------------------------------------------------------------- Lemma 6

GRADIENT = T.GradientStudy(m=3, L=8, d=4, instances=2)


def _lemma6_table(closed_error=0.0, printed_error_repeated=0.0, forward=0.0) -> list[dict]:
    """Two instances; in each, tokens with α_t = 0, 1, 2 (the printed form is wrong on α_t = 0 by design)."""
    rows = []
    for i in range(2):
        rows.append({"instance": i, "token": None, "quantity": "max |logits from u − model logits|", "value": forward})
        for t, (alpha, grad) in enumerate(((0, 0.0), (1, 0.5), (2, -1.0), (1, 0.25))):
            printed = grad + (printed_error_repeated if alpha >= 2 else 0.0) + (0.3 if alpha == 0 else 0.0)
            rows.append({"instance": i, "token": t, "quantity": "gradient", "alpha": alpha, "same_cluster": t < 2,
                         "autograd": grad, "closed": grad + closed_error, "printed": printed})
    return rows


def test_lemma6_derived_and_printed_forms_both_hold_on_an_exact_table():
    result = T.judge_lemma6(_lemma6_table(), GRADIENT)
    derived, printed = result.claims
    assert (derived.claim, printed.claim) == ("lemma6-gradient", "lemma6-printed")
    assert derived.supported and printed.supported
    rows = {r["quantity"]: r["ours"] for r in result.rows}
    assert rows["max relative error, printed form, tokens absent from x (α_t = 0)"] == pytest.approx(0.3)  # ÷ max |∇| = 1
    assert rows["mean α_t, tokens in t_L's cluster"] == pytest.approx(0.5)      # tokens 0, 1: α 0 and 1
    assert rows["mean α_t, tokens in the other cluster"] == pytest.approx(1.5)  # tokens 2, 3: α 2 and 1


def test_lemma6_printed_form_fails_on_repeated_tokens_only():
    derived, printed = T.judge_lemma6(_lemma6_table(printed_error_repeated=0.2), GRADIENT).claims
    assert derived.supported and not printed.supported
    assert "tokens with α_t ≥ 2 (in 2 of 2 instances): median 0.200" in printed.numbers


@pytest.mark.parametrize("kw", [dict(closed_error=1e-6), dict(forward=1e-6)])
def test_lemma6_derived_form_fails_off_autograd_or_off_the_models_forward(kw):
    derived, _ = T.judge_lemma6(_lemma6_table(**kw), GRADIENT).claims
    assert not derived.supported


# ---------------------------------------------------------------- Theorem 3

THM3 = T.IdentityValueStudy(LCAConfig(m=4, L=16, omega=1.0), ds=(8, 16), training=training(seeds=3))


def _theorem3_table(slopes: dict[int, list[float]], bend: float = 0.0) -> list[dict]:
    """Per (d, seed): mean inner products 2 − a·h (plus a zig-zag of size `bend` to break the line) and the fit's
    values."""
    rows = []
    for d, per_seed in slopes.items():
        for seed, a in enumerate(per_seed):
            key = {"d": d, "seed": seed, "lr": 0.01}
            means = [2.0 - a * h + bend * (-1) ** h for h in range(THM3.m + 1)]
            rows += [{**key, "quantity": "mean inner product", "hamming": h, "value": v} for h, v in enumerate(means)]
            rows += [{**key, "quantity": q, "hamming": None, "value": v}
                     for q, v in (("a", a), ("b", 2.0), ("b0", 2.0), ("R² over all pairs", 0.97), ("accuracy", 0.8),
                                  ("bayes", 0.9))]
    return rows


def test_theorem3_is_supported_by_a_positive_slope_and_a_line_at_every_d():
    result = T.judge_theorem3(_theorem3_table({8: [0.30, 0.31, 0.29], 16: [0.5, 0.52, 0.49]}), THM3)
    (claim,) = result.claims
    assert claim.supported and claim.claim == "thm3-linear"
    assert "d=8: a mean +0.300" in claim.numbers and "R² 1.000" in claim.numbers
    accuracy = [r for r in result.rows if r["quantity"] == "accuracy"]
    assert [r["ours"] for r in accuracy] == pytest.approx([0.8, 0.8]) and accuracy[0]["bayes"] == pytest.approx(0.9)


@pytest.mark.parametrize("slopes, bend", [
    ({8: [0.30, 0.31, 0.29], 16: [0.3, -0.2, 0.05]}, 0.0),   # one d's slope is not > 0 by 2 SE
    ({8: [0.30, 0.31, 0.29], 16: [0.5, 0.52, 0.49]}, 0.4),   # the means zig-zag: R² of a line < 0.9
])
def test_theorem3_is_not_supported_without_a_slope_or_a_line(slopes, bend):
    (claim,) = T.judge_theorem3(_theorem3_table(slopes, bend), THM3).claims
    assert not claim.supported


# ---------------------------------------------------------------- mixing, length, attention


def _mixing_points(intruder_last: list[float], true_last: list[float]) -> list[dict]:
    return [{"k": 0, "true": [0.9, 0.92, 0.88], "intruder": [0.01, 0.02, 0.0], "bayes_true": 0.95,
             "bayes_intruder": 0.0},
            {"k": 63, "true": true_last, "intruder": intruder_last, "bayes_true": 0.1, "bayes_intruder": 0.85}]


def test_mixing_is_supported_when_the_intruder_rises_and_wins():
    claim = lca_context.mixing_claim(_mixing_points([0.7, 0.75, 0.72], [0.2, 0.18, 0.21]))
    assert claim.supported and claim.claim == "mixing-hijacks"
    assert claim.numbers.startswith("intruder share 0.010 → 0.723") and "answers the intruder 0.000 → 0.850" in claim.numbers


@pytest.mark.parametrize("intruder, true", [
    ([0.4, 0.45, 0.42], [0.5, 0.5, 0.5]),    # rises, but the true target is still answered more often
    ([0.9, 0.0, 0.05], [0.05, 0.9, 0.9]),    # the rise is within 2 SE over seeds
])
def test_mixing_is_not_supported_without_a_rise_past_the_true_target(intruder, true):
    assert not lca_context.mixing_claim(_mixing_points(intruder, true)).supported


def _length_points(means: list[float], spread: float = 0.01) -> list[dict]:
    """Per L, three seeds' accuracies around the mean; the seeds trade places at the longest L, so the paired
    rise from the shortest to the longest L has a spread of its own."""
    accs = [[m - spread, m, m + spread] for m in means]
    accs[-1] = accs[-1][::-1]
    return [{"L": L, "accs": a, "bayes": 1.0} for L, a in zip((2, 4, 8, 16), accs)]


def test_length_is_supported_when_accuracy_rises_with_L():
    claim = lca_context.length_claim(_length_points([0.3, 0.5, 0.7, 0.9]))
    assert claim.supported and claim.claim == "length-helps"
    assert claim.numbers.startswith("Spearman 1.00; L=2 → 16: 0.300 → 0.900")


@pytest.mark.parametrize("means, spread", [
    ([0.3, 0.8, 0.5, 0.9], 0.01),     # the end is higher, but not monotone: Spearman 0.8 < 0.9
    ([0.5, 0.51, 0.52, 0.53], 0.2),   # monotone, but the rise is within 2 SE over seeds
])
def test_length_is_not_supported_without_a_steady_significant_rise(means, spread):
    assert not lca_context.length_claim(_length_points(means, spread)).supported


def test_attention_is_supported_when_same_cluster_tokens_get_more_attention_on_every_seed():
    claim = lca_attention.attention_claim([1.6, 1.7, 1.65], [0.4, 0.35, 0.38], "cluster1")
    assert claim.supported and claim.claim == "attention-cluster"
    assert claim.numbers.startswith("cluster1: same − other mean +1.273") and claim.numbers.endswith("ratio 4.38")


@pytest.mark.parametrize("same, other", [([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]), ([1.9, 0.2, 1.0], [0.2, 1.9, 0.9])])
def test_attention_is_not_supported_without_a_consistent_preference(same, other):
    assert not lca_attention.attention_claim(same, other, "cluster2").supported


def test_the_studies_used_here_are_the_experiments_own():
    """The made-up tables follow the real settings classes (a renamed field would break them here first)."""
    assert dataclasses.replace(THM3, ds=(8,)).m == 4 and GRADIENT.task().neighborhood == "cluster1"
