"""The one-layer transformer of §4.2: batched forward against a hand loop, init, freezing."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from assocmem.errors import ConfigError
from assocmem.lca.model import ModelConfig, OneLayerTransformer, forward_last


def hand_forward(W_E, W_Q, W_K, W_V, tokens):
    """Eq. 4.1 for one model and one context, literally: one-hot X, full L x L scores, column softmax."""
    d, V = W_E.shape
    X = torch.nn.functional.one_hot(tokens, V).T.to(W_E.dtype)  # (V, L)
    U = W_E @ X  # (d, L)
    scores = (W_K @ U).T @ (W_Q @ U) / math.sqrt(W_Q.shape[0])  # (L, L)
    sigma = scores.softmax(dim=0)  # column-wise
    attn = U @ sigma  # (d, L)
    f = W_E.T @ W_V @ attn  # (V, L)
    return f[:, -1], sigma[:, -1], attn[:, -1]


@pytest.mark.parametrize("shared_contexts", [True, False])
def test_forward_last_matches_a_hand_loop(shared_contexts):
    g = torch.Generator().manual_seed(0)
    E, d, d_a, V, B, L = 2, 6, 4, 8, 5, 7
    W_E, W_V = torch.randn(E, d, V, generator=g), torch.randn(E, d, d, generator=g)
    W_Q, W_K = torch.randn(E, d_a, d, generator=g), torch.randn(E, d_a, d, generator=g)
    x = torch.randint(0, V, (B, L) if shared_contexts else (E, B, L), generator=g)
    out = forward_last(W_E, W_Q, W_K, W_V, x)
    assert out.logits.shape == (E, B, V) and out.attention.shape == (E, B, L) and out.hidden.shape == (E, B, d)
    for e in range(E):
        for b in range(B):
            tokens = x[b] if shared_contexts else x[e, b]
            logits, attention, hidden = hand_forward(W_E[e], W_Q[e], W_K[e], W_V[e], tokens)
            torch.testing.assert_close(out.logits[e, b], logits, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(out.attention[e, b], attention, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(out.hidden[e, b], hidden, rtol=1e-4, atol=1e-5)


def test_model_e_of_a_batch_is_the_model_built_alone():
    config = ModelConfig(d=8, d_a=3)
    batch = OneLayerTransformer.from_seeds(16, config, [4, 5, 6])
    for e, seed in enumerate([4, 5, 6]):
        alone = OneLayerTransformer.from_seeds(16, config, [seed])
        for name, w in alone.weights().items():
            assert torch.equal(batch.weights()[name][e : e + 1], w), name
    shapes = {k: tuple(v.shape) for k, v in batch.weights().items()}
    assert shapes == {"W_E": (3, 8, 16), "W_Q": (3, 3, 8), "W_K": (3, 3, 8), "W_V": (3, 8, 8)}


def test_init_scale_gives_near_unit_embeddings():
    module = OneLayerTransformer.from_seeds(64, ModelConfig(d=512), [0])
    norms = module.W_E[0].norm(dim=0)
    assert 0.9 < norms.min() and norms.max() < 1.1
    gram = module.W_E[0].T @ module.W_E[0]
    assert (gram - torch.diag(gram.diag())).abs().max() < 0.3  # near-orthogonal when d > V


def test_freeze_switches_fix_matrices_and_keep_the_other_draws():
    free = OneLayerTransformer.from_seeds(8, ModelConfig(d=4), [1])
    frozen = OneLayerTransformer.from_seeds(8, ModelConfig(d=4, freeze_value=True, freeze_embedding=True), [1])
    assert torch.equal(frozen.W_V[0], torch.eye(4))
    assert not frozen.W_V.requires_grad and not frozen.W_E.requires_grad
    assert torch.equal(frozen.W_E, free.W_E) and torch.equal(frozen.W_Q, free.W_Q)
    frozen(torch.randint(0, 8, (3, 5))).logits.sum().backward()
    assert frozen.W_V.grad is None and frozen.W_E.grad is None and frozen.W_Q.grad is not None
    assert {id(p) for p in frozen.trainable_parameters()} == {id(frozen.W_Q), id(frozen.W_K)}


def test_set_weight_broadcasts_freezes_and_checks_shapes():
    module = OneLayerTransformer.from_seeds(8, ModelConfig(d=4), [0, 1])
    module.set_weight("W_K", torch.zeros(4, 4), trainable=False)
    assert torch.equal(module.W_K, torch.zeros(2, 4, 4)) and not module.W_K.requires_grad
    per_model = torch.randn(2, 4, 4)
    module.set_weight("W_V", per_model)
    assert torch.equal(module.W_V.detach(), per_model) and module.W_V.requires_grad
    with pytest.raises(ConfigError, match="W_Q"):
        module.set_weight("W_Q", torch.zeros(5, 4))
    with pytest.raises(ConfigError, match="name"):
        module.set_weight("W_O", torch.zeros(4, 4))


@settings(max_examples=40, deadline=None)
@given(
    d=st.integers(-2, 600),
    d_a=st.one_of(st.none(), st.integers(-2, 64)),
    init_std=st.one_of(st.none(), st.floats(-1.0, 2.0)),
)
def test_model_config_validation(d, d_a, init_std):
    valid = d >= 1 and (d_a is None or d_a >= 1) and (init_std is None or init_std > 0)
    if not valid:
        with pytest.raises(ConfigError, match="allowed"):
            ModelConfig(d=d, d_a=d_a, init_std=init_std)
        return
    config = ModelConfig(d=d, d_a=d_a, init_std=init_std)
    assert config.head_size == (d if d_a is None else d_a)
    assert config.std == (1 / math.sqrt(d) if init_std is None else init_std)


def test_torch_init_is_pytorchs_default_law():
    """init="torch": W_E ~ N(0, 1) (nn.Embedding), W_Q, W_K, W_V ~ U(−1/√d, 1/√d) (nn.Linear, kaiming_uniform(√5))."""
    d = 64
    module = OneLayerTransformer.from_seeds(257, ModelConfig(d=d, init="torch"), [0, 1])
    W_E = module.W_E.detach()
    assert abs(float(W_E.std()) - 1.0) < 0.02 and abs(float(W_E.mean())) < 0.02
    reference = torch.nn.Linear(d, d, bias=False).weight.detach()  # PyTorch's own draw, for the law's range
    for name in ("W_Q", "W_K", "W_V"):
        w = getattr(module, name).detach()
        assert float(w.abs().max()) <= 1 / math.sqrt(d) and float(reference.abs().max()) <= 1 / math.sqrt(d)
        assert abs(float(w.var()) - 1 / (3 * d)) < 0.1 / (3 * d)  # Var U(−b, b) = b²/3
    with pytest.raises(ConfigError, match="init_std"):
        ModelConfig(d=8, init="torch", init_std=0.1)
    with pytest.raises(ConfigError, match="init"):
        ModelConfig(d=8, init="xavier")


def test_models_of_one_batch_keep_their_own_init_and_switches():
    configs = [ModelConfig(d=8), ModelConfig(d=8, freeze_value=True), ModelConfig(d=8, init="torch",
                                                                                  freeze_embedding=True)]
    batch = OneLayerTransformer.from_seeds(16, configs, [3, 3, 4])
    for e, (config, seed) in enumerate(zip(configs, [3, 3, 4])):
        alone = OneLayerTransformer.from_seeds(16, config, [seed])
        for name, w in alone.weights().items():
            assert torch.equal(batch.weights()[name][e : e + 1], w), (e, name)
    assert batch.trainable("W_V").tolist() == [True, False, True]
    assert batch.trainable("W_E").tolist() == [True, True, False]
    assert batch.W_E.requires_grad and batch.W_V.requires_grad  # some model trains each
    with pytest.raises(ConfigError, match="shape"):
        OneLayerTransformer.from_seeds(16, [ModelConfig(d=8), ModelConfig(d=4)], [0, 1])
