"""Context hijacking of a real LLM (§3, Fig. 1–2, App. B) and what happens inside it.

`hijack-sample` scores one stratified CounterFact sample under every scheme once; `fig2a`,
`appB-reverse` and `atlas` are views of its rows (no extra model time). `fig2b` (P190) and
`appB-associated` (P1412) need more records of one relation than the sample holds, so they score
their own. The LLM is loaded once per process and shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from assocmem.experiments.claims import ClaimResult, exceeds, fmt
from assocmem.experiments.registry import Context, Experiment, Result
from assocmem.plotting import new_figure, save_figure

ALL_SCHEMES = ("not-think", "relation", "reverse", "reverse-not-think", "reverse-relation", "associated",
               "associated-reverse")


@dataclass(frozen=True)
class HijackStudy:
    """One run of the hijacking benchmark (assocmem.hijack.run.HijackConfig)."""

    schemes: tuple[str, ...]
    max_n: int  # n = 0..max_n prepended sentences
    relations: tuple[str, ...] | None = None  # None: every relation
    per_relation: int | None = None  # stratified sample size per relation (None: every record)
    mode: str = "first-token"  # first-token | full-target | mean-target
    seed: int = 0  # of the stratified sample


@dataclass(frozen=True)
class View:
    """Which schemes of hijack-sample an experiment shows."""

    schemes: tuple[str, ...]


@dataclass(frozen=True)
class Example:
    text: str  # the prompt to complete
    target_true: str
    target_false: str
    sentence: str  # the hijacking sentence ({target_false} is filled in), prepended n times


@dataclass(frozen=True)
class Examples:
    examples: tuple[Example, ...]
    max_n: int = 3


@dataclass(frozen=True)
class DiagnosticsStudy:
    records: int  # stratified sample size
    ns: tuple[int, ...] = (0, 1, 3)
    schemes: tuple[str, ...] = ("not-think",)


def _lm(ctx: Context):
    """The causal LM, loaded once per process."""
    if "lm" not in ctx.shared:
        from assocmem.models.llm import load_causal_lm

        ctx.progress(0.0, f"loading {ctx.llm}")
        ctx.shared["lm"] = load_causal_lm(ctx.llm, device=str(ctx.device), dtype="float32")
    return ctx.shared["lm"]


def _run_study(s: HijackStudy, ctx: Context) -> tuple[pd.DataFrame, dict]:
    from assocmem.hijack.run import HijackConfig, run_hijack

    config = HijackConfig(model=ctx.llm, schemes=s.schemes, max_n=s.max_n, relations=s.relations,
                          per_relation=s.per_relation, mode=s.mode, device=str(ctx.device), dtype="float32",
                          counterfact=str(ctx.counterfact) if ctx.counterfact else None, skip_bad=True, seed=s.seed)
    lm = _lm(ctx)
    ctx.progress(0.05, f"scoring {', '.join(s.schemes)}")
    summary = run_hijack(config, ctx.work_dir, progress=False, lm=lm)
    return pd.read_parquet(ctx.work_dir / "rows.parquet"), summary


# ---------------------------------------------------------------- shared pieces of the views


def _rates(rows: pd.DataFrame) -> pd.DataFrame:
    from assocmem.hijack.metrics import rates

    return rates(rows, by=("scheme", "n"))


def _paired_change(rows: pd.DataFrame, scheme: str) -> tuple[list[float], int, int]:
    """Per record: hijacked at the largest n minus at n = 0 (−1, 0 or 1); and the two n."""
    part = rows[rows["scheme"] == scheme]
    n0, n1 = int(part["n"].min()), int(part["n"].max())
    wide = part.pivot_table(index="case_id", columns="n", values="hijacked", aggfunc="first").dropna()
    return (wide[n1].astype(float) - wide[n0].astype(float)).tolist(), n0, n1


def _direction_claim(rows: pd.DataFrame, scheme: str, claim_id: str, up: bool) -> ClaimResult:
    change, n0, n1 = _paired_change(rows, scheme)
    ok, text = exceeds(change if up else [-c for c in change])
    table = _rates(rows[rows["scheme"] == scheme]).set_index("n")
    word = "rises" if up else "falls"
    return ClaimResult(claim_id, ok,
                       f"`{scheme}`: ES {word} from n = {n0} to n = {n1}: paired per-record change of the hijacked "
                       "indicator, mean beyond 2 SE in that direction",
                       f"ES {fmt(table.loc[n0, 'hijacked_share'])} → {fmt(table.loc[n1, 'hijacked_share'])} "
                       f"({len(change)} records; {'change' if up else '−change'} {text})")


def _rate_rows(table: pd.DataFrame) -> list[dict]:
    rows = []
    for _, r in table.sort_values(["scheme", "n"]).iterrows():
        rows.append({"setting": f"{r['scheme']}, n={int(r['n'])}", "quantity": "ES (hijacked share)",
                     "ours": float(r["hijacked_share"]), "95% CI": f"[{r['hijacked_lo']:.3f}, {r['hijacked_hi']:.3f}]",
                     "true-preferred share": round(float(r["true_preferred_share"]), 3), "records": int(r["records"])})
    return rows


def _plot_rates(result: Result, folder: Path, name: str) -> list[Path]:
    from assocmem.hijack.plots import plot_rates

    table = pd.DataFrame(result.data["rates"])
    return [plot_rates(table, folder / name, title=result.data.get("title", ""))]


def _sample_rows(ctx: Context, schemes: tuple[str, ...]) -> pd.DataFrame:
    rows = pd.read_parquet(ctx.inputs["hijack-sample"] / "rows.parquet")
    return rows[rows["scheme"].isin(schemes)]


def _sample_note(rows: pd.DataFrame, ctx: Context) -> str:
    return (f"{rows['case_id'].nunique()} CounterFact records over {rows['relation_id'].nunique()} relations "
            f"(hijack-sample), model {ctx.llm}")


# ---------------------------------------------------------------- fig1


def run_fig1(s: Examples, ctx: Context) -> Result:
    from assocmem.hijack.diagnose_cli import try_prompt

    lm = _lm(ctx)
    rows, curves, flips, rises = [], [], [], []
    for i, ex in enumerate(s.examples):
        ctx.progress(0.1 + 0.9 * i / len(s.examples), ex.text)
        out = try_prompt(lm, ex.text, ex.target_true, ex.target_false, scheme="template", max_n=s.max_n,
                         template=ex.sentence)
        margin = [float(np.log(max(r.p_false, 1e-300)) - np.log(max(r.p_true, 1e-300))) for r in out]
        hijack = ex.sentence.format(target_false=ex.target_false)
        curves.append({"label": f"{ex.target_true} vs {ex.target_false}: '{hijack}'", "margin": margin})
        flips.append(margin[0] < 0 < margin[1])
        rises.append(margin[1] > margin[0])
        quantity = "top-1 next token" + (" (the paper's example)" if i == 0 else "")
        for r in out[:2]:
            rows.append({"setting": r.prompt, "quantity": quantity, "ours": r.top[0][0].strip(),
                         "P(true)": round(r.p_true, 4), "P(false)": round(r.p_false, 4)})
    claim = ClaimResult("hijack-examples", any(flips) and all(rises),
                        "at least one example flips from P(true) > P(false) at n = 0 to P(false) > P(true) at n = 1, "
                        "and log P(false) − log P(true) rises from n = 0 to 1 in every example",
                        f"{sum(flips)} of {len(flips)} flip; margin rises in {sum(rises)} of {len(rises)}")
    return Result(rows=rows, claims=[claim], data={"curves": curves, "model": ctx.llm},
                  notes=[f"Model {ctx.llm}; the paper's Fig. 1 uses GPT-2, Gemma and LLaMA-2 (first-token probabilities)."])


def plot_fig1(result: Result, folder: Path) -> list[Path]:
    fig, axes = new_figure(6.0, 3.6)
    ax = axes[0][0]
    for curve in result.data["curves"]:
        ax.plot(range(len(curve["margin"])), curve["margin"], marker="o", label=curve["label"][:70])
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.axhline(0, color="black", linewidth=1, linestyle="--", label="P(false) = P(true)")
    ax.set_xlabel("prepended hijacking sentences n")
    ax.set_ylabel("log P(false) − log P(true)")
    ax.set_title(f"Hijacking examples ({result.data['model']}); above 0 = hijacked", fontsize=10)
    ax.legend(fontsize=6)
    return [save_figure(fig, folder / "examples.png")]


# ---------------------------------------------------------------- hijack-sample and its views


def run_sample(s: HijackStudy, ctx: Context) -> Result:
    rows, summary = _run_study(s, ctx)
    table = _rates(rows)
    return Result(rows=[r for r in _rate_rows(table) if r["setting"].endswith((", n=0", f", n={s.max_n}"))],
                  data={"rates": table.to_dict(orient="records"), "title": f"{ctx.llm}, all schemes"},
                  notes=[_sample_note(rows, ctx) + f"; skipped (scheme cannot be built): {summary['skipped']['count']}"])


def plot_sample(result: Result, folder: Path) -> list[Path]:
    return _plot_rates(result, folder, "rates_all_schemes.png")


def _direction_view(v: View, ctx: Context, claim: str, up: bool, title: str) -> Result:
    """Rates of hijack-sample's rows for `v.schemes`, each judged on moving ES in one direction."""
    rows = _sample_rows(ctx, v.schemes)
    table = _rates(rows)
    claims = [_direction_claim(rows, scheme, claim, up=up) for scheme in v.schemes]
    return Result(rows=_rate_rows(table), claims=claims, notes=[_sample_note(rows, ctx)],
                  data={"rates": table.to_dict(orient="records"), "title": title})


def run_fig2a(v: View, ctx: Context) -> Result:
    return _direction_view(v, ctx, "hijack-raises-es", True, f"{ctx.llm}: Do not think of {{target_false}}.")


def plot_fig2a(result: Result, folder: Path) -> list[Path]:
    return _plot_rates(result, folder, "not_think.png")


def run_reverse(v: View, ctx: Context) -> Result:
    return _direction_view(v, ctx, "reverse-lowers-es", False, f"{ctx.llm}: reverse schemes")


def plot_reverse(result: Result, folder: Path) -> list[Path]:
    return _plot_rates(result, folder, "reverse.png")


def run_atlas(v: View, ctx: Context) -> Result:
    from assocmem.hijack.atlas import build_atlas, write_atlas

    rows = _sample_rows(ctx, v.schemes)
    atlas = build_atlas(rows)
    write_atlas(atlas, ctx.work_dir)
    per = atlas.drop_duplicates(["scheme", "relation_id"])
    out = []
    for scheme, grp in per.groupby("scheme"):
        ranked = grp.sort_values("rank")
        for name, part in (("most", ranked.head(3)), ("least", ranked.tail(3).iloc[::-1])):
            out.append({"setting": scheme, "quantity": f"{name} hijackable relations (drop of true-preferred share)",
                        "ours": ", ".join(f"{r.relation_id} ({r.hijackability:+.2f})" for r in part.itertuples()),
                        "relations": int(len(grp))})
    return Result(rows=out, notes=[_sample_note(rows, ctx) + "; full table in atlas.csv"],
                  data={"schemes": sorted(atlas["scheme"].unique())})


def plot_atlas_all(result: Result, folder: Path) -> list[Path]:
    from assocmem.hijack.atlas import plot_atlas

    atlas = pd.read_parquet(folder / "atlas.parquet")
    return [plot_atlas(atlas, scheme, folder / f"atlas_{scheme}.png") for scheme in result.data["schemes"]]


# ---------------------------------------------------------------- fig2b, appB-associated: own runs


def run_fig2b(s: HijackStudy, ctx: Context) -> Result:
    rows, _ = _run_study(s, ctx)
    table = _rates(rows)
    claims = [_direction_claim(rows, scheme, "hijack-raises-es", up=True) for scheme in s.schemes]
    return Result(rows=_rate_rows(table), claims=claims,
                  notes=[f"{rows['case_id'].nunique()} records of {', '.join(s.relations or ('all',))}, model {ctx.llm}"],
                  data={"rates": table.to_dict(orient="records"), "title": f"{ctx.llm}: relation scheme, P190"})


def plot_fig2b(result: Result, folder: Path) -> list[Path]:
    return _plot_rates(result, folder, "relation_P190.png")


def run_associated(s: HijackStudy, ctx: Context) -> Result:
    rows, summary = _run_study(s, ctx)
    table = _rates(rows)
    claims = [_direction_claim(rows, "associated", "associated-hijacks", up=True)]
    change, n0, n1 = _paired_change(rows, "associated-reverse")
    moved = np.mean(change) if change else float("nan")
    notes = [f"{rows['case_id'].nunique()} records of {', '.join(s.relations or ('all',))}, model {ctx.llm}; "
             f"skipped (no associated word): {summary['skipped']['count']}",
             f"associated-reverse (direction not assumed): mean paired change of the hijacked indicator from n={n0} "
             f"to n={n1}: {moved:+.3f}"]
    return Result(rows=_rate_rows(table), claims=claims, notes=notes,
                  data={"rates": table.to_dict(orient="records"), "title": f"{ctx.llm}: associated words, P1412"})


def plot_associated(result: Result, folder: Path) -> list[Path]:
    return _plot_rates(result, folder, "associated_P1412.png")


# ---------------------------------------------------------------- diagnostics


def run_diagnostics(s: DiagnosticsStudy, ctx: Context) -> Result:
    from assocmem.hijack.diagnose_cli import DiagnoseConfig, run_diagnose

    config = DiagnoseConfig(model=ctx.llm, counterfact=str(ctx.counterfact) if ctx.counterfact else None,
                            records=s.records, ns=s.ns, schemes=s.schemes, device=str(ctx.device),
                            dtype="float32", skip_bad=True)
    lm = _lm(ctx)
    ctx.progress(0.1, "tracing attention and logit lens")
    summary = run_diagnose(config, ctx.work_dir, lm=lm)
    rows = []
    for scheme, per_n in summary["takeover_layer"].items():
        for n, layer in sorted(per_n.items(), key=lambda kv: int(kv[0])):
            rows.append({"setting": f"{scheme}, n={n}", "quantity": "first layer where mean log P(false) > log P(true)",
                         "ours": "never" if layer is None else layer})
    for scheme, per_n in summary["peak_attention"].items():
        for n, peak in sorted(per_n.items(), key=lambda kv: int(kv[0])):
            rows.append({"setting": f"{scheme}, n={n}", "quantity": "peak attention mass on the distractor sentences",
                         "ours": peak["mean_mass"], "uniform mass": round(peak["uniform_mass"], 3),
                         "layer": peak["layer"]})
    emb = summary["embedding"]
    rows.append({"setting": f"W_E {emb['shape']}", "quantity": "effective rank of the token embedding",
                 "ours": emb["effective_rank"]})
    rows.append({"setting": f"W_E {emb['shape']}", "quantity": "eigen-gap (σ_k/σ_k+1) among the top 64",
                 "ours": emb["eigengap_ratio"], "k": emb["eigengap_k"]})
    return Result(rows=rows, notes=[f"{summary['records']} records ({summary['prompts']} prompts), model {ctx.llm}; "
                                    "an extension beyond the paper: no paper claim is tested here"],
                  data={"summary": summary})


def plot_diagnostics(result: Result, folder: Path) -> list[Path]:
    return [folder / name for name in ("attention.png", "logit_lens.png", "embedding_spectrum.png")
            if (folder / name).is_file()]


# ---------------------------------------------------------------- entries

EXAMPLES = Examples(examples=(
    Example("The Eiffel Tower is in the city of", "Paris", "Chicago", "The Eiffel Tower is not in {target_false}."),
    Example("The Eiffel Tower is located in the city of", "Paris", "Guam", "Do not think of {target_false}."),
    Example("The mother tongue of Danielle Darrieux is", "French", "English", "Do not think of {target_false}."),
    Example("The official religion of Edwin of Northumbria is", "Christianity", "Islam",
            "Edwin of Northumbria's religion is not {target_false}."),
))

SAMPLE_QUICK = HijackStudy(schemes=ALL_SCHEMES, max_n=5, per_relation=2)
# Full: 200 records per relation (6,555 of the 21,919; every record of the 7 relations with fewer),
# × 7 schemes × n = 0..10 ≈ 430k prompts (497 s on one H100), sized for one GPU; the paper used every record
# (results/whole-counterfact: the sample's ES is within 0.008 of the whole file's for not-think and relation).
SAMPLE_FULL = HijackStudy(schemes=ALL_SCHEMES, max_n=10, per_relation=200)

EXPERIMENTS = [
    Experiment("fig1", "Hijacking examples", "Fig. 1, §1", EXAMPLES, EXAMPLES, run_fig1, plot_fig1,
               claims=("hijack-examples",), uses_llm=True),
    Experiment("hijack-sample", "Every hijacking scheme on one stratified CounterFact sample",
               "§3, Fig. 2, App. B (shared run)", SAMPLE_QUICK, SAMPLE_FULL, run_sample, plot_sample, uses_llm=True),
    Experiment("fig2a", "Hijacking: 'Do not think of {target_false}.'", "Fig. 2(a), §3", View(("not-think",)),
               View(("not-think",)), run_fig2a, plot_fig2a, claims=("hijack-raises-es",), requires=("hijack-sample",),
               uses_llm=True),
    Experiment("fig2b", "Hijacking with relation sentences, P190 (twin city)", "Fig. 2(b), §3",
               HijackStudy(schemes=("relation",), max_n=5, relations=("P190",), per_relation=30),
               HijackStudy(schemes=("relation",), max_n=10, relations=("P190",)),
               run_fig2b, plot_fig2b, claims=("hijack-raises-es",), uses_llm=True),
    Experiment("appB-reverse", "Reverse hijacking: sentences that state or name the true target", "App. B, §5.5",
               View(("reverse", "reverse-not-think", "reverse-relation")),
               View(("reverse", "reverse-not-think", "reverse-relation")), run_reverse, plot_reverse,
               claims=("reverse-lowers-es",), requires=("hijack-sample",), uses_llm=True),
    Experiment("appB-associated", "Hijacking with associated words (P1412, languages)", "App. B, §3",
               HijackStudy(schemes=("associated", "associated-reverse"), max_n=5, relations=("P1412",),
                           per_relation=30),
               HijackStudy(schemes=("associated", "associated-reverse"), max_n=10, relations=("P1412",)),
               run_associated, plot_associated, claims=("associated-hijacks",), uses_llm=True),
    Experiment("atlas", "Relation atlas: every relation × scheme × n", "extension of Fig. 2 (issue 7)",
               View(ALL_SCHEMES), View(ALL_SCHEMES), run_atlas, plot_atlas_all, requires=("hijack-sample",),
               uses_llm=True),
    Experiment("diagnostics", "Inside the LLM: attention to distractors, logit lens, embedding spectrum",
               "extension (§5 mechanisms on a real LLM)", DiagnosticsStudy(records=20),
               DiagnosticsStudy(records=200, ns=(0, 1, 3, 5)), run_diagnostics, plot_diagnostics, uses_llm=True),
]
