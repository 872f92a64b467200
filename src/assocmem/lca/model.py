"""The one-layer transformer of §4.2, batched over a leading model dimension E.

    f^L(x) = [W_E^T W_V attn(W_E chi(x))]_{:,L},   attn(U) = U sigma((W_K U)^T (W_Q U) / sqrt(d_a))

sigma is a column-wise softmax, there is no residual, no normalisation, no positional embedding, and
the embedding is tied (W_E embeds and unembeds, as in Gemma). Only the last position matters to the
task, so only its query column is computed. A single model is the case E = 1.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class LastPosition(NamedTuple):
    logits: torch.Tensor  # (E, B, V)  f^L(x)
    attention: torch.Tensor  # (E, B, L)  sigma(...)_{:, L}: the last column of the attention matrix
    hidden: torch.Tensor  # (E, B, d)  h(x) = [attn(W_E chi(x))]_{:, L}


def forward_last(
    W_E: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor, x: torch.Tensor
) -> LastPosition:
    """Evaluate E models at once on token contexts.

    W_E: (E, d, V); W_Q, W_K: (E, d_a, d); W_V: (E, d, d); x: (E, B, L) or (B, L) long (the same
    contexts for every model). Pure function of its arguments, so an analysis can swap any matrix
    (e.g. W_V by the Theorem 1 construction) without touching a module.
    """
    E, d, V = W_E.shape
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(E, *x.shape)
    d_a = W_Q.shape[1]
    # U^T: one embedded token per row.
    U = torch.gather(
        W_E.transpose(1, 2), 1, x.reshape(E, -1, 1).expand(-1, -1, d)
    ).reshape(*x.shape, d)  # (E, B, L, d)
    keys = torch.einsum("ebld,ead->ebla", U, W_K)  # (E, B, L, d_a)
    query = torch.einsum("ebd,ead->eba", U[:, :, -1], W_Q)  # (E, B, d_a)
    scores = torch.einsum("ebla,eba->ebl", keys, query) / math.sqrt(d_a)  # (E, B, L)
    attention = scores.softmax(dim=-1)
    hidden = torch.einsum("ebl,ebld->ebd", attention, U)  # (E, B, d)
    logits = _readout(W_E, W_V, hidden)
    return LastPosition(logits, attention, hidden)


def _readout(W_E: torch.Tensor, W_V: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """W_E^T W_V h: (E, B, V)."""
    values = torch.einsum("edk,ebk->ebd", W_V, hidden)  # (E, B, d)
    return torch.einsum("edv,ebd->ebv", W_E, values)
