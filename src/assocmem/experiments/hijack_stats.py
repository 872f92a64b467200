"""Statistics of hijacking rows: pure functions of run_hijack's rows (one per record × scheme × n,
with a `model` column when several models were scored), so a criterion can change without scoring.

- `paired_change`: per record, hijacked at n_b minus at n_a (−1, 0, 1), mean ± SE: does ES move?
- `dose_response`: ES at every n with 95% CIs, where the curve saturates (the first n whose CI
  reaches the maximum) and whether it falls after its maximum (paired test of the maximum vs n = N).
- `compare_models`: the same records under two models at one n: which is more hijacked (exact
  McNemar test on the discordant records).
- `mode_agreement`: ES under first-token vs another mode (ROME's mean per-token rule) and the share
  of (record, n) whose decision differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from assocmem.experiments.claims import mean_se
from assocmem.hijack.metrics import rates


def _wide(rows: pd.DataFrame, column: str = "hijacked") -> pd.DataFrame:
    """case_id × n table of `column` (one scheme, one model)."""
    return rows.pivot_table(index="case_id", columns="n", values=column, aggfunc="first").dropna().astype(float)


def paired_change(rows: pd.DataFrame, n_a: int, n_b: int) -> tuple[float, float, int]:
    """(mean, SE, records) of hijacked(n_b) − hijacked(n_a) over the records scored at both."""
    wide = _wide(rows)
    diff = (wide[n_b] - wide[n_a]).tolist()
    mean, se = mean_se(diff)
    return mean, se, len(diff)


@dataclass(frozen=True)
class DoseResponse:
    """How ES moves with n for one model × scheme (`up`: a hijacking scheme; else a reverse one)."""

    curve: pd.DataFrame          # n, hijacked_share, hijacked_lo, hijacked_hi, records
    up: bool
    peak_n: int                  # n of the extreme ES (max if up, min if not)
    saturates_at: int            # first n whose 95% CI reaches the extreme
    reverses: bool               # the curve moves back after its extreme: paired test, beyond 2 SE
    reverse_change: float        # mean paired change from peak_n to the last n (sign as measured)
    reverse_se: float

    @property
    def last_n(self) -> int:
        return int(self.curve["n"].max())

    def describe(self) -> str:
        word = "rises" if self.up else "falls"
        if self.saturates_at >= self.last_n:
            text = f"keeps {'rising' if self.up else 'falling'} to n = {self.last_n}"
        else:
            text = f"{word}, then saturates at n = {self.saturates_at}"
        if self.reverses:
            back = "declines" if self.up else "recovers"
            text += (f", and {back} after its {'maximum' if self.up else 'minimum'} at n = {self.peak_n} "
                     f"(paired change to n = {self.last_n}: {self.reverse_change:+.3f} ± {self.reverse_se:.3f} SE)")
        return text


def dose_response(rows: pd.DataFrame, up: bool = True) -> DoseResponse:
    """The dose-response of one model × scheme's rows ("rises, then saturates at n = k")."""
    curve = rates(rows, by=("n",)).sort_values("n").reset_index(drop=True)
    es = curve["hijacked_share"].to_numpy()
    k = int(np.argmax(es) if up else np.argmin(es))
    peak_n, extreme = int(curve["n"].iloc[k]), es[k]
    reach = curve["hijacked_hi"] >= extreme if up else curve["hijacked_lo"] <= extreme
    reached = curve["n"][reach & (curve["n"] > curve["n"].min())]   # n = 0 is the baseline, not a plateau
    saturates_at = int(reached.min()) if len(reached) else peak_n
    last_n = int(curve["n"].max())
    change, se = 0.0, 0.0
    reverses = False
    if peak_n < last_n:
        change, se, _ = paired_change(rows, peak_n, last_n)
        reverses = (change < -2 * se) if up else (change > 2 * se)
    return DoseResponse(curve[["n", "hijacked_share", "hijacked_lo", "hijacked_hi", "records"]], up, peak_n,
                        saturates_at, bool(reverses), float(change), float(se))


@dataclass(frozen=True)
class ModelComparison:
    model_a: str
    model_b: str
    n: int
    records: int
    es_a: float
    es_b: float
    only_a: int              # records hijacked under a, not b
    only_b: int
    p_value: float           # exact McNemar (two-sided binomial on the discordant records)

    def describe(self) -> str:
        if self.p_value < 0.05 and self.only_a != self.only_b:
            more = self.model_a if self.only_a > self.only_b else self.model_b
            verdict = f"{more} is more hijackable"
        else:
            verdict = "no difference at p < 0.05"
        return (f"n = {self.n}, {self.records} common records: ES {self.es_a:.3f} ({self.model_a}) vs "
                f"{self.es_b:.3f} ({self.model_b}); discordant {self.only_a} vs {self.only_b}, exact McNemar "
                f"p = {self.p_value:.2g}: {verdict}")


def compare_models(rows: pd.DataFrame, model_a: str, model_b: str, n: int) -> ModelComparison:
    """Paired comparison of two models' hijacked indicators at `n` on the records both scored."""
    from scipy.stats import binomtest

    at = rows[rows["n"] == n]
    a = at[at["model"] == model_a].set_index("case_id")["hijacked"]
    b = at[at["model"] == model_b].set_index("case_id")["hijacked"]
    common = a.index.intersection(b.index)
    a, b = a.loc[common].astype(bool), b.loc[common].astype(bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return ModelComparison(model_a, model_b, n, len(common), float(a.mean()) if len(common) else float("nan"),
                           float(b.mean()) if len(common) else float("nan"), only_a, only_b, float(p))


def mode_agreement(rows: pd.DataFrame, mode: str) -> dict[str, float]:
    """ES under the rows' own mode and under `mode` (its `hijacked:<mode>` column), and the share of
    rows whose decision (hijacked or not) differs."""
    other = rows[f"hijacked:{mode}"].astype(bool)
    own = rows["hijacked"].astype(bool)
    return {"es_own": float(own.mean()), "es_other": float(other.mean()), "differ": float((own != other).mean()),
            "rows": int(len(rows))}
