"""Caching, resume and the report, on fake experiments that only count their runs."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert not (tmp_path / ".partial").exists()  # finished folders were moved into place, the empty .partial removed


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


FAMILY = '''
from dataclasses import dataclass
from pathlib import Path

from assocmem.experiments.registry import ClaimResult, Experiment, Result

SCALE = 2


@dataclass(frozen=True)
class Knob:
    value: int = 1


def shared(x):
    return x * SCALE


def run_one(settings, ctx):
    return Result(rows=[{"setting": "s", "quantity": "q", "ours": shared(settings.value) + 1}])


def run_two(settings, ctx):
    return Result(rows=[{"setting": "s", "quantity": "q", "ours": shared(settings.value) + 2}])


def no_plot(result, folder):
    return []


EXPERIMENTS = [Experiment("one", "One", "—", Knob(), Knob(), run_one, no_plot),
               Experiment("two", "Two", "—", Knob(), Knob(), run_two, no_plot)]
'''


def _family(path, source: str):
    """Write `source` as a module file and (re-)import it; its experiments as a registry."""
    import importlib.util
    import sys

    from assocmem.experiments.registry import Registry

    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return Registry(module.EXPERIMENTS)


def test_one_changed_line_of_an_experiments_computation_reruns_that_experiment_and_no_other(tmp_path):
    family = tmp_path / "code_fingerprint_family.py"
    out = tmp_path / "out"
    first = reproduce("quick", None, "cpu", out, registry=_family(family, FAMILY))
    assert _statuses(first) == {"one": "ran", "two": "ran"}
    again = reproduce("quick", None, "cpu", out, registry=_family(family, FAMILY + "\n# a comment\n"))
    assert _statuses(again) == {"one": "cached", "two": "cached"}           # comments and layout do not count
    edited = FAMILY.replace("shared(settings.value) + 1}", "shared(settings.value) + 10}")
    summary = reproduce("quick", None, "cpu", out, registry=_family(family, edited))
    assert _statuses(summary) == {"one": "ran", "two": "cached"}
    assert json.loads((out / "one" / "result.json").read_text())["rows"][0]["ours"] == 12   # the new code's number
    summary = reproduce("quick", None, "cpu", out, registry=_family(family, edited.replace("SCALE = 2", "SCALE = 3")))
    assert _statuses(summary) == {"one": "ran", "two": "ran"}                # a constant both read
    report = summary.report.read_text()
    code = json.loads((out / "two" / "result.json").read_text())["code"]
    assert len(code) == 16 and f"code `{code}`" in report


EDIT_AND_HASH = """
import json, sys
from pathlib import Path
from assocmem.experiments.registry import default_registry
from assocmem.experiments.runner import experiment_code

root = Path(sys.argv[1])
codes = [{e.id: experiment_code(e) for e in default_registry()}]
for path, old, new in json.loads(sys.argv[2]):
    target = root / path
    text = target.read_text()
    assert text.count(old) == 1, old
    target.write_text(text.replace(old, new))
    codes.append({e.id: experiment_code(e) for e in default_registry()})
    target.write_text(text)
print(json.dumps(codes))
"""


def test_a_changed_line_changes_the_fingerprint_of_what_uses_it_only():
    """The real experiments' code fingerprints, in a copy of the package, before and after one line of one
    experiment's judge changes, and one line of a library module."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    src = Path(__file__).resolve().parents[2] / "src"
    edits = [("experiments/theory_structure.py", "holds.append(svd <= m + 2)", "holds.append(svd <= m + 3)"),
             ("lca/bayes.py", "return float(values.mean())", "return float(values.mean(0))")]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(src / "assocmem", Path(tmp) / "assocmem", ignore=shutil.ignore_patterns("__pycache__"))
        out = subprocess.run([sys.executable, "-c", EDIT_AND_HASH, str(Path(tmp) / "assocmem"), json.dumps(edits)],
                             env={**os.environ, "PYTHONPATH": tmp}, capture_output=True, text=True, check=True)
    before, judge, library = json.loads(out.stdout)
    assert {k for k in before if judge[k] != before[k]} == {"lemma5"}
    changed = {k for k in before if library[k] != before[k]}
    assert {"fig3a", "c4", "thm1", "mixing"} <= changed and not changed & {"fig1", "lemma6", "atlas"}


def test_the_report_lists_what_was_selected_and_what_is_finished_here(tmp_path, calls, make):
    report = reproduce("quick", ["beta"], "cpu", tmp_path, registry=make()).report.read_text()
    assert "`alpha`" in report and "`beta`" in report and "gamma" not in report   # beta requires alpha
    assert "| not run |" not in report and "- experiments: 2 of the 3 registered" in report
    report = reproduce("quick", ["gamma"], "cpu", tmp_path, registry=make()).report.read_text()
    assert all(f"### {e}" in report for e in ("alpha / a1", "beta", "gamma"))      # finished folders stay listed
    assert report.count("| [") == 3


def test_the_papers_statement_is_ours_not_a_quotation(make):
    from assocmem.experiments.report import _experiment_section

    exp = make().get("alpha")
    lines = _experiment_section(exp, None, None, {"statement": "Longer contexts help.", "source": "Fig. 0"})
    assert "What the paper reports, in our words (Fig. 0): Longer contexts help." in lines
    assert not any('"Longer contexts help."' in line for line in lines)


def test_a_failed_experiment_keeps_its_partial_folder(tmp_path, calls, make):
    summary = reproduce("quick", None, "cpu", tmp_path, registry=make(with_failure=True))
    partial = [p.name for p in (tmp_path / ".partial").iterdir()]
    assert len(partial) == 1 and partial[0].startswith("delta-") and summary.failed[0].folder.name == partial[0]


def test_the_settings_class_of_a_paper_profile_experiment_counts_in_its_code(tmp_path):
    """An experiment of the paper profile alone (no quick or full settings) counts its `authors` settings class,
    as the others count theirs, even where its run function does not name the class."""
    from assocmem.experiments.runner import experiment_code

    family = tmp_path / "paper_only_family.py"
    source = FAMILY + '\nEXPERIMENTS.append(Experiment("three", "Three", "—", None, None, run_one, no_plot, authors=Knob()))\n'
    before = experiment_code(_family(family, source).get("three"))
    after = experiment_code(_family(family, source.replace("value: int = 1", "value: int = 5")).get("three"))
    assert before != after
