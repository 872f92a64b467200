"""Hijacking that overrides recall: facts the model knows, flips, suppression vs priming, control distractors.

The paper's claim (§1, §3, Fig. 1) is that a model which knows a fact gives it up when the context says
something beside it. ES on all records mixes that with a false target primed over a true one the model
never recalled. `hijack-known` is a view of hijack-sample's rows (no model time) that separates them:

- the facts each model knows at n = 0 (rule "top1", the headline: the true target's first token is the
  model's top-1 next token; rule "p50": its probability is above 0.5), and every share on them;
- the flip: a known fact whose false target becomes the model's top-1 answer at n;
- the decomposition: Δ log P(true) (suppression) and Δ log P(false) (priming) from n = 0, per record;
- each hijacking scheme against its control on the same records (hijack.schemes: not-think against
  not-think-mismatched and neutral, relation against relation-mismatched).

Claims and rows are pure functions of the tables (`subset_rates`, `flip_rates`, `logp_shifts`,
`control_differences` of experiments.hijack_stats); the tables are also written whole as CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from assocmem.experiments.claims import ClaimResult, fmt
from assocmem.experiments.hijack_common import sample_rows
from assocmem.experiments.hijack_stats import (KNOWN, KNOWN_P50, control_differences, flip_rates, logp_shifts,
                                               subset_rates)
from assocmem.experiments.registry import Context, Experiment, Result
from assocmem.hijack.metrics import KNOWN_RULES
from assocmem.plotting import new_figure, save_figure
from assocmem.tables import where

ALL = "all records"
ES_KNOWN = "ES on facts the model knows (top-1 at n = 0)"


@dataclass(frozen=True)
class KnownView:
    """Which hijacking schemes of hijack-sample to take apart, and the criteria of the claims (fixed before
    the run): at `claim_n`, the known-fact ES must exceed `known_bar` with 95% confidence, and each scheme's
    ES must exceed its control's on the same records with 95% confidence."""

    schemes: tuple[str, ...] = ("not-think", "relation")
    claim_n: int = 1
    known_bar: float = 0.10


def control_pairs(schemes: tuple[str, ...]) -> list[tuple[str, str]]:
    """(scheme, control) for every registered control of `schemes` (hijack.schemes `control_of`)."""
    from assocmem.hijack.schemes import SCHEMES

    return [(s.control_of, s.name) for s in SCHEMES.values() if s.control_of in schemes]


def _ci(lo: float, hi: float, digits: int = 3) -> str:
    return f"[{fmt(lo, digits)}, {fmt(hi, digits)}]"


# ---------------------------------------------------------------- claims: pure functions of the tables


def known_claims(rates: pd.DataFrame, flips: pd.DataFrame, schemes: tuple[str, ...], n: int = 1,
                 bar: float = 0.10) -> list[ClaimResult]:
    """Per model × scheme: on the facts the model knows (top-1 at n = 0), is ES at `n` above `bar` with 95%
    confidence (Wilson lower bound > bar)? ES of a known fact at n = 0 is 0 by the rule (its true target is
    the top-1), so this asks whether one sentence gives up a substantial share of what the model recalls."""
    out = []
    for scheme in schemes:
        for model in sorted(rates.loc[rates["scheme"] == scheme, "model"].unique()):
            k = where(rates, model=model, scheme=scheme, n=n, subset=KNOWN)
            every = where(rates, model=model, scheme=scheme, n=n, subset=ALL).iloc[0]
            p50 = where(rates, model=model, scheme=scheme, n=n, subset=KNOWN_P50)
            f = where(flips, model=model, scheme=scheme, n=n, subset=KNOWN)
            if k.empty:
                ok, numbers = False, f"no fact known at n = 0 of {int(every['records'])} records"
            else:
                r = k.iloc[0]
                ok = bool(r["hijacked_lo"] > bar)
                numbers = (f"known-fact ES {fmt(r['hijacked_share'])} {_ci(r['hijacked_lo'], r['hijacked_hi'])} "
                           f"({int(r['hijacked'])} of {int(r['records'])} known facts, of {int(every['records'])} records); "
                           f"flip rate {fmt(f.iloc[0]['flip_share'])}; all records: ES {fmt(every['hijacked_share'])}")
                if not p50.empty:
                    k50 = int(p50.iloc[0]["records"])
                    numbers += f"; P > 0.5 rule: ES {fmt(p50.iloc[0]['hijacked_share'])} ({k50} fact{'s' * (k50 != 1)})"
            out.append(ClaimResult(
                "hijack-overrides-known", ok,
                f"`{scheme}`, {model}: on the facts the model knows (true target's first token its top-1 answer at "
                f"n = 0), ES at n = {n} exceeds {bar} with 95% confidence (Wilson lower bound > {bar})", numbers))
    return out


def control_claims(diffs: pd.DataFrame, n: int = 1) -> list[ClaimResult]:
    """Per model × (scheme, control): at `n`, on the records scored under both, is the per-record difference
    of the hijacked indicator (scheme − control) above 0 with 95% confidence? Judged on all records; the
    known-fact difference is given beside it."""
    out = []
    at_n = diffs[(diffs["n"] == n) & (diffs["subset"] == ALL)]
    for r in at_n.sort_values(["scheme", "control", "model"]).itertuples():
        known = where(diffs, model=r.model, scheme=r.scheme, control=r.control, n=n, subset=KNOWN)
        numbers = (f"ES {fmt(r.es_scheme)} vs {fmt(r.es_control)}: difference {r.d_es:+.3f} {_ci(r.d_es_lo, r.d_es_hi)} "
                   f"({r.records} records); log P(false) {r.d_false:+.2f} {_ci(r.d_false_lo, r.d_false_hi, 2)} nats "
                   "higher under the scheme")
        if not known.empty:
            k = known.iloc[0]
            numbers += f"; known facts: {k['d_es']:+.3f} {_ci(k['d_es_lo'], k['d_es_hi'])} ({int(k['records'])} records)"
        out.append(ClaimResult(
            "hijack-exceeds-control", bool(r.d_es_lo > 0),
            f"`{r.scheme}` vs its control `{r.control}`, {r.model}: at n = {n}, on the same records, ES(scheme) − "
            "ES(control) > 0 with 95% confidence (paired per-record difference of the hijacked indicator, all records)",
            numbers))
    return out


# ---------------------------------------------------------------- report rows


def known_rows(rates: pd.DataFrame, flips: pd.DataFrame, ns: set[int]) -> list[dict]:
    """Per model × scheme × n: ES on the known facts (both rules) beside all records, and the flip rate."""
    out = []
    known = rates[(rates["subset"] == KNOWN) & rates["n"].isin(ns)]
    for r in known.sort_values(["scheme", "model", "n"]).itertuples():
        key = dict(model=r.model, scheme=r.scheme, n=r.n)
        every = where(rates, subset=ALL, **key).iloc[0]
        p50 = where(rates, subset=KNOWN_P50, **key)
        f = where(flips, subset=KNOWN, **key).iloc[0]
        out.append({"setting": f"{r.scheme}, n={r.n}", "model": r.model, "quantity": ES_KNOWN,
                    "ours": float(r.hijacked_share), "95% CI": _ci(r.hijacked_lo, r.hijacked_hi),
                    "records": int(r.records), "ES, all records": round(float(every["hijacked_share"]), 3),
                    "ES, known (P > 0.5)": round(float(p50.iloc[0]["hijacked_share"]), 3) if len(p50) else None,
                    "known (P > 0.5) records": int(p50.iloc[0]["records"]) if len(p50) else 0,
                    "flip rate (false target top-1)": f"{fmt(f['flip_share'])} {_ci(f['flip_lo'], f['flip_hi'])}"})
    return out


def shift_rows(shifts: pd.DataFrame, ns: set[int]) -> list[dict]:
    """Per model × scheme × n: mean Δ log P(true) (suppression) and Δ log P(false) (priming) from n = 0."""
    out = []
    every = shifts[(shifts["subset"] == ALL) & shifts["n"].isin(ns)]
    for r in every.sort_values(["scheme", "model", "n"]).itertuples():
        known = where(shifts, model=r.model, scheme=r.scheme, n=r.n, subset=KNOWN)
        for side, word in (("true", "< 0: suppression"), ("false", "> 0: priming")):
            k = known.iloc[0] if len(known) else None
            out.append({"setting": f"{r.scheme}, n={r.n}", "model": r.model,
                        "quantity": f"Δ log P({side}) vs n = 0, all records ({word})",
                        "ours": float(getattr(r, f"d_{side}")),
                        "95% CI": _ci(getattr(r, f"d_{side}_lo"), getattr(r, f"d_{side}_hi"), 2), "records": int(r.records),
                        "on known facts": (f"{k[f'd_{side}']:+.2f} {_ci(k[f'd_{side}_lo'], k[f'd_{side}_hi'], 2)}"
                                           if k is not None else "—")})
    return out


def control_rows(diffs: pd.DataFrame, ns: set[int]) -> list[dict]:
    """Per model × (scheme, control) × n: ES(scheme) − ES(control) on the same records."""
    out = []
    every = diffs[(diffs["subset"] == ALL) & diffs["n"].isin(ns)]
    for r in every.sort_values(["scheme", "control", "model", "n"]).itertuples():
        known = where(diffs, model=r.model, scheme=r.scheme, control=r.control, n=r.n, subset=KNOWN)
        out.append({"setting": f"{r.scheme} − {r.control}, n={r.n}", "model": r.model,
                    "quantity": "ES(scheme) − ES(control), same records (paired)", "ours": float(r.d_es),
                    "95% CI": _ci(r.d_es_lo, r.d_es_hi), "records": int(r.records),
                    "on known facts": (f"{known.iloc[0]['d_es']:+.3f} {_ci(known.iloc[0]['d_es_lo'], known.iloc[0]['d_es_hi'])}"
                                       f" ({int(known.iloc[0]['records'])})" if len(known) else "—")})
    return out


# ---------------------------------------------------------------- the experiment


def run_known(v: KnownView, ctx: Context) -> Result:
    pairs = control_pairs(v.schemes)
    schemes = tuple(dict.fromkeys([*v.schemes, *(c for _, c in pairs)]))
    rows = sample_rows(ctx, schemes)
    rates, flips, shifts = subset_rates(rows), flip_rates(rows), logp_shifts(rows)
    diffs = control_differences(rows, pairs)
    ns = {v.claim_n, int(rows["n"].max())}
    at0 = rows[rows["n"] == 0].drop_duplicates(["model", "case_id"])
    counts = at0.groupby("model").agg(records=("case_id", "size"), known=("known", "sum"), p50=("known_p50", "sum"))
    notes = [
        "Known at n = 0 (decided on the record's own prompt, no distractor): top-1 rule (the headline): "
        f"{KNOWN_RULES['top1']}; P > 0.5 rule: {KNOWN_RULES['p50']}. "
        + "; ".join(f"{m}: {int(c.known)} of {int(c.records)} records known by the top-1 rule, {int(c.p50)} by P > 0.5"
                    for m, c in counts.iterrows()),
        "Flip: a fact known at n = 0 whose false target's first token is the model's top-1 next token at n. "
        "Δ log P: per record, log P at n minus log P at n = 0 (first-token log-probabilities), mean with a 95% "
        "t interval: a fall of log P(true) is suppression, a rise of log P(false) priming.",
        "Controls, paired with the scheme they control on the records scored under both: "
        + ", ".join(f"{s} against {c}" for s, c in pairs)
        + ". Mismatched: the same sentence naming another record's target of the same relation (chosen from the "
        "CounterFact file by the case_id; never either of the record's targets); neutral: 'This is a plain "
        "sentence.', as many tokens as 'Do not think of X.' for a one-token X. No control sentence contains either "
        "of its record's targets (whole word, any case); a record whose subject names a target has no relation "
        "control.",
        f"Rows at n = {', '.join(map(str, sorted(ns)))}; every n in the CSV tables.",
    ]
    return Result(
        rows=known_rows(rates, flips, ns) + shift_rows(shifts, ns) + control_rows(diffs, ns),
        claims=known_claims(rates, flips, v.schemes, v.claim_n, v.known_bar) + control_claims(diffs, v.claim_n),
        notes=notes,
        tables={"known_rates": rates.to_dict(orient="records"), "flips": flips.to_dict(orient="records"),
                "logp_shifts": shifts.to_dict(orient="records"), "control_differences": diffs.to_dict(orient="records")},
        data={"models": sorted(rows["model"].unique()), "schemes": list(v.schemes), "pairs": pairs,
              "rates": rates.to_dict(orient="records"), "shifts": shifts.to_dict(orient="records")})


def _style(control: str) -> str:
    return ":" if control.endswith("mismatched") else "-."


def plot_known(result: Result, folder: Path) -> list[Path]:
    """Per model: ES vs n on all records and on the known facts, beside the controls; Δ log P(true) and
    Δ log P(false) vs n (all records) for each scheme and control."""
    rates, shifts = pd.DataFrame(result.data["rates"]), pd.DataFrame(result.data["shifts"])
    paths = []
    for model in result.data["models"]:
        fig, axes = new_figure(4.8, 3.6, ncols=2)
        es, dlogp = axes[0]
        for i, scheme in enumerate(result.data["schemes"]):
            colour = f"C{i}"
            controls = [c for s, c in result.data["pairs"] if s == scheme]
            lines = [(scheme, ALL, "-"), (scheme, KNOWN, "--"), *((c, ALL, _style(c)) for c in controls)]
            for name, subset, style in lines:
                part = where(rates, model=model, scheme=name, subset=subset).sort_values("n")
                if part.empty:
                    continue
                label = f"{name}, {'known facts (top-1)' if subset == KNOWN else 'all records'}"
                es.plot(part["n"], part["hijacked_share"], style, color=colour, marker="o", ms=3, label=label)
                if name == scheme:   # bands for the scheme itself only: the controls' would hide it
                    es.fill_between(part["n"], part["hijacked_lo"], part["hijacked_hi"], color=colour, alpha=0.1)
            for name, style in [(scheme, "-"), *((c, _style(c)) for c in controls)]:
                part = where(shifts, model=model, scheme=name, subset=ALL).sort_values("n")
                for side, marker in (("true", "v"), ("false", "^")):
                    dlogp.plot(part["n"], part[f"d_{side}"], style, color=colour, marker=marker, ms=4,
                               label=f"{name}: log P({side})")
        es.set_ylim(-0.02, 1.02)
        es.set_ylabel("ES: P(false) > P(true)")
        dlogp.axhline(0, color="black", linewidth=0.8)
        dlogp.set_ylabel("Δ log P vs n = 0 (nats, mean)")
        for ax in (es, dlogp):
            ax.set_xlabel("prepended sentences n")
            ax.legend(fontsize=6)
        fig.suptitle(f"{model}: known facts, suppression vs priming, controls", fontsize=10)
        paths.append(save_figure(fig, folder / f"known_{model}.png"))
    return paths


EXPERIMENTS = [
    Experiment("hijack-known", "Hijacking facts the model knows: flips, suppression vs priming, control distractors",
               "§1, §3, Fig. 1–2 (the known-fact subset and the controls are ours)", KnownView(), KnownView(),
               run_known, plot_known, claims=("hijack-overrides-known", "hijack-exceeds-control"),
               requires=("hijack-sample",), uses_llm=True,
               quick_differs={"hijack-overrides-known": "2 records per relation (68 in all): a model's known subset is "
                              "a handful of records, so the interval is wide",
                              "hijack-exceeds-control": "2 records per relation (68 in all) instead of 200"}),
]
