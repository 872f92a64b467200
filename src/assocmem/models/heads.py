"""Attention heads of a decoder block: where each head's output lives, and edits of it.

A block's attention output is W_O · concat_h(z_h), where z_h (head_dim) is head h's attention-weighted
sum of values (TransformerLens's `hook_z`): the input of the output projection (`o_proj` in Llama and
Gemma, `c_proj` in GPT-2, `out_proj`, `dense`) is that concatenation, head h at columns
[h·head_dim, (h+1)·head_dim). So one forward pre-hook on the output projection reads or edits one
head's contribution, on the model's own modules, whatever its attention kernel:

    scale   z_h ← s · z_h             (s = 1: nothing; s = 0: the head removed)  at chosen positions or all
    replace z_h ← a given vector      (activation patching of one head)

Scaling z_h by s at every position is the same as scaling W_O's columns of head h by s: a test-time
edit of the model that needs no knowledge of the prompt (the defence of `hijack.defence`).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from assocmem.errors import ConfigError
from assocmem.models.anatomy import block_parts, find_parts

OUTPUT_PROJECTIONS = ("o_proj", "c_proj", "out_proj", "dense")


@dataclass(frozen=True)
class HeadLayout:
    """Each block's output projection and how its input splits into heads."""

    projections: tuple[nn.Module, ...]   # per block, the attention's output projection
    n_heads: int                         # query heads per block
    head_dim: int                        # width of one head's z

    def columns(self, head: int) -> slice:
        return slice(head * self.head_dim, (head + 1) * self.head_dim)


def _width(module: nn.Module) -> int:
    """The input width of a Linear (in_features) or of GPT-2's Conv1D (weight is (in, out))."""
    if isinstance(module, nn.Linear):
        return module.in_features
    return int(module.weight.shape[0])


def head_layout(model: nn.Module) -> HeadLayout:
    """The heads of `model`'s blocks; a one-line ConfigError names what is missing."""
    parts = find_parts(model)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n_heads = getattr(config, "num_attention_heads", None)
    projections = []
    for i, sub in enumerate(block_parts(parts.blocks)):
        proj = next((m for m in (getattr(sub.attention, n, None) for n in OUTPUT_PROJECTIONS)
                     if isinstance(m, nn.Module) and hasattr(m, "weight")), None)
        if proj is None:
            raise ConfigError(f"heads: unknown attention structure for {type(sub.attention).__name__} (block {i}): "
                              f"no output projection named any of {', '.join(OUTPUT_PROJECTIONS)}")
        projections.append(proj)
    width = _width(projections[0])
    if not isinstance(n_heads, int) or n_heads < 1 or width % n_heads:
        raise ConfigError(f"heads: {type(model).__name__} has num_attention_heads={n_heads!r}, which does not split "
                          f"its attention output of width {width} into heads")
    return HeadLayout(tuple(projections), n_heads, width // n_heads)


@dataclass(frozen=True)
class HeadEdit:
    """One edit of head `head`'s z in block `layer`.

    rows, cols   the (row, column) positions edited, as 1-D tensors; None: every position
    scale        multiply z by this, or
    values       (positions, head_dim): put these in place of z (rows/cols required)
    """

    layer: int
    head: int
    rows: torch.Tensor | None = None
    cols: torch.Tensor | None = None
    scale: float | None = None
    values: torch.Tensor | None = None

    def __post_init__(self):
        if (self.scale is None) == (self.values is None):
            raise ValueError("a HeadEdit takes exactly one of scale and values")
        if self.values is not None and (self.rows is None or self.cols is None):
            raise ValueError("a HeadEdit with values needs rows and cols")


def _pre_hook(layout: HeadLayout, edits: Sequence[HeadEdit]):
    def hook(module, args, kwargs):
        x = args[0] if args else kwargs["input"]
        x = x.clone()                                                        # (B, T, n_heads · head_dim)
        for e in edits:
            cols = layout.columns(e.head)
            if e.rows is None:
                x[..., cols] = x[..., cols] * e.scale
                continue
            r, c = e.rows.to(x.device), e.cols.to(x.device)
            if e.scale is not None:
                x[r, c, cols] = x[r, c, cols] * e.scale
            else:
                x[r, c, cols] = e.values.to(x.device, x.dtype)
        if args:
            return (x, *args[1:]), kwargs
        return args, {**kwargs, "input": x}
    return hook


@contextlib.contextmanager
def edited_heads(layout: HeadLayout, edits: Sequence[HeadEdit]) -> Iterator[None]:
    """Inside the block, every forward of the model applies `edits` (in order, per block)."""
    by_layer: dict[int, list[HeadEdit]] = defaultdict(list)
    for e in edits:
        if not 0 <= e.head < layout.n_heads:
            raise ValueError(f"head {e.head} of block {e.layer}: the model has {layout.n_heads} heads per block")
        by_layer[e.layer].append(e)
    handles = [layout.projections[layer].register_forward_pre_hook(_pre_hook(layout, v), with_kwargs=True)
               for layer, v in by_layer.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def scale_edits(scales: dict[tuple[int, int], float]) -> list[HeadEdit]:
    """{(block, head): s} as edits at every position."""
    return [HeadEdit(layer, head, scale=float(s)) for (layer, head), s in sorted(scales.items())]


@contextlib.contextmanager
def captured_z(layout: HeadLayout, layers: Sequence[int], rows: torch.Tensor, cols: torch.Tensor,
               into: dict[int, torch.Tensor]) -> Iterator[None]:
    """Inside the block, a forward stores into[layer] = (R, n_heads, head_dim) float32 z of every head at
    the positions (rows[i], cols[i]) of each of `layers`."""
    def keep(layer):
        def hook(module, args, kwargs):
            x = args[0] if args else kwargs["input"]
            into[layer] = x[rows.to(x.device), cols.to(x.device)].float().reshape(len(rows), layout.n_heads,
                                                                                 layout.head_dim)
        return hook
    handles = [layout.projections[layer].register_forward_pre_hook(keep(layer), with_kwargs=True) for layer in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
