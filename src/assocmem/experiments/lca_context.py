"""The context (§5.5): mixing in tokens of another concept hijacks the transformer (C.5), and longer
contexts raise recall (C.6). Both read the trained-W_V models of `fig3a` (trained at the shortest L of
its grid) and compare them with the Bayes-optimal predictor of D^L on the same contexts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assocmem.experiments.claims import ClaimResult, exceeds, fmt, mean_std, spearman
from assocmem.experiments.common import draw_bayes, load_models, stack
from assocmem.experiments.registry import Context, Experiment, Result
from assocmem.lca.accuracy import correct
from assocmem.lca.analysis import accuracy_vs_length, sample_mixed_contexts
from assocmem.lca.bayes import expected_correct, log_likelihood
from assocmem.plotting import new_figure, save_figure
from assocmem.runtime import make_generator

SPEARMAN_MIN = 0.9  # "longer helps": rank correlation of L with mean accuracy


@dataclass(frozen=True)
class ContextProbe:
    """Which of fig3a's trained models to probe, and how."""

    fractions: tuple[float, ...] = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)  # mixing: share k/(L−1)
    lengths: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128, 256)  # length: evaluation context lengths
    n: int = 4096  # fresh contexts per point
    d: int | None = None  # which d of fig3a (None: the largest)
    seed: int = 777


def _models(p: ContextProbe, ctx: Context):
    models = load_models(ctx.inputs["fig3a"], ctx.device, where=lambda sm: not sm.model.freeze_value)
    L = min(sm.task.L for sm in models)
    d = p.d if p.d is not None else max(sm.model.d for sm in models)
    chosen = sorted((sm for sm in models if sm.task.L == L and sm.model.d == d), key=lambda sm: sm.seed)
    return chosen, models


# ---------------------------------------------------------------- mixing


def run_mixing(p: ContextProbe, ctx: Context) -> Result:
    models, _ = _models(p, ctx)
    task, weights = models[0].task, stack(models)
    gen = make_generator(p.seed, ctx.device)
    ks = sorted({round(f * (task.L - 1)) for f in p.fractions})
    points = []
    for k in ks:
        x, y_true, y_intruder = sample_mixed_contexts(task, k, p.n, gen, ctx.device)
        true, intruder = correct(weights, x, y_true, y_intruder)  # (E, n) each
        bayes_scores = log_likelihood(task, x)
        points.append({
            "k": k,
            "true": true.mean(1).tolist(),
            "intruder": intruder.mean(1).tolist(),
            "bayes_true": float(expected_correct(bayes_scores, y_true).mean()),
            "bayes_intruder": float(expected_correct(bayes_scores, y_intruder).mean()),
        })
    rows = []
    for pt in points:
        for key, name in (("true", "share answering the true target"), ("intruder", "share answering the intruder")):
            mean, std = mean_std(pt[key])
            rows.append({"setting": f"k={pt['k']} of {task.L - 1} noisy positions from the intruder",
                         "quantity": name, "ours": mean, "err": std,
                         "bayes_predictor": pt[f"bayes_{key}"]})
    claim = mixing_claim(points)
    notes = [f"Models: fig3a's trained-W_V models at L={task.L}, d={models[0].model.d} ({len(models)} seeds). "
             "'Bayes-optimal' here is the Bayes predictor of the unmixed task D^L applied to the mixed contexts: "
             "the hijacking an ideal reader of D^L would suffer too."]
    return Result(rows=rows, claims=[claim], data={"points": points, "L": task.L, "m": task.m}, notes=notes)


def mixing_claim(points: list[dict]) -> ClaimResult:
    """The claim of §5.5 / C.5 from the points of `run_mixing` (k ascending; per seed the share answering the
    true target and the intruder, and the Bayes predictor's shares)."""
    first, last = points[0], points[-1]
    rises, text = exceeds([b - a for a, b in zip(first["intruder"], last["intruder"])])
    flips = np.mean(last["intruder"]) > np.mean(last["true"])
    return ClaimResult("mixing-hijacks", bool(rises and flips),
                       "share answering the intruder at the largest k minus at k = 0 > 2 SE over seeds, and at the "
                       "largest k the intruder is answered more often than the true target",
                       f"intruder share {fmt(np.mean(first['intruder']))} → {fmt(np.mean(last['intruder']))} "
                       f"(rise {text}); true share at largest k {fmt(np.mean(last['true']))}; the Bayes-optimal "
                       f"predictor of D^L answers the intruder {fmt(first['bayes_intruder'])} → "
                       f"{fmt(last['bayes_intruder'])}")


def plot_mixing(result: Result, folder: Path) -> list[Path]:
    points, L = result.data["points"], result.data["L"]
    share = [pt["k"] / (L - 1) for pt in points]
    fig, axes = new_figure(5.0, 3.6)
    ax = axes[0][0]
    for key, label, color in (("true", "model answers true target", "C0"),
                              ("intruder", "model answers intruder", "C3")):
        ax.errorbar(share, [np.mean(pt[key]) for pt in points],
                    yerr=[np.std(pt[key], ddof=1) if len(pt[key]) > 1 else 0 for pt in points],
                    marker="o", capsize=3, color=color, label=label)
        draw_bayes(ax, share, [pt[f"bayes_{key}"] for pt in points], label=f"Bayes-optimal of D^L: {key}", color=color)
    ax.set_xlabel("share of the L−1 noisy positions drawn from the intruder concept")
    ax.set_ylabel("share of contexts")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Context mixing (m={result.data['m']}, L={L}; mean ± std over seeds)", fontsize=10)
    ax.legend(fontsize=7)
    return [save_figure(fig, folder / "mixing.png")]


# ---------------------------------------------------------------- length


def run_length(p: ContextProbe, ctx: Context) -> Result:
    models, every = _models(p, ctx)
    task, weights = models[0].task, stack(models)
    table = accuracy_vs_length(weights, task, p.lengths, p.n, make_generator(p.seed, ctx.device))
    points = []
    for L, group in table.groupby("L"):
        points.append({"L": int(L), "accs": group.sort_values("model")["accuracy"].tolist(),
                       "bayes": float(group["bayes_optimal"].iloc[0])})
    trained_at = []  # fig3a's models trained at each L of its grid (same d): their own final accuracy
    for L in sorted({sm.task.L for sm in every}):
        group = [sm for sm in every if sm.task.L == L and sm.model.d == models[0].model.d]
        trained_at.append({"L": L, "accs": [sm.final_accuracy for sm in group],
                           "bayes": float(np.mean([sm.bayes_optimal_accuracy for sm in group]))})
    rows = [{"setting": f"L={pt['L']} (model trained at L={task.L})", "quantity": "accuracy",
             "ours": float(np.mean(pt["accs"])), "err": mean_std(pt["accs"])[1], "bayes": pt["bayes"]}
            for pt in points]
    rows += [{"setting": f"L={pt['L']} (model trained at this L)", "quantity": "accuracy",
              "ours": float(np.mean(pt["accs"])), "err": mean_std(pt["accs"])[1], "bayes": pt["bayes"]}
             for pt in trained_at]
    claim = length_claim(points)
    notes = [f"One set of models (fig3a, trained W_V, trained at L={task.L}, d={models[0].model.d}) evaluated at every "
             "L: the model has no positional embedding, so the same weights run at any length."]
    return Result(rows=rows, claims=[claim], notes=notes,
                  data={"points": points, "trained_at": trained_at, "L_train": task.L, "m": task.m})


def length_claim(points: list[dict]) -> ClaimResult:
    """The claim of §5.5 / C.6 from the points of `run_length` (L ascending; per seed the accuracy at that L)."""
    rho = spearman([pt["L"] for pt in points], [np.mean(pt["accs"]) for pt in points])
    rises, text = exceeds([b - a for a, b in zip(points[0]["accs"], points[-1]["accs"])])
    return ClaimResult("length-helps", bool(rises and rho >= SPEARMAN_MIN),
                       f"Spearman correlation of L with mean accuracy ≥ {SPEARMAN_MIN}, and accuracy at the longest "
                       "L minus the shortest > 2 SE over seeds",
                       f"Spearman {fmt(rho, 2)}; L={points[0]['L']} → {points[-1]['L']}: "
                       f"{fmt(np.mean(points[0]['accs']))} → {fmt(np.mean(points[-1]['accs']))} ({text})")


def plot_length(result: Result, folder: Path) -> list[Path]:
    points = result.data["points"]
    Ls = [pt["L"] for pt in points]
    fig, axes = new_figure(5.0, 3.6)
    ax = axes[0][0]
    ax.errorbar(Ls, [np.mean(pt["accs"]) for pt in points],
                yerr=[np.std(pt["accs"], ddof=1) if len(pt["accs"]) > 1 else 0 for pt in points],
                marker="o", capsize=3, label=f"trained at L={result.data['L_train']}, evaluated at L")
    at = result.data["trained_at"]
    ax.errorbar([pt["L"] for pt in at], [np.mean(pt["accs"]) for pt in at],
                yerr=[np.std(pt["accs"], ddof=1) if len(pt["accs"]) > 1 else 0 for pt in at],
                fmt="s", color="C2", capsize=3, label="trained and evaluated at L")
    draw_bayes(ax, Ls, [pt["bayes"] for pt in points])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context length L")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Accuracy vs context length (m={result.data['m']}; mean ± std over seeds)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return [save_figure(fig, folder / "length.png")]


EXPERIMENTS = [
    Experiment("mixing", "Context mixing from two concepts", "§5.5, App. C.5", ContextProbe(n=4096),
               ContextProbe(n=16384), run_mixing, plot_mixing, claims=("mixing-hijacks",), requires=("fig3a",)),
    Experiment("length", "Accuracy vs context length", "§5.5, App. C.6", ContextProbe(n=4096),
               ContextProbe(n=16384, lengths=(2, 4, 8, 16, 32, 64, 128, 256, 512)), run_length, plot_length,
               claims=("length-helps",), requires=("fig3a",)),
]
