"""Log-probabilities of " " + target after a prompt, for many prompts at once.

The contract (as lm-evaluation-harness `loglikelihood`): for prompt p and target t, return
log P(" " + t | p) under the model, where the space belongs to the continuation and p is scored
with the tokenizer's own special prefix (Gemma/Llama prepend BOS; GPT-2 adds nothing).

    mode="first-token":  log P(first token of " "+t | p)            (one forward per prompt for BOTH
                                                                     targets: same prefix, same logits)
    mode="full-target":  sum_k log P(token_k of " "+t | p, tokens_<k)  (one forward per (prompt, target))

Tokenisation: context and continuation are tokenised together and split at the context's length
(lm-eval `_encode_pair`), because tokenising " Paris" alone can differ from how it tokenises after
the prompt. Batching: requests are sorted by length (longest first, so an out-of-memory shows on the
first batch) and left-padded; position ids come from the attention mask, so a padded row gives the
numbers of the same row alone; the original order is restored at the end (lm-eval `Collator`).
Identical requests (e.g. n = 0 under every scheme) are scored once.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from assocmem.errors import ConfigError, bad_option
from assocmem.models.llm import eager_attention

MODES = ("first-token", "full-target")


@dataclass
class ScoringPlan:
    """Deduplicated forward passes for N (prompt, target_true, target_false) triples.

    requests[r]  token ids fed to the model (prefix + context [+ continuation minus its last token])
    gathers[r]   continuations scored at the end of request r: each a tuple of token ids whose
                 log-probs are read at the last len(g) positions and summed
    index[i][j]  (r, g) for triple i, target j (0 = true, 1 = false)
    """

    requests: list[tuple[int, ...]] = field(default_factory=list)
    gathers: list[list[tuple[int, ...]]] = field(default_factory=list)
    index: list[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=list)


def special_prefix(tokenizer) -> list[int]:
    """The ids a tokenizer puts before the text by itself (BOS for Gemma/Llama, nothing for GPT-2)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for k in range(len(full) - len(bare) + 1):
        if full[k:k + len(bare)] == bare:
            return list(full[:k])
    return []


def encode_pairs(tokenizer, contexts: Sequence[str], continuations: Sequence[str]) -> list[tuple[list[int], list[int]]]:
    """(context ids without prefix, continuation ids) per pair, tokenised together then split.

    Trailing spaces of a context move to its continuation (lm-eval `_encode_pair`).
    """
    ctxs, wholes = [], []
    for context, continuation in zip(contexts, continuations, strict=True):
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        ctxs.append(context)
        wholes.append(context + continuation)
    ctx_ids = tokenizer(ctxs, add_special_tokens=False)["input_ids"]
    whole_ids = tokenizer(wholes, add_special_tokens=False)["input_ids"]
    return [(list(c), list(w[len(c):])) for c, w in zip(ctx_ids, whole_ids)]


def plan_requests(tokenizer, prompts: Sequence[str], targets_true: Sequence[str], targets_false: Sequence[str],
                  mode: str = "first-token") -> ScoringPlan:
    """Tokenise and deduplicate; ConfigError naming the item if a target is empty or tokenizes to nothing."""
    if mode not in MODES:
        raise bad_option("--mode", mode, "one of " + ", ".join(MODES))
    if not (len(prompts) == len(targets_true) == len(targets_false)):
        raise ValueError("prompts, targets_true and targets_false must have the same length")
    prefix = special_prefix(tokenizer)
    n = len(prompts)
    for i, t in enumerate(list(targets_true) + list(targets_false)):
        if not str(t).strip():
            raise ConfigError(f"target {t!r} of item {i % max(n, 1)} is empty")
    pairs = encode_pairs(tokenizer, list(prompts) * 2, [" " + str(t).strip() for t in list(targets_true) + list(targets_false)])
    plan, req_of = ScoringPlan(), {}

    def add(ids: tuple[int, ...], gather: tuple[int, ...]) -> tuple[int, int]:
        r = req_of.setdefault(ids, len(plan.requests))
        if r == len(plan.requests):
            plan.requests.append(ids)
            plan.gathers.append([])
        if gather not in plan.gathers[r]:
            plan.gathers[r].append(gather)
        return r, plan.gathers[r].index(gather)

    for i in range(n):
        slots = []
        for j, (ctx, cont) in enumerate((pairs[i], pairs[n + i])):
            if not cont:
                which = ("target_true", "target_false")[j]
                raise ConfigError(f"{which} {(targets_true, targets_false)[j][i]!r} of item {i} tokenizes to nothing")
            if mode == "first-token":
                slots.append(add(tuple(prefix + ctx), (cont[0],)))
            else:  # feed context + continuation minus its last token; read len(cont) positions
                slots.append(add(tuple(prefix + ctx + cont[:-1]), tuple(cont)))
        plan.index.append((slots[0], slots[1]))
    return plan


def score_plan(lm, plan: ScoringPlan, batch_size: int = 32, progress: bool = False,
               shard: tuple[int, int] = (0, 1), bar=None) -> dict[int, list[float]]:
    """Run the forwards of `plan` (this rank's share: every world-th request after the length sort).

    Returns {request index: [summed log-prob per gather]}. `bar`: an outer tqdm bar to advance
    (per request) instead of a bar of its own.
    """
    if batch_size < 1:
        raise bad_option("--batch-size", batch_size, "an integer >= 1")
    rank, world = shard
    # Longest first: similar lengths share a batch (little padding), and memory peaks on batch one.
    order = sorted(range(len(plan.requests)), key=lambda r: (-len(plan.requests[r]), r))[rank::world]
    batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    out: dict[int, list[float]] = {}
    own_bar = progress and bar is None
    if own_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc="scoring", unit="prompt", leave=False)
    for batch in batches:
        requests = [plan.requests[r] for r in batch]
        with eager_attention(lm.model) if needs_eager_attention(lm.device, requests) else contextlib.nullcontext():
            sums = _score_batch(lm, requests, [plan.gathers[r] for r in batch])
        for r, s in zip(batch, sums):
            out[r] = s
        if bar is not None:
            bar.update(len(batch))
    if own_bar:
        bar.close()
    return out


def collect(plan: ScoringPlan, results: dict[int, list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp_true, logp_false), each (N,), in the original order of the triples."""
    vals = torch.tensor([[results[r][g] for (r, g) in pair] for pair in plan.index], dtype=torch.float64)
    vals = vals.reshape(len(plan.index), 2)
    return vals[:, 0].clone(), vals[:, 1].clone()


def score_targets(lm, prompts: Sequence[str], targets_true: Sequence[str], targets_false: Sequence[str],
                  mode: str = "first-token", batch_size: int = 32, progress: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """log P(" "+target_true | prompt) and log P(" "+target_false | prompt), each a float64 tensor (N,)."""
    plan = plan_requests(lm.tokenizer, prompts, targets_true, targets_false, mode)
    return collect(plan, score_plan(lm, plan, batch_size=batch_size, progress=progress))


def needs_eager_attention(device: torch.device, requests: Sequence[Sequence[int]]) -> bool:
    """True for a left-padded batch (uneven lengths) off the CPU.

    Left padding leaves the pad queries nothing to attend to; on CUDA the fused SDPA kernels then
    corrupt the whole batch (models.llm.eager_attention has the measurement), so such batches run
    with eager attention there. Even batches and the CPU keep the model's own (faster) attention.
    """
    return torch.device(device).type != "cpu" and len({len(q) for q in requests}) > 1


def _accepts_logits_to_keep(model) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.inference_mode()
def _score_batch(lm, requests: list[tuple[int, ...]], gathers: list[list[tuple[int, ...]]]) -> list[list[float]]:
    model = lm.model
    device = lm.device
    B, T = len(requests), max(len(r) for r in requests)
    K = max(len(g) for gs in gathers for g in gs)           # positions to read, counted from the end
    pad_id = lm.tokenizer.pad_token_id
    pad_id = 0 if pad_id is None else pad_id
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    for b, ids in enumerate(requests):                       # left padding: every row ends at T - 1
        input_ids[b, T - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention_mask[b, T - len(ids):] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): 0.. from each row's first real token
    kwargs = dict(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                  position_ids=position_ids.to(device), use_cache=False)
    if _accepts_logits_to_keep(model):
        logits = model(**kwargs, logits_to_keep=K).logits    # (B, K, V)
    else:
        logits = model(**kwargs).logits[:, -K:]              # (B, K, V)
    logits = logits.float()
    log_z = torch.logsumexp(logits, dim=-1)                  # (B, K)
    # Every scored token as (row, position, token id, which gather): gather once, sum per gather.
    rows, pos, tok, seg = [], [], [], []
    seg_count = 0
    for b, gs in enumerate(gathers):
        for g in gs:
            k = len(g)
            rows += [b] * k
            pos += range(K - k, K)
            tok += g
            seg += [seg_count] * k
            seg_count += 1
    rows_t, pos_t, tok_t = (torch.tensor(x, device=logits.device) for x in (rows, pos, tok))
    token_logp = (logits[rows_t, pos_t, tok_t] - log_z[rows_t, pos_t]).double()
    sums = torch.zeros(seg_count, dtype=torch.float64, device=logits.device)
    sums.index_add_(0, torch.tensor(seg, device=logits.device), token_logp)
    sums = sums.tolist()
    out, s = [], 0
    for gs in gathers:
        out.append(sums[s:s + len(gs)])
        s += len(gs)
    return out
