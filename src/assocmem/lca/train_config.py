"""What a training run is told: the optimisation shared by its models (`TrainConfig`) and each model's own
task, architecture, learning rate and seed (`RunSpec`), checked at construction. The trainer is
`lca.train`; what it returns is `lca.trained`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from assocmem.config import as_tuple, check_choice, check_float_range, check_int_range, option
from assocmem.errors import bad_option
from assocmem.lca.model import ModelConfig
from assocmem.lca.task import LCAConfig

SCHEDULES: tuple[str, ...] = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every model of a run (the paper: AdamW, lr in {0.01, 0.001}).

    The defaults learn: on fresh samples with omega = 0.5, beta = 1, neighbourhood all, two seeds,
    m = 5, L = 64, d = 64 reaches 0.922 (Bayes-optimal 0.930); m = 8, L = 64, d = 128 reaches 0.823
    (Bayes 0.918; 0.857 after 5000 steps) and m = 8, L = 128, d = 128 0.965 (Bayes 0.996). lr = 0.001
    was worse in every one of these settings at 2000 and 5000 steps.
    """

    steps: int = option(2000, "Optimizer steps; every step draws a fresh batch for every model.")
    batch_size: int = option(256, "Contexts per model per step.")
    lr: float = option(0.01, "Peak AdamW learning rate (a RunSpec may override it per model).")
    weight_decay: float = option(0.01, "AdamW's decoupled weight decay, on every trainable matrix.")
    warmup_steps: int = option(100, "Linear warm-up from 0 to lr (Adam's first steps are full-size sign steps).")
    schedule: str = option("cosine", "After the warm-up: cosine (decays to 0 at the last step) | constant.")
    eval_every: int = option(200, "Steps between history rows (mean training loss and accuracy).")
    eval_samples: int = option(4096, "Fresh contexts per model for each accuracy evaluation.")
    bayes: bool = option(True, "Compute the Bayes-optimal accuracy on the final evaluation samples.",
                         flag="--bayes/--no-bayes")
    betas: tuple[float, float] = option((0.9, 0.999), "AdamW's (beta1, beta2): torch's default; the authors use "
                                                      "(0.9, 0.99).")

    def __post_init__(self) -> None:
        check_int_range("steps", self.steps, 1)
        check_int_range("batch_size", self.batch_size, 1)
        check_float_range("lr", self.lr, 0.0, None, lo_open=True)
        check_float_range("weight_decay", self.weight_decay, 0.0, None)
        check_int_range("warmup_steps", self.warmup_steps, 0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int_range("eval_every", self.eval_every, 1)
        check_int_range("eval_samples", self.eval_samples, 1)
        if not isinstance(self.bayes, bool):
            raise bad_option("bayes", self.bayes, "true or false")
        object.__setattr__(self, "betas", as_tuple("betas", self.betas, float, "two numbers (beta1, beta2) in [0, 1)"))
        if len(self.betas) != 2:
            raise bad_option("betas", self.betas, "two numbers (beta1, beta2) in [0, 1)")
        for beta in self.betas:
            check_float_range("betas", beta, 0.0, 1.0, hi_open=True)

    def lr_factor(self, step: int) -> float:
        """Multiplier of the peak lr at optimizer step `step` (1-based)."""
        if step <= self.warmup_steps:
            return step / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    def lr_factors(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(steps,) float64: lr_factor(1), ..., lr_factor(steps), for an optimizer that reads its step's
        factor on the device."""
        return torch.tensor([self.lr_factor(s) for s in range(1, self.steps + 1)], dtype=torch.float64,
                            device=device)


@dataclass(frozen=True)
class RunSpec:
    """One model to train: its task, its architecture, its learning rate and its seed."""

    task: LCAConfig
    model: ModelConfig
    lr: float
    seed: int
    label: str = ""

    def __post_init__(self) -> None:
        check_float_range("lr", self.lr, 0.0, None, lo_open=True)
        check_int_range("seed", self.seed, 0, 2**63 - 1)
