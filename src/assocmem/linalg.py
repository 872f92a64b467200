"""Spectra of weight matrices, one implementation for both halves: singular values (exact and batched
for the synthetic model's W_E; through the Gram matrix, chunked, for an LLM's 262k-row embedding),
the eigen-gap (largest consecutive ratio), the top-block gap of §5.3 / Lemma 5, the numerical rank
and the effective rank (Roy & Vetterli 2007).
"""

from __future__ import annotations

import numpy as np
import torch

from assocmem.errors import ConfigError


@torch.inference_mode()
def gram_and_sums(W: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(WᵀW in float64, column sums, rows) of the tall orientation of W, over row chunks."""
    W = W.detach()
    if W.shape[0] < W.shape[1]:
        W = W.T
    gram = torch.zeros(W.shape[1], W.shape[1], dtype=torch.float64, device=W.device)
    total = torch.zeros(W.shape[1], dtype=torch.float64, device=W.device)
    for rows in W.split(chunk):  # chunk products in the weights' precision (fp32: 4x faster than fp64
        r = rows.float() if rows.dtype in (torch.float16, torch.bfloat16) else rows  # on CPU), summed in fp64
        gram += (r.T @ r).double()
        total += r.sum(dim=0, dtype=torch.float64)
    return gram, total, W.shape[0]


def sqrt_eigenvalues(gram: torch.Tensor) -> torch.Tensor:
    # σ² are the eigenvalues of the symmetric PSD Gram: eigvalsh takes 0.2 s at 640 × 640 in float64
    # on this CPU where svdvals took 10 s (the general SVD path)
    eig = torch.linalg.eigvalsh(gram)
    return eig.clamp_min(0).sqrt().sort(descending=True).values.cpu()


@torch.inference_mode()
def gram_singular_values(W: torch.Tensor, chunk: int = 16384, center: bool = False) -> torch.Tensor:
    """Singular values of W (rows × cols), descending, in float64; `center`: of W minus its mean row.

    Through the Gram matrix on the smaller side (d × d for an embedding of d_vocab × d_model): for
    Gemma's 262k × 640 that is a 640 × 640 problem, accumulated in float64 over row chunks so W is
    never copied whole. With fp32 weights, singular values below ~1e-3 · σ_max lose relative accuracy
    (the Gram squares the condition number); the effective rank and the top gap do not depend on them.
    """
    if center and W.shape[0] < W.shape[1]:  # wide: centre explicitly (small); tall: through the Gram
        W, center = W.detach() - W.detach().mean(dim=0, keepdim=True), False
    gram, total, rows = gram_and_sums(W, chunk)
    if center:  # Σ (w - μ)(w - μ)ᵀ = Σ w wᵀ - N μ μᵀ
        gram = gram - torch.outer(total, total) / rows
    return sqrt_eigenvalues(gram)


def effective_rank(s) -> float:
    """Roy & Vetterli (2007): exp of the entropy of the normalised singular values."""
    s = np.asarray(s, dtype=np.float64)
    p = s[s > 0] / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def singular_values(W_E: torch.Tensor) -> torch.Tensor:
    """Singular values of each W_E, descending: (E, d, V) → (E, min(d, V)) (Lemma 5, Fig. C.9–C.12)."""
    return torch.linalg.svdvals(W_E.to(torch.float64))


def eigengap(svals: torch.Tensor, top_k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest ratio of consecutive singular values s_k / s_{k+1} (0-based), for (..., n) descending,
    among the top `top_k` (all by default).

    Returns (index, ratio): index = k + 1 is the number of singular values above the gap (the
    effective rank), ratio the gap's size. Zeros are floored at eps·s_0, so an exactly rank-r matrix
    has its gap at index r with a ratio of order 1/eps.
    """
    if torch.as_tensor(svals).shape[-1] < 2:
        raise ConfigError(f"svals has {svals.shape[-1]} values: allowed at least 2 to find a gap")
    s = torch.as_tensor(svals).to(torch.float64)
    if top_k is not None:
        s = s[..., : top_k + 1]
    floor = torch.finfo(torch.float64).eps * s[..., :1].clamp(min=torch.finfo(torch.float64).tiny)
    ratios = s[..., :-1] / s[..., 1:].clamp(min=floor)  # (..., n - 1)
    ratio, k = ratios.max(dim=-1)
    return k + 1, ratio


def block_gap(svals: torch.Tensor, k: int) -> torch.Tensor:
    """mean(s_1..s_k) / mean(s_{k+1}..s_n) for (..., n) descending singular values: the gap "between the top
    and the bottom singular values" (§5.3) read as one ratio of two blocks, so that a drop spread over two
    steps counts as fully as one step. For Eq. 5.2 the top block is the m latent directions (eigenvalue
    (b0 − b) + aV/2, `lca.theory.eq52_spectrum`). Returns (...,)."""
    n = svals.shape[-1]
    if not isinstance(k, int) or not 1 <= k < n:
        raise ConfigError(f"k={k!r} is invalid: allowed 1 <= k < {n} (the number of singular values)")
    s = svals.to(torch.float64)
    return s[..., :k].mean(dim=-1) / s[..., k:].mean(dim=-1).clamp(min=torch.finfo(torch.float64).tiny)


def numerical_rank(svals: torch.Tensor, rtol: float = 1e-9) -> torch.Tensor:
    """Number of singular values above rtol × the largest, for (..., n) descending values: (...,) long."""
    s = svals.to(torch.float64)
    return (s > rtol * s[..., :1]).sum(dim=-1)


