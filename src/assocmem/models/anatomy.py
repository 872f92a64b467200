"""Where the pieces of a decoder-only Hugging Face LM live: blocks, final norm, unembedding, softcap.

Found generically by attribute path (first match wins), so the packed forward, the logit lens and
the mechanism tests read every supported architecture (GPT-2, Llama, Gemma/Gemma 3, GPT-NeoX, OPT,
...) the same way, with no second implementation of any model.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from assocmem.errors import ConfigError

BLOCK_PATHS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers",
               "model.language_model.layers", "transformer.layers", "transformer.blocks")
LN_FINAL_PATHS = ("model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm", "model.decoder.final_layer_norm",
                  "model.language_model.norm", "model.final_layernorm", "transformer.norm_f", "transformer.norm")


@dataclass(frozen=True)
class LensParts:
    """The modules a read of the residual stream goes through, found by `find_parts`."""

    blocks: nn.ModuleList        # the decoder blocks, in order
    ln_final: nn.Module          # final norm applied before the unembedding
    W_U: nn.Module               # unembedding (model.get_output_embeddings())
    softcap: float | None        # config.final_logit_softcapping (Gemma 2/3), else None


def get_path(obj: object, path: str):
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def find_parts(model: nn.Module) -> LensParts:
    """Locate blocks, final norm and unembedding; a one-line ConfigError names what is missing."""
    kind = type(model).__name__
    blocks = next((b for b in (get_path(model, p) for p in BLOCK_PATHS) if isinstance(b, nn.ModuleList)), None)
    if blocks is None:
        raise ConfigError(f"diagnostics: unknown layer structure for {kind}: no decoder blocks at any of "
                          f"{', '.join(BLOCK_PATHS)}")
    ln_final = next((m for m in (get_path(model, p) for p in LN_FINAL_PATHS) if isinstance(m, nn.Module)), None)
    if ln_final is None:
        raise ConfigError(f"diagnostics: unknown layer structure for {kind}: no final norm at any of "
                          f"{', '.join(LN_FINAL_PATHS)}")
    W_U = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if W_U is None:
        raise ConfigError(f"diagnostics: unknown layer structure for {kind}: get_output_embeddings() gives no "
                          "unembedding")
    softcap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
    return LensParts(blocks=blocks, ln_final=ln_final, W_U=W_U, softcap=softcap)


def device_of(module: nn.Module, default):
    """The device of a module's first parameter (with device_map="auto" parts of a model sit apart)."""
    p = next(module.parameters(), None)
    return p.device if p is not None else default


ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention")
MLP_NAMES = ("mlp", "feed_forward", "ffn")


@dataclass(frozen=True)
class BlockParts:
    """The two sub-layers of one decoder block whose outputs are added to the residual stream."""

    attention: nn.Module         # the self-attention module (its output: the first element if a tuple)
    mlp: nn.Module               # the feed-forward module


def block_parts(blocks: nn.ModuleList) -> list[BlockParts]:
    """Each block's attention and MLP module, found by attribute name (first match wins); a one-line
    ConfigError names what is missing."""
    out = []
    for i, block in enumerate(blocks):
        found = [next((m for m in (getattr(block, n, None) for n in names) if isinstance(m, nn.Module)), None)
                 for names in (ATTENTION_NAMES, MLP_NAMES)]
        for part, names in zip(found, (ATTENTION_NAMES, MLP_NAMES)):
            if part is None:
                raise ConfigError(f"mechanism: unknown block structure for {type(block).__name__} (block {i}): "
                                  f"no sub-module named any of {', '.join(names)}")
        out.append(BlockParts(*found))
    return out
