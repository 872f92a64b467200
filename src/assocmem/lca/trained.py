"""What training gives: trained one-layer models with their settings, weights, accuracies and history, as
one typed result (`TrainedModels`) that a notebook reads as tensors and DataFrames and a folder keeps.

    models = train_models(LCAConfig(m=5, L=32), ModelConfig(d=32), TrainConfig(steps=300), seeds=range(4))
    models.W_V                  # (4, d, d): every model's value matrix, stacked on the model dimension
    models.table                # one row per model: settings, final and Bayes-optimal accuracy, the gap
    models.history              # long: model, seed, label, step, loss, accuracy
    models.save("runs/lca"); TrainedModels.load("runs/lca")

A folder holds the weights in the one weights format (`lca.weights`) and `summary.json` (per model its
settings and accuracies, their means, the training settings and the loss curve).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from assocmem.config import to_dict
from assocmem.errors import ConfigError
from assocmem.lca import weights as fmt
from assocmem.lca.model import ModelConfig
from assocmem.lca.task import LCAConfig
from assocmem.lca.train_config import RunSpec, TrainConfig

HISTORY_COLUMNS = ("step", "loss", "accuracy")


def _no_history() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "step" else "float64") for c in HISTORY_COLUMNS})


@dataclass
class TrainedModel:
    """One trained model: what it is (its RunSpec), its weights (each with a leading model dimension of 1,
    e.g. W_E (1, d, V)), its final accuracy and the Bayes-optimal accuracy on the same fresh contexts, and its
    history (columns step, loss, accuracy; empty where a folder kept none). `task`, `model`, `lr`, `seed` and
    `label` read its spec."""

    spec: RunSpec
    weights: dict[str, torch.Tensor]
    final_accuracy: float
    bayes_optimal_accuracy: float
    history: pd.DataFrame = field(default_factory=_no_history, repr=False)

    @property
    def gap_to_bayes(self) -> float:
        return self.bayes_optimal_accuracy - self.final_accuracy

    task, model, lr, seed, label = (property(attrgetter(f"spec.{name}"))
                                    for name in ("task", "model", "lr", "seed", "label"))

    def entry(self, index: int) -> dict[str, Any]:
        """Its metadata entry in a weights file (`index`: its place in the set it is saved with)."""
        return {"task": dataclasses.asdict(self.spec.task), "model": dataclasses.asdict(self.spec.model),
                "lr": self.spec.lr, "seed": self.spec.seed, "label": self.spec.label,
                "final_accuracy": self.final_accuracy, "bayes_optimal_accuracy": self.bayes_optimal_accuracy,
                "index": index}

    @classmethod
    def from_entry(cls, entry: dict[str, Any], tensors: dict[str, torch.Tensor], e: int) -> "TrainedModel":
        spec = RunSpec(LCAConfig(**entry["task"]), ModelConfig(**entry["model"]), entry["lr"], entry["seed"],
                       entry["label"])
        return cls(spec, {n: tensors[n][e:e + 1] for n in fmt.NAMES}, entry["final_accuracy"],
                   entry["bayes_optimal_accuracy"])


@dataclass
class TrainedModels(Sequence):
    """Models trained together, in the order of their specs, and the training settings (`train`; None where a
    folder did not record them). A sequence of TrainedModel; the rest are views of it."""

    models: list[TrainedModel]
    train: TrainConfig | None = None

    def __len__(self) -> int:
        return len(self.models)

    def __iter__(self) -> Iterator[TrainedModel]:
        return iter(self.models)

    def __getitem__(self, i):
        return TrainedModels(self.models[i], self.train) if isinstance(i, slice) else self.models[i]

    @property
    def specs(self) -> list[RunSpec]:
        return [m.spec for m in self.models]

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """{W_E, W_Q, W_K, W_V}, each (E, ...): the models stacked on the model dimension (one shape)."""
        shapes = {tuple(tuple(m.weights[n].shape) for n in fmt.NAMES) for m in self.models}
        if len(shapes) > 1:
            raise ConfigError(f"models={len(self.models)} of {len(shapes)} shapes cannot be stacked: allowed one "
                              "shape (select the models of one d, e.g. models.select(d=32))")
        return {n: torch.cat([m.weights[n] for m in self.models]) for n in fmt.NAMES}

    W_E = property(lambda self: self.weights["W_E"], doc="(E, d, V)")
    W_Q = property(lambda self: self.weights["W_Q"], doc="(E, d_a, d)")
    W_K = property(lambda self: self.weights["W_K"], doc="(E, d_a, d)")
    W_V = property(lambda self: self.weights["W_V"], doc="(E, d, d)")

    @property
    def final_accuracy(self) -> list[float]:
        return [m.final_accuracy for m in self.models]

    @property
    def bayes_optimal_accuracy(self) -> list[float]:
        return [m.bayes_optimal_accuracy for m in self.models]

    @property
    def gap_to_bayes(self) -> list[float]:
        return [m.gap_to_bayes for m in self.models]

    @property
    def table(self) -> pd.DataFrame:
        """One row per model: model (its place), seed, lr, label, every task and model setting, final_accuracy,
        bayes_optimal_accuracy, gap_to_bayes."""
        rows = [{"model": e, "seed": m.seed, "lr": m.lr, "label": m.label, **dataclasses.asdict(m.task),
                 **dataclasses.asdict(m.model), "final_accuracy": m.final_accuracy,
                 "bayes_optimal_accuracy": m.bayes_optimal_accuracy, "gap_to_bayes": m.gap_to_bayes}
                for e, m in enumerate(self.models)]
        return pd.DataFrame(rows)

    @property
    def history(self) -> pd.DataFrame:
        """Long: model, seed, label, step, loss (mean training loss over the window), accuracy."""
        frames = [m.history.assign(model=e, seed=m.seed, label=m.label) for e, m in enumerate(self.models)]
        columns = ["model", "seed", "label", *HISTORY_COLUMNS]
        return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)

    def select(self, **match: Any) -> "TrainedModels":
        """The models whose table row has every column equal to `match`'s value (or in it, for a list)."""
        from assocmem.tables import where

        return TrainedModels([self.models[e] for e in where(self.table, **match)["model"]], self.train)

    def save(self, folder: str | Path, weights_only: bool = False, **extra: Any) -> Path:
        """Write the folder: the weights (one file per shape) and, unless `weights_only`, summary.json (any JSON
        `extra` first, e.g. the run's config; then per model its seed and accuracies, their means, the table
        and the loss curve)."""
        from assocmem.io import write_json

        folder = Path(folder)
        groups: dict[tuple, list[int]] = {}
        for e, m in enumerate(self.models):
            groups.setdefault(tuple(tuple(m.weights[n].shape) for n in fmt.NAMES), []).append(e)
        train = {"train": to_dict(self.train)} if self.train is not None else {}
        for name, members in zip(fmt.file_names(len(groups)), groups.values()):
            stacked = {n: torch.cat([self.models[e].weights[n] for e in members]) for n in fmt.NAMES}
            fmt.write(folder / name, stacked, [self.models[e].entry(e) for e in members], **train)
        if not weights_only:
            table = self.table
            columns = ("final_accuracy", "bayes_optimal_accuracy", "gap_to_bayes")
            write_json(folder / "summary.json", {
                **extra, **({} if "config" in extra else train), "seeds": table["seed"].tolist(),
                **{c: table[c].tolist() for c in columns},
                "mean": {c: _mean(table[c]) for c in columns}, "models": table.to_dict(orient="records"),
                "loss_curve": self.history.drop(columns="label").to_dict(orient="records"),
                "weights": [p.name for p in fmt.folder_files(folder)]})
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str = "cpu") -> "TrainedModels":
        """The models a folder holds (written by `save`, `assocmem lca train` or an experiment), in their
        saved order, with their loss curve where its summary.json keeps one."""
        from assocmem.io import read_json

        files = fmt.folder_files(folder)
        if not files:
            raise ConfigError(f"folder={str(folder)!r} is invalid: allowed a folder with weights*.safetensors "
                              "(from assocmem lca train, TrainedModels.save or an LCA experiment)", field="folder")
        placed, train = [], None
        for path in files:
            tensors, entries, meta = fmt.read(path, device)
            raw = meta.get("train") or meta.get("config", {}).get("train")
            train = TrainConfig(**raw) if raw else train
            placed += [(entry.get("index", len(placed) + e), TrainedModel.from_entry(entry, tensors, e))
                       for e, entry in enumerate(entries)]
        models = [m for _, m in sorted(placed, key=lambda p: p[0])]
        summary = Path(folder) / "summary.json"
        curve = read_json(summary).get("loss_curve") if summary.is_file() else None
        if curve and "model" in curve[0]:
            frame = pd.DataFrame(curve)
            for e, m in enumerate(models):
                m.history = frame[frame["model"] == e][list(HISTORY_COLUMNS)].reset_index(drop=True)
        return cls(models, train)


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else math.nan
