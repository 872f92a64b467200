"""The one weights format of the one-layer models: what `assocmem lca train` writes and every
experiment reads.

    <name>.safetensors   W_E (E, d, V), W_Q, W_K (E, d_a, d), W_V (E, d, d): E models of one shape,
                         stacked on the leading model dimension; metadata "models" (JSON): one entry
                         per model (task, model config, lr, seed, label, final and Bayes-optimal
                         accuracy), and any further JSON entries the writer adds (e.g. "config")

A folder holds one file per shape (`lca train` writes one, `weights.safetensors`); `read_folder`
reads every such file in it. Writes are atomic (io.atomic_write).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from assocmem.io import atomic_write
from assocmem.lca.model import ModelConfig
from assocmem.lca.task import LCAConfig

NAMES = ("W_E", "W_Q", "W_K", "W_V")


@dataclass
class StoredModel:
    """One model read back: its settings, accuracies and weights (each with a leading dimension of 1)."""

    task: LCAConfig
    model: ModelConfig
    lr: float
    seed: int
    label: str
    final_accuracy: float
    bayes_optimal_accuracy: float
    weights: dict[str, torch.Tensor]

    def entry(self) -> dict[str, Any]:
        return {"task": asdict(self.task), "model": asdict(self.model), "lr": self.lr, "seed": self.seed,
                "label": self.label, "final_accuracy": self.final_accuracy,
                "bayes_optimal_accuracy": self.bayes_optimal_accuracy}


def entry_of(spec, final_accuracy: float, bayes_optimal_accuracy: float) -> dict[str, Any]:
    """The metadata entry of a trained model (train.RunSpec + its accuracies)."""
    return {"task": asdict(spec.task), "model": asdict(spec.model), "lr": spec.lr, "seed": spec.seed,
            "label": spec.label, "final_accuracy": final_accuracy, "bayes_optimal_accuracy": bayes_optimal_accuracy}


def write(path: str | Path, weights: dict[str, torch.Tensor], entries: Sequence[dict], **extra: Any) -> Path:
    """E models of one shape (weights (E, ...)) and their entries into one safetensors file."""
    from safetensors.torch import save_file

    if any(weights[n].shape[0] != len(entries) for n in NAMES):
        raise ValueError("one metadata entry per model: the weights' leading dimension must equal len(entries)")
    tensors = {n: weights[n].detach().cpu().contiguous() for n in NAMES}
    metadata = {"models": json.dumps(list(entries)), **{k: json.dumps(v) for k, v in extra.items()}}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def read(path: str | Path, device: torch.device | str = "cpu") -> tuple[list[StoredModel], dict[str, Any]]:
    """(the models of one file, its other metadata entries)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as fh:
        meta = {k: json.loads(v) for k, v in (fh.metadata() or {}).items()}
        tensors = {n: fh.get_tensor(n) for n in NAMES}
    models = [StoredModel(LCAConfig(**e["task"]), ModelConfig(**e["model"]), e["lr"], e["seed"], e["label"],
                          e["final_accuracy"], e["bayes_optimal_accuracy"],
                          {n: tensors[n][i:i + 1].to(device) for n in NAMES})
              for i, e in enumerate(meta.pop("models"))]
    return models, meta


def write_folder(folder: str | Path, groups: Sequence[tuple[dict[str, torch.Tensor], Sequence[dict]]]) -> list[Path]:
    """One file per shape group: weights.safetensors for one group, else weights-<k>.safetensors."""
    folder = Path(folder)
    if len(groups) == 1:
        return [write(folder / "weights.safetensors", *groups[0])]
    return [write(folder / f"weights-{k}.safetensors", w, e) for k, (w, e) in enumerate(groups)]


def read_folder(folder: str | Path, device: torch.device | str = "cpu") -> list[StoredModel]:
    """Every model of every weights file in `folder`, in file order."""
    files = sorted(Path(folder).glob("weights*.safetensors"), key=lambda p: (len(p.name), p.name))
    return [m for f in files for m in read(f, device)[0]]
