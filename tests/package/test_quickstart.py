"""examples/quickstart.py runs and does each of the four things the README's "From Python" section shows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_runs_the_four_calls(capsys):
    spec = importlib.util.spec_from_file_location("quickstart", CHECKOUT / "examples" / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    out = quickstart.main(["--counterfact", str(CHECKOUT / "tests" / "fixtures" / "counterfact_small.json")])
    scores = out["scores"]
    assert list(scores["target_true"]) == ["Paris", "Paris"] and scores["p_true"].between(0, 1).all()
    assert (scores["hijacked"] == (scores["logp_false"] > scores["logp_true"])).all()
    rows = out["result"].rows
    assert len(rows) == 10 * 2 * 4 and set(rows["scheme"]) == {"not-think", "relation"}
    assert sorted(rows["n"].unique()) == [0, 1, 2, 3] and rows["case_id"].nunique() == 10
    models = out["models"]
    assert tuple(models.W_V.shape) == (4, 32, 32) and len(models.table) == 4
    assert (models.table["final_accuracy"] > 1 / 32).all()                          # above chance: they learned
    run = out["run"]
    assert run.model == "gemma3-270m" and len(run.rows) == sum(run.rates["records"])
    assert "hijacked_share" in capsys.readouterr().out
