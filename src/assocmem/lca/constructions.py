"""Hand-built weights of §5: the associative-memory construction of Theorem 1 and the geometry of Eq. 5.2.

* `orthonormal_embedding`: token embeddings W_E(t) (columns of W_E) orthonormal, which needs d ≥ V.
* `theorem1_value`: W_V = Σ_t W_E(t) Σ_{t' ∈ N_1(t)} W_E(t')ᵀ (Eq. 5.1) = W_E A W_Eᵀ, with A the
  (V, V) 0/1 adjacency A[t, t'] = 1[D_H(t, t') = 1 and t' ∈ N(t)]. With orthonormal W_E and
  W_K = W_Q = 0 the attention is uniform, h(x) = W_E counts(x) / L, and the logit of y is
  (A counts(x))_y / L: the number of context tokens one bit away from y.
* `random_pairs_value`: the random baseline of §6.1 / C.1 (same number of outer-product pairs per
  token, partners drawn at random).
* `eq52_embedding` / `gram_eq52`: embeddings whose Gram matrix is b0 on the diagonal and
  −a·D_H(t, t') + b off it (Eq. 5.2).

Every function is pure and batched over a leading model dimension E (a single model is E = 1).
"""

from __future__ import annotations

import torch

from assocmem.config import check_float_range, check_int_range
from assocmem.errors import ConfigError
from assocmem.lca.task import LCAConfig, hamming_matrix, neighborhood_mask

__all__ = [
    "orthonormal_embedding",
    "hamming1_adjacency",
    "theorem1_value",
    "model_theorem1_value",
    "random_pairs_value",
    "theorem1_weights",
    "gram_eq52",
    "eq52_embedding",
]


def _random_orthonormal(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """(*, n, k) float64 with orthonormal columns (n ≥ k), Haar-distributed: QR of a Gaussian with the
    signs of R's diagonal folded into Q."""
    gauss = torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device)
    q, r = torch.linalg.qr(gauss)  # reduced: q (*, n, k)
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    return q * torch.where(signs == 0, torch.ones_like(signs), signs).unsqueeze(-2)


def orthonormal_embedding(
    V: int, d: int, generator: torch.Generator, E: int = 1, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """W_E of shape (E, d, V) whose V columns (token embeddings) are orthonormal (Theorem 1's W_E).

    Needs d ≥ V: V orthonormal vectors do not fit in fewer dimensions.
    """
    check_int_range("V", V, 1)
    check_int_range("E", E, 1)
    if not isinstance(d, int) or d < V:
        raise ConfigError(f"d={d!r} is invalid: allowed d >= V={V} for orthonormal token embeddings")
    return _random_orthonormal((E, d, V), generator).to(dtype)


def hamming1_adjacency(m: int, neighborhood: str = "all", device: torch.device | str = "cpu") -> torch.Tensor:
    """(V, V) 0/1 float64 matrix A[t, t'] = 1[t' ∈ N_1(t)], N_1(t) = {t': D_H(t, t') = 1} ∩ N(t) (§5.1)."""
    one_bit = hamming_matrix(m, device) == 1
    return (one_bit & neighborhood_mask(m, neighborhood, device)).to(torch.float64)


def _check_embedding(W_E: torch.Tensor, m: int) -> None:
    if W_E.dim() != 3 or W_E.shape[-1] != 2**m:
        raise ConfigError(f"W_E has shape {tuple(W_E.shape)}: allowed (E, d, V) with V = 2^m = {2**m}")


def _value_from_adjacency(W_E: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """W_E A W_Eᵀ = Σ_{t,t'} A[t, t'] W_E(t) W_E(t')ᵀ: (E, d, d) in W_E's dtype."""
    W = W_E.to(torch.float64)
    return (W @ A.to(W) @ W.transpose(-1, -2)).to(W_E.dtype)


def theorem1_value(W_E: torch.Tensor, m: int, neighborhood: str = "all") -> torch.Tensor:
    """Eq. 5.1: W_V = Σ_t W_E(t) (Σ_{t' ∈ N_1(t)} W_E(t')ᵀ) = W_E A W_Eᵀ. W_E (E, d, V) → (E, d, d)."""
    _check_embedding(W_E, m)
    return _value_from_adjacency(W_E, hamming1_adjacency(m, neighborhood, W_E.device))


def model_theorem1_value(W_E: torch.Tensor, m: int) -> torch.Tensor:
    """Eq. 5.1 built from a model's own (e.g. trained) embedding matrix, as the authors built C.2:
    W_V = Σ_z W_E(z) ⊗ Σ_{i ≤ m} W_E(flip_i z) over the 2^m latent tokens. W_E (E, d, V') with V' ≥ 2^m: the
    vocabulary's extra, never-drawn tokens (after the latent ones) take no part. (E, d, d)."""
    if W_E.dim() != 3 or W_E.shape[-1] < 2**m:
        raise ConfigError(f"W_E has shape {tuple(W_E.shape)}: allowed (E, d, V') with V' >= 2^m = {2**m}")
    return theorem1_value(W_E[..., : 2**m], m, "all")


def random_pairs_value(
    W_E: torch.Tensor, m: int, generator: torch.Generator, neighborhood: str = "all", replace: bool = False
) -> torch.Tensor:
    """The §6.1 / C.1 random baseline: Eq. 5.1 with randomly chosen outer-product pairs. (E, d, d).

    Every token t keeps its number of pairs |N_1(t)| (m for `all`), but its partners t' are random,
    independently for each t and each of the E models:
    * replace=False (our choice): drawn uniformly without replacement from [V] ∖ {t}, so the baseline has
      the same number of outer products, the same norm budget and the same row sums of A as the
      construction, and only the Hamming-1 structure is removed;
    * replace=True (the authors' code, visualization/wv_eval.py): each of the m keys drawn uniformly from
      all V tokens, t included, with replacement (a key drawn twice counts twice).
    """
    _check_embedding(W_E, m)
    E, V = W_E.shape[0], 2**m
    n_pairs = hamming1_adjacency(m, neighborhood, W_E.device).sum(dim=1).long()  # (V,)
    if replace:
        k = int(n_pairs.max())
        keys = torch.randint(0, V, (E, V, k), generator=generator, device=generator.device).to(W_E.device)
        used = (torch.arange(k, device=W_E.device) < n_pairs[:, None]).to(torch.float64).expand(E, V, k)
        A = torch.zeros(E, V, V, dtype=torch.float64, device=W_E.device).scatter_add_(2, keys, used)
        return _value_from_adjacency(W_E, A)
    # A uniform random ranking of the other tokens per (model, t); the first n_pairs[t] are partners.
    keys = torch.rand((E, V, V), generator=generator, dtype=torch.float64, device=generator.device).to(W_E.device)
    keys.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))  # t itself ranks last, never chosen
    rank = keys.argsort(dim=-1).argsort(dim=-1)  # (E, V, V): rank of t' among t's candidates
    A = (rank < n_pairs.view(1, V, 1)).to(torch.float64)
    return _value_from_adjacency(W_E, A)


def theorem1_weights(
    task: LCAConfig, d: int, generator: torch.Generator, E: int = 1, d_a: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Theorem 1's transformer: orthonormal W_E (E, d, V), W_K = W_Q = 0 (E, d_a, d), W_V of Eq. 5.1.

    N_1 follows the task's neighbourhood (𝒩_1(t) = Hamming-1 tokens within 𝒩(t)). d_a defaults to d
    (irrelevant: the scores are all 0, so the attention is uniform).
    """
    d_a = d if d_a is None else d_a
    check_int_range("d_a", d_a, 1)
    W_E = orthonormal_embedding(task.V, d, generator, E, dtype)
    zeros = torch.zeros(E, d_a, d, dtype=dtype, device=W_E.device)
    return {"W_E": W_E, "W_Q": zeros, "W_K": zeros.clone(), "W_V": theorem1_value(W_E, task.m, task.neighborhood)}


def gram_eq52(m: int, b0: float, b: float, a: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """(V, V) float64 Gram matrix of Eq. 5.2: b0 on the diagonal, −a·D_H(t, t') + b off it."""
    check_int_range("m", m, 1)
    for name, value in (("b0", b0), ("b", b), ("a", a)):
        check_float_range(name, value)
    D = hamming_matrix(m, device).to(torch.float64)
    G = b - a * D
    return G.fill_diagonal_(float(b0))


def eq52_embedding(
    m: int, b0: float, b: float, a: float, d: int | None = None, generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Embeddings W_E (1, d, V) with W_Eᵀ W_E = gram_eq52(m, b0, b, a) (Eq. 5.2).

    Realised from the eigendecomposition G = U Λ Uᵀ as W_E = Λ^{1/2} Uᵀ (rows of zero eigenvalue
    kept as zero rows), so rank(W_E) = rank(G). d defaults to V; a smaller d is allowed down to
    rank(G). With a generator the rows are rotated by a random orthogonal d × d matrix (the Gram
    matrix does not change). Raises ConfigError if (b0, b, a) give a Gram matrix that is not PSD.
    """
    G = gram_eq52(m, b0, b, a)
    V = G.shape[0]
    evals, evecs = torch.linalg.eigh(G)  # ascending
    tol = 1e-10 * max(1.0, float(evals.abs().max()))
    if float(evals[0]) < -tol:
        raise ConfigError(
            f"(b0, b, a)=({b0}, {b}, {a}) is invalid for m={m}: the Gram matrix of Eq. 5.2 has eigenvalue "
            f"{float(evals[0]):.3g} < 0; allowed values make it PSD (b0=b needs b >= a*m/2; b0 > b adds b0-b)"
        )
    evals = torch.where(evals > tol, evals, torch.zeros_like(evals)).flip(0)  # round-off → exact 0
    evecs = evecs.flip(1)
    rank = int((evals > tol).sum())
    d = V if d is None else d
    if not isinstance(d, int) or d < max(rank, 1):
        raise ConfigError(f"d={d!r} is invalid: allowed d >= rank of the Eq. 5.2 Gram matrix = {rank}")
    W = torch.zeros(d, V, dtype=torch.float64)
    k = min(d, V)
    W[:k] = evals[:k].sqrt().unsqueeze(1) * evecs[:, :k].T  # (k, V); rows beyond the rank are 0
    if generator is not None:
        W = _random_orthonormal((d, d), generator).to(W.device) @ W
    return W.to(dtype).unsqueeze(0)
