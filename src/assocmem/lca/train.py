"""Batched training of one-layer transformers on latent concept association (paper §4.2, §6).

E independent models (seeds × settings that share shapes) are trained at once as one set of batched
tensors. Each model is the model trained alone (equal in the tests and the benchmark, up to float
round-off of differently sized matrix products):

* its initial weights come from its own seed and its own ModelConfig (`OneLayerTransformer.from_seeds`),
  and its freeze switches are its own: a frozen matrix of model e gets a zero learning rate, so it stays
  exactly as it was, while other models of the batch train theirs;
* its training data come from its own generator, seeded from (seed, "train"), drawn by the one sampler
  (`task.Sampler`) on the device; a model may have its own omega, beta and neighbourhood (m and L shared);
* the loss is the SUM over models of each model's mean cross-entropy at the last position, so the
  gradient of model e's parameters is exactly the gradient of its own loss;
* AdamW is elementwise, and `BatchedAdamW` scales each model's update by its own learning rate
  (an (E, 1, 1) factor), which torch.optim.AdamW cannot do: a param group holds whole tensors.

One optimizer step (sampling, forward, backward, update) runs without host synchronisation: the
optimizer's step count and learning-rate schedule live on the device. On CUDA the step is captured
once as a CUDA graph and replayed (`_Steps`), so a step costs one launch instead of ~100; the host
waits only at history rows, where losses and accuracies are read. On the CPU the same step runs eagerly.

Accuracy is 1 − R(f) of §4.1 (argmax at the last position) on fresh samples of the same sampler; the
Bayes-optimal accuracy of the task is computed on the same final evaluation samples, so the gap between
the two is not sampling noise of two different sets.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from assocmem.config import check_int_range
from assocmem.errors import ConfigError
from assocmem.lca.accuracy import accuracy
from assocmem.lca.model import WEIGHT_NAMES, ModelConfig, OneLayerTransformer
from assocmem.lca.task import LCAConfig, Sampler
from assocmem.lca.train_config import RunSpec, TrainConfig  # noqa: F401  (the trainer's inputs)
from assocmem.lca.trained import TrainedModel, TrainedModels  # noqa: F401  (what it returns)
from assocmem.runtime import make_generator, resolve_device


class BatchedAdamW:
    """AdamW (Loshchilov & Hutter, as torch.optim.AdamW) with one learning rate per model.

    Every parameter has a leading model dimension E; `lr` has shape (E,). The update of each entry
    depends only on that entry's own gradient history, so model e's update is the one it would get
    alone with learning rate lr[e]. `trainable` (one (E,) bool per parameter) zeroes the learning rate of
    the models that keep that matrix frozen: their entries then stay exactly as they are (no update, no
    decay). `lr_factors` (steps,) is the schedule, read at the step count; the step count and everything
    derived from it are device tensors, so a step never waits for the host and can be captured as a graph.

    `fused` (default: on a GPU) runs the update as torch's fused AdamW kernel, one call per distinct learning
    rate over the per-model slices that train: one pass over the weights and their moments instead of the
    ten or so of the elementwise form (at large d that is much of a step: 20.2 → 14.6 ms for 20 models at
    d = 2048 on an H100, benchmarks/RESULTS.md). Same update, up to
    the rounding of the fused arithmetic (tested: ≤ 1e-6 after 50 steps); the CPU keeps the elementwise form,
    so CPU numbers stay exactly as they were.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lr: torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        trainable: Sequence[torch.Tensor] | None = None,
        lr_factors: torch.Tensor | None = None,
        fused: bool | None = None,
    ) -> None:
        self.params = list(params)
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay
        masks = trainable if trainable is not None else [torch.ones_like(lr, dtype=torch.bool)] * len(self.params)
        self.lr = [(lr * m.to(lr.dtype)).view(-1, *[1] * (p.dim() - 1)).to(p.dtype) for p, m in zip(self.params, masks)]
        device = lr.device
        self.lr_factors = lr_factors if lr_factors is not None else torch.ones(1, dtype=torch.float64, device=device)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros((), dtype=torch.float64, device=device)  # steps taken
        self.fused = bool(self.params) and (self.params[0].is_cuda if fused is None else fused)
        if self.fused:
            self.groups = self._slices_by_lr(lr, masks)

    def _slices_by_lr(self, lr: torch.Tensor,
                      masks: Sequence[torch.Tensor]) -> list[tuple[float, list[tuple[int, int]]]]:
        """Per distinct learning rate, the (parameter, model) slices it trains (a frozen slice is in none)."""
        rates, trains = lr.tolist(), [m.tolist() for m in masks]   # once, at construction
        groups = []
        for rate in sorted(set(rates) - {0.0}):
            where = [(k, e) for k in range(len(self.params)) for e, r in enumerate(rates) if r == rate and trains[k][e]]
            if where:
                groups.append((rate, where))
        return groups

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        if not self.params:
            return
        self.t += 1
        beta1, beta2 = self.betas
        index = (self.t.long() - 1).clamp(max=self.lr_factors.numel() - 1).view(1)
        factor = self.lr_factors.index_select(0, index)  # (1,) float64: this step's schedule
        if self.fused:
            self._fused_step(factor)
            return
        dtype = self.params[0].dtype
        decay = (factor * self.weight_decay).to(dtype)  # lr · weight_decay, per unit lr
        step_size = (factor / (1 - torch.pow(beta1, self.t))).to(dtype)  # lr / bias correction 1, per unit lr
        bias2_sqrt = (1 - torch.pow(beta2, self.t)).sqrt().to(dtype)
        grads = [p.grad for p in self.params]
        torch._foreach_lerp_(self.exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(self.exp_avg_sq, beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, value=1 - beta2)
        for p, m, v, lr in zip(self.params, self.exp_avg, self.exp_avg_sq, self.lr):  # lr: (E, 1, 1)
            p.mul_(1 - lr * decay)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            p.sub_((lr * step_size) * m / denom)

    def _fused_step(self, factor: torch.Tensor) -> None:
        steps = self.t.to(torch.float32)
        beta1, beta2 = self.betas
        for rate, where in self.groups:
            params = [self.params[k][e] for k, e in where]
            grads = [self.params[k].grad[e] for k, e in where]
            torch._fused_adamw_(params, grads, [self.exp_avg[k][e] for k, e in where],
                                [self.exp_avg_sq[k][e] for k, e in where], [], [steps] * len(where),
                                lr=(factor * rate).to(torch.float32), beta1=beta1, beta2=beta2,
                                weight_decay=self.weight_decay, eps=self.eps, amsgrad=False, maximize=False)


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named random stream of a run ("train", "eval", "final"), so that the
    streams of one seed are unrelated to each other and to the init, which uses `seed` itself."""
    digest = hashlib.sha256(f"{seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _bayes(tasks: Sequence[LCAConfig], x: torch.Tensor, y: torch.Tensor) -> list[float]:
    from assocmem.lca.bayes import expected_accuracy_on  # a sibling module of this one

    return [float(expected_accuracy_on(t, x[e], y[e])) for e, t in enumerate(tasks)]


def shape_key(spec: RunSpec) -> tuple:
    """Specs with equal keys can train as one batch: m and L (shared by the sampler), the vocabulary and
    the model's (d, d_a). Init law, freeze switches, omega, beta, neighbourhood, lr and seed are per model."""
    return (spec.task.m, spec.task.L, spec.task.vocab_size, *spec.model.shape)


class _Batch:
    """E models of one shape with their optimizer and training streams; `step()` is one optimizer step of
    every model, the per-model mean loss added into `window_loss` on the device (nothing read back)."""

    def __init__(self, specs: Sequence[RunSpec], train_cfg: TrainConfig, device: torch.device) -> None:
        seeds = [s.seed for s in specs]
        self.tasks, self.batch_size, self.E = [s.task for s in specs], train_cfg.batch_size, len(specs)
        self.module = OneLayerTransformer.from_seeds(self.tasks[0].vocab_size, [s.model for s in specs], seeds,
                                                     device)
        params = self.module.trainable_parameters()
        self.optimizer = BatchedAdamW(
            params, lr=torch.tensor([s.lr for s in specs], dtype=torch.float32, device=device),
            betas=train_cfg.betas, weight_decay=train_cfg.weight_decay,
            trainable=[self.module.trainable(n) for n in WEIGHT_NAMES if getattr(self.module, n).requires_grad],
            lr_factors=train_cfg.lr_factors(device),
        )
        self.sampler = Sampler(self.tasks, device)
        self.generators = [make_generator(stream_seed(s, "train"), device) for s in seeds]
        self.window_loss = torch.zeros(self.E, dtype=torch.float64, device=device)

    def step(self) -> None:
        self.optimizer.zero_grad()
        x, y = self.sampler.draw(self.generators, self.batch_size)
        logits = self.module(x).logits  # (E, B, V)
        per_model = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(self.E, -1).mean(1)
        if self.optimizer.params:
            per_model.sum().backward()
            self.optimizer.step()
        self.window_loss += per_model.detach()


class _Steps:
    """Runs `batch.step()`: on CUDA, a few eager warm-up steps on a side stream, then the step captured once
    as a CUDA graph (the per-model generators registered with it) and replayed; elsewhere, eagerly.

    Every call is one real optimizer step, the warm-up steps included. If capture is unavailable or fails,
    the steps stay eager (with a warning): slower, the same training. ASSOCMEM_CUDA_GRAPHS=0 turns capture off.
    """

    WARMUP = 3

    def __init__(self, batch: _Batch, device: torch.device, capture: bool | None = None) -> None:
        if capture is None:
            capture = device.type == "cuda" and os.environ.get("ASSOCMEM_CUDA_GRAPHS", "1") != "0"
        self.batch, self.capture, self.done, self.graph = batch, capture, 0, None

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        elif not self.capture:
            self.batch.step()
        elif self.done < self.WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.batch.step()
            torch.cuda.current_stream().wait_stream(side)
        else:
            self._capture()
        self.done += 1

    def _capture(self) -> None:
        try:
            graph = torch.cuda.CUDAGraph()
            for gen in self.batch.generators:
                graph.register_generator_state(gen)
            with torch.cuda.graph(graph):
                self.batch.step()
        except Exception as err:  # noqa: BLE001  (any capture failure: keep training eagerly)
            warnings.warn(f"CUDA graph capture failed ({type(err).__name__}: {err}); training eagerly", stacklevel=2)
            self.capture = False
            self.batch.step()
            return
        self.graph = graph
        graph.replay()  # capture records the step without running it


def _train_batch(
    specs: Sequence[RunSpec], train_cfg: TrainConfig, device: torch.device, progress: bool,
    capture: bool | None = None,
) -> TrainedModels:
    """Train the models of `specs` (one `shape_key`) as one batch; the host waits only at history rows."""
    tasks, seeds = [s.task for s in specs], [s.seed for s in specs]
    E, n = len(specs), train_cfg.eval_samples
    batch = _Batch(specs, train_cfg, device)
    run_step = _Steps(batch, device, capture)
    eval_sampler = Sampler(tasks, device)
    eval_gens = [make_generator(stream_seed(s, "eval"), device) for s in seeds]
    rows: list[dict] = []
    window = 0
    bar = _progress_bar(train_cfg.steps, progress)
    for step in range(1, train_cfg.steps + 1):
        run_step()
        window += 1
        if step % train_cfg.eval_every == 0 and step < train_cfg.steps:
            xe, ye = eval_sampler.draw(eval_gens, n)
            accs = accuracy(batch.module.weights(), xe, ye).tolist()
            rows += _rows(step, (batch.window_loss / window).tolist(), accs)
            batch.window_loss.zero_()
            window = 0
            bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}", acc=f"{sum(accs) / E:.3f}")
        bar.update(1)
    bar.close()
    batch.optimizer.zero_grad()  # drop the gradients (on CUDA they live in the captured graph's memory pool)
    # The final evaluation has its own stream, so its samples do not depend on eval_every.
    xf, yf = eval_sampler.draw([make_generator(stream_seed(s, "final"), device) for s in seeds], n)
    weights = batch.module.weights()
    final = accuracy(weights, xf, yf).tolist()
    bayes = _bayes(tasks, xf, yf) if train_cfg.bayes else [math.nan] * E
    rows += _rows(train_cfg.steps, (batch.window_loss / max(window, 1)).tolist(), final)
    history = pd.DataFrame(rows, columns=["step", "model", "loss", "accuracy"])
    return TrainedModels([TrainedModel(spec, {k: v[e:e + 1].detach().clone() for k, v in weights.items()}, final[e],
                                       bayes[e], history[history["model"] == e].drop(columns="model")
                                       .reset_index(drop=True)) for e, spec in enumerate(specs)], train_cfg)


def _rows(step: int, losses: list[float], accuracies: list[float]) -> list[dict]:
    return [
        {"step": step, "model": e, "loss": loss, "accuracy": acc}
        for e, (loss, acc) in enumerate(zip(losses, accuracies))
    ]


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    # disable=None: tqdm shows the bar only on a terminal, so logs and captured output stay clean.
    return tqdm(total=total, disable=None if enabled else True, desc="train", unit="step", leave=False)


def train_models(
    task: LCAConfig,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
    lr: float | None = None,
    progress: bool = False,
    capture: bool | None = None,
) -> TrainedModels:
    """Train one model per seed on the same setting, all at once (model e = seeds[e]). `capture`: run the
    step as a CUDA graph (default: on CUDA unless ASSOCMEM_CUDA_GRAPHS=0; never on the CPU)."""
    if len(seeds) == 0:
        raise ConfigError("seeds=[] is invalid: allowed at least one seed")
    rate = train_cfg.lr if lr is None else lr
    specs = [RunSpec(task, model_cfg, rate, int(s)) for s in seeds]
    return _train_batch(specs, train_cfg, resolve_device(device), progress, capture)


def train_sweep(
    specs: Sequence[RunSpec],
    train_cfg: TrainConfig,
    device: torch.device | str = "cpu",
    progress: bool = False,
    max_models: int | None = None,
    capture: bool | None = None,
) -> TrainedModels:
    """Train every spec; specs of one `shape_key` (m, L, vocabulary, d, d_a) are trained as one batch (at
    most `max_models` per batch), whatever their omega, beta, neighbourhood, init, freeze switches, lr and
    seed. Returns one TrainedModel per spec, in input order."""
    if max_models is not None:
        check_int_range("max_models", max_models, 1)
    dev = resolve_device(device)
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(specs):
        groups.setdefault(shape_key(s), []).append(i)
    out: list[TrainedModel | None] = [None] * len(specs)
    for indices in groups.values():
        size = max_models or len(indices)
        for start in range(0, len(indices), size):
            batch = indices[start : start + size]
            for i, model in zip(batch, _train_batch([specs[i] for i in batch], train_cfg, dev, progress, capture)):
                out[i] = model
    return TrainedModels(out, train_cfg)  # type: ignore[arg-type]
