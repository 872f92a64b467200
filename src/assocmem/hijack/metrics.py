"""Per-record decisions → shares with 95% Wilson intervals.

Two shares per group, named for what they count (a record with logp_true == logp_false, e.g. both
targets starting with the same token in first-token mode, is a tie and counts in neither):

    hijacked_share        P(target_false) > P(target_true)   = the efficacy score (ES)
    true_preferred_share  P(target_true)  > P(target_false)  = recall of the true fact
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

SHARES = ("hijacked", "true_preferred")


def wilson_intervals(k, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score intervals (Newcombe 1998, method 3; the rule of scipy's
    `binomtest(k, n).proportion_ci(method="wilson")`) for arrays of k successes in n trials; nan where n = 0.

    Vectorised because scipy's is one interval per call (~1 ms): the full hijacking sample needs
    thousands (relation × scheme × n per model). tests/hijack/test_metrics.py checks it against scipy.
    """
    from scipy.special import ndtri

    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    z = float(ndtri(0.5 + 0.5 * confidence))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 2 * (n + z**2)
        center = (2 * n * p + z**2) / denom
        delta = z / denom * np.sqrt(4 * n * p * (1 - p) + z**2)
        lo = np.where(k == 0, 0.0, center - delta)
        hi = np.where(k == n, 1.0, center + delta)
    empty = n == 0
    return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (nan, nan) when n = 0."""
    lo, hi = wilson_intervals(k, n, confidence)
    return float(lo), float(hi)


def decide(logp_true, logp_false):
    """(hijacked, true_preferred) boolean arrays/tensors from the two log-probabilities."""
    return logp_false > logp_true, logp_true > logp_false


def rates(rows: pd.DataFrame, by: Sequence[str] = ("scheme", "n")) -> pd.DataFrame:
    """One line per group: records, counts, shares and their 95% CIs (columns <share>_share/_lo/_hi)."""
    by = list(by)
    if rows.empty:
        return pd.DataFrame(columns=[*by, "records", *(f"{s}{x}" for s in SHARES for x in ("", "_share", "_lo", "_hi")), "ties"])
    grouped = rows.groupby(by, sort=True)
    out = grouped.size().rename("records").to_frame()
    total = out["records"].to_numpy()
    for share in SHARES:
        k = grouped[share].sum().astype("int64").to_numpy()
        out[share] = k
        out[f"{share}_share"] = k / total
        out[f"{share}_lo"], out[f"{share}_hi"] = wilson_intervals(k, total)
    out["ties"] = total - out["hijacked"] - out["true_preferred"]
    return out.reset_index()


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


# What "the model knows the fact" means, decided on the n = 0 prompt (no distractor) of each record.
# The paper's claim is about facts a model knows being given up, so every share is also reported on the
# records known under a rule; both rules are reported, "top1" is the headline.
KNOWN_RULES: dict[str, str] = {
    "top1": "the true target's first token is the model's top-1 next token at n = 0",
    "p50": "P(first token of the true target) > 0.5 at n = 0",
}


def known(rank_true, logp_true, rule: str = "top1") -> np.ndarray:
    """Boolean array: is each fact known under `rule` (KNOWN_RULES), from its n = 0 prompt's rank of the
    true target's first token (1 = the model's top-1 next token) and that token's log-probability."""
    from assocmem.config import check_choice

    check_choice("rule", rule, KNOWN_RULES)
    if rule == "top1":
        return np.asarray(rank_true) == 1
    return np.asarray(logp_true, dtype=np.float64) > np.log(0.5)


def flipped(known_at_0, rank_false) -> np.ndarray:
    """The flip of a known fact: known at n = 0 and the false target's first token the top-1 at n."""
    return np.asarray(known_at_0, dtype=bool) & (np.asarray(rank_false) == 1)


def mean_intervals(frame: pd.DataFrame, by: Sequence[str], columns: Sequence[str],
                   confidence: float = 0.95) -> pd.DataFrame:
    """One line per group: `records` and, per column c, its mean `c` and the Student-t interval of the mean
    `c_lo`, `c_hi` (nan for a group of one). For per-record paired differences: a shift of log P vs n = 0,
    a scheme minus its control on the same records."""
    by = list(by)
    grouped = frame.groupby(by, sort=True)[list(columns)]
    mean, std, count = grouped.mean(), grouped.std(ddof=1), grouped.count()
    out = pd.DataFrame(index=mean.index)
    out["records"] = count[columns[0]].astype("int64")
    for c in columns:
        half = t_half_width(std[c].to_numpy(), count[c].to_numpy(dtype=np.float64), confidence)
        out[c], out[f"{c}_lo"], out[f"{c}_hi"] = mean[c], mean[c] - half, mean[c] + half
    return out.reset_index()


def t_half_width(std, count, confidence: float = 0.95):
    """Half the width of the Student-t interval of a mean from `count` values of standard deviation `std`
    (ddof = 1), elementwise (scipy's t quantile); nan where count < 2."""
    from scipy.stats import t

    std, count = np.asarray(std, dtype=np.float64), np.asarray(count, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return t.ppf(0.5 + 0.5 * confidence, count - 1) * std / np.sqrt(count)
