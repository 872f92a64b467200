"""Inside the LLM, causally: does the hijack travel through attention to the distractor tokens, through
which heads, and can scaling those heads down stop it?

The paper explains context hijacking (§5.5, Theorem 1) by attention aggregating the context's tokens
and the value matrix reading out the concept they point to. `mechanism` tests that inside the bundled
LLMs by intervening (hijack.mechanism): knock out the read position's attention to the distractor
sentences, or patch the read position's activations from the clean prompt, and measure how much of
the true target's margin comes back; per block, then per head; under `not-think` (the false word is in
the prompt) and `associated` (only a word associated with it is); then a test-time defence
(hijack.defence). Every choice (layer set, blocks, heads, scale) is made on one half of the records
and judged on the other. Everything here is a function of one loaded model (`mechanism_result`), so
the same entry runs once per model; claims and figures are pure functions of its tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from assocmem.experiments.claims import ClaimResult, fmt
from assocmem.experiments.hijack_common import each_model
from assocmem.experiments.registry import LLM_DTYPE, Context, Experiment, Result
from assocmem.hijack.counterfact import CounterFactSelection
from assocmem.hijack.mechanism_choice import (best_label, chosen_layer_set, head_ranking, mean_se, per_record)
from assocmem.hijack.mechanism_config import COMPONENTS, DefenceSettings
from assocmem.models.spec import ModelSpec
from assocmem.models.llm import LoadedLM


@dataclass(frozen=True)
class MechanismStudy:
    """hijack mechanism's settings (the file and model come from the run's context)."""

    selection: CounterFactSelection                     # per scheme, a sample spread over the relations it can build
    ns: tuple[int, ...] = (1, 3)                        # hijacked prompts; n = 0 is the clean one
    schemes: tuple[str, ...] = ("not-think", "associated")
    window: int = 4                                     # blocks per knockout window
    stride: int = 2                                     # between the first blocks of consecutive windows
    prompt_layer_sets: tuple[str, ...] = ("all",)       # layer sets of the every-prompt-token sanity check
    components: tuple[str, ...] = COMPONENTS            # patched at the read, one block at a time
    head_blocks: int = 2                                # carrying blocks searched for heads, per scheme
    defence: DefenceSettings = field(default_factory=DefenceSettings)
    min_shift: float = 0.5                              # records used: the hijack lowered the margin by more


def mechanism_result(s: MechanismStudy, spec: str, lm: LoadedLM, work_dir: Path, counterfact: Path | None, device: str,
                     progress=None) -> Result:
    """Run the study on `lm` into `work_dir` and judge the claims from its tables."""
    from assocmem.hijack.mechanism_config import MechanismConfig
    from assocmem.hijack.mechanism_report import run_mechanism

    config = MechanismConfig(lm=ModelSpec(spec, device=device, dtype=LLM_DTYPE),
                             selection=replace(s.selection, counterfact=str(counterfact) if counterfact else None),
                             ns=s.ns, schemes=s.schemes, window=s.window, stride=s.stride,
                             prompt_layer_sets=s.prompt_layer_sets, components=s.components,
                             head_blocks=s.head_blocks, defence=s.defence, min_shift=s.min_shift)
    result = run_mechanism(config, work_dir, lm=lm, progress=progress)
    summary, iv, records, defence = result.summary, result.interventions, result.records, result.defence_records
    n_choose, n_top = min(s.ns), max(s.ns)
    claims = []
    for scheme in s.schemes:
        claims += [knockout_claim(iv, scheme, n_choose), patching_claim(iv, scheme, n_choose),
                   heads_claim(iv, scheme, n_choose)]
    if len(s.schemes) > 1:
        claims.append(same_heads_claim(iv, s.schemes[0], s.schemes[1], n_choose))
    for scheme in s.schemes:
        claims.append(defence_claim(defence, scheme, n_top, s.defence.min_recall))
    sizes = ", ".join(f"{k} {v}" for k, v in summary["records"].items())
    notes = [f"model {lm.name} ({summary['layers']} blocks × {summary['heads_per_block']} heads); records per "
             f"scheme (each drawn from the records the scheme can build): {sizes}; each scheme's records split "
             "at random into a choosing and a judging half. Records used for restoration: the hijack lowered "
             f"log P(true) − log P(false) by more than {s.min_shift} nats. Restoration = (margin_intervened − "
             "margin_hijacked) / (margin_clean − margin_hijacked), mean over used records; ± is its SE.",
             "An extension beyond the paper: a causal test, inside the LLM, of the mechanism §5.5 / Theorem 1 "
             "describe for the one-layer model, per head, and a test-time defence (head scaling, as JUICE does "
             "against knowledge conflicts). The control of a knockout blocks as many random prompt tokens as there "
             "are distractor tokens, never the subject's nor the read; the prompt usually has fewer (see the token "
             "counts), and then the control blocks all of them: the size-matched column blocks as many random "
             "distractor tokens as the control does, in the chosen blocks."]
    return Result(rows=report_rows(summary, iv, records, defence), claims=claims, notes=notes,
                  data={"headline": summary["headline"], "model": lm.name, "layers": summary["layers"],
                        "per_scheme": summary["per_scheme"], "seconds": summary["seconds"]})


# ---------------------------------------------------------------------------------------------
# Claims: pure functions of the interventions / defence tables, criteria fixed before the run

def _held_out(iv: pd.DataFrame, label: str | None, **match) -> pd.Series:
    """Restoration per judging-half record of the rows matching, at `label`."""
    return _at(per_record(iv, half="judge", **match), label)


def _at(r: pd.Series, label: str | None) -> pd.Series:
    if label is None or label not in r.index.get_level_values("label"):
        return pd.Series(dtype=float)
    return r.xs(label, level="label")


def _paired(a: pd.Series, b: pd.Series) -> tuple[float, float, int]:
    both = a.index.intersection(b.index)
    return mean_se((a[both] - b[both]).to_numpy())


def _earlier_knockout(iv: pd.DataFrame, scheme: str, n: int) -> str:
    """The criterion this claim had before held-out choices: the best window-or-all set of either variant,
    chosen and judged on the same records (every record)."""
    best = None
    for variant in ("read", "prompt"):
        sets = iv[(iv["scheme"] == scheme) & (iv["n"] == n) & (iv["variant"] == variant)
                  & iv["set_kind"].isin(["window", "all"]) & (iv["analysis"] == "knockout")]
        for label in sets["label"].unique():
            ko = _at(per_record(iv, scheme=scheme, n=n, analysis="knockout", variant=variant,
                                set_kind=("window", "all")), label)
            ctl = _at(per_record(iv, scheme=scheme, n=n, analysis="control", variant=variant,
                                 set_kind=("window", "all")), label)
            m, se, _ = mean_se(ko.to_numpy())
            d, d_se, _ = _paired(ko, ctl)
            key = (bool(m > 2 * se and d > 2 * d_se), m)
            if best is None or key > best[0]:
                best = (key, variant, label, m, d, d_se)
    if best is None:
        return "earlier criterion: not run"
    (ok, _), variant, label, m, d, d_se = best
    return (f"earlier criterion (best window-or-all set of either variant, chosen and judged on every record): "
            f"{variant} {label} {fmt(m)}, − control {fmt(d)} ± {fmt(d_se)}: "
            f"{'supported' if ok else 'not supported'}")


def knockout_claim(iv: pd.DataFrame, scheme: str, n: int) -> ClaimResult:
    """Fixed before the run: at n, the read-position knockout's layer set (one block, a window or all
    blocks) restoring most on the choosing half restores, on the judging half, more than 0 by 2 SE and
    more than its control (as many random non-subject prompt tokens) by 2 SE (paired per record)."""
    criterion = (f"{scheme}, n = {n}: the layer set (a block, a window of blocks or all blocks) whose knockout of "
                 "the read position's attention to the distractors restores most on one half of the records "
                 "restores the margin on the other half (mean > 2 SE) and beats knocking out as many random "
                 "non-subject prompt tokens (paired mean difference > 2 SE)")
    part = iv[iv["scheme"] == scheme] if len(iv) else iv
    label = chosen_layer_set(part, scheme, n) if len(part) else None
    if label is None:
        return ClaimResult("hijack-through-attention", False, criterion, "no read-position knockout was run")
    match = dict(scheme=scheme, n=n, variant="read", set_kind=("single", "window", "all"))
    ko = _held_out(part, label, analysis="knockout", **match)
    ctl = _held_out(part, label, analysis="control", **match)
    m, se, k = mean_se(ko.to_numpy())
    d, d_se, _ = _paired(ko, ctl)
    chose = _at(per_record(part, half="choose", analysis="knockout", **match), label)
    sanity = per_record(part, scheme=scheme, n=n, analysis="knockout", variant="prompt", set_kind="all")
    sanity_text = (f"; sanity check (every prompt token, all blocks, every record) {fmt(sanity.mean())}"
                   if len(sanity) else "")
    same = _held_out(part, label, analysis="matched", **match)
    same_text = (f"; size-matched (as many random distractor tokens as the control blocks) {fmt(same.mean())}"
                 if len(same) else "")
    ok = bool(m > 2 * se and d > 2 * d_se)
    return ClaimResult("hijack-through-attention", ok, criterion,
                       f"blocks {label} chosen on {len(chose)} records (restoration {fmt(chose.mean())}); on the "
                       f"other {k}: restoration {fmt(m)} ± {fmt(se)}, control {fmt(ctl.mean())}, knockout − control "
                       f"{fmt(d)} ± {fmt(d_se)}{same_text}{sanity_text}; {_earlier_knockout(part, scheme, n)}")


def patching_claim(iv: pd.DataFrame, scheme: str, n: int) -> ClaimResult:
    """Fixed before the run: at n, the attention-output block and the MLP-output block whose patch at the
    read restores most on the choosing half; on the judging half the attention patch restores more than
    the MLP patch (paired per-record difference > 2 SE)."""
    criterion = (f"{scheme}, n = {n}: patching the attention output at the read position restores more than "
                 "patching the MLP output (each at its best block on one half of the records; judged on the "
                 "other half: paired per-record difference > 2 SE)")
    part = iv[iv["scheme"] == scheme] if len(iv) else iv
    best = {c: best_label(part, scheme=scheme, n=n, analysis="patch", variant=c) if len(part) else None
            for c in ("attn", "mlp")}
    if None in best.values():
        return ClaimResult("hijack-attention-carries", False, criterion, "no patching was run")
    a = _held_out(part, best["attn"], scheme=scheme, n=n, analysis="patch", variant="attn")
    m = _held_out(part, best["mlp"], scheme=scheme, n=n, analysis="patch", variant="mlp")
    d, d_se, k = _paired(a, m)
    every = {c: per_record(part, scheme=scheme, n=n, analysis="patch", variant=c).groupby(level="label").mean()
             for c in ("attn", "mlp")}
    return ClaimResult("hijack-attention-carries", bool(d > 2 * d_se), criterion,
                       f"attention block {best['attn']}: {fmt(a.mean())}, MLP block {best['mlp']}: {fmt(m.mean())} on "
                       f"the judging half; difference {fmt(d)} ± {fmt(d_se)} ({k} records); earlier criterion (best "
                       f"blocks on every record): attention {every['attn'].idxmax()} {fmt(every['attn'].max())}, "
                       f"MLP {every['mlp'].idxmax()} {fmt(every['mlp'].max())}")


def heads_claim(iv: pd.DataFrame, scheme: str, n: int) -> ClaimResult:
    """Fixed before the run: at n, the head whose read-position knockout restores most on the choosing
    half (in the carrying blocks), on the judging half: restores > 2 SE, beats its control by > 2 SE,
    and restores at least half of what the knockout of its whole block does (head − ½ block > 2 SE,
    paired per record)."""
    criterion = (f"{scheme}, n = {n}: one head carries the hijack: the head whose knockout (its read query blind "
                 "to the distractors) restores most on one half of the records, on the other half restores > 2 SE, "
                 "beats its control by > 2 SE, and restores at least half of what knocking out its whole block "
                 "does (head − ½·block > 2 SE, paired)")
    part = iv[iv["scheme"] == scheme] if len(iv) else iv
    ranking = head_ranking(part, scheme, n) if len(part) and "head" in part else pd.DataFrame()
    if not len(ranking):
        return ClaimResult("hijack-heads", False, criterion, "no per-head knockout was run")
    top = ranking.iloc[0]
    label, block = str(top["label"]), str(int(top["block"]))
    head = _held_out(part, label, scheme=scheme, n=n, analysis="knockout", set_kind="head")
    ctl = _held_out(part, label, scheme=scheme, n=n, analysis="control", set_kind="head")
    whole = _held_out(part, block, scheme=scheme, n=n, analysis="knockout", variant="read", set_kind="single")
    m, se, k = mean_se(head.to_numpy())
    d, d_se, _ = _paired(head, ctl)
    h, h_se, _ = _paired(head, 0.5 * whole)
    ok = bool(m > 2 * se and d > 2 * d_se and h > 2 * h_se)
    return ClaimResult("hijack-heads", ok, criterion,
                       f"head {label} chosen on the choosing half ({fmt(top['mean'])}); judged on {k} records: "
                       f"{fmt(m)} ± {fmt(se)}, − control {fmt(d)} ± {fmt(d_se)}, its block {block} "
                       f"{fmt(whole.mean())}; "
                       f"head − ½·block {fmt(h)} ± {fmt(h_se)}")


def same_heads_claim(iv: pd.DataFrame, scheme_a: str, scheme_b: str, n: int) -> ClaimResult:
    """Fixed before the run: at n, over the heads of the carrying blocks, the per-head read-knockout
    restorations (mean over each scheme's used records) of the two schemes correlate (Spearman ρ > 0,
    one-sided permutation p < 0.05), and the head restoring most under `scheme_a` is among the 3 restoring
    most under `scheme_b`."""
    from scipy.stats import permutation_test, rankdata

    criterion = (f"n = {n}: the same heads carry {scheme_a} and {scheme_b}: per-head knockout restorations of the "
                 "two schemes correlate over the heads (Spearman ρ > 0, one-sided permutation p < 0.05) and "
                 f"{scheme_a}'s top head is among {scheme_b}'s top 3")
    means = {}
    for scheme in (scheme_a, scheme_b):
        r = per_record(iv, scheme=scheme, n=n, analysis="knockout", set_kind="head") if len(iv) and "head" in iv \
            else pd.Series(dtype=float)
        means[scheme] = r.groupby(level="label").mean() if len(r) else pd.Series(dtype=float)
    heads = means[scheme_a].index.intersection(means[scheme_b].index)
    if len(heads) < 3:
        return ClaimResult("hijack-same-heads", False, criterion, f"{len(heads)} heads run under both schemes")
    a, b = means[scheme_a][heads], means[scheme_b][heads]
    # the p-value by permuting the pairing (exact for up to 7 heads), not the t approximation: a block has
    # only a few heads, and with 4 a perfect ρ would read p = 0
    test = permutation_test((rankdata(a.to_numpy()), rankdata(b.to_numpy())), _pearson, vectorized=True,
                            permutation_type="pairings", alternative="greater", n_resamples=9999, random_state=0)
    rho, p = test.statistic, test.pvalue            # Pearson of the ranks = Spearman's ρ
    top_a = str(a.idxmax())
    rank_b = int((b > b[top_a]).sum()) + 1
    ok = bool(rho > 0 and p < 0.05 and rank_b <= 3)
    return ClaimResult("hijack-same-heads", ok, criterion,
                       f"Spearman ρ {fmt(float(rho))} (permutation p {float(p):.2g}, {len(heads)} heads; first written "
                       "with scipy's t approximation, changed after the first quick run read p = 0 for a perfect ρ "
                       f"over 4 heads); {scheme_a}'s top head "
                       f"{top_a} ({fmt(a[top_a])}) is #{rank_b} under {scheme_b} ({fmt(b[top_a])}; its top "
                       f"{b.idxmax()} {fmt(b.max())})")


def _pearson(x, y, axis=-1):
    x, y = x - x.mean(axis=axis, keepdims=True), y - y.mean(axis=axis, keepdims=True)
    return (x * y).sum(axis=axis) / np.sqrt((x * x).sum(axis=axis) * (y * y).sum(axis=axis))


def defence_claim(rows: pd.DataFrame, scheme: str, n: int, min_recall: float) -> ClaimResult:
    """Fixed before the run: on the judging half, over the facts known at n = 0 (top-1), the hijacked
    indicator at n drops from doing nothing to the defence (paired per-record mean > 2 SE), and at least
    `min_recall` of the known facts stay known at n = 0 with the defence on."""
    criterion = (f"{scheme}, n = {n}: on records used neither to find the heads nor to choose the scale, scaling "
                 "the heads found down lowers the known-fact ES (paired per-record drop > 2 SE) and keeps at least "
                 f"{min_recall:.0%} of the known facts known at n = 0")
    part = rows[(rows["scheme"] == scheme) & (rows["half"] == "judge") & rows["known"]] if len(rows) else rows
    if not len(part):
        return ClaimResult("hijack-defence", False, criterion, "no defence was run (or no known fact judged)")

    def at(method: str, n_: int) -> pd.DataFrame:
        return part[(part["method"] == method) & (part["n"] == n_)].set_index("case_id")

    none, ours, block = at("none", n), at("defence", n), at("block", n)
    drop, drop_se, k = _paired(none["hijacked"].astype(float), ours["hijacked"].astype(float))
    kept = {m: float((at(m, 0)["rank_true"] == 1).mean()) for m in ("defence", "block")}
    dlogp = {m: float(at(m, 0)["dlogp_true"].mean()) for m in ("defence", "block")}
    scale = float(ours["scale"].iloc[0]) if len(ours) else float("nan")
    ok = bool(drop > 2 * drop_se and kept["defence"] >= min_recall)
    return ClaimResult("hijack-defence", ok, criterion,
                       f"scale {scale:g}; known-fact ES {fmt(none['hijacked'].mean())} → "
                       f"{fmt(ours['hijacked'].mean())} ({k} known facts; drop {fmt(drop)} ± {fmt(drop_se)}); "
                       f"still known at n = 0 {fmt(kept['defence'])}, "
                       f"mean Δlog P(true) {dlogp['defence']:+.3f}; the heads' whole blocks removed: ES "
                       f"{fmt(block['hijacked'].mean())}, still known {fmt(kept['block'])}, "
                       f"Δlog P(true) {dlogp['block']:+.3f}")


# ---------------------------------------------------------------------------------------------
# Report rows, the experiment

def report_rows(summary: dict, iv: pd.DataFrame, records: pd.DataFrame, defence: pd.DataFrame) -> list[dict]:
    """Per scheme and n: records used; on the judging half, the chosen read-knockout set with its control;
    the sanity check; the best attention and MLP patch blocks; the top head; the defence's ES and cost."""
    rows = []
    for scheme, info in summary["per_scheme"].items():
        for n in sorted(records.loc[(records["scheme"] == scheme) & (records["n"] > 0), "n"].unique()):
            at = records[(records["scheme"] == scheme) & (records["n"] == n)]
            rows.append({"setting": f"{scheme}, n={n}",
                         "quantity": "records used (hijack lowered the margin by > min_shift)",
                         "ours": int(at["used"].sum()), "of": len(at),
                         "mean shift (nats)": round(float(at["shift"].mean()), 3),
                         "distractor / control / subject tokens": f"{at['distractor_tokens'].mean():.1f} / "
                                                                  f"{at['control_tokens'].mean():.1f} / "
                                                                  f"{at['subject_tokens'].mean():.1f}"})
            label = chosen_layer_set(iv, scheme, int(n)) if len(iv) else None
            if label is not None:
                match = dict(scheme=scheme, n=n, variant="read", set_kind=("single", "window", "all"))
                ko = _held_out(iv, label, analysis="knockout", **match)
                ctl = _held_out(iv, label, analysis="control", **match)
                m, se, k = mean_se(ko.to_numpy())
                same = _held_out(iv, label, analysis="matched", **match)
                rows.append({"setting": f"{scheme}, n={n}, knockout from the read position",
                             "quantity": f"restoration, judging half (blocks {label}, chosen on the other half)",
                             "ours": m, "err": se, "control": float(ctl.mean()), "records": k,
                             "size-matched": round(float(same.mean()), 3) if len(same) else None})
            sanity = per_record(iv, scheme=scheme, n=n, analysis="knockout", variant="prompt", set_kind="all") \
                if len(iv) else pd.Series(dtype=float)
            if len(sanity):
                m, se, k = mean_se(sanity.to_numpy())
                rows.append({"setting": f"{scheme}, n={n}, knockout from every prompt token (sanity check)",
                             "quantity": "restoration, all blocks, every record (= deleting the distractors)",
                             "ours": m, "err": se, "records": k})
            for component in ("attn", "mlp"):
                best = best_label(iv, scheme=scheme, n=n, analysis="patch", variant=component) if len(iv) else None
                if best is not None:
                    p = _held_out(iv, best, scheme=scheme, n=n, analysis="patch", variant=component)
                    m, se, k = mean_se(p.to_numpy())
                    rows.append({"setting": f"{scheme}, n={n}, patch {component} at the read position",
                                 "quantity": f"restoration, judging half (block {best}, chosen on the other half)",
                                 "ours": m, "err": se, "records": k})
            ranking = head_ranking(iv, scheme, int(n), half="judge") if len(iv) and "head" in iv else pd.DataFrame()
            chosen = head_ranking(iv, scheme, int(n)) if len(ranking) else pd.DataFrame()
            if len(chosen):
                top = chosen.iloc[0]
                r = ranking[ranking["label"] == top["label"]].iloc[0]
                rows.append({"setting": f"{scheme}, n={n}, one head's knockout from the read position",
                             "quantity": f"restoration, judging half (head {top['label']}, chosen on the other half)",
                             "ours": float(r["mean"]), "err": float(r["se"]),
                             "minus control": round(float(r["minus_control"]), 3), "records": int(r["records"])})
        rows += _defence_rows(defence, scheme, info.get("defence"))
    return rows


def _defence_rows(defence: pd.DataFrame, scheme: str, chosen: dict | None) -> list[dict]:
    if not len(defence) or not chosen:
        return []
    from assocmem.hijack.defence import defence_table

    t = defence_table(defence[defence["scheme"] == scheme])
    t = t[(t["half"] == "judge") & t["method"].isin(["none", "defence", "block"])]
    names = {"none": "nothing", "defence": f"heads {' '.join(chosen['heads'])} × {chosen['scale']:g}",
             "block": f"blocks {' '.join(map(str, chosen['blocks']))} attention removed"}
    rows = []
    for r in t.itertuples(index=False):
        row = {"setting": f"{scheme}, defence: {names[r.method]}",
               "quantity": f"known-fact ES at n={r.n}, judging half", "ours": r.es_known, "known": r.known}
        if r.n == 0:
            row |= {"still known at n=0": round(float(r.still_known), 3),
                    "Δlog P(true)": round(float(r.dlogp_true), 3)}
        rows.append(row)
    return rows


def run_mechanism_experiment(s: MechanismStudy, ctx: Context) -> Result:
    """The study once per model of the run, into <work_dir>/<model>/; claims per model."""
    merged = Result()
    for i, (spec, lm) in enumerate(each_model(ctx, 0.05, 0.95)):
        part = mechanism_result(s, spec, lm, ctx.work_dir / lm.name, ctx.counterfact, str(ctx.device),
                                progress=lambda f, text: None)
        merged.rows += [{**row, "model": lm.name} for row in part.rows]
        merged.claims += [replace(c, criterion=f"{lm.name}: {c.criterion}") for c in part.claims]
        merged.notes += part.notes if i == 0 else [part.notes[0]]
        merged.data.setdefault("models", []).append(lm.name)
        merged.data.setdefault("headline", {})[lm.name] = part.data["headline"]
        merged.data.setdefault("per_scheme", {})[lm.name] = part.data["per_scheme"]
    return merged


FIGURES = ("knockout.png", "patching.png", "heads.png", "defence.png")


def plot_mechanism(result: Result, folder: Path) -> list[Path]:
    return [folder / m / name for m in result.data["models"] for name in FIGURES if (folder / m / name).is_file()]


def explain(result: dict) -> str:
    """Why a claim failed, in numbers: per model and scheme, the choices made on the choosing half."""
    parts = []
    for model, per_scheme in result.get("data", {}).get("per_scheme", {}).items():
        for scheme, info in per_scheme.items():
            d = info.get("defence") or {}
            parts.append(f"{model}, {scheme}: blocks {info.get('layer_set')}, heads {' '.join(d.get('heads', []))}, "
                         f"scale {d.get('scale')}")
    return "choices made on the choosing half: " + "; ".join(parts)


# Quick: 40 records per scheme at n = 1, one carrying block, no residual-stream patching, two scales and
# no extra records for the defence: a CPU run of both bundled models in about two minutes. Full: 200
# records per scheme at n = 1 and 3, two carrying blocks, four scales, 800 more records for the defence
# (a 270M model knows about one fact in eight at top-1); benchmarks/bench_mechanism.py times both.
_QUICK_NOTE = ("quick: 40 records per scheme (20 judged, a few known facts), n = 1, one carrying block, scales 0 "
               "and 0.5; full: 200 records (1,000 for the defence), n = 1 and 3, two blocks, four scales")
EXPERIMENTS = [
    Experiment("mechanism", "Inside the LLM, causally: attention knockout, patching, heads and a defence",
               "extension (§5.5, Theorem 1 tested causally on a real LLM)",
               MechanismStudy(CounterFactSelection(records=40, skip_bad=True), ns=(1,), components=("attn", "mlp"),
                              head_blocks=1, defence=DefenceSettings(extra_records=0, scales=(0.0, 0.5))),
               MechanismStudy(CounterFactSelection(records=200, skip_bad=True),
                              defence=DefenceSettings(extra_records=800)),
               run_mechanism_experiment,
               plot_mechanism, claims=("hijack-through-attention", "hijack-attention-carries", "hijack-heads",
                                       "hijack-same-heads", "hijack-defence"),
               uses_llm=True, explain=explain, version=2,
               quick_differs={c: _QUICK_NOTE for c in ("hijack-heads", "hijack-same-heads", "hijack-defence")}),
]
