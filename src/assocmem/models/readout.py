"""Reading next-token logits off the residual stream: the model's final norm, its unembedding and its
final logit softcap (Gemma 2/3), in that order, exactly as the model's own head computes them.

One function serves every reader: the scorer (`models.packed_forward.token_scores`, on the body's
output), the logit lens and `try`'s top tokens (`hijack.diagnostics`, on the residual stream after any
block) and the mechanism's margins (`hijack.mechanism`, two tokens per read, no vocabulary-wide product).
"""

from __future__ import annotations

import torch

from assocmem.models.anatomy import LensParts, device_of


def unembed(parts: LensParts, x: torch.Tensor, *, normed: bool, tokens: torch.Tensor | None = None) -> torch.Tensor:
    """float32 logits of residual vectors x (R, d_model), on the unembedding's device.

    `normed`: x is the body's output, already through the final norm (else the norm is applied here, on
    its own device and in the unembedding's dtype). `tokens` (k, R): only the logits of tokens[j, r] at
    read r, (k, R), from those rows of W_U (and its bias), without the (R, d_vocab) product.
    """
    W = parts.W_U.weight
    if not normed:
        x = parts.ln_final(x.to(device=device_of(parts.ln_final, W.device), dtype=W.dtype))
    x = x.to(W.device, W.dtype)
    if tokens is None:
        logits = parts.W_U(x).float()                                                   # (R, d_vocab)
    else:
        tokens = tokens.to(W.device)
        logits = torch.einsum("rd,krd->kr", x, W[tokens]).float()                      # (k, R)
        bias = getattr(parts.W_U, "bias", None)
        if bias is not None:
            logits = logits + bias[tokens].float()
    if parts.softcap is not None:
        logits = torch.tanh(logits / parts.softcap) * parts.softcap
    return logits
