"""`assocmem lca train` as a library pipeline: a task, a model, a training protocol and seeds in one
config, trained together and written to a run folder.

    models = run_training(LCATrainConfig.of(protocol="paper", m=6, L=64, d=64, seeds=(0, 1, 2)), "runs/lca")

`LCATrainConfig.of` starts from the protocol's preset (`lca.protocols`: "ours", or "paper", the authors'
released protocol) and sets the leaves it is given on top, so `--protocol paper --steps 1000` is the
authors' protocol with 1,000 steps. The folder is `TrainedModels.save`'s: weights.safetensors and
summary.json (the resolved config, per model its accuracies and the Bayes gap, the loss curve).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assocmem.config import Composed, as_tuple, check_choice, flat_dict, from_flat, option, to_dict
from assocmem.errors import ConfigError, bad_option
from assocmem.lca.model import ModelConfig
from assocmem.lca.protocols import PROTOCOLS, protocol as named_protocol
from assocmem.lca.task import LCAConfig
from assocmem.lca.train import train_models
from assocmem.lca.train_config import TrainConfig
from assocmem.lca.trained import TrainedModels


@dataclass(frozen=True)
class LCATrainConfig(Composed):
    """One model per seed on one LCA setting, trained together (`assocmem lca train`)."""

    LAYERED = True  # built in layers: the protocol's preset, then the settings given (`of`; the CLI passes only those)

    task: LCAConfig = option(factory=LCAConfig)
    model: ModelConfig = option(factory=ModelConfig)
    train: TrainConfig = option(factory=TrainConfig)
    seeds: tuple[int, ...] = option((0,), "Seeds, one model each, e.g. --seeds 0 1 2.")
    protocol: str = option("ours", "Training protocol preset (assocmem.lca.protocols): ours | paper (the authors': "
                                   "2^m + 1 tokens, PyTorch's default init, AdamW (0.9, 0.99), a constant lr 0.01, "
                                   "batch 256, 500 steps); every other option set changes the preset.")
    device: str = option("auto", "auto | cpu | cuda | cuda:N.")

    def __post_init__(self) -> None:
        from assocmem.runtime import check_device

        seeds = as_tuple("seeds", self.seeds, int, "non-negative integers, e.g. 0 1 2")
        if not seeds or any(s < 0 for s in seeds):
            raise bad_option("seeds", " ".join(map(str, seeds)), "non-negative integers, e.g. 0 1 2")
        if len(set(seeds)) != len(seeds):
            raise bad_option("seeds", " ".join(map(str, seeds)), "distinct seeds")
        object.__setattr__(self, "seeds", seeds)
        check_choice("protocol", self.protocol, PROTOCOLS)
        check_device(self.device)

    @classmethod
    def of(cls, protocol: str = "ours", **leaves: Any) -> "LCATrainConfig":
        """The config of `protocol`'s preset with `leaves` (any leaf name: m, d, steps, seeds, ...) set on top."""
        p = named_protocol(protocol)
        preset = {"extra_tokens": p.extra_tokens, "init": p.init, **flat_dict(p.train)}
        return from_flat(cls, {**preset, **leaves, "protocol": protocol}, strict=True)

    def resolved(self) -> dict[str, Any]:
        """The config as JSON, with the model's defaults resolved (d_a, the init std)."""
        out = to_dict(self)
        out["model"] |= {"d_a": self.model.head_size, "init_std": self.model.std if self.model.init == "gaussian"
                         else None}
        return out


def run_training(config: LCATrainConfig, out: str | Path | None = None, progress: bool = False) -> TrainedModels:
    """Train `config`'s models; with `out`, a new or empty folder, write them there (checked before training)."""
    if out is not None:
        check_new_folder(out)
    start = time.perf_counter()
    models = train_models(config.task, config.model, config.train, config.seeds, device=config.device,
                          progress=progress)
    if out is not None:
        models.save(out, config=config.resolved(), elapsed_s=time.perf_counter() - start)
    return models


def check_new_folder(out: str | Path) -> None:
    """`out` must be a new or empty folder: a run never overwrites another's summary and weights."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        held = ", ".join(sorted(p.name for p in out.iterdir())[:3]) if out.is_dir() else "a file"
        raise ConfigError(f"out={str(out)!r} is invalid: allowed a new or empty folder (it holds {held}); "
                          "choose another folder, or delete it to train again", field="out")
