"""The committed reports' known-fact ES equals a recomputation from the committed rows.parquet.

For every results/<profile>/ folder holding hijack-known: each "ES on facts the model knows" row of its
result.json (what report.md prints) is recomputed from hijack-sample/<model>/rows.parquet's `known`
column, within 0.001, with the same record count; and report.md prints that number. Run it on a folder
brought back from a GPU: `pytest tests/experiments/test_committed_known.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from assocmem.experiments.hijack_known import ES_KNOWN
from assocmem.experiments.hijack_stats import KNOWN

RESULTS = Path(__file__).resolve().parents[2] / "results"
FOLDERS = sorted(p.parent.parent for p in RESULTS.glob("*/hijack-known/result.json"))


def test_the_quick_profile_is_committed_with_its_known_facts():
    assert RESULTS / "quick" in FOLDERS


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_known_fact_es_of_the_report_is_the_rows_own(folder: Path):
    result = json.loads((folder / "hijack-known" / "result.json").read_text())
    table = pd.read_csv(folder / "hijack-known" / "known_rates.csv")
    table = table[table["subset"] == KNOWN]
    printed = {(r["model"], r["setting"]): r["ours"] for r in result["rows"] if r["quantity"] == ES_KNOWN}
    report = (folder / "report.md").read_text()
    in_report = 0
    for model, part in table.groupby("model"):
        rows = pd.read_parquet(folder / "hijack-sample" / model / "rows.parquet",
                               columns=["case_id", "scheme", "n", "hijacked", "known"])
        mine = rows[rows["known"]].groupby(["scheme", "n"])["hijacked"].agg(["mean", "size"])
        for r in part.itertuples():
            es, records = mine.loc[(r.scheme, r.n)]
            assert records == r.records and abs(es - r.hijacked_share) <= 0.001, (model, r.scheme, r.n)
            setting = f"{r.scheme}, n={r.n}"
            if (model, setting) in printed:
                assert abs(printed[(model, setting)] - es) <= 0.001
                assert f"| {setting} | {model} | {ES_KNOWN} | {printed[(model, setting)]:.3f} |" in report
                in_report += 1
    assert in_report == len(printed) >= 4      # every printed row checked: two models × two schemes at least
