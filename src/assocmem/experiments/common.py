"""Shared pieces of the LCA experiments: training settings, batched training of a grid with progress,
saving and reading trained weights, seed statistics, and the Bayes-optimal reference line.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from pathlib import Path
from typing import Any

import torch

from assocmem.config import check_float_range, check_int_range
from assocmem.experiments.claims import mean_std
from assocmem.experiments.registry import Context
from assocmem.lca.model import ModelConfig
from assocmem.lca.task import LCAConfig
from assocmem.lca.train import RunSpec, TrainConfig, TrainedModel, TrainedModels, shape_key, train_sweep

BAYES_STYLE = {"linestyle": "--", "linewidth": 1.2, "alpha": 0.8}


@dataclass(frozen=True)
class Training:
    """How the models of one experiment are trained: seeds and candidate learning rates around one
    TrainConfig (AdamW as in the paper; the rest is our choice). Build it with `training(...)`."""

    seeds: int  # models per setting (seeds 0..seeds-1); error bars are over these
    lrs: tuple[float, ...]  # candidate peak learning rates; the best mean accuracy per setting is kept
    train: TrainConfig  # the optimisation (its lr is replaced by each of lrs)

    def __post_init__(self) -> None:
        check_int_range("seeds", self.seeds, 1)
        if not self.lrs:
            raise ValueError("lrs must hold at least one learning rate")
        for lr in self.lrs:
            check_float_range("lr", lr, 0.0, None, lo_open=True)

    @property
    def steps(self) -> int:
        return self.train.steps

    def config(self) -> TrainConfig:
        return replace(self.train, lr=self.lrs[0])


def training(seeds: int = 3, steps: int = 500, batch_size: int = 128, lrs: tuple[float, ...] = (0.01,),
             weight_decay: float = 0.01, warmup_steps: int = 50, schedule: str = "cosine",
             eval_samples: int = 4096) -> Training:
    """The experiments' training: a linear warm-up (at most the run), one final evaluation on
    `eval_samples` fresh contexts (with its Bayes-optimal ceiling)."""
    return Training(seeds, tuple(lrs), TrainConfig(steps=steps, batch_size=batch_size, lr=lrs[0],
                                                   weight_decay=weight_decay, warmup_steps=min(warmup_steps, steps),
                                                   schedule=schedule, eval_every=steps, eval_samples=eval_samples))


class TaskFields:
    """A study declares its task once, as an LCAConfig (`lca`); m, L, omega, beta, neighborhood read its fields."""

    m, L, omega, beta, neighborhood = (property(attrgetter(f"lca.{name}"))
                                       for name in ("m", "L", "omega", "beta", "neighborhood"))

    def task(self) -> LCAConfig:
        return self.lca


def specs_for(task: LCAConfig, model: ModelConfig, training: Training, label: str) -> list[RunSpec]:
    """One RunSpec per (lr, seed)."""
    return [RunSpec(task, model, lr, seed, label) for lr in training.lrs for seed in range(training.seeds)]


def train_grid(specs: Sequence[RunSpec], training: Training | TrainConfig, ctx: Context, start: float = 0.0,
               end: float = 1.0) -> list[TrainedModel]:
    """Train every spec (specs of one `train.shape_key` as one batch, whatever their arm, lr and seed, via
    train_sweep), reporting progress between batches on the [start, end] part of the experiment's progress bar."""
    config = training.config() if isinstance(training, Training) else training
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, s in enumerate(specs):
        groups[shape_key(s)].append(i)
    cost = {key: len(idx) * key[1] * key[3] for key, idx in groups.items()}  # models × L × d
    total, done = sum(cost.values()), 0.0
    out: list[TrainedModel | None] = [None] * len(specs)
    for key, indices in groups.items():
        ctx.progress(start + (end - start) * done / total, f"training {len(indices)} models (m={key[0]}, L={key[1]}, "
                                                           f"d={key[3]})")
        trained = train_sweep([specs[i] for i in indices], config, ctx.device, progress=False)
        for i, model in zip(indices, trained):
            out[i] = model
        done += cost[key]
    ctx.progress(end, "trained")
    return out  # type: ignore[return-value]


def keep_best_lr(models: Sequence[TrainedModel]) -> list[TrainedModel]:
    """Per label, keep the models of the learning rate with the best mean final accuracy (the paper
    picks the best of {0.01, 0.001} per dimension)."""
    by_label: dict[str, dict[float, list[TrainedModel]]] = defaultdict(lambda: defaultdict(list))
    for m in models:
        by_label[m.spec.label][m.spec.lr].append(m)
    kept: list[TrainedModel] = []
    for per_lr in by_label.values():
        best = max(per_lr.values(), key=lambda ms: sum(x.final_accuracy for x in ms) / len(ms))
        kept.extend(best)
    return kept


def save_models(models: Sequence[TrainedModel], folder: Path) -> None:
    """The models' weights in the one weights format (one file per shape), readable by `load_models`."""
    TrainedModels(list(models)).save(folder, weights_only=True)


def load_models(folder: Path, device: torch.device,
                where: Callable[[TrainedModel], bool] | None = None) -> list[TrainedModel]:
    """The models saved in `folder` (by `save_models` or `assocmem lca train`), optionally filtered."""
    return [m for m in TrainedModels.load(folder, device) if where is None or where(m)]


def stack(models: Iterable[Any]) -> dict[str, torch.Tensor]:
    """Concatenate the weights of several models (each E = 1) along the model dimension."""
    models = list(models)
    return {name: torch.cat([m.weights[name] for m in models]) for name in ("W_E", "W_Q", "W_K", "W_V")}


def accuracy_row(setting: str, quantity: str, accs: Sequence[float], bayes: Sequence[float]) -> dict[str, Any]:
    """A report row: mean ± std over seeds, with the Bayes-optimal accuracy of the same samples."""
    mean, std = mean_std(accs)
    bayes_mean = sum(bayes) / len(bayes)
    return {"setting": setting, "quantity": quantity, "ours": mean, "err": std, "bayes": bayes_mean, "n": len(accs)}


def draw_bayes(ax, x, bayes, label: str = "Bayes-optimal", color: str = "black") -> None:
    """The task's ceiling as a dashed reference: a line over x (one value per x) or a horizontal line."""
    if isinstance(bayes, (int, float)):
        ax.axhline(bayes, color=color, label=label, **BAYES_STYLE)
    else:
        ax.plot(x, bayes, color=color, label=label, **BAYES_STYLE)
