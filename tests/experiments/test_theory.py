"""The theorem rows: their criteria are pure functions of a table (checked on made-up tables, so each can fail),
and the theory experiments run end to end on tiny settings."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd

from assocmem.lca.task import LCAConfig
from assocmem.experiments import lca_embedding, theory, theory_structure
from assocmem.experiments.registry import Registry, default_registry
from assocmem.experiments.reproduce import reproduce


def _construction_table(accs: list[float], bayes_gap: float = 0.0, ident: float = 0.0) -> list[dict]:
    rows = []
    for L, acc in zip((2, 4, 8, 16), accs):
        for q, v in (("accuracy, construction", acc), ("accuracy, W_V = I", ident), ("accuracy, Bayes-optimal", acc),
                     ("max per-sample |construction − Bayes|", bayes_gap)):
            rows.append({"m": 3, "L": L, "quantity": q, "value": v, "n": 4096})
    return rows


SETTINGS = theory.ConstructionStudy(ms=(3,), Ls=(2, 4, 8), neighborhood="all", n=4096)
FOUR = dataclasses.replace(SETTINGS, Ls=(2, 4, 8, 16))


def test_theorem1_criterion_needs_a_rise_to_one_without_a_drop():
    assert theory.judge_theorem1(_construction_table([0.4, 0.9, 1.0]), SETTINGS).claims[0].supported
    assert not theory.judge_theorem1(_construction_table([0.4, 0.9, 0.98]), SETTINGS).claims[0].supported
    assert not theory.judge_theorem1(_construction_table([0.4, 0.9, 0.8, 1.0]), FOUR).claims[0].supported  # a drop


def test_lemma2_criterion_needs_the_bayes_classifier_and_a_worse_identity():
    ok = theory.judge_lemma2(_construction_table([0.5, 0.9, 1.0]), SETTINGS).claims[0]
    assert ok.supported and ok.note
    assert not theory.judge_lemma2(_construction_table([0.5, 0.9, 1.0], bayes_gap=0.5), SETTINGS).claims[0].supported
    assert not theory.judge_lemma2(_construction_table([0.5, 0.9, 1.0], ident=0.5), SETTINGS).claims[0].supported


def test_theorem4_judges_each_arm_at_the_largest_excess():
    s = theory.Eq52Study(m=4, Ls=(4, 64), excesses=(0.0, 8.0), d_low=8, n=4096)
    arms = list(theory._arms(s))
    table = [{"arm": None, "excess": None, "L": L, "quantity": "accuracy, Bayes-optimal", "value": 1.0} for L in s.Ls]
    for arm, last in zip(arms, (1.0, 0.5)):
        table += [{"arm": arm, "excess": e, "L": L, "quantity": "accuracy", "value": v}
                  for e in s.excesses for L, v in zip(s.Ls, (0.3, last if e == 8.0 else 1.0))]
    verdicts = [c.supported for c in theory.judge_theorem4(table, s).claims]
    assert verdicts == [True, False]


def test_spectra_criterion_is_the_top_block_against_the_init():
    def table(trained_block: float) -> list[dict]:
        rows = []
        for arm, block, consecutive in (("trained W_E", trained_block, 1.2), ("Gaussian init", 1.0, 1.1)):
            for seed, jitter in enumerate((-0.01, 0.0, 0.01)):
                key = {"m": 8, "d": 16, "arm": arm, "seed": seed, "k": None}
                rows += [{**key, "quantity": lca_embedding.BLOCK, "value": block + jitter},
                         {**key, "quantity": lca_embedding.CONSECUTIVE, "value": consecutive + jitter},
                         {**key, "quantity": "singular values above the gap", "value": 8}]
                rows += [{**key, "quantity": "s_k / s_1", "k": k, "value": 1.0 / k} for k in (1, 2)]
        return rows

    passed = lca_embedding.judge_spectra(table(1.6)).claims[0]
    assert passed.supported and "earlier criterion" in passed.numbers  # the consecutive ratio (×1.09) stays shown
    assert not lca_embedding.judge_spectra(table(1.4)).claims[0].supported


def test_c4_over_several_d_reads_the_trend():
    s = lca_embedding.EmbeddingStudy(LCAConfig(m=3, L=6), ds=(4, 16, 32, 64))
    def table(gains):
        rows = []
        for d, gain in zip(s.ds, gains):
            for seed, jitter in enumerate((-0.005, 0.0, 0.005)):
                for arm, acc in (("trained W_E", 0.9), ("frozen W_E", 0.9 - gain + jitter)):
                    key = {"d": d, "arm": arm, "seed": seed, "lr": 0.01}
                    rows += [{**key, "quantity": "accuracy", "value": acc}, {**key, "quantity": "bayes", "value": 0.95}]
        return rows

    claims = {c.claim: c for c in lca_embedding.judge_c4(table([0.5, 0.2, 0.1, 0.01]), s).claims}
    assert claims["embedding-under"].supported and claims["embedding-over"].supported
    assert "(< 0.03)" in claims["embedding-over"].numbers  # the earlier per-d criterion, where it passes
    flat = {c.claim: c for c in lca_embedding.judge_c4(table([0.5, 0.1, 0.1, 0.1]), s).claims}
    assert not flat["embedding-over"].supported


TINY = {
    "thm1": theory.ConstructionStudy(ms=(3,), Ls=(4, 64), neighborhood="all", n=128),
    "lemma2": theory.ConstructionStudy(ms=(3,), Ls=(4, 64), neighborhood="hamming1", n=128),
    "thm4": theory.Eq52Study(m=4, Ls=(4, 64), excesses=(0.0, 8.0), d_low=10, n=128),
    "lemma5": theory_structure.RankStudy(ms=(3, 4)),
    "lemma6": theory_structure.GradientStudy(m=3, L=12, d=4, instances=4),
}


def test_theory_experiments_on_tiny_settings(tmp_path):
    chosen = [dataclasses.replace(e, quick=TINY[e.id]) for e in default_registry() if e.id in TINY]
    summary = reproduce("quick", None, "cpu", tmp_path, registry=Registry(chosen))
    assert not summary.failed, [(o.id, o.error) for o in summary.failed]
    verdicts = {}
    results = {}
    for exp in chosen:
        results[exp.id] = json.loads((tmp_path / exp.id / "result.json").read_text())
        assert [f.removesuffix(".png") for f in results[exp.id]["figures"]] != [], exp.id
        verdicts.update({c["claim"]: c["supported"] for c in results[exp.id]["claims"]})
    assert verdicts["lemma5-rank"] and verdicts["lemma6-gradient"] and not verdicts["lemma6-printed"]
    assert verdicts["lemma2-bayes"]
    ranks = results["lemma5"]["rows"]   # the SVD's rank is the closed form's, and m + 1 at b0 = b > am/2
    assert len(ranks) == 2 * 3 and all(r["ours"] == r["closed_form"] for r in ranks)
    assert [r["ours"] for r in ranks if r["setting"].endswith("b0 = b = am/2 + 1")] == [4, 5]
    lemma6 = pd.read_csv(tmp_path / "lemma6" / "lemma6.csv")
    assert (lemma6["quantity"] == "gradient").sum() == 4 * 2**3 and lemma6["instance"].nunique() == 4
    (construction,) = [r for r in results["thm1"]["rows"] if r["quantity"] == "accuracy, construction"]
    assert construction["ours"] == construction["L=64"] and 0 <= construction["L=4"] <= 1   # the curve over L
