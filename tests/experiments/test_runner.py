"""Caching, resume and the report, on fake experiments that only count their runs."""

from __future__ import annotations

import json

from assocmem.experiments.reproduce import reproduce


def _statuses(summary):
    return {o.id: o.status for o in summary.outcomes}


def test_second_run_does_nothing(tmp_path, calls, make):
    first = reproduce("quick", None, "cpu", tmp_path, registry=make())
    assert _statuses(first) == {"alpha": "ran", "beta": "ran", "gamma": "ran"}
    assert calls == ["alpha", "beta", "gamma"]
    second = reproduce("quick", None, "cpu", tmp_path, registry=make())
    assert _statuses(second) == {"alpha": "cached", "beta": "cached", "gamma": "cached"}
    assert calls == ["alpha", "beta", "gamma"]
    result = json.loads((tmp_path / "alpha" / "result.json").read_text())
    assert result["settings"] == {"value": 1} and result["figures"] == ["line.png"]
    assert (tmp_path / "alpha" / "line.png").is_file()


def test_changed_setting_reruns_only_that_experiment_and_its_readers(tmp_path, calls, make):
    reproduce("quick", None, "cpu", tmp_path, registry=make())
    calls.clear()
    summary = reproduce("quick", None, "cpu", tmp_path, registry=make(b=2))
    assert _statuses(summary) == {"alpha": "cached", "beta": "ran", "gamma": "cached"}
    calls.clear()
    summary = reproduce("quick", None, "cpu", tmp_path, registry=make(a=3, b=2))
    assert _statuses(summary) == {"alpha": "ran", "beta": "ran", "gamma": "cached"}  # beta reads alpha
    assert calls == ["alpha", "beta"]
    assert not list((tmp_path / ".partial").iterdir())  # finished folders were moved into place


def test_profile_changes_the_settings(tmp_path, calls, make):
    reproduce("quick", ["alpha"], "cpu", tmp_path, registry=make())
    summary = reproduce("full", ["alpha"], "cpu", tmp_path, registry=make())
    assert _statuses(summary) == {"alpha": "ran"}
    assert json.loads((tmp_path / "alpha" / "result.json").read_text())["settings"] == {"value": 10}


def test_only_adds_requirements(tmp_path, calls, make):
    summary = reproduce("quick", ["beta"], "cpu", tmp_path, registry=make())
    assert [o.id for o in summary.outcomes] == ["alpha", "beta"]
    summary = reproduce("quick", ["a1"], "cpu", tmp_path, registry=make())  # an alias
    assert _statuses(summary) == {"alpha": "cached"}


def test_failure_is_reported_and_the_rest_runs(tmp_path, calls, make):
    summary = reproduce("quick", None, "cpu", tmp_path, registry=make(with_failure=True))
    assert _statuses(summary)["delta"] == "failed"
    assert [o.id for o in summary.failed] == ["delta"]
    assert "RuntimeError: this experiment always fails" in summary.failed[0].error
    assert (summary.failed[0].folder / "error.txt").is_file()
    report = summary.report.read_text()
    assert "failed: RuntimeError" in report


def test_report_has_claims_tables_and_figures(tmp_path, calls, make):
    summary = reproduce("quick", ["alpha", "beta"], "cpu", tmp_path, registry=make())
    report = summary.report.read_text()
    assert summary.report == tmp_path / "report.md"
    assert "## Claims" in report
    assert "| `alpha` (our protocol) | a stated criterion | x = 1 | **supported** |" in report
    assert "| `beta` (our protocol) | a stated criterion | x = 1 — explained by ours = 0.5 | **NOT supported** |" in report  # shown
    assert "gap to Bayes-optimal" in report and "| 0.250 |" in report  # 0.75 − 0.5
    assert "![alpha](alpha/line.png)" in report
    assert "not run" in report  # gamma and the claims nobody tested


def test_failed_claims_are_explained_from_cached_results_too(tmp_path, calls, make):
    reproduce("quick", ["alpha", "beta"], "cpu", tmp_path, registry=make())
    again = reproduce("quick", ["alpha", "beta"], "cpu", tmp_path, registry=make())
    assert {o.status for o in again.outcomes} == {"cached"}
    report = again.report.read_text()
    assert report.count("explained by ours = 0.5") == 2  # beta's claim row and its section; alpha passed
    assert "Why: explained by ours = 0.5" in report


def test_lca_explanations_are_pure_functions_of_the_judged_table():
    """table -> judge -> explanation, no setting strings parsed: a criterion or a sentence can change
    without retraining."""
    from assocmem.experiments.lca_embedding import BLOCK, CONSECUTIVE, explain_spectra, judge_spectra
    from assocmem.experiments.lca_value import explain_c2, judge_c2

    table = []
    for beta, share, L, trained, built in ((1.0, 0.26, 64, 0.85, 0.75), (1.0, 0.26, 128, 0.95, 0.93),
                                           (0.5, 0.61, 64, 0.99, 0.98)):
        key = {"beta": beta, "L": L, "d": 128}
        for seed in (0, 1):
            table += [{**key, "seed": seed, "quantity": "accuracy, trained W_V", "value": trained},
                      {**key, "seed": seed, "quantity": "accuracy, Theorem 1 W_V", "value": built},
                      {**key, "seed": seed, "quantity": "accuracy, random-pairs W_V", "value": 0.1 + 0.01 * seed}]
        table += [{**key, "seed": None, "quantity": "accuracy, Bayes-optimal", "value": 1.0},
                  {**key, "seed": None, "quantity": "share of π's mass at D_H = 1", "value": share}]
    text = explain_c2({"data": judge_c2(table).data})
    assert "β=1 (26% of π's mass at D_H = 1): drop L=64: 0.100, L=128: 0.020" in text
    assert "β=0.5 (61% of π's mass at D_H = 1): drop L=64: 0.010" in text
    spectra = []
    for arm, block, consecutive in (("trained W_E", (1.9, 2.1), 1.4), ("Gaussian init", (1.6, 1.6), 1.0)):
        for seed, b in enumerate(block):
            key = {"m": 8, "d": 16, "arm": arm, "seed": seed, "k": None}
            spectra += [{**key, "quantity": BLOCK, "value": b}, {**key, "quantity": CONSECUTIVE, "value": consecutive},
                        {**key, "quantity": "singular values above the gap", "value": 8}]
    text = explain_spectra({"data": judge_spectra(spectra).data})
    assert "d=16: ×1.25 (top block 2.00 ± 0.14; consecutive ×1.40)" in text


def test_a_damaged_cached_folder_is_recomputed_and_said_so(tmp_path, calls, make, capsys):
    reproduce("quick", None, "cpu", tmp_path, registry=make())
    calls.clear()
    (tmp_path / "gamma" / "line.png").write_bytes(b"")                 # a figure may be anything
    (tmp_path / "alpha" / "extra.json").write_text("{half a json")     # a table that does not read back
    summary = reproduce("quick", None, "cpu", tmp_path, registry=make())
    assert _statuses(summary) == {"alpha": "ran", "beta": "cached", "gamma": "cached"}
    assert "alpha: the cached folder is damaged (extra.json unreadable" in capsys.readouterr().err
    (tmp_path / "beta" / "result.json").write_text("[]")               # a result that is no result
    summary = reproduce("quick", None, "cpu", tmp_path, registry=make())
    assert _statuses(summary)["beta"] == "ran"


def test_quick_profile_difference_is_printed_beside_the_verdict(tmp_path, make):
    import dataclasses

    from assocmem.experiments.registry import Registry

    reg = Registry(dataclasses.replace(e, quick_differs={"value-matters": "quick uses a smaller m"}) for e in make())
    report = reproduce("quick", ["alpha"], "cpu", tmp_path, registry=reg).report.read_text()
    assert report.count("quick profile differs from full: quick uses a smaller m") == 2  # claims table and section
    report = reproduce("full", ["alpha"], "cpu", tmp_path / "full", registry=reg).report.read_text()
    assert "quick profile differs" not in report
