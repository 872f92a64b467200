"""The theory of §5 as pure functions: what the theorems say, computed exactly where it can be.

* `pi_mass_by_distance`: the share of π(·|z*) at each Hamming distance. Eq. 5.1's construction encodes
  only distance 1 (𝒩_1), so this share says how much of the signal it can use (Theorem 1, Fig. C.2).
* `eq52_spectrum` / `eq52_rank`: the eigenvalues of the Eq. 5.2 Gram matrix in closed form (Lemma 5).
  With x_t = 2·ι⁻¹(t) − 1 ∈ {±1}^m, D_H(t, t') = (m − x_t·x_t')/2, so for G = gram_eq52(m, b0, b, a)

      G = (b0 − b)·I + (b − a·m/2)·J + (a/2)·X Xᵀ,      X = (x_0, …, x_{V−1})ᵀ ∈ {±1}^{V×m},

  and the columns of X are orthogonal to 1 and to each other (XᵀX = V·I). Hence the spectrum is
  (b0 − b) + aV/2 (m times), (b0 − b) + (b − am/2)·V (once, eigenvector 1), b0 − b (V − m − 1 times).
  With b0 = b the rank is m + 1 (m when b = am/2): Lemma 5's bound m + 2 holds and is not tight.
* `eq52_embedding_low_dim` / `theorem4_weights`: Theorem 4's transformer (Eq. 5.2 embeddings, W_V of
  Eq. 5.1 built on them, W_K = W_Q = 0). With b0 > b the Gram matrix has full rank V (above), so d < V
  can only realise Eq. 5.2 approximately; we keep its low-rank part exact and draw the identity part
  from unit Gaussian vectors, the "Gaussian init + Theorem 3 geometry" reading of §5.3.
* `score_gradient_*`: Lemma 6, the gradient of the loss with respect to an unnormalised attention score
  u_{t, t_L}, derived (α_t on both terms), as printed (α_t on the first term only), and by autograd.

Everything is float64 where exactness is claimed; no global random state (explicit generators).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from assocmem.config import check_float_range, check_int_range
from assocmem.errors import ConfigError
from assocmem.lca.constructions import eq52_embedding, theorem1_value
from assocmem.lca.task import LCAConfig, hamming_matrix, latent_bits, pi_table

__all__ = [
    "pi_mass_by_distance",
    "eq52_spectrum",
    "eq52_rank",
    "eq52_embedding_low_dim",
    "theorem4_weights",
    "attention_scores",
    "score_gradient_closed_form",
    "score_gradient_printed",
    "score_gradient_autograd",
    "last_logits_from_scores",
    "ScoreGradients",
    "score_gradients",
]

_RANK_RTOL = 1e-9  # an eigenvalue counts as nonzero above this share of the largest one


def pi_mass_by_distance(config: LCAConfig) -> torch.Tensor:
    """(m + 1,) float64: share of π(·|z*)'s mass at Hamming distance k = 0..m from z*, averaged over z*.

    Entry 0 is always 0 (π never draws z*). For 𝒩 = all: entry k = C(m, k) e^{−k/β} / ((1 + e^{−1/β})^m − 1),
    e.g. m = 8, β = 1: 0.26 at distance 1 — all that Eq. 5.1's construction encodes.
    """
    pi = pi_table(config)  # (V, V) [z*, z]
    D = hamming_matrix(config.m)  # (V, V)
    mass = torch.zeros(config.m + 1, dtype=torch.float64)
    mass.scatter_add_(0, D.reshape(-1), pi.reshape(-1))
    return mass / config.V


def _check_eq52(m: int, b0: float, b: float, a: float) -> None:
    check_int_range("m", m, 1)
    for name, value in (("b0", b0), ("b", b), ("a", a)):
        check_float_range(name, value)


def eq52_spectrum(m: int, b0: float, b: float, a: float) -> torch.Tensor:
    """(V,) float64 eigenvalues of gram_eq52(m, b0, b, a), descending, in closed form (see the module
    docstring): (b0 − b) + aV/2 ×m, (b0 − b) + (b − am/2)V ×1, (b0 − b) ×(V − m − 1)."""
    _check_eq52(m, b0, b, a)
    V, excess = 2**m, b0 - b
    values = [excess + a * V / 2] * m + [excess + (b - a * m / 2) * V] + [excess] * (V - m - 1)
    return torch.tensor(values, dtype=torch.float64).sort(descending=True).values


def eq52_rank(m: int, b0: float, b: float, a: float) -> int:
    """rank of the Eq. 5.2 Gram matrix (= rank W_E, Lemma 5) from the closed-form spectrum.

    b0 = b: m + 1, or m when b = am/2 (Lemma 5 states ≤ m + 2); b0 > b: V (full rank)."""
    ev = eq52_spectrum(m, b0, b, a)
    return int((ev.abs() > _RANK_RTOL * float(ev.abs().max().clamp(min=1e-300))).sum())


def eq52_embedding_low_dim(
    m: int, b0: float, b: float, a: float, d: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """W_E (1, d, V) realising Eq. 5.2 in d < V dimensions, exactly on its low-rank part (Theorem 4 setup).

    Rows: √(a/2)·Xᵀ (m rows), √(b − am/2)·1ᵀ (1 row), √(b0 − b)·R (d − m − 1 rows), where R's columns are
    independent Gaussian vectors scaled to unit norm. Then ⟨W_E(t), W_E(t)⟩ = b0 exactly and
    ⟨W_E(t), W_E(t')⟩ = −a·D_H(t, t') + b + (b0 − b)·⟨r_t, r_t'⟩, the last term of order (b0 − b)/√(d − m − 1).
    Needs b ≥ am/2 (PSD), b0 ≥ b and m + 2 ≤ d.
    """
    _check_eq52(m, b0, b, a)
    V = 2**m
    check_int_range("d", d, m + 2)
    gamma = b - a * m / 2
    if gamma < 0 or b0 < b:
        raise ConfigError(f"(b0, b, a)=({b0}, {b}, {a}) is invalid for m={m}: allowed b >= a*m/2 and b0 >= b "
                          "(otherwise the Gram matrix of Eq. 5.2 is not PSD)")
    X = (2 * latent_bits(m) - 1).to(torch.float64)  # (V, m) ±1 codes
    R = torch.randn(d - m - 1, V, generator=generator, dtype=torch.float64, device=generator.device).cpu()
    R = R / R.norm(dim=0, keepdim=True)  # (d − m − 1, V) unit columns
    W = torch.cat([(a / 2) ** 0.5 * X.T, gamma**0.5 * torch.ones(1, V, dtype=torch.float64), (b0 - b) ** 0.5 * R])
    return W.to(dtype).unsqueeze(0)  # (1, d, V)


def theorem4_weights(
    task: LCAConfig, b0: float, b: float, a: float, d: int | None, generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor]:
    """Theorem 4's transformer: W_E following Eq. 5.2, W_V = Σ_t W_E(t) Σ_{t' ∈ 𝒩_1(t)} W_E(t')ᵀ (Eq. 5.1) on
    that W_E, W_K = W_Q = 0 (uniform attention). d = None: the exact realisation (d = V, `eq52_embedding`);
    d < V: `eq52_embedding_low_dim`. Shapes (1, d, V), (1, d, d), (1, d, d), (1, d, d).

    The logits are Gᵀ A G counts(x)/L (G = W_Eᵀ W_E, A the 𝒩_1 adjacency); exactly,
    G A G = (b0 − b)²·A + (m − 2)·a·((b0 − b) + aV/4)·X Xᵀ + (terms constant over the candidates), so a
    large b0 − b makes the readout Theorem 1's count of 𝒩_1 tokens, a small one a per-bit majority vote.
    """
    if d is None:
        W_E = eq52_embedding(task.m, b0, b, a, dtype=dtype)
    else:
        W_E = eq52_embedding_low_dim(task.m, b0, b, a, d, generator, dtype)
    dim = W_E.shape[1]
    zeros = torch.zeros(1, dim, dim, dtype=dtype)
    return {"W_E": W_E, "W_Q": zeros, "W_K": zeros.clone(), "W_V": theorem1_value(W_E, task.m, task.neighborhood)}


# ---------------------------------------------------------------- Lemma 6


def attention_scores(W_E: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, query: int) -> torch.Tensor:
    """(V,) unnormalised scores u_{t, t_L} = (W_K W_E(t))ᵀ (W_Q W_E(t_L)) / √d_a of every token t against the
    query token t_L = `query` (§5.4). W_E (d, V), W_Q and W_K (d_a, d): one model."""
    d_a = W_Q.shape[0]
    return (W_K @ W_E).T @ (W_Q @ W_E[:, query]) / d_a**0.5  # (V,)


class _Terms(NamedTuple):
    alpha: torch.Tensor  # (V,) α_t = #{l: t_l = t}
    p_hat: torch.Tensor  # (V,) p̂_t: the attention weight of one position holding t
    h: torch.Tensor  # (d,) h(x) = Σ_l p̂_{t_l} W_E(t_l)
    g: torch.Tensor  # (d,) W_Vᵀ W_E ∇ℓ, so that ∇ℓᵀ W_Eᵀ W_V v = g·v


def _terms(W_E: torch.Tensor, W_V: torch.Tensor, u: torch.Tensor, x: torch.Tensor, y: int) -> _Terms:
    V = W_E.shape[1]
    p_hat = torch.exp(u - torch.logsumexp(u[x], dim=0))  # (V,)
    alpha = torch.bincount(x, minlength=V).to(u)  # (V,)
    h = W_E @ (alpha * p_hat)  # (d,) = Σ_l p̂_{t_l} W_E(t_l)
    grad_logits = torch.softmax(W_E.T @ W_V @ h, dim=0) - F.one_hot(torch.tensor(y), V).to(u)  # (V,) ∇ℓ
    return _Terms(alpha, p_hat, h, W_V.T @ (W_E @ grad_logits))


def score_gradient_closed_form(W_E: torch.Tensor, W_V: torch.Tensor, u: torch.Tensor, x: torch.Tensor,
                               y: int) -> torch.Tensor:
    """(V,) ∇_{u_{t,t_L}} ℓ = ∇ℓᵀ W_Eᵀ W_V (α_t p̂_t W_E(t) − α_t p̂_t Σ_l p̂_{t_l} W_E(t_l)) (Lemma 6, derived).

    Position l has score u_{t_l, t_L}; the score of token t is shared by its α_t positions, and each of them
    contributes p̂_t (W_E(t) − h) through the softmax, hence α_t on both terms. W_E (d, V), W_V (d, d),
    u (V,), x (L,) long, y the target.
    """
    T = _terms(W_E, W_V, u, x, y)
    return T.alpha * T.p_hat * (T.g @ W_E - T.g @ T.h)


def score_gradient_printed(W_E: torch.Tensor, W_V: torch.Tensor, u: torch.Tensor, x: torch.Tensor,
                           y: int) -> torch.Tensor:
    """(V,) Lemma 6 as printed: ∇ℓᵀ W_Eᵀ W_V (α_t p̂_t W_E(t) − p̂_t Σ_l p̂_{t_l} W_E(t_l)), α_t missing on the
    second term. Equal to the derived form exactly where α_t = 1; off by (α_t − 1) p̂_t ∇ℓᵀW_EᵀW_V h elsewhere
    (for a token absent from x, α_t = 0, it reads −p̂_t ∇ℓᵀW_EᵀW_V h where the true gradient is 0; the lemma
    speaks of tokens of the context)."""
    T = _terms(W_E, W_V, u, x, y)
    return T.alpha * T.p_hat * (T.g @ W_E) - T.p_hat * (T.g @ T.h)


def last_logits_from_scores(W_E: torch.Tensor, W_V: torch.Tensor, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(V,) f^L(x) = W_Eᵀ W_V W_E χ(x) softmax(u[x]): Eq. 4.1 at the last position, from the scores u."""
    return W_E.T @ W_V @ (W_E[:, x] @ torch.softmax(u[x], dim=0))


def score_gradient_autograd(W_E: torch.Tensor, W_V: torch.Tensor, u: torch.Tensor, x: torch.Tensor,
                            y: int) -> torch.Tensor:
    """(V,) the same gradient by autograd through `last_logits_from_scores` and the cross-entropy."""
    leaf = u.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(last_logits_from_scores(W_E, W_V, leaf, x)[None], torch.tensor([y]))
    (grad,) = torch.autograd.grad(loss, leaf)
    return grad


class ScoreGradients(NamedTuple):
    closed: torch.Tensor  # (V,)
    printed: torch.Tensor  # (V,)
    autograd: torch.Tensor  # (V,)
    alpha: torch.Tensor  # (V,) occurrences of each token in x


def score_gradients(W_E: torch.Tensor, W_V: torch.Tensor, u: torch.Tensor, x: torch.Tensor, y: int) -> ScoreGradients:
    """The three forms of Lemma 6's gradient on one context, with α_t."""
    return ScoreGradients(score_gradient_closed_form(W_E, W_V, u, x, y), score_gradient_printed(W_E, W_V, u, x, y),
                          score_gradient_autograd(W_E, W_V, u, x, y),
                          torch.bincount(x, minlength=W_E.shape[1]).to(u))
