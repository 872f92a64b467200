"""Per-record decisions → shares with 95% Wilson intervals.

Two shares per group, named for what they count (a record with logp_true == logp_false, e.g. both
targets starting with the same token in first-token mode, is a tie and counts in neither):

    hijacked_share        P(target_false) > P(target_true)   = the efficacy score (ES) as the seed defines it
    true_preferred_share  P(target_true)  > P(target_false)  = recall of the true fact
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

SHARES = ("hijacked", "true_preferred")


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (scipy's); (nan, nan) when n = 0."""
    from scipy.stats import binomtest

    if n == 0:
        return math.nan, math.nan
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def decide(logp_true, logp_false):
    """(hijacked, true_preferred) boolean arrays/tensors from the two log-probabilities."""
    return logp_false > logp_true, logp_true > logp_false


def rates(rows: pd.DataFrame, by: Sequence[str] = ("scheme", "n")) -> pd.DataFrame:
    """One line per group: records, counts, shares and their 95% CIs (columns <share>_share/_lo/_hi)."""
    by = list(by)
    out = []
    for key, grp in rows.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        line = dict(zip(by, key))
        total = len(grp)
        line["records"] = total
        for share in SHARES:
            k = int(grp[share].sum())
            lo, hi = wilson_interval(k, total)
            line[share] = k
            line[f"{share}_share"] = k / total if total else math.nan
            line[f"{share}_lo"], line[f"{share}_hi"] = lo, hi
        line["ties"] = int(total - grp["hijacked"].sum() - grp["true_preferred"].sum())
        out.append(line)
    return pd.DataFrame(out)


def directions(table: pd.DataFrame) -> dict[str, dict]:
    """Per scheme: both shares at the smallest and largest n, and which way each moved.

    "up"/"down" only when the two 95% intervals do not overlap, else "flat (within CI)".
    """
    result = {}
    for scheme, grp in table.groupby("scheme", sort=True):
        grp = grp.sort_values("n")
        first, last = grp.iloc[0], grp.iloc[-1]
        entry = {"n_from": int(first["n"]), "n_to": int(last["n"])}
        for share in SHARES:
            a, b = first[f"{share}_share"], last[f"{share}_share"]
            if last[f"{share}_lo"] > first[f"{share}_hi"]:
                move = "up"
            elif last[f"{share}_hi"] < first[f"{share}_lo"]:
                move = "down"
            else:
                move = "flat (within CI)"
            entry[share] = {"from": float(a), "to": float(b), "moves": move}
        result[str(scheme)] = entry
    return result
