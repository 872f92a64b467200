"""Extra query tokens on top of a packed forward: recompute only what an intervention changes.

An intervention on sequence s that edits what its positions ≥ f attend to (attention knockout from
those queries) or replaces an activation there (activation patching at the read position) cannot
change any position < f: with causal attention nothing before f sees what comes after it. So the
packed forward keeps every block's keys and values (`forward_rows(keep_cache=True)`) and an
intervention, a *probe*, feeds only copies of positions f..len-1 of its sequence as new tokens in
the same row, on top of that cache:

    row (cached)   [BOS] s_1 s_2 s_3 p⁽³⁾ | [BOS] …          keys and values of the plain forward
    new tokens     p⁽³⁾[f:] (probe 1)  p⁽³⁾[-1] (probe 2) …  each probe a group of its own

A new token at position q of sequence s sees exactly what the original token saw, except that s's
own positions f..q are its probe's fresh copies: the past columns its *anchor*, the column of s's
position f − 1, sees (with the sliding window of q's position where a layer has one), then its
probe's new tokens up to itself. The originals stay in the cache, so every other sequence (a branch
that shares them) and every other probe is untouched: any number of probes of any sequences share
one extension forward, and a probe with no edit gives the plain forward's numbers (tested). A read
probe (f = len − 1) costs one token where re-running the prompt costs all of them.

The model's own body runs the new tokens (transformers' DynamicCache, a prepared 4D mask or a
{layer type: mask} dict, as `models.packed_forward`); `attention_edit` and `replace` are the hooks an
intervention needs: the mask one block sees, and a module's output at given new tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from assocmem.models.anatomy import find_parts
from assocmem.models.packed_forward import (SLIDING, cache_argument, _mask_edit_hooks, attention_backend, attention_implementation,
                                            mask_argument, mask_plan, rows_to_device)
from assocmem.models.packing import Rows, allowed_from_arrays
from assocmem.models.llm import LoadedLM


@dataclass(frozen=True)
class Probe:
    """Positions first..len-1 of sequence `seq` (an index of the packed batch's `where`), fed again."""

    seq: int
    first: int


@dataclass
class ExtensionRows:
    """New tokens of some probes, every array (rows of the packed batch, Tn).

    anchor   the past column whose view the token inherits; -1 for padding (it sees only itself)
    group    index of its probe in `probes`, or -1 - column for padding (a group of its own)
    where    per probe of this chunk: (probe index, row, first new column, number of tokens)
    """

    input_ids: np.ndarray
    position_ids: np.ndarray
    anchor: np.ndarray
    group: np.ndarray
    where: list[tuple[int, int, int, int]]

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, new columns) of each probe's last token, in the order of `where`."""
        return (np.array([r for _, r, _, _ in self.where], dtype=np.int64),
                np.array([c + k - 1 for _, _, c, k in self.where], dtype=np.int64))


def layout_probes(rows: Rows, probes: Sequence[Probe], tokens_per_row: int, pad_id: int) -> list[ExtensionRows]:
    """Probes of one packed batch into chunks of at most `tokens_per_row` new tokens per row (at least
    one probe), each probe in its sequence's row; probes keep their order within a row."""
    by_row: dict[int, list[int]] = {}
    for i, p in enumerate(probes):
        length = rows.where[p.seq][4]
        if not 1 <= p.first < length:
            raise ValueError(f"probe of sequence {p.seq}: first={p.first} must be in [1, {length - 1}]")
        by_row.setdefault(rows.where[p.seq][0], []).append(i)
    queues = {r: list(v) for r, v in by_row.items()}
    chunks: list[ExtensionRows] = []
    B = rows.input_ids.shape[0]
    while any(queues.values()):
        taken: dict[int, list[int]] = {}
        for r, queue in queues.items():
            used, take = 0, []
            while queue and (not take or used + _size(rows, probes[queue[0]]) <= tokens_per_row):
                used += _size(rows, probes[queue[0]])
                take.append(queue.pop(0))
            taken[r] = take
        Tn = max(sum(_size(rows, probes[i]) for i in t) for t in taken.values())
        ids = np.full((B, Tn), pad_id, dtype=np.int64)
        pos = np.zeros((B, Tn), dtype=np.int64)
        anchor = np.full((B, Tn), -1, dtype=np.int64)
        group = -1 - np.arange(B * Tn, dtype=np.int64).reshape(B, Tn)
        where = []
        for r, take in taken.items():
            col = 0
            for i in take:
                p = probes[i]
                length = rows.where[p.seq][4]
                _, cols = rows.columns(p.seq, np.arange(p.first - 1, length))
                k = length - p.first
                ids[r, col:col + k] = rows.input_ids[r, cols[1:]]
                pos[r, col:col + k] = np.arange(p.first, length)
                anchor[r, col:col + k] = cols[0]
                group[r, col:col + k] = i
                where.append((i, r, col, k))
                col += k
        chunks.append(ExtensionRows(ids, pos, anchor, group, where))
    return chunks


def _size(rows: Rows, probe: Probe) -> int:
    return rows.where[probe.seq][4] - probe.first


def extension_allowed(past: dict[str, torch.Tensor], ext: dict[str, torch.Tensor], window: int | None) -> torch.Tensor:
    """(B, Tn, Tp + Tn) bool: may new token j see past column k / new column k' (see the module doc)."""
    base = allowed_from_arrays(torch, past["segment"], past["branch"], past["trunk_end"], past["position_ids"])
    anchor = ext["anchor"]
    Tp, Tn = base.shape[-1], anchor.shape[-1]
    seen = base.gather(1, anchor.clamp(min=0)[:, :, None].expand(-1, -1, Tp)) & (anchor >= 0)[:, :, None]
    col = torch.arange(Tn, device=anchor.device)
    own = (ext["group"][:, :, None] == ext["group"][:, None, :]) & (col[None, None, :] <= col[None, :, None])
    if window is not None:
        q = ext["position_ids"][:, :, None]
        seen = seen & (past["position_ids"][:, None, :] > q - window)
        own = own & (ext["position_ids"][:, None, :] > q - window)
    return torch.cat([seen, own], dim=-1)


def extension_mask(model, past: dict[str, torch.Tensor], ext: dict[str, torch.Tensor], backend: str, dtype):
    """The attention mask argument for the new tokens: one mask, or a dict per layer type."""
    plan = mask_plan(model)
    if plan.kinds is None:
        return mask_argument(extension_allowed(past, ext, plan.window), backend, dtype)
    return {kind: mask_argument(extension_allowed(past, ext, plan.window if kind == SLIDING else None), backend, dtype)
            for kind in plan.kinds}


Replacement = tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]   # module, rows, new columns, (R, d)


@torch.inference_mode()
def forward_extension(lm: LoadedLM, rows: Rows, cache, ext: ExtensionRows, *,
                      attention_edit: Callable[[int, object], object] | None = None,
                      replace: Sequence[Replacement] = (), start: int = 0,
                      entering: torch.Tensor | None = None) -> torch.Tensor:
    """(probes of `ext`, d_model) body output (after its final norm) at each probe's last new token.

    `cache`: the `Forwarded.cache` of `forward_rows(lm, rows, ..., keep_cache=True)`; left as it was.
    `attention_edit(layer, mask) -> mask`: the mask block `layer` sees (columns: the row's Tp past
    columns, then the new ones). `replace`: (module, rows, new columns, values): that module's output
    (its first element if a tuple) at those new tokens is replaced by `values`.
    `start`, `entering` (B, Tn, d_model): when no edit touches blocks below `start`, the new tokens'
    residual stream entering block `start` is the plain forward's (`entering`, e.g. from its `resid`):
    blocks 0..start-1 are not run for them but hand that on (their keys and values are never read).
    """
    model = lm.model
    parts = find_parts(model)
    device = model.get_input_embeddings().weight.device
    dtype = model.get_input_embeddings().weight.dtype
    backend = "eager" if attention_backend(model) == "eager" else "sdpa"
    past = rows_to_device(rows, device)
    new = {name: torch.from_numpy(getattr(ext, name)).to(device)
           for name in ("input_ids", "position_ids", "anchor", "group")}
    saved = [(layer.keys, layer.values) for layer in cache.layers]
    handles = _mask_edit_hooks(parts.blocks, attention_edit) if attention_edit is not None else []
    handles += [module.register_forward_hook(_replacer(r, c, v)) for module, r, c, v in replace]
    if start and (entering is None or entering.shape[:2] != ext.input_ids.shape):
        raise ValueError(f"start={start} needs `entering` of shape {ext.input_ids.shape} + (d_model,)")
    try:
        with attention_implementation(model, backend), handed_on(parts.blocks, start, entering):
            mask = extension_mask(model, past, new, backend, dtype)
            out = model.base_model(input_ids=new["input_ids"], attention_mask=mask, position_ids=new["position_ids"],
                                   use_cache=True, **{cache_argument(model): cache})
    finally:
        for h in handles:
            h.remove()
        for layer, (k, v) in zip(cache.layers, saved):   # the update appended the new tokens: undo it
            layer.keys, layer.values = k, v
    rr, rc = (torch.from_numpy(a).to(out[0].device) for a in ext.read())
    return out[0][rr, rc]


@contextlib.contextmanager
def handed_on(blocks: nn.ModuleList, start: int, entering: torch.Tensor | None) -> Iterator[None]:
    """Inside the block, blocks 0..start-1 are not run: each hands on `entering` (B, T, d_model), the
    residual stream entering block `start` of a forward over the same tokens whose blocks below
    `start` were the same (their keys and values are then never read). start = 0: nothing changes."""
    if start:
        first = next(blocks[0].parameters())
        passed = entering.to(first.device, first.dtype)
        for block in blocks[:start]:
            block.forward = lambda *args, **kwargs: passed       # an instance attribute, removed below
    try:
        yield
    finally:
        for block in blocks[:start]:
            del block.forward


@contextlib.contextmanager
def captured_entering(blocks: nn.ModuleList, layer: int, into: dict) -> Iterator[None]:
    """Inside the block, a forward stores into["entering"] = (B, T, d_model), the residual stream entering
    block `layer` at every position (what `handed_on` hands on)."""
    def keep(module, args, kwargs):
        into["entering"] = args[0] if args else kwargs["hidden_states"]
    handle = blocks[layer].register_forward_pre_hook(keep, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def _replacer(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor):
    def hook(module, args, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        patched = first.clone()
        patched[rows.to(first.device), cols.to(first.device)] = values.to(first.device, first.dtype)
        if isinstance(output, tuple):
            return (patched, *output[1:])
        if isinstance(output, list):
            return [patched, *output[1:]]
        return patched
    return hook
