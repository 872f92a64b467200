"""Probes of a trained (or constructed) one-layer model against the theory of §5 and the figures of §6.

Pure functions of a weights dict {"W_E": (E, d, V), "W_Q": (E, d_a, d), "W_K": (E, d_a, d),
"W_V": (E, d, d)}, batched over the leading model dimension E:

* accuracy, and accuracy with W_V swapped for a construction (§6.1, Fig. C.2);
* low-rank approximations and the smallest principal angle between them (Fig. C.3);
* embedding inner products by Hamming distance and a fit of Eq. 5.2 (Fig. 3b, C.5, C.6);
* singular values of W_E, their eigengap (largest consecutive ratio) and the top-block gap (Lemma 5,
  Fig. C.9–C.12), numerical rank;
* mean attention by token and by cluster relation (§5.4, Fig. 3c, C.7, C.8);
* context mixing (§5.5, C.5) and accuracy against context length (C.6), each beside the Bayes ceiling.

Accuracies are *expected* accuracies with ties broken uniformly (`lca.accuracy`, `bayes.expected_correct`):
constructions produce exact ties often (their logits are integer counts over L), and argmax's
first-index rule would bias them towards small token ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pandas as pd
import torch

from assocmem.config import check_choice, check_int_range
from assocmem.errors import ConfigError
from assocmem.lca.accuracy import accuracy, correct
from assocmem.lca.bayes import check_contexts, expected_accuracy_on
from assocmem.lca.model import forward_last
from assocmem.linalg import block_gap, eigengap, numerical_rank, singular_values  # noqa: F401  (one implementation)
from assocmem.lca.task import LCAConfig, hamming_matrix, latent_bits, sample_batch

__all__ = [
    "model_logits",
    "evaluate_weights",
    "accuracy_with_value",
    "low_rank",
    "smallest_principal_angle",
    "inner_product_by_hamming",
    "fit_eq52",
    "singular_values",
    "eigengap",
    "block_gap",
    "numerical_rank",
    "line_r2",
    "attention_by_token",
    "attention_by_cluster",
    "sample_mixed_contexts",
    "mixing_rates",
    "accuracy_vs_length",
]

from assocmem.lca.bayes import LOGIT_RTOL  # noqa: E402,F401  (re-exported: the one tie tolerance)
_CHUNK_ELEMENTS = 1 << 24  # E·b·L·d floats per forward chunk: bounds the (E, b, L, d) embedded context


def _forward_chunks(weights: dict[str, torch.Tensor], x: torch.Tensor):
    """Yield (start, LastPosition) over batch chunks of x ((B, L) or (E, B, L)), without autograd, so a
    large evaluation fits in memory."""
    E, d, _ = weights["W_E"].shape
    step = max(1, _CHUNK_ELEMENTS // (E * x.shape[-1] * d))
    for start in range(0, x.shape[-2], step):
        with torch.no_grad():
            out = forward_last(weights["W_E"], weights["W_Q"], weights["W_K"], weights["W_V"],
                               x[..., start : start + step, :])
        yield start, out


def model_logits(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """f^L(x) for every model: x (B, L) (shared) or (E, B, L) (one batch per model) → (E, B, V)."""
    return torch.cat([out.logits for _, out in _forward_chunks(weights, x)], dim=1)


def evaluate_weights(
    weights: dict[str, torch.Tensor], task: LCAConfig, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Accuracy 1 − R(f) (§4.1) of each of the E models on the samples: (E,) float64.

    x (B, L) and y (B,) are shared by all models; x (E, B, L) and y (E, B) give each model its own.

    Ties among the top logits (relative tolerance LOGIT_RTOL) count 1/|ties| when y is among them.
    """
    check_contexts(task, x, y)
    if weights["W_E"].shape[-1] != task.vocab_size:
        raise ConfigError(f"W_E has {weights['W_E'].shape[-1]} tokens: allowed {task.vocab_size} (2^m of the task "
                          f"plus its {task.extra_tokens} extra tokens)")
    return accuracy(weights, x, y)


def accuracy_with_value(
    weights: dict[str, torch.Tensor], W_V: torch.Tensor, task: LCAConfig, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Accuracy with the value matrix replaced (e.g. by `theorem1_value` or `random_pairs_value`, §6.1,
    Fig. C.2). W_V (E, d, d) or (d, d) (shared by all models). Returns (E,)."""
    E = weights["W_E"].shape[0]
    W_V = W_V.to(weights["W_V"]).expand(E, *W_V.shape[-2:])
    return evaluate_weights({**weights, "W_V": W_V}, task, x, y)


def low_rank(A: torch.Tensor, rank: int) -> torch.Tensor:
    """Best rank-`rank` approximation (Eckart–Young, truncated SVD) of A (..., n, k), batched."""
    check_int_range("rank", rank, 1)
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    r = min(rank, S.shape[-1])
    return (U[..., :r] * S[..., None, :r]) @ Vh[..., :r, :]


def smallest_principal_angle(A: torch.Tensor, B: torch.Tensor, rank: int, space: str = "column") -> torch.Tensor:
    """Smallest principal angle, in degrees, between the column (or row) spaces of the rank-`rank` SVD
    approximations of A and B (§6.1, Fig. C.3; the paper uses rank = m). A, B (..., n, k), broadcast
    over leading dims (e.g. trained (E, d, d) against one construction (d, d)). Returns (...,).

    The column space of the rank-r approximation is spanned by the top-r left singular vectors Q (the row
    space by the top-r right ones); the cosines of the principal angles are the singular values of
    Q_Aᵀ Q_B, the largest giving the smallest angle. space="row" is what the authors' code measures
    (`scipy.linalg.subspace_angles(M_A.T, M_B.T)[-1]` on the rank-m approximations): the space a value
    matrix reads its input from, as v = W_V h.
    """
    check_int_range("rank", rank, 1)
    check_choice("space", space, ("column", "row"))

    def basis(M: torch.Tensor) -> torch.Tensor:
        U, _, Vh = torch.linalg.svd(M.to(torch.float64), full_matrices=False)
        return U[..., :rank] if space == "column" else Vh[..., :rank, :].transpose(-1, -2)

    cosines = torch.linalg.svdvals(basis(A).transpose(-1, -2) @ basis(B))
    return torch.rad2deg(torch.arccos(cosines[..., 0].clamp(-1.0, 1.0)))


def _gram_pairs(W_E: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inner products ⟨W_E(t), W_E(t')⟩ of all models, flattened, and their Hamming distances (t ≤ t')."""
    if W_E.dim() != 3 or W_E.shape[-1] != 2**m:
        raise ConfigError(f"W_E has shape {tuple(W_E.shape)}: allowed (E, d, V) with V = 2^m = {2**m}")
    W = W_E.to(torch.float64)
    G = W.transpose(-1, -2) @ W  # (E, V, V)
    V = 2**m
    i, j = torch.triu_indices(V, V, device=W.device)  # t ≤ t': each unordered pair once, plus t = t'
    D = hamming_matrix(m, W.device)[i, j]
    return G[:, i, j].reshape(-1), D.repeat(G.shape[0])


def inner_product_by_hamming(W_E: torch.Tensor, m: int) -> pd.DataFrame:
    """Mean ⟨W_E(t), W_E(t')⟩ by Hamming distance D_H(t, t') = 0..m (Fig. 3b, C.5, C.6).

    Distance 0 is the squared norms ‖W_E(t)‖²; each unordered pair is counted once; the E models are
    pooled (pass W_E[e:e+1] for one model). Columns: hamming, mean, std, count.
    """
    values, D = _gram_pairs(W_E, m)
    rows = []
    for h in range(m + 1):  # m + 1 groups: a loop over distances, not over pairs
        v = values[D == h]
        rows.append({"hamming": h, "mean": float(v.mean()), "std": float(v.std(correction=0)), "count": int(v.numel())})
    return pd.DataFrame(rows)


def fit_eq52(W_E: torch.Tensor, m: int) -> dict[str, float]:
    """Fit Eq. 5.2 to embeddings: b0 = mean squared norm; (b, a) by least squares of the off-diagonal
    inner products on −D_H (⟨W_E(t), W_E(t')⟩ ≈ −a·D_H + b); r2 of that fit. Models pooled."""
    values, D = _gram_pairs(W_E, m)
    off = D > 0
    v, h = values[off], D[off].to(torch.float64)
    X = torch.stack([torch.ones_like(h), -h], dim=1)
    coef = torch.linalg.lstsq(X, v.unsqueeze(1)).solution.squeeze(1)
    residual = v - X @ coef
    total = ((v - v.mean()) ** 2).sum()
    r2 = 1.0 - float((residual**2).sum() / total) if float(total) > 0 else float("nan")
    return {"b0": float(values[~off].mean()), "b": float(coef[0]), "a": float(coef[1]), "r2": r2}


def line_r2(values: Sequence[float]) -> float:
    """R² of a least-squares line through values at x = 1..n (NaN for n < 3 or constant values): how linear
    the mean inner product is in the Hamming distance (Theorem 3, Eq. 5.2)."""
    y = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if y.numel() < 3 or float(y.var()) == 0:
        return float("nan")
    X = torch.stack([torch.ones_like(y), torch.arange(1, y.numel() + 1, dtype=torch.float64)], dim=1)
    residual = y - X @ torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1)
    return 1.0 - float((residual**2).sum() / ((y - y.mean()) ** 2).sum())


def _attention_sums(
    weights: dict[str, torch.Tensor], task: LCAConfig, x: torch.Tensor, include_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, V) total attention that query token t_L puts on positions holding token t, and the number of
    such positions, summed over the batch and the E models."""
    check_contexts(task, x)
    if x.dim() != 2:
        raise ConfigError(f"x has shape {tuple(x.shape)}: allowed (B, L) contexts shared by all models")
    V, L = task.V, task.L
    n = L if include_last else L - 1
    pair = (x[:, -1:] * V + x[:, :n]).reshape(-1)  # (B·n,) flat index t_L·V + t
    sums = torch.zeros(V * V, dtype=torch.float64, device=x.device)
    counts = torch.zeros(V * V, dtype=torch.float64, device=x.device)
    E = weights["W_E"].shape[0]
    for start, out in _forward_chunks(weights, x):
        b = out.attention.shape[1]
        idx = pair.view(-1, n)[start : start + b].reshape(-1)
        sums.scatter_add_(0, idx, out.attention[:, :, :n].to(torch.float64).sum(dim=0).reshape(-1))
        counts.scatter_add_(0, idx, torch.full(idx.shape, float(E), dtype=torch.float64, device=x.device))
    return sums.view(V, V), counts.view(V, V)


def attention_by_token(
    weights: dict[str, torch.Tensor], task: LCAConfig, x: torch.Tensor, include_last: bool = False
) -> torch.Tensor:
    """(V, V) mean attention that a last token t_L (row) puts on a context position holding token t
    (column), averaged over all such occurrences in x (B, L) and over the E models; NaN where t never
    occurs with t_L (Fig. 3c, C.7, C.8). The query's own position L is left out unless include_last.
    """
    if task.L < 2 and not include_last:
        raise ConfigError("L=1 is invalid for attention_by_token: allowed L >= 2 (or include_last=True)")
    sums, counts = _attention_sums(weights, task, x, include_last)
    return sums / counts  # 0/0 = NaN where a pair never occurs


def attention_by_cluster(
    weights: dict[str, torch.Tensor], task: LCAConfig, x: torch.Tensor, n_cluster_bits: int,
    include_last: bool = False,
) -> pd.DataFrame:
    """Per query token t_L: mean attention per occurrence on same-cluster vs other-cluster context tokens
    (cluster = the first n_cluster_bits latents, §5.4 and C.3), and their ratio same/other.
    Columns: token, same_cluster, other_cluster, ratio."""
    check_int_range("n_cluster_bits", n_cluster_bits, 1, task.m)
    sums, counts = _attention_sums(weights, task, x, include_last)
    cluster = latent_bits(task.m, x.device)[:, :n_cluster_bits]
    same = (cluster[:, None, :] == cluster[None, :, :]).all(dim=-1)  # (V, V) [t_L, t]
    zero = torch.zeros((), dtype=sums.dtype, device=sums.device)
    same_mean = torch.where(same, sums, zero).sum(1) / torch.where(same, counts, zero).sum(1)
    other_mean = torch.where(~same, sums, zero).sum(1) / torch.where(~same, counts, zero).sum(1)
    return pd.DataFrame({
        "token": range(task.V),
        "same_cluster": same_mean.cpu().numpy(),
        "other_cluster": other_mean.cpu().numpy(),
        "ratio": (same_mean / other_mean).cpu().numpy(),
    })


def sample_mixed_contexts(
    task: LCAConfig, k_intruder: int, batch: int, generator: torch.Generator, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contexts mixed from two targets (§5.5, C.5): x (B, L), y_true (B,), y_intruder (B,).

    Design: z* uniform and z_intruder uniform over the other V − 1 tokens; the first k of the L − 1
    noisy positions are drawn from p(·|z_intruder), the remaining L − 1 − k from p(·|z*), and the last
    token from π(·|z*) as in D^L. k = 0 is D^L itself; k = L − 1 leaves only the query token to z*. The
    model has no positional embedding, so which k positions are replaced does not matter except that
    the query (position L) stays with z*.
    """
    check_int_range("k_intruder", k_intruder, 0, task.L - 1)
    check_int_range("batch", batch, 1)
    x_true, y_true = sample_batch(task, batch, generator, device)
    offset = torch.randint(1, task.V, (batch,), generator=generator, device=y_true.device)  # V >= 2 as m >= 1
    y_intruder = (y_true + offset) % task.V
    x_intruder, _ = sample_batch(task, batch, generator, device, targets=y_intruder)
    x = torch.cat([x_intruder[:, :k_intruder], x_true[:, k_intruder:]], dim=1)
    return x, y_true, y_intruder


def mixing_rates(
    weights: dict[str, torch.Tensor], task: LCAConfig, ks: Sequence[int], n: int, generator: torch.Generator
) -> pd.DataFrame:
    """How often each model answers the true target vs the intruder as k noisy positions come from the
    intruder (§5.5, C.5). Columns: k, model, share_true, share_intruder (ties uniform in expectation)."""
    device = weights["W_E"].device
    rows = []
    for k in ks:  # one fresh batch per k: a loop over settings, not samples
        x, y_true, y_intruder = sample_mixed_contexts(task, int(k), n, generator, device)
        share_true, share_intruder = (c.mean(dim=1) for c in correct(weights, x, y_true, y_intruder))
        E = share_true.shape[0]
        rows += [{"k": int(k), "model": e, "share_true": float(share_true[e]),
                  "share_intruder": float(share_intruder[e])} for e in range(E)]
    return pd.DataFrame(rows)


def accuracy_vs_length(
    weights: dict[str, torch.Tensor], task: LCAConfig, lengths: Sequence[int], n: int, generator: torch.Generator
) -> pd.DataFrame:
    """Accuracy at each context length L (C.6). The model has no positional embedding, so the same weights
    run at any L; `task` gives the other settings (its own L is replaced). Each row carries the
    Bayes-optimal accuracy on the same samples. Columns: L, model, accuracy, bayes_optimal."""
    device = weights["W_E"].device
    rows = []
    for L in lengths:
        setting = replace(task, L=int(L))
        x, y = sample_batch(setting, n, generator, device)
        acc = evaluate_weights(weights, setting, x, y)
        bayes = expected_accuracy_on(setting, x, y)
        rows += [{"L": int(L), "model": e, "accuracy": float(acc[e]), "bayes_optimal": bayes} for e in range(len(acc))]
    return pd.DataFrame(rows)
