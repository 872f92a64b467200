"""One forward of a Hugging Face causal LM over packed rows (`models.packing`), read where asked.

The model's own modules do all the work: its body gets the packed ids, each sequence's own position
ids and a prepared attention mask (a 4D mask, or a {layer type: mask} dict for models that mix full
and sliding-window layers, e.g. Gemma 2/3), which transformers passes through as it is. Only the read
positions go through the final unembedding (and Gemma's logit softcap), so a 262k vocabulary costs one
row of logits per read, not per token. Forward hooks on the blocks capture the residual stream at the
read positions for the logit lens, and the attention weights come from the model's eager attention.

The mask follows the model's attention implementation: booleans for SDPA (fused kernels; no query row
is empty, so CUDA's kernels are exact), additive floats for eager attention, a BlockMask for
FlexAttention (which skips the blocks a block-diagonal mask leaves out).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from assocmem.errors import ConfigError
from assocmem.models.anatomy import find_parts
from assocmem.models.packing import Rows, allowed_from_arrays, mask_rule
from assocmem.models.readout import unembed
from assocmem.models.llm import LoadedLM

FULL, SLIDING = "full_attention", "sliding_attention"
ATTENTION_BACKENDS = ("sdpa", "flex_attention", "eager")


@dataclass(frozen=True)
class MaskPlan:
    """How a model wants its mask: per layer type (dict) or one mask; the sliding window, if any."""

    kinds: tuple[str, ...] | None   # None: one mask for every layer; else the layer types of a dict
    window: int | None              # sliding window (in positions) of the sliding layers / the one mask


def mask_plan(model) -> MaskPlan:
    """Read from the config how the model's layers attend (full, sliding window).

    A dict of masks only where full and sliding-window layers mix (Gemma 2/3 read it as their own
    mask mapping); a model whose layers all attend alike takes one 4D mask, which every transformers
    model passes through unchanged.
    """
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    window = getattr(config, "sliding_window", None)
    types = tuple(dict.fromkeys(getattr(config, "layer_types", None) or ()))
    unknown = [k for k in types if k not in (FULL, SLIDING)]
    if unknown:
        raise ConfigError(f"model: layer type(s) {', '.join(unknown)} of {type(model).__name__} are not "
                          "supported by the packed scorer (full and sliding-window attention are)", field="model")
    if SLIDING in types:
        return MaskPlan(types, window) if FULL in types else MaskPlan(None, window)
    if types:
        return MaskPlan(None, None)
    uses_window = window is not None and getattr(config, "use_sliding_window", True) is not False
    return MaskPlan(None, window if uses_window else None)


def attention_backend(model) -> str:
    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    return impl if impl in ATTENTION_BACKENDS else "sdpa"


@contextlib.contextmanager
def attention_implementation(model, name: str | None):
    """Run `model` with attention implementation `name` inside the block (None: leave it), then restore."""
    previous = getattr(model.config, "_attn_implementation", None)
    if name is None or name == previous or not hasattr(model, "set_attn_implementation"):
        yield
        return
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def _one_mask(t: dict[str, torch.Tensor], window: int | None, backend: str, dtype: torch.dtype):
    if backend == "flex_attention":
        return _block_mask(t, window)
    return mask_argument(allowed_from_arrays(torch, t["segment"], t["branch"], t["trunk_end"], t["position_ids"],
                                             window), backend, dtype)


def mask_argument(allowed: torch.Tensor, backend: str, dtype: torch.dtype) -> torch.Tensor:
    """A (B, Tq, Tk) boolean mask as the attention implementation takes it, (B, 1, Tq, Tk) for every head alike:
    booleans for SDPA, additive floats (0 or the dtype's minimum) for eager attention."""
    allowed = allowed[:, None]
    if backend == "sdpa":
        return allowed
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)              # eager adds the mask


def _block_mask(t: dict[str, torch.Tensor], window: int | None):
    from torch.nn.attention.flex_attention import create_block_mask

    seg, branch, trunk_end, pos = t["segment"], t["branch"], t["trunk_end"], t["position_ids"]

    def mask_mod(b, h, q, k):
        return mask_rule(seg[b, q], seg[b, k], branch[b, q], branch[b, k], trunk_end[b, q], q, k, pos[b, q], pos[b, k],
                         window)

    B, T = seg.shape
    return create_block_mask(mask_mod, B, None, T, T, device=seg.device)


def build_mask(model, t: dict[str, torch.Tensor], backend: str, dtype: torch.dtype):
    """The attention mask argument for `model`'s body: one mask, or a dict per layer type."""
    plan = mask_plan(model)
    if plan.kinds is None:
        return _one_mask(t, plan.window, backend, dtype)
    return {kind: _one_mask(t, plan.window if kind == SLIDING else None, backend, dtype) for kind in plan.kinds}


@dataclass
class Forwarded:
    """What one packed forward read, one entry per read position (in the order asked).

    hidden     (R, d_model) the body's output (after its final norm), in the model's dtype
    resid      (R, layers + 1, d_model) float32 residual stream before block 0 and after each block, or None
    attention  list over layers of (R, heads, T) float32 attention of each read query over its row, or None
    captured   per module of `capture`, (R, d) float32 output of that module at the reads, or None
    cache      every block's keys and values of the whole batch (a transformers DynamicCache), or None
    """

    hidden: torch.Tensor
    resid: torch.Tensor | None = None
    attention: list[torch.Tensor] | None = None
    captured: list[torch.Tensor] | None = None
    cache: object | None = None


def rows_to_device(rows: Rows, device) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(getattr(rows, name)).to(device, non_blocking=True)
            for name in ("input_ids", "position_ids", "segment", "branch", "trunk_end")}


@torch.inference_mode()
def forward_rows(lm: LoadedLM, rows: Rows, read_rows: np.ndarray, read_cols: np.ndarray, *, resid: bool = False,
                 attention: bool = False, backend: str | None = None,
                 attention_edit: Callable[[int, object], object] | None = None,
                 capture: Sequence[torch.nn.Module] = (), keep_cache: bool = False) -> Forwarded:
    """Run `lm` on `rows`; keep the read positions (read_rows[i], read_cols[i]).

    `attention=True` runs eager attention (the only implementation that returns weights).
    `attention_edit(layer, mask) -> mask` replaces the mask one block sees (attention knockout).
    `capture`: modules (e.g. a block's attention or MLP) whose output is kept at the reads.
    `keep_cache`: keep every block's keys and values (for `models.extension`).
    """
    model = lm.model
    parts = find_parts(model)
    device = model.get_input_embeddings().weight.device
    backend = "eager" if attention else (backend or attention_backend(model))
    t = rows_to_device(rows, device)
    rr = to_device(np.asarray(read_rows, dtype=np.int64), device)
    rc = to_device(np.asarray(read_cols, dtype=np.int64), device)
    captured: list[torch.Tensor] = []

    def grab(x):
        x = x[0] if isinstance(x, (tuple, list)) else x
        return x[rr.to(x.device), rc.to(x.device)].float()

    handles = []
    if resid:
        handles.append(parts.blocks[0].register_forward_pre_hook(
            lambda m, args, kwargs: captured.append(grab(args[0] if args else kwargs["hidden_states"])),
            with_kwargs=True))
        handles += [b.register_forward_hook(lambda m, a, out: captured.append(grab(out))) for b in parts.blocks]
    if attention_edit is not None:
        handles += _mask_edit_hooks(parts.blocks, attention_edit)
    kept: list[torch.Tensor | None] = [None] * len(capture)   # in the order of `capture`, not of execution

    def keep(i):
        return lambda m, a, out: kept.__setitem__(i, grab(out))
    handles += [m.register_forward_hook(keep(i)) for i, m in enumerate(capture)]
    cache_kw = {}
    if keep_cache:
        from transformers import DynamicCache

        cache_kw = {cache_argument(model): DynamicCache(), "use_cache": True}   # no config: full (not windowed) layers
    dtype = model.get_input_embeddings().weight.dtype
    try:
        with attention_implementation(model, backend):
            mask = build_mask(model, t, backend, dtype)
            out = model.base_model(input_ids=t["input_ids"], attention_mask=mask, position_ids=t["position_ids"],
                                   **({"use_cache": False} | cache_kw), output_attentions=attention)
    finally:
        for h in handles:
            h.remove()
    hidden = out[0]
    picked = hidden[rr.to(hidden.device), rc.to(hidden.device)]
    result = Forwarded(hidden=picked, captured=kept if capture else None, cache=cache_kw.get(cache_argument(model)))
    if resid:
        result.resid = torch.stack([c.to(device) for c in captured[: len(parts.blocks) + 1]], dim=1)
    if attention:
        if out.attentions is None or any(a is None for a in out.attentions):
            raise ConfigError(f"diagnostics: {type(model).__name__} returns no attention weights")
        result.attention = [a[rr.to(a.device), :, rc.to(a.device)].float() for a in out.attentions]
    return result


def cache_argument(model) -> str:
    """The name under which the model's body takes a KV cache: `cache` (transformers >= 5.2x) or
    `past_key_values` (earlier): passing the other one would be silently ignored."""
    import inspect

    params = inspect.signature(model.base_model.forward).parameters
    return "past_key_values" if "past_key_values" in params and "cache" not in params else "cache"


def _mask_edit_hooks(blocks, edit: Callable[[int, object], object]) -> list:
    """Forward pre-hooks that hand block l's attention mask through edit(l, mask)."""
    handles = []
    for layer, block in enumerate(blocks):
        def hook(module, args, kwargs, layer=layer):
            if "attention_mask" in kwargs:
                kwargs["attention_mask"] = edit(layer, kwargs["attention_mask"])
                return args, kwargs
            if len(args) > 2:          # GPT-2 blocks take (hidden_states, cache, attention_mask, ...)
                args = (*args[:2], edit(layer, args[2]), *args[3:])
            return args, kwargs
        handles.append(block.register_forward_pre_hook(hook, with_kwargs=True))
    return handles


def to_device(array, device) -> torch.Tensor:
    """A host array on `device` without waiting for the device: the copy is queued (non_blocking), so a
    caller can queue many forwards and read their results back once."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)


@torch.inference_mode()
def token_scores(lm: LoadedLM, hidden: torch.Tensor, read_index, tokens, ranked=None,
                 chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(log P(tokens[j] | read read_index[j]) in float64, the rank of tokens[j] there in int64), from the
    body's output `hidden` (R, d_model); both on the unembedding's device.

    The rank is 1 + the number of vocabulary entries whose logit is strictly above the token's: 1 is the
    model's top-1 next token (a tie shares the better rank). It is computed where `ranked[j]` (a host
    boolean array; default every token) and is 0 elsewhere. The model's own unembedding (and final logit
    softcap) runs on the R read positions, `chunk` rows of vocabulary logits at a time; each read's
    normaliser is computed once however many tokens are scored there (both targets in first-token mode),
    and the ranks of the tokens read at one position take one pass over its logits per token, with no copy.

    `read_index`, `tokens` and `ranked` are host arrays (numpy or CPU tensors): the chunks are cut on the
    host and nothing here reads a device value back (no boolean-mask indexing, no `.item()`), so a batch
    adds no host synchronisation.
    """
    parts = find_parts(lm.model)
    head_device = parts.W_U.weight.device
    read_index = np.asarray(read_index, dtype=np.int64)
    tokens = np.asarray(tokens, dtype=np.int64)
    ranked = np.ones(len(tokens), dtype=bool) if ranked is None else np.asarray(ranked, dtype=bool)
    order = np.argsort(read_index, kind="stable")                        # tokens by read, on the host
    edges = np.searchsorted(read_index[order], np.arange(0, hidden.shape[0] + chunk, chunk))
    logp = torch.empty(len(tokens), dtype=torch.float64, device=head_device)
    rank = torch.zeros(len(tokens), dtype=torch.int64, device=head_device)
    for c, s in enumerate(range(0, hidden.shape[0], chunk)):
        sel = order[edges[c]:edges[c + 1]]                               # the tokens read in this chunk
        if not len(sel):
            continue
        logits = unembed(parts, hidden[s:s + chunk], normed=True)         # (chunk, d_vocab)
        log_z = torch.logsumexp(logits, dim=-1)                         # (chunk,)
        local, dest = to_device(read_index[sel] - s, head_device), to_device(sel, head_device)
        target = logits[local, to_device(tokens[sel], head_device)]      # (k,) each token's logit
        logp[dest] = (target - log_z[local]).double()
        _ranks_into(rank, logits, target, read_index[sel] - s, sel, ranked[sel])
    return logp, rank


def _ranks_into(rank: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, rows: np.ndarray, dest: np.ndarray,
                wanted: np.ndarray) -> None:
    """rank[dest[i]] = 1 + #(logits[rows[i]] > target[i]) where wanted[i]. `rows` is sorted: the tokens of one
    read are consecutive, and the j-th token of every read (its slot) is counted in one pass over the
    chunk's logits, against a threshold per row (+inf where a row has no j-th token)."""
    idx = np.flatnonzero(wanted)
    if not len(idx):
        return
    first = np.searchsorted(rows[idx], rows[idx], side="left")          # where each token's read starts
    slot = np.arange(len(idx)) - first
    device = logits.device
    for j in range(int(slot.max()) + 1):
        mine = idx[slot == j]                                            # at most one token per row
        at = to_device(rows[mine], device)
        threshold = torch.full((logits.shape[0],), float("inf"), device=device)
        threshold[at] = target[to_device(mine, device)]
        above = (logits > threshold[:, None]).sum(dim=-1, dtype=torch.int32)   # (chunk,); int32: 1.5× faster on CPU
        rank[to_device(dest[mine], device)] = above[at].long() + 1


def read_positions(rows: Rows, sequences: Sequence[int], counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the last counts[i] tokens of each sequence, concatenated in order."""
    r_parts, c_parts = [], []
    for seq, k in zip(sequences, counts):
        r, cols = rows.last_columns(seq, k)
        r_parts.append(np.full(len(cols), r, dtype=np.int64))
        c_parts.append(cols)
    if not r_parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(r_parts), np.concatenate(c_parts)
