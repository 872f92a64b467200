"""Baselines the packed engine is timed against (benchmarks only; the package has one engine).

    old_engine    assocmem's scorer before the shared-prefix engine (commit 0557cc1): every request
                  its own row, length-sorted, left-padded batches of `batch_size` prompts, logits at
                  the last K positions; on CUDA a padded batch runs eager attention (fused SDPA
                  corrupts left-padded batches there).
    plain_forward a plain right-padded batched HF forward with the model's own (SDPA) attention:
                  each prompt one row, 2D attention mask, logits at each row's last real position
                  (first-token mode only).

Both take the scorer's ScoringPlan and return {request: [(sum, first token) log-prob per gather]} like
`assocmem.hijack.scoring.score_plan`, so the three are compared on the same requests.
"""

from __future__ import annotations

import contextlib

import torch

from assocmem.hijack.scoring import ScoringPlan, pad_token
from assocmem.models.anatomy import find_parts
from assocmem.models.packed_forward import attention_implementation


def _batches(plan: ScoringPlan, batch_size: int) -> list[list[int]]:
    order = sorted(range(len(plan.requests)), key=lambda r: (-len(plan.requests[r]), r))
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


def _head_logprobs(lm, hidden: torch.Tensor) -> torch.Tensor:
    """(rows, K, d) hidden after the final norm -> (rows, K, V) float log-probs via the model's head."""
    parts = find_parts(lm.model)
    logits = parts.W_U(hidden).float()
    if parts.softcap is not None:
        logits = torch.tanh(logits / parts.softcap) * parts.softcap
    return logits - torch.logsumexp(logits, dim=-1, keepdim=True)


def _gather(plan: ScoringPlan, batch: list[int], logp: torch.Tensor) -> dict[int, list[float]]:
    """Sum each gather's token log-probs, read at the last len(g) of the K positions of its row."""
    K = logp.shape[1]
    out = {}
    for b, r in enumerate(batch):
        out[r] = [(sum(float(logp[b, K - len(g) + k, t]) for k, t in enumerate(g)), float(logp[b, K - len(g), g[0]]))
                  for g in plan.gathers[r]]
    return out


@torch.inference_mode()
def old_engine(lm, plan: ScoringPlan, batch_size: int = 32) -> dict[int, list[float]]:
    device = lm.device
    out: dict[int, list[float]] = {}
    for batch in _batches(plan, batch_size):
        requests = [plan.requests[r] for r in batch]
        B, T = len(requests), max(len(r) for r in requests)
        K = max(len(g) for r in batch for g in plan.gathers[r])
        ids = torch.full((B, T), pad_token(lm.tokenizer), dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        for b, seq in enumerate(requests):                       # left padding: every row ends at T - 1
            ids[b, T - len(seq):] = torch.tensor(seq)
            mask[b, T - len(seq):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        eager = device.type != "cpu" and len({len(q) for q in requests}) > 1
        with attention_implementation(lm.model, "eager") if eager else contextlib.nullcontext():
            hidden = lm.model.base_model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                         position_ids=pos.to(device), use_cache=False)[0][:, -K:]
        out.update(_gather(plan, batch, _head_logprobs(lm, hidden)))
    return out


@torch.inference_mode()
def plain_forward(lm, plan: ScoringPlan, batch_size: int = 32) -> dict[int, list[float]]:
    if any(len(g) > 1 for gs in plan.gathers for g in gs):
        raise ValueError("plain_forward reads one position per row: first-token mode only")
    device = lm.device
    out: dict[int, list[float]] = {}
    for batch in _batches(plan, batch_size):
        requests = [plan.requests[r] for r in batch]
        B, T = len(requests), max(len(r) for r in requests)
        ids = torch.full((B, T), pad_token(lm.tokenizer), dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        for b, seq in enumerate(requests):                       # right padding: positions are 0.. already
            ids[b, : len(seq)] = torch.tensor(seq)
            mask[b, : len(seq)] = 1
        hidden = lm.model.base_model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)[0]
        last = torch.tensor([len(r) - 1 for r in requests], device=hidden.device)
        picked = hidden[torch.arange(B, device=hidden.device), last][:, None]   # (B, 1, d)
        out.update(_gather(plan, batch, _head_logprobs(lm, picked)))
    return out
