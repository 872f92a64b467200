"""The one weights format of the one-layer models: what `assocmem lca train` writes and every
experiment reads (through `lca.trained.TrainedModels.save` / `.load`).

    <name>.safetensors   W_E (E, d, V), W_Q, W_K (E, d_a, d), W_V (E, d, d): E models of one shape,
                         stacked on the leading model dimension; metadata "models" (JSON): one entry
                         per model (task, model config, lr, seed, label, final and Bayes-optimal
                         accuracy, and its place in the set it was saved with), and any further JSON
                         entries the writer adds (e.g. "train")

A folder holds one file per shape (`weights.safetensors` for one shape, else `weights-<k>.safetensors`).
Writes are atomic (io.atomic_write).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from assocmem.io import atomic_write

NAMES = ("W_E", "W_Q", "W_K", "W_V")


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


def read(path: str | Path, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], list[dict], dict]:
    """(the weights (E, ...) of one file, its E model entries, its other metadata entries)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as fh:
        meta = {k: json.loads(v) for k, v in (fh.metadata() or {}).items()}
        tensors = {n: fh.get_tensor(n).to(device) for n in NAMES}
    return tensors, meta.pop("models"), meta


def folder_files(folder: str | Path) -> list[Path]:
    """The weights files of a folder, in the order they were written."""
    return sorted(Path(folder).glob("weights*.safetensors"), key=lambda p: (len(p.name), p.name))


def file_names(groups: int) -> list[str]:
    """The file of each of `groups` shape groups: weights.safetensors for one, else weights-<k>.safetensors."""
    return ["weights.safetensors"] if groups == 1 else [f"weights-{k}.safetensors" for k in range(groups)]
