"""Choices made on one half of the records and judged on the other (hijack.mechanism, hijack.defence).

A test that picks the best of many layer sets, or the best heads, on the records it then scores on,
rewards noise. Here every record of a scheme is in one of two halves, drawn once from the run's seed:
`choose` (which layer set, which blocks carry the hijack, which heads, which scale) and `judge` (the
numbers a claim or a defence is judged by). Everything below is a pure function of the tables
`hijack.mechanism.analyse` returns, restricted to the choosing half.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from assocmem.hijack.mechanism import mean_ci
from assocmem.tables import where

HALVES = ("choose", "judge")


def split_halves(case_ids: Iterable[int], seed: int) -> dict[int, str]:
    """{case_id: "choose" | "judge"}: a seeded random half (the larger one when odd) chooses."""
    ids = np.array(sorted({int(c) for c in case_ids}), dtype=np.int64)
    order = np.random.default_rng([seed, 0x48414C46]).permutation(len(ids))   # its own stream ("HALF")
    k = (len(ids) + 1) // 2
    return {int(ids[p]): HALVES[0] if j < k else HALVES[1] for j, p in enumerate(order)}


def per_record(iv: pd.DataFrame, *, half: str | None = None, by: str | tuple[str, ...] = "label",
               **match) -> pd.Series:
    """Restoration per (case_id, *by) of the used records whose columns equal `match` (and `half`)."""
    part = where(iv[iv["used"]], **({"half": half} if half is not None else {}), **match)
    return part.set_index(["case_id", *((by,) if isinstance(by, str) else by)])["restoration"]


def mean_se(values) -> tuple[float, float, int]:
    """(mean, standard error, count) of the finite values (`mechanism.mean_ci`'s)."""
    x = np.asarray(values, dtype=np.float64)
    m, se, _, _ = mean_ci(x)
    return m, se, int(np.isfinite(x).sum())


def best_label(iv: pd.DataFrame, half: str = "choose", **match) -> str | None:
    """The label (layer set, block or head) with the largest mean restoration among the rows matching."""
    r = per_record(iv, half=half, **match)
    if not len(r):
        return None
    means = r.groupby(level="label").mean()
    return str(means.idxmax())


def chosen_layer_set(iv: pd.DataFrame, scheme: str, n: int) -> str | None:
    """The read-position knockout's layer set (a block, a window or all blocks) restoring most on the
    choosing half: the set the headline test then judges on the other half."""
    return best_label(iv, scheme=scheme, n=n, analysis="knockout", variant="read",
                      set_kind=("single", "window", "all"))


def carrying_blocks(iv: pd.DataFrame, scheme: str, n: int, k: int) -> list[int]:
    """The k single blocks whose read-position knockout restores most on the choosing half, best first."""
    r = per_record(iv, half="choose", by="layer_lo", scheme=scheme, n=n, analysis="knockout", variant="read",
                   set_kind="single")
    if not len(r):
        return []
    means = r.groupby(level="layer_lo").mean().sort_values(ascending=False, kind="stable")
    return [int(block) for block in means.index[:k]]


def head_ranking(iv: pd.DataFrame, scheme: str, n: int, half: str | None = "choose") -> pd.DataFrame:
    """Per head (label "block.head"): mean restoration of its read-position knockout and SE, the paired
    difference to its control and SE, records, and `passed` (both > 2 SE); best mean first."""
    by = ("label", "layer_lo", "head")
    ko = per_record(iv, half=half, by=by, scheme=scheme, n=n, analysis="knockout", set_kind="head")
    ctl = per_record(iv, half=half, by=by, scheme=scheme, n=n, analysis="control", set_kind="head")
    rows = []
    for (label, block, head), g in ko.groupby(level=list(by)):
        m, se, k = mean_se(g.to_numpy())
        both = g.index.intersection(ctl.index)
        d, d_se, _ = mean_se((g[both] - ctl[both]).to_numpy())
        block, head = int(block), int(head)
        rows.append({"label": str(label), "block": block, "head": head, "mean": m, "se": se, "records": k,
                     "minus_control": d, "minus_control_se": d_se,
                     "passed": bool(m > 2 * se and d > 2 * d_se)})
    cols = ["label", "block", "head", "mean", "se", "records", "minus_control", "minus_control_se", "passed"]
    table = pd.DataFrame(rows, columns=cols)
    return table.sort_values(["mean", "label"], ascending=[False, True], kind="stable", ignore_index=True)


def found_heads(ranking: pd.DataFrame, max_heads: int,
                min_restoration: float = 0.0) -> tuple[list[tuple[int, int]], bool]:
    """(heads, whether they passed): the heads of `head_ranking` that passed and restore at least
    `min_restoration` on average, best first, at most max_heads; when none does, the single best head (False)."""
    passed = ranking[ranking["passed"] & (ranking["mean"] >= min_restoration)]
    if len(passed):
        return [(int(b), int(h)) for b, h in zip(passed["block"], passed["head"])][:max_heads], True
    if not len(ranking):
        return [], False
    return [(int(ranking["block"].iloc[0]), int(ranking["head"].iloc[0]))], False
