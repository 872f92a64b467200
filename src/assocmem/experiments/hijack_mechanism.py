"""Inside the LLM, causally: does the hijack travel through attention to the distractor tokens?

The paper explains context hijacking (§5.5, Theorem 1) by attention aggregating the context's tokens
and the value matrix reading out the concept they point to. `mechanism` tests that inside the bundled
LLM by intervening (hijack.mechanism): knock out the attention to the distractor sentences, or patch
the read position's activations from the clean prompt, and measure how much of the true target's
margin comes back. Everything here is a function of one loaded model (`mechanism_result`), so the
same entry can run once per model; claims and figures are pure functions of its tables.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from assocmem.experiments.claims import ClaimResult, fmt, mean_se
from assocmem.experiments.hijack_common import each_model
from assocmem.experiments.registry import LLM_DTYPE, Context, Experiment, Result
from assocmem.hijack.counterfact import CounterFactSelection
from assocmem.models.spec import ModelSpec


@dataclass(frozen=True)
class MechanismStudy:
    """hijack mechanism's settings (the file and model come from the run's context)."""

    selection: CounterFactSelection                     # a sample spread over the relations
    ns: tuple[int, ...] = (1, 3)                        # hijacked prompts; n = 0 is the clean one
    scheme: str = "not-think"
    window: int = 4                                     # blocks per knockout window
    stride: int = 2                                     # between the first blocks of consecutive windows
    prompt_layer_sets: tuple[str, ...] = ("window", "all")   # layer sets of the every-prompt-token variant
    min_shift: float = 0.5                              # records used: the hijack lowered the margin by more


def mechanism_result(s: MechanismStudy, spec: str, lm, work_dir: Path, counterfact: Path | None, device: str,
                     progress=None) -> Result:
    """Run the analysis on `lm` into `work_dir` and judge the claims from its tables."""
    from assocmem.hijack.mechanism import MechanismConfig
    from assocmem.hijack.mechanism_report import run_mechanism

    config = MechanismConfig(lm=ModelSpec(spec, device=device, dtype=LLM_DTYPE),
                             selection=replace(s.selection, counterfact=str(counterfact) if counterfact else None),
                             ns=s.ns, scheme=s.scheme, window=s.window, stride=s.stride,
                             prompt_layer_sets=s.prompt_layer_sets, min_shift=s.min_shift)
    summary = run_mechanism(config, work_dir, lm=lm, progress=progress)
    iv = pd.read_parquet(work_dir / "interventions.parquet")
    table = pd.read_parquet(work_dir / "restoration.parquet")
    records = pd.read_parquet(work_dir / "records.parquet")
    n_top = max(s.ns)
    notes = [f"{summary['records']} records ({summary['skipped']} skipped), model {lm.name} ({summary['layers']} "
             f"blocks), scheme {s.scheme}; records used at each n: the hijack lowered log P(true) − log P(false) "
             f"by more than {s.min_shift} nats. Restoration = (margin_intervened − margin_hijacked) / "
             "(margin_clean − margin_hijacked), mean over used records; ± is its SE.",
             "An extension beyond the paper: a causal test, inside the LLM, of the mechanism §5.5 / Theorem 1 "
             "describe for the one-layer model."]
    return Result(rows=report_rows(table, records), claims=[knockout_claim(iv, n_top), patching_claim(iv, n_top)],
                  notes=notes, data={"headline": summary["headline"], "model": lm.name, "layers": summary["layers"],
                                     "seconds": summary["seconds"]})


def _per_record(iv: pd.DataFrame, n: int, analysis: str, variant: str, label: str | None = None) -> pd.Series:
    part = iv[(iv["used"]) & (iv["n"] == n) & (iv["analysis"] == analysis) & (iv["variant"] == variant)]
    if label is not None:
        part = part[part["label"] == label]
    return part.set_index(["case_id", "label"])["restoration"]


def knockout_claim(iv: pd.DataFrame, n: int) -> ClaimResult:
    """Fixed before the run: at the largest n, some window of blocks or all blocks (either knockout
    variant) has mean per-record restoration above 0 by more than 2 SE, and its paired per-record
    difference to the random-token control also above 0 by more than 2 SE."""
    best = None
    for variant in ("read", "prompt"):
        sets = iv[(iv["n"] == n) & (iv["variant"] == variant) & (iv["set_kind"].isin(["window", "all"]))]
        for label in sets["label"].unique():
            ko = _per_record(iv, n, "knockout", variant, label)
            ctl = _per_record(iv, n, "control", variant, label)
            m, se = mean_se(ko.tolist())
            both = ko.index.intersection(ctl.index)
            d_m, d_se = mean_se((ko[both] - ctl[both]).tolist())
            ok = bool(m > 2 * se and d_m > 2 * d_se)
            key = (ok, m)
            if best is None or key > best[0]:
                best = (key, variant, label, m, se, float(ctl.mean()) if len(ctl) else float("nan"), d_m, d_se, len(ko))
    criterion = (f"n = {n}: some window of blocks or all blocks, knockout from the read position or from every "
                 "prompt token, restores the margin (mean restoration > 2 SE) and beats the random-token control "
                 "(paired mean difference > 2 SE)")
    if best is None:
        return ClaimResult("hijack-through-attention", False, criterion, "no knockout was run")
    (ok, _), variant, label, m, se, c, d_m, d_se, k = best
    return ClaimResult("hijack-through-attention", ok, criterion,
                       f"best: {variant} variant, blocks {label}: restoration {fmt(m)} ± {fmt(se)} vs control "
                       f"{fmt(c)}; knockout − control {fmt(d_m)} ± {fmt(d_se)} ({k} records)")


def patching_claim(iv: pd.DataFrame, n: int) -> ClaimResult:
    """Fixed before the run: at the largest n, the best single block for patching the attention output
    at the read position restores more than the best block for the MLP output (paired per-record
    difference at those two blocks > 2 SE)."""
    criterion = (f"n = {n}: patching the attention output at the read position (best block) restores more than "
                 "patching the MLP output (best block): paired per-record difference > 2 SE")
    attn, mlp = _per_record(iv, n, "patch", "attn"), _per_record(iv, n, "patch", "mlp")
    if not len(attn) or not len(mlp):
        return ClaimResult("hijack-attention-carries", False, criterion, "no patching was run")
    best_a = attn.groupby(level="label").mean().idxmax()
    best_m = mlp.groupby(level="label").mean().idxmax()
    a, m = attn.xs(best_a, level="label"), mlp.xs(best_m, level="label")
    both = a.index.intersection(m.index)
    d, d_se = mean_se((a[both] - m[both]).tolist())
    return ClaimResult("hijack-attention-carries", bool(d > 2 * d_se), criterion,
                       f"attention block {best_a}: {fmt(a.mean())}, MLP block {best_m}: {fmt(m.mean())}; "
                       f"difference {fmt(d)} ± {fmt(d_se)} ({len(both)} records)")


def report_rows(table: pd.DataFrame, records: pd.DataFrame) -> list[dict]:
    """Per n: records used; per knockout variant the best window / all blocks with its control; the
    best single block of the read variant; per patched component its best block."""
    rows = []
    for n in sorted(records.loc[records["n"] > 0, "n"].unique()):
        part = table[table["n"] == n]
        used = records[(records["n"] == n)]
        rows.append({"setting": f"n={n}", "quantity": "records used (hijack lowered the margin by > min_shift)",
                     "ours": int(used["used"].sum()), "of": len(used), "mean shift (nats)": round(float(used["shift"].mean()), 3),
                     "distractor / control tokens": f"{used['distractor_tokens'].mean():.1f} / "
                                                    f"{used['control_tokens'].mean():.1f}"})
        for variant, kinds, what in (("read", ("window", "all"), "best window"), ("read", ("single",), "best block"),
                                     ("prompt", ("window", "all"), "best window")):
            ko = part[(part["analysis"] == "knockout") & (part["variant"] == variant) & part["set_kind"].isin(kinds)]
            if not len(ko):
                continue
            r = ko.loc[ko["mean"].idxmax()]
            ctl = part[(part["analysis"] == "control") & (part["variant"] == variant) & (part["label"] == r["label"])]
            rows.append({"setting": f"n={n}, knockout from the {'read position' if variant == 'read' else 'prompt tokens'}",
                         "quantity": f"restoration, {what} (blocks {r['label']})", "ours": float(r["mean"]),
                         "err": float(r["se"]), "95% CI": f"[{r['ci_lo']:.3f}, {r['ci_hi']:.3f}]",
                         "control": float(ctl["mean"].iloc[0]) if len(ctl) else None,
                         "ratio of means": round(float(r["ratio_of_means"]), 3)})
        for component in ("resid", "attn", "mlp"):
            pt = part[(part["analysis"] == "patch") & (part["variant"] == component)]
            if not len(pt):
                continue
            if component == "resid":     # the top block's output is the answer itself: say where it turns
                half = pt[pt["mean"] >= 0.5]
                if len(half):
                    r = half.loc[half["layer_lo"].idxmin()]
                    rows.append({"setting": f"n={n}, patch resid at the read position",
                                 "quantity": f"restoration, lowest block restoring ≥ half ({int(r['layer_lo'])})",
                                 "ours": float(r["mean"]), "err": float(r["se"]),
                                 "95% CI": f"[{r['ci_lo']:.3f}, {r['ci_hi']:.3f}]",
                                 "ratio of means": round(float(r["ratio_of_means"]), 3)})
                continue
            r = pt.loc[pt["mean"].idxmax()]
            rows.append({"setting": f"n={n}, patch {component} at the read position",
                         "quantity": f"restoration, best block ({int(r['layer_lo'])})", "ours": float(r["mean"]),
                         "err": float(r["se"]), "95% CI": f"[{r['ci_lo']:.3f}, {r['ci_hi']:.3f}]",
                         "ratio of means": round(float(r["ratio_of_means"]), 3)})
    return rows


def run_mechanism_experiment(s: MechanismStudy, ctx: Context) -> Result:
    """The analysis once per model of the run, into <work_dir>/<model>/; claims per model."""
    merged = Result()
    for i, (spec, lm) in enumerate(each_model(ctx, 0.05, 0.95)):
        part = mechanism_result(s, spec, lm, ctx.work_dir / lm.name, ctx.counterfact, str(ctx.device),
                                progress=lambda f, text: None)
        merged.rows += [{**row, "model": lm.name} for row in part.rows]
        merged.claims += [replace(c, criterion=f"{lm.name}: {c.criterion}") for c in part.claims]
        merged.notes += part.notes if i == 0 else [part.notes[0]]
        merged.data.setdefault("models", []).append(lm.name)
        merged.data.setdefault("headline", {})[lm.name] = part.data["headline"]
    return merged


def plot_mechanism(result: Result, folder: Path) -> list[Path]:
    return [folder / m / name for m in result.data["models"] for name in ("knockout.png", "patching.png")
            if (folder / m / name).is_file()]


def explain(result: dict) -> str:
    """Why a claim failed, in numbers: per model and n, the best restorations of the headline."""
    parts = []
    for model, per_n in result.get("data", {}).get("headline", {}).items():
        for n, h in per_n.items():
            ko = h.get("knockout_read", {}).get("best_window") or {}
            pa, pm = h.get("patch_attn", {}), h.get("patch_mlp", {})
            nan = float("nan")
            parts.append(f"{model}, n={n}: {h.get('used')} records used; best read-variant window {ko.get('layers')} "
                         f"restores {ko.get('mean', nan):.2f} (control {ko.get('control_mean') or nan:.2f}); "
                         f"attention patch best {pa.get('mean', nan):.2f}, MLP {pm.get('mean', nan):.2f}")
    return "; ".join(parts)


# Quick: 40 records (≈ 80 hijacked prompts, ~13k interventions) fits a 2-core CPU in a few minutes;
# full: 200 records (benchmarks/bench_mechanism.py times it).
EXPERIMENTS = [
    Experiment("mechanism", "Inside the LLM, causally: attention knockout and activation patching",
               "extension (§5.5, Theorem 1 tested causally on a real LLM)", MechanismStudy(CounterFactSelection(records=40, skip_bad=True)),
               MechanismStudy(CounterFactSelection(records=200, skip_bad=True)), run_mechanism_experiment, plot_mechanism,
               claims=("hijack-through-attention", "hijack-attention-carries"), uses_llm=True, explain=explain),
]
