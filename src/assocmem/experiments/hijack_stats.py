"""Statistics of hijacking rows: pure functions of run_hijack's rows (one per record × scheme × n,
with a `model` column when several models were scored), so a criterion can change without scoring.

- `paired_change`: per record, hijacked at n_b minus at n_a (−1, 0, 1), mean ± SE: does ES move?
- `dose_response`: ES at every n with 95% CIs, where the curve saturates (the first n whose CI
  reaches the maximum) and whether it falls after its maximum (paired test of the maximum vs n = N).
- `compare_models`: the same records under two models at one n: which is more hijacked (exact
  McNemar test on the discordant records).
- `mode_agreement`: ES under first-token vs another mode (ROME's mean per-token rule) and the share
  of (record, n) whose decision differs.

Facts the model knows (rows from `run_hijack` carry each record's n = 0 status, `known` and `known_p50`,
and each target's first-token rank at n):
- `subset_rates`: both shares with Wilson intervals on all records and on each known subset.
- `flip_rates`: of the known facts, the share whose false target is the model's top-1 answer at n.
- `logp_shifts`: Δ log P(true) and Δ log P(false) from n = 0 to n per record, mean with a 95% interval:
  suppression of the true target vs priming of the false one.
- `control_differences`: a hijacking scheme minus its control on the same records at each n (paired).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from assocmem.experiments.claims import mean_se
from assocmem.hijack.metrics import flipped, mean_intervals, rates, wilson_intervals

# The record subsets every known-fact statistic is given on: label → the rows' boolean column (None: all).
SUBSETS: dict[str, str | None] = {"all records": None, "known (top-1)": "known", "known (P > 0.5)": "known_p50"}
KNOWN, KNOWN_P50 = "known (top-1)", "known (P > 0.5)"


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


def by_subset(rows: pd.DataFrame, subsets: dict[str, str | None] = SUBSETS) -> pd.DataFrame:
    """The rows of every subset stacked, labelled in a `subset` column (a known row appears once per subset)."""
    return pd.concat([(rows if col is None else rows[rows[col].astype(bool)]).assign(subset=label)
                      for label, col in subsets.items()], ignore_index=True)


def subset_rates(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model × scheme × n × subset: records, both shares with 95% Wilson intervals (metrics.rates)."""
    return rates(by_subset(rows), by=("model", "scheme", "n", "subset"))


def flip_rates(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model × scheme × n × known subset: of the facts known at n = 0, how many have the false target's
    first token as the model's top-1 next token at n (metrics.flipped), with a 95% Wilson interval."""
    known = by_subset(rows, {k: v for k, v in SUBSETS.items() if v is not None})
    known["flipped"] = flipped(np.ones(len(known), dtype=bool), known["rank_false"])
    grouped = known.groupby(["model", "scheme", "n", "subset"], sort=True)["flipped"]
    out = grouped.agg(records="size", flipped="sum").reset_index()
    out["flipped"] = out["flipped"].astype("int64")
    out["flip_share"] = out["flipped"] / out["records"]
    out["flip_lo"], out["flip_hi"] = wilson_intervals(out["flipped"], out["records"])
    return out


def _at_zero(rows: pd.DataFrame) -> pd.DataFrame:
    """Each model × record's n = 0 log-probabilities (the n = 0 prompt is the same under every scheme)."""
    base = rows[rows["n"] == 0].drop_duplicates(["model", "case_id"])
    return base[["model", "case_id", "logp_true", "logp_false"]].rename(
        columns={"logp_true": "logp_true_0", "logp_false": "logp_false_0"})


def logp_shifts(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model × scheme × n × subset: mean Δ log P(true) (`d_true`, suppression when < 0) and Δ log P(false)
    (`d_false`, priming when > 0) from the record's n = 0 prompt, each with a 95% interval of the mean."""
    shifted = rows.merge(_at_zero(rows), on=["model", "case_id"])
    shifted["d_true"] = shifted["logp_true"] - shifted["logp_true_0"]
    shifted["d_false"] = shifted["logp_false"] - shifted["logp_false_0"]
    return mean_intervals(by_subset(shifted), ("model", "scheme", "n", "subset"), ("d_true", "d_false"))


def control_differences(rows: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Per model × (scheme, control) × n × subset, on the records scored under both: the mean per-record
    difference scheme − control of the hijacked indicator (`d_es`), of log P(false) (`d_false`) and of
    log P(true) (`d_true`), each with a 95% interval, and both ES (`es_scheme`, `es_control`)."""
    if not pairs:
        raise ValueError("control_differences: no (scheme, control) pair given")
    keys = ["model", "case_id", "n"]
    cols = keys + ["hijacked", "logp_true", "logp_false", "known", "known_p50"]
    frames = []
    for scheme, control in pairs:
        a = rows.loc[rows["scheme"] == scheme, cols]
        b = rows.loc[rows["scheme"] == control, keys + ["hijacked", "logp_true", "logp_false"]]
        both = a.merge(b, on=keys, suffixes=("", "_c"))
        frames.append(pd.DataFrame({
            **{k: both[k] for k in ("model", "n", "known", "known_p50")}, "scheme": scheme, "control": control,
            "es_scheme": both["hijacked"].astype(float), "es_control": both["hijacked_c"].astype(float),
            "d_es": both["hijacked"].astype(float) - both["hijacked_c"].astype(float),
            "d_false": both["logp_false"] - both["logp_false_c"], "d_true": both["logp_true"] - both["logp_true_c"]}))
    paired = by_subset(pd.concat(frames, ignore_index=True))
    out = mean_intervals(paired, ("model", "scheme", "control", "n", "subset"), ("d_es", "d_false", "d_true"))
    means = paired.groupby(["model", "scheme", "control", "n", "subset"], sort=True)[["es_scheme", "es_control"]].mean()
    return out.merge(means.reset_index(), on=["model", "scheme", "control", "n", "subset"])
