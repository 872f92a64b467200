"""The synthetic figures without plotted values, at the authors' protocol and settings (their configs): the
"standard" runs that Fig. 3(b)/C.5, C.6 and C.9–C.12 read (m = 5..8, d = L = 256), the cluster runs of
Fig. 3(c)/C.7/C.8, and accuracy against context length. Their figures are drawn from saved checkpoints, so
no values exist to compare with: each is judged by the same criterion as our-protocol entry, on these runs.

The analyses are the ones of the our-protocol entries (`lca_embedding`, `lca_attention`), run per m.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from assocmem.experiments.claims import ClaimResult, exceeds, fmt, spearman
from assocmem.experiments.common import (accuracy_row, draw_bayes, keep_best_lr, load_models,
                                         save_models, train_grid)
from assocmem.experiments.lca_attention import (ATTENTION_CRITERION, attention_numbers, attention_rows,
                                                cluster_attention, draw_heatmap)
from assocmem.experiments.lca_context import SPEARMAN_MIN
from assocmem.experiments.lca_embedding import (by_setting, geometry_result, judge_spectra, plot_geometry,
                                                plot_spectra, spectra_table)
from assocmem.experiments.lca_paper import PAPER, learning_rates
from assocmem.experiments.registry import Context, Experiment, Result
from assocmem.lca.task import sample_batch
from assocmem.lca.train import RunSpec, TrainConfig
from assocmem.plotting import new_figure, save_figure
from assocmem.runtime import make_generator


@dataclass(frozen=True)
class PaperRuns:
    """A family of the authors' runs: every m × L × d × neighbourhood, `runs` seeded runs each, at the paper
    protocol with the learning-rate rule of their configs (`lca_paper.LR_RULES`)."""

    ms: tuple[int, ...]  # latents m (the authors: 5, 6, 7, 8)
    Ls: tuple[int, ...]  # context lengths
    ds: tuple[int, ...]  # embedding dimensions
    runs: int  # seeded runs per point (seeds 0..runs-1)
    lr_rule: str  # key of lca_paper.LR_RULES
    neighborhoods: tuple[str, ...] = ("all",)  # π's support (cluster1 / cluster2 for the cluster figures)
    eval_samples: int = 4096  # fresh contexts for the attention maps (cluster runs)
    eval_seed: int = 4321
    train: TrainConfig = field(default_factory=lambda: PAPER.train)  # the authors' optimisation and evaluation


@dataclass(frozen=True)
class PaperStandardProbe:
    """An analysis of paper-fig3b's stored standard runs: nothing to set."""


def _label(m: int, L: int, d: int, neighborhood: str, arm: str) -> str:
    return f"m={m}, L={L}, d={d}, {neighborhood}, {arm}"


def train_runs(s: PaperRuns, ctx: Context, identity_arm: bool = False, end: float = 1.0):
    """Every point of the family (and, with identity_arm, each also with W_V = I), the authors' learning rate."""
    specs = []
    for m in s.ms:
        for L in s.Ls:
            for d in s.ds:
                for nb in s.neighborhoods:
                    for identity in (False, True) if identity_arm else (False,):
                        arm = "W_V = I" if identity else "trained W_V"
                        for lr in learning_rates(s.lr_rule, m, d, identity):
                            specs += [RunSpec(PAPER.task(m=m, L=L, neighborhood=nb),
                                              PAPER.model(d=d, freeze_value=identity), lr, seed,
                                              _label(m, L, d, nb, arm)) for seed in range(s.runs)]
    return keep_best_lr(train_grid(specs, s.train, ctx, end=end))


# ---------------------------------------------------------------- standard runs: Fig. 3(b)/C.5, C.6, C.9–C.12


def run_fig3b(s: PaperRuns, ctx: Context) -> Result:
    models = train_runs(s, ctx, identity_arm=True)
    save_models(models, ctx.work_dir)  # paper-c6 and paper-spectra read them
    trained = [m for m in models if not m.spec.model.freeze_value]
    result = geometry_result(by_setting(trained, "trained W_V"), "eq52", need_b0=True)
    groups = defaultdict(list)
    for t in sorted(models, key=lambda t: t.spec.seed):
        groups[(t.spec.task.m, t.spec.task.L, t.spec.model.d, t.spec.model.freeze_value)].append(t)
    for (m, L, d, identity), ms in sorted(groups.items()):
        result.rows.append(accuracy_row(f"m={m}, L={L}, d={d} (lr {ms[0].spec.lr:g})",
                                        f"accuracy, {'W_V = I' if identity else 'trained W_V'}",
                                        [t.final_accuracy for t in ms], [t.bayes_optimal_accuracy for t in ms]))
    return result


def plot_fig3b(result: Result, folder: Path) -> list[Path]:
    return plot_geometry(result, folder, "embedding_geometry_paper.png",
                         "Trained embeddings vs Eq. 5.2, the paper's protocol (W_V trained)")


def _standard(ctx: Context, identity: bool):
    return load_models(ctx.inputs["paper-fig3b"], ctx.device, where=lambda sm: sm.model.freeze_value == identity)


def run_c6(p: PaperStandardProbe, ctx: Context) -> Result:
    return geometry_result(by_setting(_standard(ctx, True), "W_V = I"), "thm3-linear", need_b0=False)


def plot_c6(result: Result, folder: Path) -> list[Path]:
    return plot_geometry(result, folder, "embedding_geometry_identity_value_paper.png",
                         "Embeddings trained with W_V = I, the paper's protocol (Theorem 3: linear)")


def run_spectra(p: PaperStandardProbe, ctx: Context) -> Result:
    return judge_spectra(spectra_table(_standard(ctx, False)), where="at every m of the standard runs")


def plot_spectra_paper(result: Result, folder: Path) -> list[Path]:
    return plot_spectra(result, folder)


# ---------------------------------------------------------------- clusters: Fig. 3(c), C.7, C.8


def run_clusters(s: PaperRuns, ctx: Context) -> Result:
    models = train_runs(s, ctx, end=0.9)
    groups = defaultdict(list)
    for t in sorted(models, key=lambda t: t.spec.seed):
        groups[(t.spec.task.m, t.spec.task.L, t.spec.model.d, t.spec.task.neighborhood)].append(t)
    rows, heatmaps, verdicts, numbers = [], [], [], []
    for (m, L, d, nb), ms in sorted(groups.items()):
        task = ms[0].spec.task
        x, _ = sample_batch(task, s.eval_samples, make_generator(s.eval_seed + m, ctx.device), ctx.device)
        att = cluster_attention(ms, task, x)
        setting = f"m={m}, L={L}, d={d}, {nb}"
        rows.append(accuracy_row(setting, "accuracy", [t.final_accuracy for t in ms],
                                 [t.bayes_optimal_accuracy for t in ms]))
        rows += attention_rows(f"{setting} ({2 ** att['bits']} clusters)", att)
        ok, text = attention_numbers(setting, att)
        verdicts.append(ok)
        numbers.append(text)
        heatmaps.append({"m": m, "L": L, "d": d, "neighborhood": nb, "bits": att["bits"], "heatmap": att["heatmap"]})
    claim = ClaimResult("attention-cluster", all(verdicts), f"at every (m, neighbourhood): {ATTENTION_CRITERION}",
                        "; ".join(numbers))
    return Result(rows=rows, claims=[claim], data={"heatmaps": heatmaps})


def plot_clusters(result: Result, folder: Path) -> list[Path]:
    maps = result.data["heatmaps"]
    nbs = sorted({h["neighborhood"] for h in maps})
    columns = sorted({(h["m"], h["L"], h["d"]) for h in maps})
    fig, axes = new_figure(3.4, 3.2, ncols=len(columns), nrows=len(nbs))
    for i, nb in enumerate(nbs):
        for j, (m, L, d) in enumerate(columns):
            h = next((h for h in maps if (h["m"], h["L"], h["d"]) == (m, L, d) and h["neighborhood"] == nb), None)
            if h is not None:
                draw_heatmap(axes[i][j], h["heatmap"], h["bits"], f"m={m}, d={d}, {2 ** h['bits']} clusters")
    fig.suptitle("Mean attention × L (1 = uniform), the paper's protocol", fontsize=10)
    return [save_figure(fig, folder / "attention_heatmaps_paper.png")]


# ---------------------------------------------------------------- context length


def run_length(s: PaperRuns, ctx: Context) -> Result:
    models = train_runs(s, ctx)
    table = pd.DataFrame([{"m": t.spec.task.m, "d": t.spec.model.d, "L": t.spec.task.L, "seed": t.spec.seed,
                           "lr": t.spec.lr, "accuracy": t.final_accuracy, "bayes": t.bayes_optimal_accuracy}
                          for t in models]).sort_values(["m", "d", "L", "seed"]).reset_index(drop=True)
    rows, verdicts, numbers = [], [], []
    for (m, d), part in table.groupby(["m", "d"]):
        curve = part.groupby("L")
        for L, g in curve:
            rows.append(accuracy_row(f"m={m}, d={d}, L={L} (lr {g['lr'].iloc[0]:g})", "accuracy",
                                     g["accuracy"].tolist(), g["bayes"].tolist()))
        Ls = sorted(part["L"].unique())
        rho = spearman(Ls, [curve.get_group(L)["accuracy"].mean() for L in Ls])
        short, long = (curve.get_group(L).sort_values("seed")["accuracy"].to_numpy() for L in (Ls[0], Ls[-1]))
        rises, text = exceeds(list(long - short))
        verdicts.append(rises and rho >= SPEARMAN_MIN)
        numbers.append(f"m={m}, d={d}: Spearman {fmt(rho, 2)}, L={Ls[0]} → {Ls[-1]} {text}")
    claim = ClaimResult("length-helps", all(verdicts),
                        f"at every (m, d): Spearman correlation of L with mean accuracy ≥ {SPEARMAN_MIN}, and accuracy "
                        "at the longest L minus the shortest > 2 SE over seeds (models trained at each L)",
                        "; ".join(numbers))
    return Result(rows=rows, claims=[claim], tables={"length": table.to_dict("records")},
                  data={"table": table.to_dict("records")})


def plot_length(result: Result, folder: Path) -> list[Path]:
    table = pd.DataFrame(result.data["table"])
    ms = sorted(table["m"].unique())
    fig, axes = new_figure(3.6, 3.2, ncols=len(ms))
    for ax, m in zip(axes[0], ms):
        part = table[table["m"] == m]
        for j, (d, g) in enumerate(part.groupby("d")):
            curve = g.groupby("L")["accuracy"]
            Ls = sorted(g["L"].unique())
            ax.errorbar(Ls, curve.mean().loc[Ls], yerr=curve.sem().fillna(0).loc[Ls], marker="o", capsize=3,
                        color=f"C{j}", label=f"d={d}")
        bayes = part.groupby("L")["bayes"].mean()
        draw_bayes(ax, list(bayes.index), list(bayes.to_numpy()))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context length L (trained and evaluated at L)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"m={m}", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Accuracy vs context length, the paper's protocol (mean ± SEM)", fontsize=10)
    return [save_figure(fig, folder / "length_paper.png")]


# ---------------------------------------------------------------- entries

STANDARD = PaperRuns(ms=(5, 6, 7, 8), Ls=(256,), ds=(256,), runs=5, lr_rule="standard")
CLUSTERS = PaperRuns(ms=(5, 6, 7, 8), Ls=(256,), ds=(256,), runs=10, lr_rule="0.001",
                     neighborhoods=("cluster1", "cluster2"))
LENGTH = PaperRuns(ms=(5, 6, 7, 8), Ls=(16, 32, 64, 128), ds=(16, 32, 64, 128), runs=5, lr_rule="best-of-two")

EXPERIMENTS = [
    Experiment("paper-fig3b", "Embedding inner product vs Hamming distance, the paper's protocol",
               "Fig. 3(b), Fig. C.5, §5.3", None, None, run_fig3b, plot_fig3b, claims=("eq52",),
               aliases=("paper-c5",), authors=STANDARD, protocol="paper"),
    Experiment("paper-c6", "Embedding geometry with W_V = I, the paper's protocol", "Fig. C.6, Theorem 3", None, None,
               run_c6, plot_c6, claims=("thm3-linear",), requires=("paper-fig3b",), authors=PaperStandardProbe(),
               protocol="paper"),
    Experiment("paper-spectra", "Singular value spectra of W_E, the paper's protocol", "Fig. C.9–C.12, Lemma 5", None,
               None, run_spectra, plot_spectra_paper, claims=("eigengap",), aliases=("paper-c9",),
               requires=("paper-fig3b",), authors=PaperStandardProbe(), protocol="paper"),
    Experiment("paper-fig3c", "Attention heatmaps, one- and two-latent clusters, the paper's protocol",
               "Fig. 3(c), Fig. C.7, C.8, §6.3", None, None, run_clusters, plot_clusters, claims=("attention-cluster",),
               aliases=("paper-c7", "paper-c8"), authors=CLUSTERS, protocol="paper"),
    Experiment("paper-length", "Accuracy vs context length, the paper's protocol", "§5.5, App. C.6", None, None,
               run_length, plot_length, claims=("length-helps",), authors=LENGTH, protocol="paper"),
]
