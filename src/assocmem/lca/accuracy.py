"""Accuracy 1 − R(f) of §4.1 (the argmax at the last position is the target), the one rule behind every
accuracy of the synthetic half: training's history and final accuracy, `analysis.evaluate_weights`, the
constructions of the theorems and the mixing probes.

A tie among the top logits (within `bayes.LOGIT_RTOL` of the max: float round-off, or the exact ties of
a construction's integer counts) counts 1/|ties| when the target is among them (`bayes.expected_correct`),
so argmax's first-index rule never favours small token ids.
"""

from __future__ import annotations

import torch

from assocmem.lca.bayes import LOGIT_RTOL, expected_correct
from assocmem.lca.model import forward_last


def correct(weights: dict[str, torch.Tensor], x: torch.Tensor, *targets: torch.Tensor):
    """Per model and context, the expected correctness of the model's answer for each target tensor: one
    (E, N) float64 tensor per target (a tuple of them for several targets, read from one forward).

    weights: W_E (E, d, V), W_Q, W_K (E, d_a, d), W_V (E, d, d); x (E, N, L) or (N, L) (the same contexts
    for every model); each target (E, N) or (N,). The contexts go through the model in chunks that keep the
    (E, chunk, V) intermediates of `forward_last` near 64 MiB.
    """
    E, d, V = weights["W_E"].shape
    N, L = x.shape[-2:]
    chunk = max(1, 2**24 // (E * (V + L + d)))
    out = [torch.empty(E, N, dtype=torch.float64, device=x.device) for _ in targets]
    with torch.no_grad():
        for start in range(0, N, chunk):
            xs = x[..., start : start + chunk, :]
            logits = forward_last(weights["W_E"], weights["W_Q"], weights["W_K"], weights["W_V"], xs).logits
            for o, y in zip(out, targets):
                ys = y[..., start : start + chunk].expand(logits.shape[:2])
                o[:, start : start + chunk] = expected_correct(logits, ys, rtol=LOGIT_RTOL)
    return out[0] if len(out) == 1 else tuple(out)


def accuracy(weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(E,) float64: each model's accuracy on the contexts x and targets y (see `correct`)."""
    return correct(weights, x, y).mean(dim=-1)
