"""Named training protocols: the project's own ("ours") and the authors' ("paper"), as configuration of the
one batched trainer (`lca.train`), never as a second trainer.

    >>> p = protocol("paper")
    >>> task, model = p.task(m=6, L=64), p.model(d=64)   # 2^6 + 1 tokens, PyTorch's default init
    >>> train_models(task, model, p.train, seeds=range(10))

The paper protocol is read from the authors' released code of the synthetic half (ybjiaang/mem-llm @
99a1cda: dataset.py, model.py, main.py, config/generate_config.py):

* data: a vocabulary of 2^m + 1 tokens, the last never drawn; the uniform part of p(z|z*) over all 2^m
  latent tokens (z* included); omega = 0.5, beta = 1 (our LCAConfig defaults);
* model: nn.Embedding's N(0, 1) for W_E (tied output), nn.Linear's default U(-1/sqrt(d), 1/sqrt(d)) for
  W_Q, W_K, W_V; no positional encoding, norm, MLP or residual; W_O = I (ours has none either);
* training: AdamW, weight decay 0.01, betas (0.9, 0.99), eps 1e-8, batch 256, 500 steps, a constant learning
  rate with no warm-up; fresh samples every step;
* evaluation: accuracy (argmax at the last position) on one fresh batch of 1,024 contexts per model.

The learning rate is per figure in their configs (0.01 or 0.001, see the paper-protocol experiments); the
preset's is the most common, 0.01. Their runs are unseeded; ours are seeded, so only means are compared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from assocmem.errors import ConfigError, did_you_mean
from assocmem.lca.model import ModelConfig
from assocmem.lca.task import LCAConfig
from assocmem.lca.train_config import TrainConfig


@dataclass(frozen=True)
class Protocol:
    """How models are built and trained, apart from the figure's own grid (m, L, d, arms, learning rate)."""

    name: str
    extra_tokens: int  # vocabulary entries never drawn (LCAConfig.extra_tokens)
    init: str  # ModelConfig.init
    train: TrainConfig  # the optimisation and the evaluation

    def task(self, **fields: Any) -> LCAConfig:
        """An LCAConfig of this protocol; `fields` set the rest (m, L, omega, ...)."""
        return LCAConfig(**{"extra_tokens": self.extra_tokens, **fields})

    def model(self, **fields: Any) -> ModelConfig:
        """A ModelConfig of this protocol; `fields` set the rest (d, freeze switches, ...)."""
        return ModelConfig(**{"init": self.init, **fields})

    def training(self, **fields: Any) -> TrainConfig:
        """This protocol's TrainConfig with some fields changed (e.g. lr, steps)."""
        return replace(self.train, **fields)


PROTOCOLS: dict[str, Protocol] = {
    # The project's own: Gaussian init at 1/sqrt(d), 2,000 steps with a 100-step warm-up and cosine decay,
    # accuracy on 4,096 fresh contexts (the TrainConfig and ModelConfig defaults).
    "ours": Protocol("ours", extra_tokens=0, init="gaussian", train=TrainConfig()),
    "paper": Protocol("paper", extra_tokens=1, init="torch",
                      train=TrainConfig(steps=500, batch_size=256, lr=0.01, weight_decay=0.01, warmup_steps=0,
                                        schedule="constant", eval_every=500, eval_samples=1024,
                                        betas=(0.9, 0.99))),
}


def protocol(name: str) -> Protocol:
    """The named protocol ("ours" or "paper"); an unknown name fails with a "did you mean" hint."""
    if name not in PROTOCOLS:
        close = did_you_mean(name, list(PROTOCOLS), cutoff=0.5)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ConfigError(f"protocol={name!r} is invalid: allowed one of {', '.join(PROTOCOLS)}{hint}",
                          field="protocol")
    return PROTOCOLS[name]
