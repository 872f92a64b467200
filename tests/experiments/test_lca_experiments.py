"""Every synthetic experiment end to end on tiny settings (seconds): runs, draws, caches, reports."""

from __future__ import annotations

import dataclasses
import json

from assocmem.experiments.common import training
from assocmem.experiments.registry import Registry, default_registry
from assocmem.experiments.reproduce import reproduce

TINY_TRAINING = training(seeds=2, steps=8, batch_size=8, lrs=(0.01,), warmup_steps=2, eval_samples=64)


def _tiny(settings):
    """Shrink any of the synthetic settings dataclasses to m = 3 and a handful of steps."""
    sizes = {"training": TINY_TRAINING, "m": 3, "Ls": (6, 8), "ds": (4, 12), "L": 6, "d": 4, "eval_samples": 64,
             "n": 64, "lengths": (2, 4), "ms": (3, 4), "runs": 2, "train": TINY_TRAINING.config()}
    fields = {f.name for f in dataclasses.fields(settings)}
    if "ms" in fields:  # a paper-protocol grid: its d must hold the m top singular values of the spectra
        sizes["ds"] = (8, 12)
    if "lca" in fields:   # a study's task: m = 3, L = 6, the rest as it was
        settings = dataclasses.replace(settings, lca=dataclasses.replace(settings.lca, m=3, L=6))
    return dataclasses.replace(settings, **{k: v for k, v in sizes.items() if k in fields})


def _quick(exp):
    quick = _tiny(exp.quick or exp.authors)
    if exp.id == "paper-fig3a":  # one point the paper plots, so that it compares with a paper value
        quick = dataclasses.replace(quick, ms=(5,), Ls=(64,), ds=(64,))
    return quick


def test_synthetic_experiments_on_tiny_settings(tmp_path):
    """Every synthetic experiment of every protocol, the paper-protocol ones through their quick settings."""
    synthetic = [e for e in default_registry() if not e.uses_llm]
    registry = Registry(dataclasses.replace(e, quick=_quick(e)) for e in synthetic)
    summary = reproduce("quick", None, "cpu", tmp_path, registry=registry)
    assert not summary.failed, [(o.id, o.error) for o in summary.failed]
    report = summary.report.read_text()
    for exp in synthetic:
        result = json.loads((tmp_path / exp.id / "result.json").read_text())
        for figure in result["figures"] or [None]:
            assert figure and (tmp_path / exp.id / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", exp.id
        assert {c["claim"] for c in result["claims"]} == set(exp.claims), exp.id
        for c in result["claims"]:   # the report shows each verdict as the experiment judged it
            verdict = "**supported**" if c["supported"] else "**NOT supported**"
            protocol = {"ours": "our protocol", "paper": "paper protocol"}[exp.protocol]
            assert f"| `{exp.id}` ({protocol}) | {c['criterion'].replace('|', chr(92) + '|')}" in report, (exp.id, c["claim"])
            assert f"- claim `{c['claim']}` ({protocol}): {verdict}" in report
        for row in result["rows"]:
            assert isinstance(row["quantity"], str) and row["ours"] is not None, (exp.id, row)
            if "n" in row and "bayes" in row:   # an accuracy over the tiny profile's 2 seeds (accuracy_row)
                assert 0 <= row["ours"] <= 1 and 0 <= row["bayes"] <= 1 and row["n"] == 2, (exp.id, row)
    rows = json.loads((tmp_path / "fig3a" / "result.json").read_text())["rows"]
    assert [(r["setting"], r["quantity"]) for r in rows] == [                  # L × d × W_V arm, each over 2 seeds
        (f"L={L}, d={d} (lr 0.01)", arm) for L in (6, 8) for d in (4, 12)
        for arm in ("accuracy, trained W_V", "accuracy, W_V = I")]
    assert all(0 <= r["bayes"] <= 1 for r in rows)  # every accuracy row carries its ceiling
    assert report.count("gap to Bayes-optimal") >= 5
    assert "(paper protocol)" in report and "(our protocol)" in report
    assert "criterion revised after a first result" in report  # c2, c4 and spectra say so beside their verdicts
    comparison = (tmp_path / "paper-fig3a" / "paper_comparison.csv").read_text().splitlines()[0]
    assert comparison == "figure,m,L,d,arm,paper,paper_sem,ours,ours_sem,match"
    again = reproduce("quick", ["length"], "cpu", tmp_path, registry=registry)
    assert {o.status for o in again.outcomes} == {"cached"}
