"""The paper's plotted values, the match rule, the comparison table, and the paper-protocol verdicts on
made-up tables (each verdict both ways)."""

from __future__ import annotations

import pandas as pd
import pytest

from assocmem.experiments import lca_paper as P
from assocmem.experiments import paper_values as pv


def test_the_208_plotted_points_with_their_source():
    values = pv.paper_values()
    assert len(values) == 208
    assert values.groupby("figure").size().to_dict() == {"fig3a": 16, "c4": 48, "c2": 72, "c3": 72}
    assert not values.duplicated(pv.KEYS).any() and values["paper_sem"].ge(0).all()
    row = values.query("figure == 'fig3a' and m == 5 and L == 64 and arm == 'trained'").iloc[0]
    assert (row["d"], row["paper"]) == (64, pytest.approx(0.8912109375))
    assert "ybjiaang/mem-llm" in pv.source() and "99a1cda" in pv.source()


def test_match_rule_at_its_boundaries():
    assert pv.matches(0.03, 0.0, 0.0, 0.03) and not pv.matches(0.0301, 0.0, 0.0, 0.03)
    # 3·√(0.01² + 0.01²) = 0.0424 > 0.03: the SEMs widen the band
    assert pv.matches(-0.042, 0.01, 0.01, 0.03) and not pv.matches(-0.043, 0.01, 0.01, 0.03)
    assert pv.matches(2.9, 0.1, 0.1, 3.0) and not pv.matches(3.1, 0.1, 0.1, 3.0)  # angles: 3 degrees


def _runs(figure, m, L, d, arm, values):
    return [{"figure": figure, "m": m, "L": L, "d": d, "arm": arm, "seed": s, "value": v} for s, v in enumerate(values)]


def test_compare_is_a_pure_function_of_our_runs_and_the_paper_values():
    paper = pd.DataFrame([{"figure": "fig3a", "m": 5, "L": 64, "d": 64, "arm": "trained", "paper": 0.9, "paper_sem": 0.0},
                          {"figure": "fig3a", "m": 5, "L": 64, "d": 64, "arm": "identity", "paper": 0.6,
                           "paper_sem": 0.001},
                          {"figure": "fig3a", "m": 6, "L": 64, "d": 64, "arm": "trained", "paper": 0.8, "paper_sem": 0.0}])
    runs = pd.DataFrame(_runs("fig3a", 5, 64, 64, "trained", [0.92, 0.92, 0.92])
                        + _runs("fig3a", 5, 64, 64, "identity", [0.5, 0.52, 0.54])
                        + _runs("fig3a", 7, 64, 64, "trained", [0.1]))  # no paper value: left out
    table = pv.compare(runs, paper)
    assert list(table.columns) == pv.COLUMNS == ["figure", "m", "L", "d", "arm", "paper", "paper_sem", "ours",
                                                 "ours_sem", "match"]
    assert len(table) == 2
    by_arm = table.set_index("arm")
    assert by_arm.loc["trained", "match"] and by_arm.loc["trained", "ours_sem"] == 0.0
    assert not by_arm.loc["identity", "match"]  # Δ = −0.08, SEM 0.0115: allowed 0.035
    assert by_arm.loc["identity", "ours_sem"] == pytest.approx(0.0115470, abs=1e-6)  # scipy.stats.sem
    assert pv.summary_line(table, "fig3a").startswith("Fig. 3(a) / C.1: paper values: 1 of 2 points match")
    assert pv.misses(table)[0].startswith("Fig. 3(a) / C.1 m=5, L=64, d=64, identity")


def _summary(rows):
    return pd.DataFrame([dict(zip(["m", "L", "d", "arm", "mean", "sem"], r)) for r in rows])


def test_value_matters_verdict_both_ways():
    good = _summary([(5, 64, 64, "trained", 0.9, 0.01), (5, 64, 64, "identity", 0.6, 0.01),
                     (5, 128, 64, "trained", 0.98, 0.01), (5, 128, 64, "identity", 0.8, 0.01)])
    assert P.verdict_value_matters(good)[0]
    smaller_gap_at_short_L = good.assign(mean=[0.9, 0.85, 0.98, 0.8])
    assert not P.verdict_value_matters(smaller_gap_at_short_L)[0]
    within_noise = good.assign(mean=[0.9, 0.88, 0.98, 0.8], sem=[0.01, 0.01, 0.01, 0.01])  # 0.02 < 2·0.014
    assert not P.verdict_value_matters(within_noise)[0]


def test_embedding_verdicts_both_ways():
    rows = [(5, 256, 16, "trained", 0.99, 0.01), (5, 256, 16, "frozen", 0.6, 0.02),
            (5, 256, 64, "trained", 0.999, 0.001), (5, 256, 64, "frozen", 0.99, 0.002)]
    table = _summary(rows)
    assert P.verdict_embedding_under(table)[0] and P.verdict_embedding_over(table)[0]
    worse = table.assign(mean=[0.99, 0.98, 0.999, 0.9])
    assert not P.verdict_embedding_under(worse)[0]  # d = 16 < V: 0.01 within 2 SE
    assert not P.verdict_embedding_over(worse)[0]  # d = 64 > V: gain 0.099 ≥ 0.03
    assert P.verdict_embedding_over(table[table["d"] == 16]) == (False, "no d > V")


def test_construction_verdicts_both_ways():
    acc = _summary([(5, 256, 16, "original", 0.99, 0.01), (5, 256, 16, "constructed", 0.97, 0.01),
                    (5, 256, 16, "random_pairs", 0.03, 0.01)])
    assert P.verdict_construction_replaces(acc)[0]
    dropped = acc.assign(mean=[0.99, 0.6, 0.03])
    ok, text = P.verdict_construction_replaces(dropped)
    assert not ok and "drop ≥ 0.05 at 1 of 1 points" in text
    angles = _summary([(5, 256, 16, "constructed", 7.0, 1.0), (5, 256, 16, "random_pairs", 19.0, 2.5),
                       (5, 256, 16, "gaussian", 31.0, 4.4)])
    assert P.verdict_construction_closest(angles)[0]
    assert not P.verdict_construction_closest(angles.assign(mean=[7.0, 19.0, 12.0]))[0]  # 5° < 2·4.5


def test_learning_rate_rules_are_the_authors_configs():
    assert P.learning_rates("c4", 5, 64) == (0.01,) and P.learning_rates("c4", 5, 128) == (0.001,)
    assert P.learning_rates("c4", 7, 128) == (0.01,) and P.learning_rates("c4", 8, 256) == (0.001,)
    assert P.learning_rates("standard", 6, 256) == (0.001,)
    assert P.learning_rates("standard", 6, 256, identity=True) == (0.01,)
    assert P.learning_rates("best-of-two", 5, 16) == (0.01, 0.001)
    with pytest.raises(ValueError):
        P.learning_rates("cosine", 5, 16)


def test_report_labels_protocols_criterion_history_and_disagreements(tmp_path, make):
    import dataclasses

    from assocmem.experiments.registry import Registry
    from assocmem.experiments.reproduce import reproduce

    alpha, beta, gamma = list(make())
    registry = Registry([
        dataclasses.replace(alpha, criterion_history={"value-matters": "first 'x > 2', changed after seeing x"}),
        dataclasses.replace(beta, protocol="paper", requires=(), quick=beta.quick, full=None, authors=beta.full),
        gamma])
    report = reproduce("quick", None, "cpu", tmp_path, registry=registry).report.read_text()
    assert "| `alpha` (our protocol) | a stated criterion [criterion revised after a first result: first 'x > 2', " \
           "changed after seeing x] |" in report
    assert "| `beta` (paper protocol) |" in report
    assert "Where the two protocols disagree:" in report
    assert "- `value-matters`: our protocol `alpha` supported; paper protocol `beta` NOT supported" in report
    assert "(our protocol: 1 supported, 0 not supported; paper protocol: 0 supported, 1 not supported)" in report
    full = reproduce("full", None, "cpu", tmp_path / "full", registry=registry).report.read_text()
    assert "### beta" not in full  # not in the full profile, and no folder of it there
