"""The synthetic figures at the authors' own protocol (`lca.protocols`, "paper"), judged against the values
the paper's figures plot: Fig. 3(a)/C.1 (trained vs identity W_V), C.4 (trained vs frozen embeddings), and
C.2 / C.3 on C.4's trained models (the construction from the trained embeddings; principal angles).

Every entry trains with the one batched trainer; only its configuration is the authors' (2^m + 1 tokens,
PyTorch's default init, AdamW (0.9, 0.99), a constant learning rate, batch 256, 500 steps, accuracy on 1,024
fresh contexts), on the authors' grid and learning-rate rule per figure (`LR_RULES`, read from their configs).
Each experiment's long table of runs (`runs.csv`) is compared point by point with the paper's values
(`paper_comparison.csv`, `experiments.paper_values`), and the claims are judged by verdict functions of
(mean, SEM) summaries, so the same function also reads the paper's own values (shown beside ours).

The figures without plotted values (3b, C.5, C.6, 3c, C.7, C.8, C.9–C.12, length) at the authors' settings
are in `lca_paper_shapes`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from assocmem.experiments import paper_values as pv
from assocmem.experiments.claims import ClaimResult
from assocmem.experiments.common import keep_best_lr, load_models, save_models, stack, train_grid
from assocmem.experiments.registry import Context, Experiment, Result
from assocmem.lca.analysis import accuracy_with_value, evaluate_weights, smallest_principal_angle
from assocmem.lca.constructions import model_theorem1_value, random_pairs_value
from assocmem.lca.model import ModelConfig, OneLayerTransformer
from assocmem.lca.protocols import protocol
from assocmem.lca.task import Sampler
from assocmem.lca.train import RunSpec, TrainConfig, TrainedModel, stream_seed
from assocmem.plotting import new_figure, save_figure
from assocmem.runtime import make_generator

PAPER = protocol("paper")
# The authors' learning rate per point, from their configs (config/generate_config.py and config/*/).
LR_RULES: dict[str, str] = {
    "0.01": "0.01 for every model (Fig. 3(a)/C.1: the no_wv_low_dim and with_wv_low_dim configs)",
    "c4": "0.01 for d ≤ 64, else 0.001, and 0.01 at d = 128 when m ≥ 7 (save_dim_freeze / save_dim_no_freeze)",
    "standard": "0.001 with W_V trained (config/standard), 0.01 with W_V = I (config/no_wv)",
    "0.001": "0.001 (the cluster configs inherit the standard configs' rate)",
    "best-of-two": "0.01 and 0.001 both trained, the better mean accuracy kept per point (save_length_configs)",
}
ACC_DROP_MAX = 0.05  # "does not lower accuracy significantly" (C.2): mean drop original − constructed below 5 points
OVER_MAX_GAIN = 0.03  # "not needed when d > V" (C.4): mean gain trained − frozen embeddings below 3 points
N_SE = 2.0  # "larger": the difference of two means exceeds 2 standard errors of that difference


def learning_rates(rule: str, m: int, d: int, identity: bool = False) -> tuple[float, ...]:
    """The learning rate(s) the authors' configs give a model at (m, d) (several: the best is kept)."""
    if rule == "0.01":
        return (0.01,)
    if rule == "0.001":
        return (0.001,)
    if rule == "standard":
        return (0.01,) if identity else (0.001,)
    if rule == "c4":
        return (0.01,) if d <= 64 or (d == 128 and m >= 7) else (0.001,)
    if rule == "best-of-two":
        return (0.01, 0.001)
    raise ValueError(f"unknown learning-rate rule {rule!r}: allowed one of {', '.join(LR_RULES)}")


@dataclass(frozen=True)
class PaperGrid:
    """One figure's grid at the authors' protocol: every (m, L, d) of the grid in each arm, `runs` seeded runs."""

    ms: tuple[int, ...]  # latents m (V = 2^m)
    Ls: tuple[int, ...]  # context lengths
    ds: tuple[int, ...]  # embedding dimensions
    runs: int  # runs per point, seeds 0..runs-1 (the authors' count unless the profile says otherwise)
    lr_rule: str  # the authors' learning rate per point: a key of LR_RULES
    train: TrainConfig = field(default_factory=lambda: PAPER.train)  # the authors' optimisation and evaluation

    def __post_init__(self) -> None:
        if self.lr_rule not in LR_RULES:
            raise ValueError(f"lr_rule={self.lr_rule!r}: allowed one of {', '.join(LR_RULES)}")

    def points(self):
        """(m, L, d) of the grid, in order."""
        return [(m, L, d) for m in self.ms for L in self.Ls for d in self.ds]


@dataclass(frozen=True)
class PaperProbe:
    """An analysis of paper-c4's trained models: fresh contexts per model and the seed of what it draws."""

    eval_samples: int = 1024  # fresh contexts per model (the authors: one batch of 1,024)
    seed: int = 2024


# ---------------------------------------------------------------- training and the long table of runs

# figure -> (the ModelConfig switch that tells the arms apart, the arm with it on, the arm with it off)
ARMS = {"fig3a": ("freeze_value", "identity", "trained"), "c4": ("freeze_embedding", "frozen", "trained")}


def _label(figure: str, m: int, L: int, d: int, arm: str) -> str:
    return f"{figure}: m={m}, L={L}, d={d}, {arm}"


def _arm(figure: str, model: ModelConfig) -> str:
    """The arm of a model, read from its switch (never from its label)."""
    switch, on, off = ARMS[figure]
    return on if getattr(model, switch) else off


def train_figure(s: PaperGrid, figure: str, ctx: Context) -> list[TrainedModel]:
    """Every (point, arm, learning rate, seed) of the figure trained at the paper protocol; per point and arm
    the learning rate of the authors' rule (the better mean accuracy where the rule gives two)."""
    switch, on, off = ARMS[figure]
    specs = []
    for m, L, d in s.points():
        for arm in (off, on):
            model = PAPER.model(d=d, **{switch: arm == on})
            for lr in learning_rates(s.lr_rule, m, d, identity=model.freeze_value):
                specs += [RunSpec(PAPER.task(m=m, L=L), model, lr, seed, _label(figure, m, L, d, arm))
                          for seed in range(s.runs)]
    return keep_best_lr(train_grid(specs, s.train, ctx))


def runs_table(models: list[TrainedModel], figure: str) -> pd.DataFrame:
    """One row per model: figure, m, L, d, arm, seed, lr, value (final accuracy), bayes."""
    return pd.DataFrame([{"figure": figure, "m": t.spec.task.m, "L": t.spec.task.L, "d": t.spec.model.d,
                          "arm": _arm(figure, t.spec.model), "seed": t.spec.seed, "lr": t.spec.lr, "value": t.final_accuracy,
                          "bayes": t.bayes_optimal_accuracy} for t in models]).sort_values(
        ["m", "L", "d", "arm", "seed"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- verdicts on (mean, SEM) summaries


def _summary(table: pd.DataFrame, which: str) -> pd.DataFrame:
    """`pv.summarise(runs)` (which="ours") or a comparison table's paper side (which="paper") as columns
    m, L, d, arm, mean, sem: what the verdict functions read."""
    return table.rename(columns={which: "mean", f"{which}_sem": "sem"})[["m", "L", "d", "arm", "mean", "sem"]]


def _diff(summary: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Per (m, L, d): mean(a) − mean(b) and the standard error of that difference (independent runs)."""
    wide = summary.pivot_table(index=["m", "L", "d"], columns="arm", values=["mean", "sem"])
    out = pd.DataFrame({"diff": wide["mean"][a] - wide["mean"][b],
                        "se": np.hypot(wide["sem"][a], wide["sem"][b])}).reset_index()
    return out


def verdict_value_matters(summary: pd.DataFrame) -> tuple[bool, str]:
    """Fig. 3(a): at every (m, L) trained − identity > 2 SE, and for every m the gap is larger at the shortest L."""
    diffs = _diff(summary, "trained", "identity")
    ok = bool((diffs["diff"] > N_SE * diffs["se"]).all())
    Ls = sorted(diffs["L"].unique())
    if len(Ls) > 1:
        gap = diffs.pivot_table(index="m", columns="L", values="diff")
        ok = ok and bool((gap[Ls[0]] > gap[Ls[-1]]).all())
    text = "; ".join(f"m={r.m}, L={r.L}: {r.diff:+.3f} ± {r.se:.3f}" for r in diffs.itertuples())
    return ok, text


def verdict_embedding_under(summary: pd.DataFrame) -> tuple[bool, str]:
    """C.4, d < V: trained − frozen embeddings > 2 SE at every (m, d)."""
    diffs = _diff(summary, "trained", "frozen")
    under = diffs[diffs["d"] < 2 ** diffs["m"]]
    ok = bool(len(under)) and bool((under["diff"] > N_SE * under["se"]).all())
    return ok, "; ".join(f"m={r.m}, d={r.d}: {r.diff:+.3f} ± {r.se:.3f}" for r in under.itertuples()) or "no d < V"


def verdict_embedding_over(summary: pd.DataFrame) -> tuple[bool, str]:
    """C.4, d > V: mean gain trained − frozen embeddings < OVER_MAX_GAIN at every (m, d)."""
    diffs = _diff(summary, "trained", "frozen")
    over = diffs[diffs["d"] > 2 ** diffs["m"]]
    ok = bool(len(over)) and bool((over["diff"] < OVER_MAX_GAIN).all())
    return ok, "; ".join(f"m={r.m}, d={r.d}: {r.diff:+.3f}" for r in over.itertuples()) or "no d > V"


def verdict_construction_replaces(summary: pd.DataFrame) -> tuple[bool, str]:
    """C.2: at every (m, d) the mean drop original − constructed < ACC_DROP_MAX and constructed − random
    pairs > 2 SE."""
    drop, beats = _diff(summary, "original", "constructed"), _diff(summary, "constructed", "random_pairs")
    ok = bool(((drop["diff"] < ACC_DROP_MAX) & (beats["diff"] > N_SE * beats["se"])).all())
    failing = [f"m={a.m}, d={a.d}: drop {a.diff:+.3f}" for a in drop.itertuples() if a.diff >= ACC_DROP_MAX]
    worst = drop.loc[drop["diff"].idxmax()]
    text = (f"largest drop {worst['diff']:+.3f} (m={int(worst['m'])}, d={int(worst['d'])}); drop ≥ {ACC_DROP_MAX} at "
            f"{len(failing)} of {len(drop)} points" + (f" ({'; '.join(failing)})" if failing else "")
            + f"; constructed − random pairs ≥ {beats['diff'].min():+.3f}")
    return ok, text


def verdict_construction_closest(summary: pd.DataFrame) -> tuple[bool, str]:
    """C.3: at every (m, d) the angle to the construction is below those to random pairs and to a Gaussian
    matrix, each by > 2 SE."""
    rand, gauss = _diff(summary, "random_pairs", "constructed"), _diff(summary, "gaussian", "constructed")
    ok_rows = (rand["diff"] > N_SE * rand["se"]) & (gauss["diff"] > N_SE * gauss["se"])
    failing = [f"m={r.m}, d={r.d}" for r, good in zip(rand.itertuples(), ok_rows) if not good]
    text = (f"random − constructed ≥ {rand['diff'].min():.1f}°, Gaussian − constructed ≥ {gauss['diff'].min():.1f}°; "
            f"not by 2 SE at {len(failing)} of {len(rand)} points" + (f" ({'; '.join(failing)})" if failing else ""))
    return bool(ok_rows.all()), text


CRITERIA = {
    "value-matters": (verdict_value_matters, "at every (m, L): trained W_V − W_V = I accuracy > 2 SE of the "
                      "difference (SEM of both), and for every m the gap is larger at the shortest L than the longest"),
    "embedding-under": (verdict_embedding_under, "at every (m, d) with d < V: trained − frozen W_E accuracy > 2 SE"),
    "embedding-over": (verdict_embedding_over, f"at every (m, d) with d > V: mean gain trained − frozen W_E < "
                       f"{OVER_MAX_GAIN}"),
    "construction-replaces": (verdict_construction_replaces, f"at every (m, d): mean drop original − constructed W_V "
                              f"< {ACC_DROP_MAX}, and constructed − random-pairs W_V > 2 SE"),
    "construction-closest": (verdict_construction_closest, "at every (m, d): the smallest principal angle to the "
                             "construction is below those to random pairs and to a Gaussian matrix, each by > 2 SE"),
}


def judge(claim: str, runs: pd.DataFrame, table: pd.DataFrame) -> ClaimResult:
    """The claim on the summary of our runs, with the same verdict function's reading of the paper's values
    at the points compared (`table`, the comparison)."""
    verdict, criterion = CRITERIA[claim]
    ok, text = verdict(_summary(pv.summarise(runs), "ours"))
    if len(table):
        ok_paper, text_paper = verdict(_summary(table, "paper"))
        text += (f" — the paper's own values at these points, same criterion: "
                 f"{'supported' if ok_paper else 'NOT supported'} ({text_paper})")
    else:
        text += " — no paper values at these points"
    return ClaimResult(claim, ok, criterion, text)


# ---------------------------------------------------------------- results: rows, notes, tables


def compared_result(runs: pd.DataFrame, claims: tuple[str, ...], data: dict) -> Result:
    """Rows (the comparison), notes (the summary line, every miss), tables (runs, paper_comparison), claims."""
    table = pv.compare(runs)
    figures = list(dict.fromkeys(table["figure"]))
    notes = [pv.summary_line(table, f) for f in figures]
    notes.append(f"Paper values: {pv.source()}")
    missed = pv.misses(table)
    if missed:
        notes.append("Points that do not match: " + "; ".join(missed))
    notes.append("Protocol: the authors' (lca.protocols 'paper': 2^m + 1 tokens, PyTorch's default init, AdamW "
                 "(0.9, 0.99), weight decay 0.01, a constant learning rate per their configs; steps, batch and "
                 "evaluation contexts in the settings line); ours seeded (seeds 0..runs−1), theirs unseeded, so means "
                 "are compared. SEM = standard error of the mean over runs, as the authors' figures.")
    own = runs[runs["figure"] == data["figure"]]
    return Result(rows=pv.report_rows(table, own) or _plain_rows(own), claims=[judge(c, own, table) for c in claims],
                  notes=notes,
                  tables={"runs": runs.to_dict("records"), "paper_comparison": table.to_dict("records")},
                  data={**data, "points": _points(runs)})


def _points(runs: pd.DataFrame) -> list[dict]:
    """Plot data: our mean and SEM per point, the paper's beside them (None where it has no value)."""
    ours = pv.summarise(runs).merge(pv.paper_values(), on=pv.KEYS, how="left")
    return ours.astype(object).where(ours.notna(), None).to_dict("records")


def _plain_rows(runs: pd.DataFrame) -> list[dict]:
    """Report rows of our runs alone (points without a paper value): mean ± SEM."""
    return [{"setting": f"m={r.m}, L={r.L}, d={r.d}", "quantity": r.arm, "ours": r.ours, "SEM": r.ours_sem}
            for r in pv.summarise(runs).itertuples()]


# ---------------------------------------------------------------- Fig. 3(a) / C.1


def run_fig3a(s: PaperGrid, ctx: Context) -> Result:
    runs = runs_table(train_figure(s, "fig3a", ctx), "fig3a")
    return compared_result(runs, ("value-matters",), {"figure": "fig3a"})


def _plot_table(result: Result) -> pd.DataFrame:
    """The stored plot points as a table, missing paper values as NaN (not drawn)."""
    return pd.DataFrame(result.data["points"]).astype({"paper": float, "paper_sem": float})


def plot_fig3a(result: Result, folder: Path) -> list[Path]:
    table = _plot_table(result)
    panels = sorted({(L, d) for L, d in zip(table["L"], table["d"])})
    fig, axes = new_figure(4.4, 3.4, ncols=len(panels))
    for ax, (L, d) in zip(axes[0], panels):
        part = table[(table["L"] == L) & (table["d"] == d)]
        ms = sorted(part["m"].unique())
        for j, arm in enumerate(("trained", "identity")):
            rows = part[part["arm"] == arm].set_index("m").loc[ms]
            x = np.arange(len(ms)) + (j - 0.5) * 0.4
            ax.bar(x, rows["ours"], 0.4, yerr=rows["ours_sem"], capsize=3,
                   label=f"ours, {'trained W_V' if arm == 'trained' else 'W_V = I'}")
            ax.errorbar(x, rows["paper"], yerr=rows["paper_sem"], fmt="D", color="black", markersize=4, capsize=2,
                        label="paper" if j == 0 else None)
        ax.set_xticks(range(len(ms)), [f"m={m}" for m in ms])
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("accuracy")
        ax.set_title(f"L={L}, d={d}", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    fig.suptitle("Trained vs identity W_V at the paper's protocol (mean ± SEM; paper's values as ◆)", fontsize=10)
    return [save_figure(fig, folder / "value_matrix_paper.png")]


# ---------------------------------------------------------------- C.4


def run_c4(s: PaperGrid, ctx: Context) -> Result:
    models = train_figure(s, "c4", ctx)
    save_models(models, ctx.work_dir)  # paper-c2 and paper-c3 read the trained-embedding models
    return compared_result(runs_table(models, "c4"), ("embedding-under", "embedding-over"), {"figure": "c4"})


def plot_over_d(result: Result, folder: Path, name: str, ylabel: str, title: str) -> list[Path]:
    """One panel per m, x = d (log scale): ours per arm (mean ± SEM) and the paper's values over them."""
    table = _plot_table(result)
    ms = sorted(table.loc[table["figure"] == result.data["figure"], "m"].unique())
    fig, axes = new_figure(3.6, 3.2, ncols=len(ms))
    for ax, m in zip(axes[0], ms):
        part = table[(table["m"] == m) & (table["figure"] == result.data["figure"])]
        for j, arm in enumerate(dict.fromkeys(part["arm"])):
            rows = part[part["arm"] == arm].sort_values("d")
            ax.errorbar(rows["d"], rows["ours"], yerr=rows["ours_sem"], marker="o", capsize=3, color=f"C{j}",
                        label=f"ours, {arm}")
            ax.errorbar(rows["d"], rows["paper"], yerr=rows["paper_sem"], fmt="x", color=f"C{j}", markersize=7,
                        capsize=2, linestyle=":", label=f"paper, {arm}")
        ax.axvline(2**m, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log", base=2)
        ds = sorted(part["d"].unique())
        ax.set_xticks(ds, [str(d) for d in ds])
        ax.minorticks_off()
        ax.set_xlabel("embedding dimension d (dashed: d = V)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"m={m}", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    fig.suptitle(title + " (mean ± SEM; paper's values as ×, dotted)", fontsize=10)
    return [save_figure(fig, folder / name)]


def plot_c4(result: Result, folder: Path) -> list[Path]:
    return plot_over_d(result, folder, "embeddings_paper.png", "accuracy",
                       "Trained vs frozen embeddings at the paper's protocol")


# ---------------------------------------------------------------- C.2 and C.3 on C.4's trained models


def _trained_groups(ctx: Context) -> dict[tuple[int, int], list]:
    """paper-c4's trained-embedding models (W_E and W_V trained), by (m, d), in seed order."""
    models = load_models(ctx.inputs["paper-c4"], ctx.device, where=lambda sm: not sm.model.freeze_embedding)
    groups = defaultdict(list)
    for sm in sorted(models, key=lambda sm: sm.seed):
        groups[(sm.task.m, sm.model.d)].append(sm)
    return dict(sorted(groups.items()))


def c2_runs(p: PaperProbe, ctx: Context) -> pd.DataFrame:
    """Per model: accuracy with its trained W_V, with the construction, with random pairs (the authors': m keys
    uniform over all 2^m tokens, with replacement), each on the model's own fresh contexts; and (figure
    "c2-embedding") how far training moved its embeddings, ‖W_E − W_E(init)‖ / ‖W_E(init)‖."""
    rows = []
    for (m, d), ms in _trained_groups(ctx).items():
        task, weights = ms[0].task, stack(ms)
        init = OneLayerTransformer.from_seeds(task.vocab_size, [sm.model for sm in ms], [sm.seed for sm in ms],
                                              ctx.device).weights()["W_E"]
        moved = (weights["W_E"] - init).flatten(1).norm(dim=1) / init.flatten(1).norm(dim=1)
        rows += [{"figure": "c2-embedding", "m": m, "L": task.L, "d": d, "arm": "relative change of W_E",
                  "seed": sm.seed, "value": float(v)} for sm, v in zip(ms, moved.tolist())]
        gens = [make_generator(stream_seed(p.seed + sm.seed, "c2"), ctx.device) for sm in ms]
        x, y = Sampler([task] * len(ms), ctx.device).draw(gens, p.eval_samples)  # (E, n, L)
        W_E = weights["W_E"]
        accs = {"original": evaluate_weights(weights, task, x, y),
                "constructed": accuracy_with_value(weights, model_theorem1_value(W_E, m), task, x, y),
                "random_pairs": accuracy_with_value(weights, random_pairs_value(
                    W_E[..., : task.V], m, make_generator(p.seed + m * 1000 + d, ctx.device), replace=True), task, x, y)}
        for arm, values in accs.items():
            rows += [{"figure": "c2", "m": m, "L": task.L, "d": d, "arm": arm, "seed": sm.seed, "value": float(v)}
                     for sm, v in zip(ms, values.tolist())]
    return pd.DataFrame(rows)


def run_c2(p: PaperProbe, ctx: Context) -> Result:
    runs = c2_runs(p, ctx)
    result = compared_result(runs, ("construction-replaces",), {"figure": "c2"})
    result.rows += _plain_rows(runs[runs["figure"] == "c2-embedding"])
    return result


def explain_c2(result: dict) -> str:
    """Where the construction keeps accuracy and where not, in ours and in the paper's values, and how far training
    moved the embeddings there, from the stored points: the drop original − constructed per (m, d)."""
    points = pd.DataFrame(result["data"]["points"]).astype({"paper": float})
    acc = points[points["figure"] == "c2"].set_index(["m", "d", "arm"])
    parts, drops = [], {}
    for side in ("ours", "paper"):
        drop = (acc[side].xs("original", level="arm") - acc[side].xs("constructed", level="arm")).dropna()
        drops[side] = drop
        if len(drop):
            big = [f"m={m}, d={d} ({v:.2f})" for (m, d), v in drop.items() if v >= ACC_DROP_MAX]
            parts.append(f"{'our' if side == 'ours' else 'the paper'}'s drop ≥ {ACC_DROP_MAX} at {len(big)} of "
                         f"{len(drop)} points" + (f": {', '.join(big)}" if big else ""))
    moved = points[points["figure"] == "c2-embedding"].set_index(["m", "d"])["ours"]
    kept = moved.reindex(drops["ours"].index[drops["ours"] < ACC_DROP_MAX]).dropna()
    lost = moved.reindex(drops["ours"].index[drops["ours"] >= ACC_DROP_MAX]).dropna()
    if len(kept) or len(lost):
        parts.append("training moved the embeddings by " + "; ".join(
            f"{v.mean():.0%} of their init norm on average where the construction {where}"
            for v, where in ((kept, "keeps accuracy"), (lost, "does not")) if len(v)))
    return "; ".join(parts)


def plot_c2(result: Result, folder: Path) -> list[Path]:
    return plot_over_d(result, folder, "construction_paper.png", "accuracy",
                       "Trained W_V replaced by the construction / random pairs, paper's protocol")


def c3_runs(p: PaperProbe, ctx: Context) -> pd.DataFrame:
    """Per model: the smallest principal angle (degrees) between the row spaces of the rank-m approximations of
    its trained W_V and of the construction, of random pairs, of a standard Gaussian d × d matrix (the authors')."""
    rows = []
    for (m, d), ms in _trained_groups(ctx).items():
        weights = stack(ms)
        gen = make_generator(p.seed + m * 1000 + d, ctx.device)
        W_E, trained = weights["W_E"], weights["W_V"]
        others = {"constructed": model_theorem1_value(W_E, m),
                  "random_pairs": random_pairs_value(W_E[..., : 2**m], m, gen, replace=True),
                  "gaussian": torch.randn(trained.shape, generator=gen, device=gen.device).to(trained.device)}
        for arm, M in others.items():
            angles = smallest_principal_angle(trained, M, rank=m, space="row")
            rows += [{"figure": "c3", "m": m, "L": ms[0].task.L, "d": d, "arm": arm, "seed": sm.seed, "value": float(a)}
                     for sm, a in zip(ms, angles.tolist())]
    return pd.DataFrame(rows)


def run_c3(p: PaperProbe, ctx: Context) -> Result:
    return compared_result(c3_runs(p, ctx), ("construction-closest",), {"figure": "c3"})


def plot_c3(result: Result, folder: Path) -> list[Path]:
    return plot_over_d(result, folder, "principal_angles_paper.png", "smallest principal angle (deg)",
                       "Rank-m approximations vs the trained W_V, paper's protocol")


# ---------------------------------------------------------------- entries

FIG3A = PaperGrid(ms=(5, 6, 7, 8), Ls=(64, 128), ds=(64,), runs=10, lr_rule="0.01")
FIG3A_QUICK = replace(FIG3A, ms=(5, 6), runs=4)
C4 = PaperGrid(ms=(5, 6, 7, 8), Ls=(256,), ds=(16, 32, 64, 128, 256, 512), runs=5, lr_rule="c4")

EXPERIMENTS = [
    Experiment("paper-fig3a", "Trained vs identity value matrix, the paper's protocol", "Fig. 3(a), Fig. C.1, §6.1",
               FIG3A_QUICK, None, run_fig3a, plot_fig3a, claims=("value-matters",), aliases=("paper-c1",),
               authors=FIG3A, protocol="paper",
               quick_differs={"value-matters": f"quick runs m = {', '.join(map(str, FIG3A_QUICK.ms))} with "
                                               f"{FIG3A_QUICK.runs} runs per point; the paper profile the authors' "
                                               f"m = {FIG3A.ms[0]}..{FIG3A.ms[-1]} with {FIG3A.runs}"}),
    Experiment("paper-c4", "Frozen vs trained embeddings across d, the paper's protocol", "Fig. C.4, §6.2", None, None,
               run_c4, plot_c4, claims=("embedding-under", "embedding-over"), authors=C4, protocol="paper"),
    Experiment("paper-c2", "The construction from the trained embeddings in place of W_V, the paper's protocol",
               "Fig. C.2, §6.1", None, None, run_c2, plot_c2, claims=("construction-replaces",), explain=explain_c2,
               requires=("paper-c4",), authors=PaperProbe(), protocol="paper"),
    Experiment("paper-c3", "Principal angles of rank-m value matrices, the paper's protocol", "Fig. C.3, §6.1", None,
               None, run_c3, plot_c3, claims=("construction-closest",), requires=("paper-c4",), authors=PaperProbe(),
               protocol="paper"),
]
