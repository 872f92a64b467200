"""Attention selects the cluster (§5.4, §6.3): with the cluster neighbourhood, the last token attends to
context tokens of its own cluster — one latent (Fig. 3c / C.7, two clusters) or two latents (C.8, four).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from assocmem.experiments.claims import ClaimResult, exceeds, fmt, mean_std
from assocmem.experiments.common import (TaskFields, Training, accuracy_row, keep_best_lr, specs_for, stack, train_grid,
                                         training)
from assocmem.experiments.registry import Context, Experiment, Result
from assocmem.lca.analysis import attention_by_cluster, attention_by_token
from assocmem.lca.model import ModelConfig
from assocmem.lca.task import LCAConfig, sample_batch
from assocmem.plotting import new_figure, save_figure
from assocmem.runtime import make_generator

CLUSTER_BITS = {"cluster1": 1, "cluster2": 2}


@dataclass(frozen=True)
class AttentionStudy(TaskFields):
    lca: LCAConfig  # the task: m = 8 in the paper, neighbourhood cluster1 (Fig. 3c / C.7) or cluster2 (C.8)
    d: int  # embedding dimension
    eval_samples: int = 8192  # fresh contexts for the attention maps
    eval_seed: int = 4321
    training: Training = field(default_factory=training)


def cluster_attention(models, task, x) -> dict:
    """Per model (seed order): mean attention per occurrence on same- vs other-cluster context tokens, × L (1 is
    uniform attention), averaged over last tokens; and the models' mean (V, V) heatmap × L (None where a pair
    never occurs). `models` have weights with a leading dimension of 1; x (B, L) are the shared contexts."""
    bits = CLUSTER_BITS[task.neighborhood]
    same, other = [], []
    for m in models:
        table = attention_by_cluster(m.weights, task, x, bits)
        same.append(float(table["same_cluster"].mean()) * task.L)
        other.append(float(table["other_cluster"].mean()) * task.L)
    heatmap = (attention_by_token(stack(models), task, x) * task.L).cpu().numpy()[: task.V, : task.V]
    return {"same": same, "other": other, "bits": bits,
            "heatmap": np.where(np.isnan(heatmap), None, np.round(heatmap, 4)).tolist()}


def attention_rows(setting: str, att: dict) -> list[dict]:
    """The report rows of one setting's `cluster_attention`."""
    rows = []
    for name, values in (("attention per same-cluster token (× L)", att["same"]),
                         ("attention per other-cluster token (× L)", att["other"]),
                         ("ratio same / other", [a / b for a, b in zip(att["same"], att["other"])])):
        mean, std = mean_std(values)
        rows.append({"setting": setting, "quantity": name, "ours": mean, "err": std})
    return rows


ATTENTION_CRITERION = ("mean attention per occurrence on same-cluster tokens minus other-cluster tokens, per seed "
                       "(averaged over last tokens), > 2 SE over seeds")


def attention_numbers(setting: str, att: dict) -> tuple[bool, str]:
    ok, text = exceeds([a - b for a, b in zip(att["same"], att["other"])])
    return ok, f"{setting}: same − other {text} (× L); ratio {fmt(np.mean(att['same']) / np.mean(att['other']), 2)}"


def attention_claim(same: list[float], other: list[float], setting: str) -> ClaimResult:
    """The claim of §5.4 / §6.3 from each seed's mean attention per same-cluster and per other-cluster token (× L)."""
    ok, text = attention_numbers(setting, {"same": same, "other": other})
    return ClaimResult("attention-cluster", ok, ATTENTION_CRITERION, text)


def run_attention(s: AttentionStudy, ctx: Context) -> Result:
    task = s.task()
    specs = specs_for(task, ModelConfig(d=s.d), s.training, f"d={s.d}")
    models = sorted(keep_best_lr(train_grid(specs, s.training, ctx, end=0.9)), key=lambda m: m.spec.seed)
    x, _ = sample_batch(task, s.eval_samples, make_generator(s.eval_seed, ctx.device), ctx.device)
    att = cluster_attention(models, task, x)
    rows = [accuracy_row(f"m={s.m}, L={s.L}, d={s.d}, {s.neighborhood}", "accuracy",
                         [m.final_accuracy for m in models], [m.bayes_optimal_accuracy for m in models])]
    rows += attention_rows(f"{s.neighborhood} ({2 ** att['bits']} clusters)", att)
    claim = attention_claim(att["same"], att["other"], s.neighborhood)
    return Result(rows=rows, claims=[claim],
                  data={"heatmap": att["heatmap"], "m": s.m, "bits": att["bits"], "same": att["same"],
                        "other": att["other"], "L": s.L})


def draw_heatmap(ax, heatmap: list, bits: int, title: str):
    """One attention heatmap (rows: last token, columns: context token) with the cluster blocks outlined."""
    heat = np.array([[np.nan if v is None else v for v in row] for row in heatmap], dtype=float)
    V = heat.shape[0]
    image = ax.imshow(heat, cmap="viridis", origin="upper", interpolation="nearest")
    for b in range(1, 2**bits):
        edge = b * V / 2**bits - 0.5
        ax.axhline(edge, color="white", linewidth=0.8)
        ax.axvline(edge, color="white", linewidth=0.8)
    ax.grid(False)
    ax.set_xlabel("context token t")
    ax.set_ylabel("last token t_L")
    ax.set_title(title, fontsize=9)
    return image


def plot_attention(result: Result, folder: Path) -> list[Path]:
    fig, axes = new_figure(4.6, 4.0)
    ax = axes[0][0]
    bits = result.data["bits"]
    image = draw_heatmap(ax, result.data["heatmap"], bits,
                         f"Mean attention × L (1 = uniform), m={result.data['m']}, {2**bits} clusters")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return [save_figure(fig, folder / "attention_heatmap.png")]


def _study(m: int, L: int, d: int, neighborhood: str, training: Training, eval_samples: int) -> AttentionStudy:
    return AttentionStudy(LCAConfig(m=m, L=L, neighborhood=neighborhood), d=d, eval_samples=eval_samples,
                          training=training)


QUICK_TRAINING = training(seeds=3, steps=1000, batch_size=128)
FULL_TRAINING = training(seeds=5, steps=4000, batch_size=256, lrs=(0.01, 0.001), warmup_steps=200, eval_samples=16384)

EXPERIMENTS = [
    Experiment("fig3c", "Attention heatmap, one-latent clusters", "Fig. 3(c), Fig. C.7, §5.4, §6.3",
               _study(8, 64, 32, "cluster1", QUICK_TRAINING, 4096), _study(8, 64, 128, "cluster1", FULL_TRAINING, 32768),
               run_attention, plot_attention, claims=("attention-cluster",), aliases=("c7",)),
    Experiment("c8", "Attention heatmap, two-latent clusters", "Fig. C.8, App. C.3",
               _study(8, 64, 32, "cluster2", QUICK_TRAINING, 4096), _study(8, 64, 128, "cluster2", FULL_TRAINING, 32768),
               run_attention, plot_attention, claims=("attention-cluster",)),
]
