"""Constructions of §5: orthonormal W_E, Eq. 5.1, the random-pairs baseline, Eq. 5.2."""

from __future__ import annotations

import pytest
import torch

from assocmem.errors import ConfigError
from assocmem.lca.constructions import (
    eq52_embedding,
    gram_eq52,
    hamming1_adjacency,
    orthonormal_embedding,
    random_pairs_value,
    theorem1_value,
    theorem1_weights,
)
from assocmem.lca.task import LCAConfig, hamming_matrix


def test_orthonormal_embedding() -> None:
    W_E = orthonormal_embedding(8, 10, torch.Generator().manual_seed(0), E=3, dtype=torch.float64)
    assert W_E.shape == (3, 10, 8)
    torch.testing.assert_close(W_E.transpose(1, 2) @ W_E, torch.eye(8, dtype=torch.float64).expand(3, 8, 8))
    assert not torch.allclose(W_E[0], W_E[1])  # each model has its own basis
    with pytest.raises(ConfigError, match="d=4.*V=8"):
        orthonormal_embedding(8, 4, torch.Generator())


def test_theorem1_value_is_the_sum_of_outer_products_of_eq51() -> None:
    m, d = 3, 9
    W_E = torch.randn(2, d, 2**m, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = torch.zeros(2, d, d, dtype=torch.float64)
    D = hamming_matrix(m)
    for t in range(2**m):  # Eq. 5.1 literally, with N = all so N_1(t) = the Hamming-1 tokens
        for t2 in range(2**m):
            if D[t, t2] == 1:
                expected += W_E[:, :, t, None] * W_E[:, None, :, t2]
    torch.testing.assert_close(theorem1_value(W_E, m), expected)


def test_adjacency_respects_the_neighborhood() -> None:
    A = hamming1_adjacency(3, "cluster1")
    assert A.sum(1).tolist() == [2.0] * 8  # flipping z_1 leaves the cluster: m − 1 partners
    assert float(A[0, 4]) == 0.0 and float(A[0, 1]) == 1.0
    assert hamming1_adjacency(4).sum(1).tolist() == [4.0] * 16


def test_orthonormal_construction_logits_count_hamming1_tokens() -> None:
    task = LCAConfig(m=3, L=5, omega=1.0)
    w = theorem1_weights(task, 8, torch.Generator().manual_seed(2), dtype=torch.float64)
    assert float(w["W_Q"].abs().max()) == 0.0 and float(w["W_K"].abs().max()) == 0.0
    from assocmem.lca.analysis import model_logits

    x = torch.tensor([[1, 2, 4, 4, 7]])
    # logit_y = (1/L) #{context tokens one bit from y}: y = 0 has neighbours 1, 2, 4 → 4/5
    expected = (hamming_matrix(3) == 1).to(torch.float64) @ torch.bincount(x[0], minlength=8).double() / 5
    torch.testing.assert_close(model_logits(w, x)[0, 0], expected)


def test_random_pairs_keeps_the_pair_count_but_not_the_structure() -> None:
    m, E = 4, 3
    W_E = torch.eye(16, dtype=torch.float64).expand(E, 16, 16)  # orthonormal: W_V is the adjacency itself
    A = random_pairs_value(W_E, m, torch.Generator().manual_seed(3))
    assert A.shape == (E, 16, 16)
    assert set(A.unique().tolist()) == {0.0, 1.0}
    assert (A.sum(-1) == m).all() and (A.diagonal(dim1=-2, dim2=-1) == 0).all()
    share_hamming1 = float((A * (hamming_matrix(m) == 1)).sum() / A.sum())
    assert share_hamming1 < 0.6  # uniform partners: about m / (V − 1) = 0.27, vs 1.0 for Eq. 5.1
    assert not torch.equal(A[0], A[1])


def test_eq52_embedding_realises_its_gram() -> None:
    W_E = eq52_embedding(3, b0=2.0, b=1.5, a=0.5, d=12, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert W_E.shape == (1, 12, 8)
    G = gram_eq52(3, 2.0, 1.5, 0.5)
    torch.testing.assert_close(W_E[0].T @ W_E[0], G)
    assert float(G[0, 0]) == 2.0 and float(G[0, 7]) == 1.5 - 0.5 * 3


def test_eq52_rejects_a_gram_that_is_not_psd() -> None:
    with pytest.raises(ConfigError, match=r"\(b0, b, a\)"):
        eq52_embedding(3, b0=0.0, b=0.0, a=1.0)
    with pytest.raises(ConfigError, match="d=2"):
        eq52_embedding(3, b0=2.0, b=1.5, a=0.5, d=2)


def test_the_authors_construction_from_given_embeddings_by_hand() -> None:
    """C.2 as the authors built it: W_V = Σ_z U(z) ⊗ Σ_{i ≤ m} U(flip_i z) over the 2^m latent tokens of a trained
    embedding U (its extra, never-drawn token left out), by an explicit loop over tokens and bits."""
    from assocmem.lca.constructions import model_theorem1_value as constructed_value

    m, d = 3, 5
    W_E = torch.randn(2, d, 2**m + 1, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    expected = torch.zeros(2, d, d, dtype=torch.float64)
    for z in range(2**m):
        key = sum(W_E[:, :, z ^ (1 << i)] for i in range(m))  # (2, d): the m Hamming-1 neighbours of z
        expected += W_E[:, :, z, None] * key[:, None, :]  # U(z) ⊗ key
    torch.testing.assert_close(constructed_value(W_E, m), expected)
    h = torch.randn(d, dtype=torch.float64)
    torch.testing.assert_close(constructed_value(W_E, m)[0] @ h,  # v = W_V h: targets weighted by key · h
                               sum(W_E[0, :, z] * (sum(W_E[0, :, z ^ (1 << i)] for i in range(m)) @ h)
                                   for z in range(2**m)))


def test_random_pairs_with_replacement_as_the_authors() -> None:
    """replace=True: m keys per token drawn from all V tokens with replacement (self and repeats allowed)."""
    m, V = 3, 8
    W_E = torch.eye(V, dtype=torch.float64)[None].expand(200, V, V)  # orthonormal: W_V = A itself
    A = random_pairs_value(W_E, m, torch.Generator().manual_seed(7), replace=True)
    assert (A.sum(-1) == m).all()  # m keys per token, counted with multiplicity
    assert (A.diagonal(dim1=-2, dim2=-1) > 0).any() and (A > 1).any()  # the token itself and repeated keys occur
    share = float((A.diagonal(dim1=-2, dim2=-1)).sum() / A.sum())
    assert abs(share - 1 / V) < 0.02  # each key uniform over all V tokens
    B = random_pairs_value(W_E, m, torch.Generator().manual_seed(7))
    assert (B.diagonal(dim1=-2, dim2=-1) == 0).all() and (B <= 1).all()  # ours: distinct partners, never itself
