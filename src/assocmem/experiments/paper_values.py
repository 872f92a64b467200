"""The values the paper's figures plot (Fig. 3(a)/C.1, C.2, C.3, C.4: 208 points), and ours judged against them.

The values come from the authors' plotting scripts (`assocmem/data/paper_figure_values.json`, its `source`
names the files). Everything here is a pure function of long tables:

* `paper_values()`: the paper's points, one row per (figure, m, L, d, arm) with `paper` and `paper_sem`;
* `summarise(runs)`: our runs (one row per (figure, m, L, d, arm, seed) with `value`) as mean and SEM
  (scipy.stats.sem, as the authors' scripts);
* `compare(runs)`: both side by side with the match rule below: the `paper_comparison.csv` of an experiment;
* `summary_line(table)`: "paper values: K of N points match".

Match rule (fixed before the paper-protocol runs): |ours − paper| ≤ max(tol, 3·√(SEM_paper² + SEM_ours²)),
tol = 0.03 for accuracies and 3° for angles. The authors' runs are unseeded and ours are seeded, so only
means are comparable; the SEMs of both carry the run-to-run spread.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import pandas as pd

VALUES_FILE = Path(__file__).resolve().parent.parent / "data" / "paper_figure_values.json"
FIGURES: dict[str, str] = {"fig3a": "Fig. 3(a) / C.1", "c4": "Fig. C.4", "c2": "Fig. C.2", "c3": "Fig. C.3"}
TOLERANCE: dict[str, float] = {"fig3a": 0.03, "c4": 0.03, "c2": 0.03, "c3": 3.0}  # accuracy points; degrees
KEYS = ["figure", "m", "L", "d", "arm"]
COLUMNS = [*KEYS, "paper", "paper_sem", "ours", "ours_sem", "match"]
# The file's section per figure and the arms it holds, in the file's names.
_SECTIONS = {"fig3a": ("fig3a_value_matrix", ("trained", "identity")),
             "c4": ("c4_embeddings", ("trained", "frozen")),
             "c2": ("c2_construction", ("original", "constructed", "random_pairs")),
             "c3": ("c3_principal_angles_deg", ("constructed", "random_pairs", "gaussian"))}


def source() -> str:
    """Where the values come from (the authors' repository, commit and plotting scripts)."""
    return _load()["source"]


@lru_cache(maxsize=1)
def _load() -> dict:
    with open(VALUES_FILE) as fh:
        return json.load(fh)


def paper_values() -> pd.DataFrame:
    """The 208 plotted points: columns figure, m, L, d, arm, paper, paper_sem."""
    data, rows = _load(), []
    for figure, (section, arms) in _SECTIONS.items():
        block = data[section]
        if figure == "fig3a":  # x = m, one block per L
            for L in (64, 128):
                for arm in arms:
                    rows += [{"figure": figure, "m": m, "L": L, "d": block["d"], "arm": arm, "paper": v, "paper_sem": e}
                             for m, v, e in zip(block["m"], block[f"L{L}"][arm], block[f"L{L}"][f"{arm}_sem"])]
        else:  # x = d, one block per m
            for m in (5, 6, 7, 8):
                for arm in arms:
                    rows += [{"figure": figure, "m": m, "L": block["L"], "d": d, "arm": arm, "paper": v, "paper_sem": e}
                             for d, v, e in zip(block["d"], block[f"m{m}"][arm], block[f"m{m}"][f"{arm}_sem"])]
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and SEM over runs per (figure, m, L, d, arm): columns KEYS + ours, ours_sem, runs. `runs` has
    KEYS + value (one row per run). A single run has SEM 0."""
    from scipy.stats import sem

    grouped = runs.groupby(KEYS, sort=True)["value"]
    out = grouped.agg(ours="mean", runs="count").reset_index()
    spread = grouped.agg(lambda v: float(sem(v)) if len(v) > 1 else 0.0).reset_index(drop=True)
    return out.assign(ours_sem=spread.to_numpy())[[*KEYS, "ours", "ours_sem", "runs"]]


def matches(diff: float, paper_sem: float, ours_sem: float, tol: float) -> bool:
    """The match rule: |Δ| ≤ max(tol, 3·√(SEM_paper² + SEM_ours²))."""
    return abs(diff) <= max(tol, 3.0 * math.hypot(paper_sem, ours_sem))


def compare(runs: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every point we ran that has a paper value: columns COLUMNS (the paper_comparison.csv), in the order
    figure, m, L, d, arm. A pure function of our runs and the paper's values."""
    paper = paper_values() if paper is None else paper
    ours = summarise(runs)
    table = paper.merge(ours, on=KEYS, how="inner")
    table["match"] = [matches(o - p, ps, os_, TOLERANCE[f]) for f, p, ps, o, os_ in
                      zip(table["figure"], table["paper"], table["paper_sem"], table["ours"], table["ours_sem"])]
    return table[COLUMNS].sort_values(KEYS, kind="stable").reset_index(drop=True)


def summary_line(table: pd.DataFrame, figure: str) -> str:
    """'paper values: K of N points match' for one figure of a comparison table (with how many of the
    figure's plotted points were run, when not all)."""
    part = table[table["figure"] == figure]
    total = int((paper_values()["figure"] == figure).sum())
    line = f"{FIGURES[figure]}: paper values: {int(part['match'].sum())} of {len(part)} points match"
    return line + (f" ({len(part)} of the figure's {total} plotted points run here)" if len(part) < total else "")


def misses(table: pd.DataFrame) -> list[str]:
    """One line per point that does not match: where it is, both values and what the rule allowed."""
    out = []
    for r in table[~table["match"]].itertuples():
        allowed = max(TOLERANCE[r.figure], 3.0 * math.hypot(r.paper_sem, r.ours_sem))
        out.append(f"{FIGURES[r.figure]} m={r.m}, L={r.L}, d={r.d}, {r.arm}: ours {r.ours:.3f} ± {r.ours_sem:.3f}, "
                   f"paper {r.paper:.3f} ± {r.paper_sem:.3f} (Δ {r.ours - r.paper:+.3f}, allowed ±{allowed:.3f})")
    return out


def report_rows(table: pd.DataFrame, runs: pd.DataFrame | None = None) -> list[dict]:
    """The comparison as report rows: ours ± SEM beside the paper's, Δ and the verdict per point; with the
    runs' Bayes-optimal accuracy (mean over runs) where the runs carry one."""
    unit = {"c3": "smallest principal angle (deg)"}
    if runs is not None and "bayes" in runs:
        table = table.merge(runs.groupby(KEYS, as_index=False)["bayes"].mean(), on=KEYS, how="left")
    return [{"setting": f"m={r.m}, L={r.L}, d={r.d}", "quantity": f"{unit.get(r.figure, 'accuracy')}, {r.arm}",
             "ours": r.ours, "SEM": r.ours_sem, **({"bayes": r.bayes} if "bayes" in table else {}),
             "paper value": r.paper, "paper SEM": r.paper_sem, "Δ": r.ours - r.paper,
             "matches": "yes" if r.match else "no"} for r in table.itertuples()]
