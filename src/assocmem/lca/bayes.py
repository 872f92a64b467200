"""The task's own limit: Bayes-optimal accuracy of latent concept association.

With z* uniform, the posterior over the target given a context x = (t_1, ..., t_L) is (paper §4.1)

    p(y | x) ∝ Π_{l<L} p(t_l | z* = y) · π(t_L | z* = y),

so the best any predictor can do is to answer an element of argmax_y log p(x | z* = y). Everything
below is computed from the exact (V, V) tables of `task.py` in float64: the log-likelihood of a batch
of contexts is a bag-of-tokens count matrix times the log table (one matmul, no loop over samples or
positions) plus a gather for the last token.

Ties (several y with the same posterior, e.g. a context that is symmetric between two targets) are
broken uniformly at random *in expectation*: a sample scores 1/|argmax set| if its target is in the
set, else 0. This is the accuracy a predictor that breaks ties by a fair coin has on average, and it
is what `expected_correct` returns for any score matrix (model logits, counts, log-likelihoods).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from assocmem.config import check_int_range
from assocmem.errors import ConfigError
from assocmem.lca.task import LCAConfig, chance_accuracy, context_table, pi_table, sample_batch

__all__ = [
    "log_likelihood",
    "posterior",
    "expected_correct",
    "expected_accuracy_on",
    "bayes_optimal_accuracy",
    "most_frequent_token_accuracy",
    "chance_accuracy",
    "token_counts",
]

_CHUNK_ELEMENTS = 1 << 22  # rows per chunk x V: bounds the (rows, V) float64 buffers to 32 MiB


def check_contexts(config: LCAConfig, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """Raise ConfigError unless x is an integer (*batch, L) tensor of tokens in [0, V) (and y (*batch,))."""
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.dim() < 1:
        raise ConfigError(f"x={tuple(x.shape)} {x.dtype} is invalid: allowed an integer tensor of shape (*batch, L)")
    if x.shape[-1] != config.L:
        raise ConfigError(f"x has context length {x.shape[-1]}: allowed L={config.L} (the config's L)")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= config.V):
        raise ConfigError(f"x holds tokens outside [0, {config.V}): allowed token ids 0..V-1 for m={config.m}")
    if y is not None and tuple(y.shape) != tuple(x.shape[:-1]):
        raise ConfigError(f"y has shape {tuple(y.shape)}: allowed {tuple(x.shape[:-1])} (x's batch shape)")


def token_counts(x: torch.Tensor, V: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(B, V) bag-of-tokens counts of the rows of x (B, n)."""
    counts = torch.zeros(x.shape[0], V, dtype=dtype, device=x.device)
    return counts.scatter_add_(1, x, torch.ones(x.shape, dtype=dtype, device=x.device))


@lru_cache(maxsize=16)
def _log_tables(config: LCAConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log p with 0 where p = 0, mask p = 0, log π), each transposed to [z, z*]; cached per setting."""
    p = context_table(config, torch.float64, device)  # (V, V) [z*, z]
    zero_p = p == 0
    log_p = torch.where(zero_p, torch.zeros((), dtype=p.dtype, device=device), p.log())
    log_pi = pi_table(config, torch.float64, device).log()
    return log_p.T.contiguous(), zero_p.T.to(torch.float64).contiguous(), log_pi.T.contiguous()


def log_likelihood(config: LCAConfig, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z* = y) for every candidate target y: x (*batch, L) long → (*batch, V) float64.

    = Σ_{l<L} log p(t_l | y) + log π(t_L | y)   (§4.1; −inf where a token has probability 0 under y,
    e.g. t = y itself when ω = 1, since π never draws z*). With a uniform prior on z* this is the
    log-posterior up to a per-context constant.
    """
    check_contexts(config, x)
    V, L = config.V, config.L
    flat = x.reshape(-1, L)
    log_p_t, zero_p_t, log_pi_t = _log_tables(config, x.device)  # (V, V) each, [z, z*]
    any_zero = bool(zero_p_t.any())
    out = torch.empty(flat.shape[0], V, dtype=torch.float64, device=x.device)
    step = max(1, _CHUNK_ELEMENTS // V)
    for start in range(0, flat.shape[0], step):  # chunks bound memory only; each is fully vectorised
        rows = flat[start : start + step]
        ll = log_pi_t[rows[:, -1]]  # (b, V): log π(t_L | y)
        if L > 1:
            counts = token_counts(rows[:, :-1], V)  # (b, V) counts of t_1..t_{L-1}
            ll = ll + counts @ log_p_t
            if any_zero:  # only when ω = 1: a count on a zero-probability token rules y out
                impossible = (counts @ zero_p_t) > 0
                ll = ll.masked_fill(impossible, float("-inf"))
        out[start : start + step] = ll
    return out.reshape(*x.shape[:-1], V)


def posterior(config: LCAConfig, x: torch.Tensor) -> torch.Tensor:
    """p(y | x) for every candidate y (uniform prior on z*): (*batch, V) float64, rows sum to 1.

    A context impossible under every target (probability 0, only when ω = 1) has a NaN row."""
    return log_likelihood(config, x).softmax(dim=-1)


LOGIT_RTOL = 1e-5  # a model's logits within this relative distance of the max count as a tie (float32 round-off)


def expected_correct(scores: torch.Tensor, y: torch.Tensor, rtol: float = 1e-9) -> torch.Tensor:
    """Per-sample expected correctness of argmax(scores) with ties broken uniformly: (*batch,) float64.

    scores (*batch, V), y (*batch,). The argmax set is {v: scores_v ≥ max − rtol·(1 + |max|)}; the
    tolerance makes float round-off (sums of the same terms in another order) count as a tie. A row
    whose max is −inf (impossible under every y) has all V entries tied.
    """
    s = scores.to(torch.float64)
    top = s.max(dim=-1, keepdim=True).values
    tol = rtol * (1.0 + top.abs())
    in_set = s >= top - torch.nan_to_num(tol, posinf=0.0)
    in_set = in_set | torch.isneginf(top)
    hit = in_set.gather(-1, y.unsqueeze(-1).long()).squeeze(-1)
    return hit.to(torch.float64) / in_set.sum(dim=-1).to(torch.float64)


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> float:
    if weights is None:
        return float(values.mean())
    w = weights.to(torch.float64).reshape(values.shape)
    return float((values * w).sum() / w.sum())


def expected_accuracy_on(
    config: LCAConfig, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None
) -> float:
    """Expected accuracy of the Bayes-optimal predictor on given samples (ties uniform).

    Mean over samples of 1[y ∈ argmax_v p(v | x)] / |argmax set|. `weights` (*batch,) turns the mean
    into a weighted one: with every context enumerated and weighted by p(x, y) this is the exact
    Bayes accuracy Σ_x max_y p(x, y) (the tests check it against brute force).
    """
    check_contexts(config, x, y)
    return _weighted_mean(expected_correct(log_likelihood(config, x), y), weights)


def bayes_optimal_accuracy(
    config: LCAConfig, n_samples: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> float:
    """Monte-Carlo estimate of the Bayes-optimal accuracy of a setting on n fresh samples of D^L.

    To compare a model with its ceiling on the *same* samples, draw (x, y) once and call
    `expected_accuracy_on(config, x, y)` beside the model's evaluation instead.
    """
    check_int_range("n_samples", n_samples, 1)
    x, y = sample_batch(config, n_samples, generator, device=device)
    return expected_accuracy_on(config, x, y)


def most_frequent_token_accuracy(config: LCAConfig, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of guessing the mode of the context (all L positions; ties uniform in expectation).

    A weak baseline: π never draws z* itself, so the target enters the context only through the
    uniform part (probability (1 − ω)/V per position) and the mode is rarely the target.
    """
    check_contexts(config, x, y)
    counts = token_counts(x.reshape(-1, config.L), config.V)
    return float(expected_correct(counts, y.reshape(-1)).mean())
