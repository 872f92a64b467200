"""Batched training of one-layer transformers on latent concept association (paper §4.2, §6).

E independent models (seeds × settings that share shapes) are trained at once as one set of batched
tensors. Each model is the model trained alone (bit-identical on CPU in the tests and the benchmark,
equal up to float round-off on a GPU):

* its initial weights come from its own seed (`OneLayerTransformer.from_seeds`);
* its training data come from its own generator, seeded from (seed, "train"), on the device, and a
  model may have its own omega, beta and neighbourhood (only m and L must be shared);
* the loss is the SUM over models of each model's mean cross-entropy at the last position, so the
  gradient of model e's parameters is exactly the gradient of its own loss;
* AdamW is elementwise, and `BatchedAdamW` scales each model's update by its own learning rate
  (an (E, 1, 1) factor), which torch.optim.AdamW cannot do: a param group holds whole tensors.

Accuracy is 1 − R(f) of §4.1 (argmax at the last position) on fresh samples from the canonical
sampler `task.sample_batch`; the Bayes-optimal accuracy of the task is computed on the same
final evaluation samples, so the gap between the two is not sampling noise of two different sets.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F

from assocmem.config import check_choice, check_float_range, check_int_range
from assocmem.errors import ConfigError, bad_option
from assocmem.lca.bayes import LOGIT_RTOL, expected_correct
from assocmem.lca.model import ModelConfig, OneLayerTransformer, forward_last
from assocmem.lca.task import LCAConfig, _cdf, pi_table, sample_batch
from assocmem.runtime import make_generator, resolve_device

SCHEDULES: tuple[str, ...] = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every model of a run (the paper: AdamW, lr in {0.01, 0.001}).

    The defaults learn: on fresh samples with omega = 0.5, beta = 1, neighbourhood all, two seeds,
    m = 5, L = 64, d = 64 reaches 0.922 (Bayes-optimal 0.930); m = 8, L = 64, d = 128 reaches 0.823
    (Bayes 0.918; 0.857 after 5000 steps) and m = 8, L = 128, d = 128 0.965 (Bayes 0.996). lr = 0.001
    was worse in every one of these settings at 2000 and 5000 steps.
    """

    steps: int = 2000  # optimizer steps; every step draws a fresh batch for every model
    batch_size: int = 256  # contexts per model per step
    lr: float = 0.01  # peak AdamW learning rate (a RunSpec may override it per model)
    weight_decay: float = 0.01  # AdamW decoupled weight decay, on every trainable matrix
    warmup_steps: int = 100  # linear warm-up from 0 to lr: Adam's first steps are full-size sign steps
    schedule: str = "cosine"  # after warm-up: "cosine" decays to 0 at the last step, "constant" stays
    eval_every: int = 200  # steps between history rows (mean training loss and accuracy)
    eval_samples: int = 4096  # fresh contexts per model for each accuracy evaluation
    bayes: bool = True  # compute the Bayes-optimal accuracy on the final evaluation samples

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

    def lr_factor(self, step: int) -> float:
        """Multiplier of the peak lr at optimizer step `step` (1-based)."""
        if step <= self.warmup_steps:
            return step / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


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


@dataclass
class TrainResult:
    """E models trained together. Lists are indexed by model, in the order of `specs`."""

    module: OneLayerTransformer
    specs: list[RunSpec]
    final_accuracy: list[float]
    bayes_optimal_accuracy: list[float]  # NaN where TrainConfig.bayes is off
    history: pd.DataFrame  # columns: step, model, loss (mean over the window), accuracy

    @property
    def gap_to_bayes(self) -> list[float]:
        return [b - a for a, b in zip(self.final_accuracy, self.bayes_optimal_accuracy)]


@dataclass
class TrainedModel:
    """One model of a sweep: weights keep the model dimension, e.g. W_E is (1, d, V)."""

    spec: RunSpec
    weights: dict[str, torch.Tensor]
    final_accuracy: float
    bayes_optimal_accuracy: float
    history: pd.DataFrame = field(repr=False)  # columns: step, loss, accuracy

    @property
    def gap_to_bayes(self) -> float:
        return self.bayes_optimal_accuracy - self.final_accuracy


class BatchedAdamW:
    """AdamW (Loshchilov & Hutter, as torch.optim.AdamW) with one learning rate per model.

    Every parameter has a leading model dimension E; `lr` has shape (E,). The update of each entry
    depends only on that entry's own gradient history, so model e's update is the one it would get
    alone with learning rate lr[e].
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lr: torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr_factor: float = 1.0) -> None:
        self.t += 1
        beta1, beta2 = self.betas
        bias1 = 1 - beta1**self.t
        bias2_sqrt = math.sqrt(1 - beta2**self.t)
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            lr = (self.lr * lr_factor).to(p.dtype).view(-1, *[1] * (p.dim() - 1))  # (E, 1, 1)
            p.mul_(1 - lr * self.weight_decay)
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            p.sub_((lr / bias1) * m / denom)


class TrainingStream:
    """Fresh training batches for E models, model e drawn from generators[e] only (§4.1).

    Same distribution as `task.sample_batch`, drawn differently for speed: the uniform numbers of
    each model come from one call per step, then everything else is done for all E models at once,
    so the per-step cost of E models stays close to that of one; and the query distribution is
    sampled through its XOR symmetry (see `_offset_cdf`) from a V-entry table per task.
    """

    def __init__(self, tasks: Sequence[LCAConfig], generators: Sequence[torch.Generator], device) -> None:
        if len({(t.m, t.L) for t in tasks}) != 1:
            raise ConfigError("models trained together must share m and L")
        self.device = torch.device(device)
        self.V, self.L = tasks[0].V, tasks[0].L
        self.generators = list(generators)
        distinct = list(dict.fromkeys(tasks))
        cdf = torch.stack([_offset_cdf(t, self.device) for t in distinct])  # (T, V)
        # Task k's CDF shifted up by k makes one sorted sequence, so one searchsorted of k + u
        # serves models with different tasks.
        self.shifted_cdf = (cdf + torch.arange(len(distinct), device=self.device)[:, None]).flatten()
        self.task_index = torch.tensor([distinct.index(t) for t in tasks], device=self.device).view(-1, 1, 1)
        self.omega = torch.tensor([t.omega for t in tasks], dtype=torch.float64, device=self.device)

    def draw(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x (E, B, L) and y (E, B), long, on the device."""
        V, L = self.V, self.L
        u = torch.stack([
            torch.rand((batch_size, 3 * L - 1), generator=g, device=self.device, dtype=torch.float64)
            for g in self.generators
        ])  # (E, B, 3L-1): [target | L draws from pi | L-1 uniform tokens | L-1 mixture coins]
        y = (u[..., :1] * V).long().clamp_(max=V - 1)  # (E, B, 1)
        # right=True: the first offset whose CDF exceeds u, never a zero-probability one.
        index = torch.searchsorted(self.shifted_cdf, u[..., 1 : L + 1] + self.task_index, right=True)
        offset = (index - self.task_index * V).clamp_(0, V - 1)  # (E, B, L)
        from_pi = y ^ offset  # z = z* XOR delta
        uniform = (u[..., L + 1 : 2 * L] * V).long().clamp_(max=V - 1)  # (E, B, L-1)
        use_pi = u[..., 2 * L :] < self.omega.view(-1, 1, 1)
        head = torch.where(use_pi, from_pi[..., : L - 1], uniform)
        return torch.cat([head, from_pi[..., L - 1 :]], dim=-1), y.squeeze(-1)


def _offset_cdf(task: LCAConfig, device: torch.device) -> torch.Tensor:
    """(V,) CDF of delta = z XOR z* under pi(z | z*), the same for every target z*.

    Every neighbourhood of §4.1 and the weight exp(-D_H/beta) are invariant under z -> z XOR c
    (Hamming distances and shared leading bits are), so pi(z | z*) = pi(z* XOR z | 0). Checked on
    the table, so a future non-symmetric neighbourhood fails here instead of sampling wrongly.
    """
    table = pi_table(task, torch.float64, device)
    tokens = torch.arange(task.V, device=device)
    by_offset = table.gather(1, tokens[:, None] ^ tokens[None, :])  # [z*, delta] = pi(z* ^ delta | z*)
    if not torch.allclose(by_offset, table[:1].expand_as(table), rtol=1e-12, atol=0.0):
        raise ConfigError(f"neighborhood={task.neighborhood!r} is not XOR-symmetric: the trainer cannot sample it")
    return _cdf(table[:1])[0]


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named random stream of a run ("train", "eval", "final"), so that the
    streams of one seed are unrelated to each other and to the init, which uses `seed` itself."""
    digest = hashlib.sha256(f"{seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def count_correct(weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Expected correct predictions per model, (E,) float64: argmax with ties (logits within
    bayes.LOGIT_RTOL of the max) counting 1/|ties|, the accuracy every experiment reports (analysis.
    evaluate_weights is the same rule). x: (E, N, L) or (N, L); y: (E, N) or (N,).

    Chunks the contexts so that the (E, chunk, V) intermediates of `forward_last` stay near 64 MiB.
    """
    E, d, V = weights["W_E"].shape
    N, L = x.shape[-2:]
    chunk = max(1, 2**24 // (E * (V + L + d)))
    correct = torch.zeros(E, dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for start in range(0, N, chunk):
            xs, ys = x[..., start : start + chunk, :], y[..., start : start + chunk]
            logits = forward_last(weights["W_E"], weights["W_Q"], weights["W_K"], weights["W_V"], xs).logits
            correct += expected_correct(logits, ys.expand(logits.shape[:2]), rtol=LOGIT_RTOL).sum(-1)
    return correct


def evaluate_accuracy(
    weights: dict[str, torch.Tensor],
    task: LCAConfig,
    n_samples: int,
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Accuracy 1 − R(f) (§4.1) of each of the E models in `weights`, (E,) float.

    Draws n_samples fresh contexts from `generator` once; every model is scored on the same ones.
    """
    check_int_range("n_samples", n_samples, 1)
    device = weights["W_E"].device if device is None else resolve_device(device)
    weights = {k: v.to(device) for k, v in weights.items()}
    x, y = sample_batch(task, n_samples, generator, device)
    return count_correct(weights, x, y).double() / n_samples


def _sample_per_model(
    tasks: Sequence[LCAConfig], generators: Sequence[torch.Generator], n: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [sample_batch(t, n, g, device) for t, g in zip(tasks, generators)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def _bayes(tasks: Sequence[LCAConfig], x: torch.Tensor, y: torch.Tensor) -> list[float]:
    from assocmem.lca.bayes import expected_accuracy_on  # a sibling module of this one

    return [float(expected_accuracy_on(t, x[e], y[e])) for e, t in enumerate(tasks)]


def _train_batch(
    specs: Sequence[RunSpec], train_cfg: TrainConfig, device: torch.device, progress: bool
) -> TrainResult:
    """Train the models of `specs` (same m, L and model shapes) as one batch."""
    tasks = [s.task for s in specs]
    seeds = [s.seed for s in specs]
    E, n = len(specs), train_cfg.eval_samples
    module = OneLayerTransformer.from_seeds(tasks[0].V, specs[0].model, seeds, device)
    optimizer = BatchedAdamW(
        module.trainable_parameters(),
        lr=torch.tensor([s.lr for s in specs], dtype=torch.float32, device=device),
        weight_decay=train_cfg.weight_decay,
    )
    stream = TrainingStream(tasks, [make_generator(stream_seed(s, "train"), device) for s in seeds], device)
    eval_gens = [make_generator(stream_seed(s, "eval"), device) for s in seeds]
    rows: list[dict] = []
    window_loss = torch.zeros(E, dtype=torch.float64, device=device)
    window = 0
    bar = _progress_bar(train_cfg.steps, progress)
    for step in range(1, train_cfg.steps + 1):
        x, y = stream.draw(train_cfg.batch_size)
        logits = module(x).logits  # (E, B, V)
        per_model = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(E, -1).mean(1)
        optimizer.zero_grad()
        if optimizer.params:
            per_model.sum().backward()
            optimizer.step(train_cfg.lr_factor(step))
        window_loss += per_model.detach().double()
        window += 1
        if step % train_cfg.eval_every == 0 and step < train_cfg.steps:
            xe, ye = _sample_per_model(tasks, eval_gens, n, device)
            accuracy = (count_correct(module.weights(), xe, ye).double() / n).tolist()
            rows += _rows(step, (window_loss / window).tolist(), accuracy)
            window_loss.zero_()
            window = 0
            bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}", acc=f"{sum(accuracy) / E:.3f}")
        bar.update(1)
    bar.close()
    # The final evaluation has its own stream, so its samples do not depend on eval_every.
    xf, yf = _sample_per_model(tasks, [make_generator(stream_seed(s, "final"), device) for s in seeds], n, device)
    final = (count_correct(module.weights(), xf, yf).double() / n).tolist()
    bayes = _bayes(tasks, xf, yf) if train_cfg.bayes else [math.nan] * E
    rows += _rows(train_cfg.steps, (window_loss / max(window, 1)).tolist(), final)
    history = pd.DataFrame(rows, columns=["step", "model", "loss", "accuracy"])
    return TrainResult(module, list(specs), final, bayes, history)


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
) -> TrainResult:
    """Train one model per seed on the same setting, all at once (model e = seeds[e])."""
    if len(seeds) == 0:
        raise ConfigError("seeds=[] is invalid: allowed at least one seed")
    rate = train_cfg.lr if lr is None else lr
    specs = [RunSpec(task, model_cfg, rate, int(s)) for s in seeds]
    return _train_batch(specs, train_cfg, resolve_device(device), progress)


def train_sweep(
    specs: Sequence[RunSpec],
    train_cfg: TrainConfig,
    device: torch.device | str = "cpu",
    progress: bool = False,
    max_models: int | None = None,
) -> list[TrainedModel]:
    """Train every spec; specs that share shapes (m, L, d, d_a, freeze switches, init std) are
    trained as one batch (at most `max_models` per batch), whatever their omega, beta,
    neighbourhood, lr and seed. Returns one TrainedModel per spec, in input order."""
    if max_models is not None:
        check_int_range("max_models", max_models, 1)
    dev = resolve_device(device)
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(specs):
        m = s.model
        key = (s.task.m, s.task.L, m.d, m.head_size, m.freeze_value, m.freeze_embedding, m.std)
        groups.setdefault(key, []).append(i)
    out: list[TrainedModel | None] = [None] * len(specs)
    for indices in groups.values():
        size = max_models or len(indices)
        for start in range(0, len(indices), size):
            batch = indices[start : start + size]
            result = _train_batch([specs[i] for i in batch], train_cfg, dev, progress)
            weights = result.module.weights()
            for e, i in enumerate(batch):
                hist = result.history[result.history["model"] == e].drop(columns="model").reset_index(drop=True)
                out[i] = TrainedModel(
                    spec=specs[i],
                    weights={k: v[e : e + 1] for k, v in weights.items()},
                    final_accuracy=result.final_accuracy[e],
                    bayes_optimal_accuracy=result.bayes_optimal_accuracy[e],
                    history=hist,
                )
    return out  # type: ignore[return-value]
