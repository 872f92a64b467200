"""The hijacking experiments on several models: statistics on hand-made rows, and one tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assocmem.experiments.hijack_stats import compare_models, dose_response, mode_agreement, paired_change

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "counterfact_small.json"


def _rows(es_by_n: dict[int, float], records: int = 200, model: str = "m", seed: int = 0) -> pd.DataFrame:
    """Rows whose hijacked share at each n is es_by_n[n]; a record hijacked at n stays hijacked at
    larger n while the share grows (records sorted by a fixed random key)."""
    rng = np.random.default_rng(seed)
    key = rng.permutation(records)
    out = []
    for n, es in es_by_n.items():
        hijacked = key < round(es * records)
        out.append(pd.DataFrame({"case_id": np.arange(records), "n": n, "model": model, "scheme": "s",
                                 "relation_id": "P1", "hijacked": hijacked, "true_preferred": ~hijacked}))
    return pd.concat(out, ignore_index=True)


def test_dose_response_says_rises_then_saturates_and_declines_when_it_does():
    d = dose_response(_rows({0: 0.2, 1: 0.75, 2: 0.8, 3: 0.8, 4: 0.78, 5: 0.6}))
    assert d.peak_n in (2, 3) and d.saturates_at == 1 and d.reverses
    assert d.describe().startswith("rises, then saturates at n = 1") and "declines" in d.describe()
    d = dose_response(_rows({0: 0.1, 1: 0.3, 2: 0.5, 3: 0.7, 4: 0.9}))
    assert d.saturates_at == 4 and not d.reverses and d.describe() == "keeps rising to n = 4"
    d = dose_response(_rows({0: 0.3, 1: 0.0, 2: 0.0, 3: 0.005}), up=False)
    assert d.describe().startswith("falls, then saturates at n = 1") and not d.reverses


def test_paired_change_and_model_comparison_on_the_same_records():
    rows = _rows({0: 0.2, 1: 0.7})
    mean, se, k = paired_change(rows, 0, 1)
    assert k == 200 and mean == pytest.approx(0.5) and se == pytest.approx((0.25 / 199) ** 0.5)   # 100 of 200 change
    both = pd.concat([_rows({1: 0.7}, model="a"), _rows({1: 0.4}, model="b")])
    c = compare_models(both, "a", "b", 1)
    assert (c.records, c.only_a, c.only_b) == (200, 60, 0) and c.p_value < 1e-10
    assert "a is more hijackable" in c.describe()
    same = compare_models(pd.concat([_rows({1: 0.5}, model="a"), _rows({1: 0.5}, model="b")]), "a", "b", 1)
    assert same.p_value == 1.0 and "no difference" in same.describe()


def test_mode_agreement_counts_the_decisions_that_differ():
    rows = _rows({1: 0.5}).assign(**{"hijacked:mean-target": lambda d: d["hijacked"]})
    rows.loc[:9, "hijacked:mean-target"] = ~rows.loc[:9, "hijacked"]
    agree = mode_agreement(rows, "mean-target")
    assert agree["differ"] == pytest.approx(10 / 200) and agree["es_own"] == pytest.approx(0.5)


@pytest.mark.slow
def test_two_models_give_per_model_folders_claims_and_a_provenance_header(tmp_path):
    from assocmem.experiments.reproduce import reproduce
    from assocmem.hijack.verify import run_folders, verify_run

    summary = reproduce("quick", ["fig2a", "appB-table"], "cpu", tmp_path, ("tiny-random-llama", "tiny-random-gpt2"),
                        FIXTURE)
    assert {o.id: o.status for o in summary.outcomes} == {"hijack-sample": "ran", "fig2a": "ran", "appB-table": "ran"}
    result = json.loads((tmp_path / "fig2a" / "result.json").read_text())
    per_model = [c for c in result["claims"] if c["claim"] == "hijack-raises-es"]
    assert len(per_model) == 2 and {"tiny-random-llama", "tiny-random-gpt2"} <= {c["criterion"].split(", ")[1].split(":")[0]
                                                                                   for c in per_model}
    assert any(c["claim"] == "hijack-all-models" for c in result["claims"])
    assert any(r["quantity"] == "which is more hijackable" for r in result["rows"])
    sample = json.loads((tmp_path / "hijack-sample" / "result.json").read_text())
    assert any(r["quantity"] == "ES, first token vs ROME's rule" for r in sample["rows"])
    rows = pd.read_parquet(tmp_path / "hijack-sample" / "tiny-random-gpt2" / "rows.parquet")
    assert {"hijacked:mean-target", "prompt"} <= set(rows.columns)
    report = (tmp_path / "report.md").read_text()
    assert "- CounterFact: `" in report and "- model `tiny-random-gpt2`" in report
    folders = run_folders(tmp_path)
    assert {f.parent.name for f in folders} == {"hijack-sample"} and len(folders) == 2
    checked = verify_run(folders[0], sample=10, device="cpu")
    assert checked["same_decisions"] == 10 == checked["same_ranks"]
