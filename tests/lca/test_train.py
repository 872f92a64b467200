"""The batched trainer: its sampler, its optimizer, batched == alone, seeding, freezing, learning."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from scipy.stats import chisquare

from assocmem.errors import ConfigError
from assocmem.lca.model import ModelConfig, OneLayerTransformer
from assocmem.lca.task import LCAConfig, Sampler, context_table, pi_table, sample_batch
from assocmem.lca.accuracy import accuracy as model_accuracy
from assocmem.lca.accuracy import correct
from assocmem.lca.train import BatchedAdamW, RunSpec, TrainConfig, TrainedModels, train_models, train_sweep

TINY = TrainConfig(steps=30, batch_size=32, lr=0.01, warmup_steps=5, eval_every=10, eval_samples=256)
TASK = LCAConfig(m=3, L=8, omega=0.5)
MODEL = ModelConfig(d=8)


def assert_joint_frequencies(y, tokens, table, V):
    """Chi-square of (z*, token) pair counts against p(z*) p(token | z*) = table / V, on its support."""
    observed = torch.bincount((y[:, None] * V + tokens).flatten(), minlength=V * V).double()
    expected_p = (table / V).flatten()
    support = expected_p > 0
    assert observed[~support].sum() == 0
    expected = expected_p[support] / expected_p[support].sum() * observed.sum()
    assert chisquare(observed[support].numpy(), expected.numpy()).pvalue > 1e-4


def test_sampler_draws_each_models_own_tables():
    tasks = [
        LCAConfig(m=3, L=4, omega=0.3, neighborhood="all"),
        LCAConfig(m=3, L=4, omega=0.8, beta=0.5, neighborhood="cluster2"),
    ]
    x, y = Sampler(tasks, "cpu").draw([torch.Generator().manual_seed(s) for s in (0, 1)], 100_000)
    assert x.shape == (2, 100_000, 4) and y.shape == (2, 100_000)
    for e, task in enumerate(tasks):
        assert_joint_frequencies(y[e], x[e, :, :-1], context_table(task), task.V)
        assert_joint_frequencies(y[e], x[e, :, -1:], pi_table(task), task.V)


def test_sampler_model_alone_draws_the_same_batches_as_sample_batch():
    tasks = [LCAConfig(m=4, L=6, omega=o) for o in (0.2, 0.9)]
    both = Sampler(tasks, "cpu")
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    alone_gen = torch.Generator().manual_seed(4)
    for _ in range(2):
        (xb, yb), (xa, ya) = both.draw(gens, 16), sample_batch(tasks[1], 16, alone_gen)
        assert torch.equal(xb[1], xa) and torch.equal(yb[1], ya)
    with pytest.raises(ConfigError):
        Sampler([LCAConfig(m=3, L=4), LCAConfig(m=3, L=5)], "cpu")


@pytest.mark.parametrize("fused", [False, True])    # the GPU's form (torch's fused kernel) runs on the CPU too
def test_batched_adamw_equals_torch_adamw_per_model(fused):
    g = torch.Generator().manual_seed(0)
    start = torch.randn(3, 4, 5, generator=g)
    grads = [torch.randn(3, 4, 5, generator=g) for _ in range(5)]
    lrs = [0.01, 0.003, 0.1]
    ours = start.clone().requires_grad_()
    factors = torch.arange(1, 6, dtype=torch.float64) / 5
    opt = BatchedAdamW([ours], lr=torch.tensor(lrs), weight_decay=0.05, betas=(0.9, 0.99), lr_factors=factors,
                       fused=fused)
    ref = [start[e].clone().requires_grad_() for e in range(3)]
    ref_opts = [torch.optim.AdamW([p], lr=lr, weight_decay=0.05, betas=(0.9, 0.99)) for p, lr in zip(ref, lrs)]
    for step, grad in enumerate(grads, start=1):
        factor = step / 5
        ours.grad = grad.clone()
        opt.step()
        for e, (p, o) in enumerate(zip(ref, ref_opts)):
            p.grad = grad[e].clone()
            o.param_groups[0]["lr"] = lrs[e] * factor
            o.step()
    for e in range(3):
        torch.testing.assert_close(ours.detach()[e], ref[e].detach(), rtol=1e-5, atol=1e-6)


def test_batched_training_equals_training_each_model_alone():
    batched = train_models(TASK, MODEL, TINY, seeds=[0, 1, 2])
    for e, seed in enumerate([0, 1, 2]):
        alone = train_models(TASK, MODEL, TINY, seeds=[seed])
        for name, w in alone.weights.items():
            torch.testing.assert_close(batched.weights[name][e : e + 1], w, rtol=1e-5, atol=1e-6)
        assert batched.final_accuracy[e] == alone.final_accuracy[0]
        assert batched.bayes_optimal_accuracy[e] == alone.bayes_optimal_accuracy[0]


def test_sweep_batches_by_shape_and_keeps_each_model_its_own_task_and_lr():
    other_task = LCAConfig(m=3, L=8, omega=1.0, beta=0.5, neighborhood="hamming1")
    specs = [
        RunSpec(TASK, MODEL, lr=0.01, seed=0, label="a"),
        RunSpec(TASK, ModelConfig(d=4, freeze_value=True), lr=0.01, seed=0, label="other shape"),
        RunSpec(other_task, MODEL, lr=0.002, seed=5, label="c"),
    ]
    results = train_sweep(specs, TINY)
    assert [r.spec.label for r in results] == ["a", "other shape", "c"]
    assert results[1].weights["W_E"].shape == (1, 4, 8)
    for spec, result in zip(specs, results):
        alone = train_models(spec.task, spec.model, TINY, seeds=[spec.seed], lr=spec.lr)
        for name, w in alone.weights.items():
            torch.testing.assert_close(result.weights[name], w, rtol=1e-5, atol=1e-6)
        assert result.final_accuracy == alone.final_accuracy[0]
        assert list(result.history.columns) == ["step", "loss", "accuracy"]
        assert result.gap_to_bayes == pytest.approx(result.bayes_optimal_accuracy - result.final_accuracy)


def test_same_seed_gives_identical_results():
    a = train_models(TASK, MODEL, TINY, seeds=[7])
    b = train_models(TASK, MODEL, TINY, seeds=[7])
    for name in a.weights:
        assert torch.equal(a.weights[name], b.weights[name])
    assert a.history.equals(b.history)


def test_frozen_matrices_stay_at_their_init():
    config = ModelConfig(d=8, freeze_value=True, freeze_embedding=True)
    init = OneLayerTransformer.from_seeds(TASK.V, config, [3]).weights()
    trained = train_models(TASK, config, TINY, seeds=[3]).weights
    assert torch.equal(trained["W_V"], init["W_V"]) and torch.equal(trained["W_E"], init["W_E"])
    assert not torch.equal(trained["W_Q"], init["W_Q"])


def test_training_learns_and_reports_history_and_bayes():
    task = LCAConfig(m=3, L=16, omega=0.5)
    cfg = dataclasses.replace(TINY, steps=150, batch_size=64, warmup_steps=10, eval_every=50, eval_samples=2048)
    result = train_models(task, ModelConfig(d=16), cfg, seeds=[0])
    assert list(result.history["step"]) == [50, 100, 150]
    assert result.history["loss"].iloc[-1] < result.history["loss"].iloc[0]
    accuracy, bayes = result.final_accuracy[0], result.bayes_optimal_accuracy[0]
    assert accuracy > 4 / task.V  # chance is 1/8
    # The ceiling (0.59 here), up to sampling noise on 2048 shared samples; the model is near it.
    assert accuracy - 0.03 < bayes < accuracy + 0.06


def test_accuracy_scores_every_model_on_the_same_samples():
    module = OneLayerTransformer.from_seeds(TASK.V, MODEL, [0, 1])
    x, y = sample_batch(TASK, 500, torch.Generator().manual_seed(0))
    accuracy = model_accuracy(module.weights(), x, y)
    logits = module(x).logits
    expected = (logits.argmax(-1) == y).double().mean(-1)
    assert accuracy.shape == (2,)
    torch.testing.assert_close(accuracy, expected)
    assert torch.equal(correct(module.weights(), x, y), (logits.argmax(-1) == y).double())  # no ties here


def test_trained_models_are_one_typed_result_that_a_folder_keeps(tmp_path):
    """train_models gives TrainedModels: stacked weights, a table, a long history; save and load keep all of it."""
    models = train_models(TASK, MODEL, TINY, seeds=[4, 5])
    assert models.W_V.shape == (2, 8, 8) and models.specs[1].seed == 5
    table = models.table
    assert list(table["seed"]) == [4, 5] and list(table["final_accuracy"]) == models.final_accuracy
    assert (table["gap_to_bayes"] == table["bayes_optimal_accuracy"] - table["final_accuracy"]).all()
    assert set(models.history["step"]) == {10, 20, 30} and len(models.history) == 6
    assert models.select(seed=5)[0] is models[1]
    back = TrainedModels.load(models.save(tmp_path / "run"))
    assert back.train == TINY and back.specs == models.specs and back.final_accuracy == models.final_accuracy
    for name, w in models.weights.items():
        assert torch.equal(back.weights[name], w)
    for a, b in zip(models, back):
        assert a.history.equals(b.history)


def test_schedule_and_config_validation():
    cfg = TrainConfig(steps=110, warmup_steps=10, schedule="cosine")
    assert cfg.lr_factor(5) == 0.5 and cfg.lr_factor(10) == 1.0
    assert cfg.lr_factor(110) == pytest.approx(0.0, abs=1e-12)
    assert TrainConfig(steps=10, warmup_steps=0, schedule="constant").lr_factor(7) == 1.0
    for bad in ({"steps": 0}, {"lr": 0.0}, {"schedule": "linear"}, {"batch_size": -1}, {"weight_decay": -0.1}):
        with pytest.raises(ConfigError, match="allowed"):
            TrainConfig(**bad)
    with pytest.raises(ConfigError, match="seeds"):
        train_models(TASK, MODEL, TINY, seeds=[])


def test_arms_with_different_switches_and_inits_train_as_one_batch_and_equal_each_alone():
    """Trained and frozen arms share a batch (a frozen matrix gets a zero learning rate): each model is the
    model trained alone, and its frozen matrices are exactly their init."""
    from assocmem.lca.protocols import protocol

    paper = protocol("paper")
    cfg = dataclasses.replace(paper.train, steps=12, batch_size=16, eval_every=6, eval_samples=128)
    task = paper.task(m=3, L=6)
    specs = [RunSpec(task, paper.model(d=8), 0.01, 0), RunSpec(task, paper.model(d=8, freeze_value=True), 0.01, 1),
             RunSpec(task, paper.model(d=8, freeze_embedding=True), 0.001, 2),
             RunSpec(TASK.__class__(m=3, L=6, extra_tokens=1, beta=0.5), ModelConfig(d=8), 0.02, 3)]
    results = train_sweep(specs, cfg)
    assert len({r.weights["W_E"].shape for r in results}) == 1  # one shape: (1, 8, 9)
    for spec, result in zip(specs, results):
        alone = train_models(spec.task, spec.model, cfg, seeds=[spec.seed], lr=spec.lr)
        for name, w in alone.weights.items():
            torch.testing.assert_close(result.weights[name], w, rtol=1e-5, atol=1e-6)
        assert result.final_accuracy == alone.final_accuracy[0]
    init = OneLayerTransformer.from_seeds(9, specs[2].model, [2]).weights()
    assert torch.equal(results[2].weights["W_E"], init["W_E"])
    assert torch.equal(results[1].weights["W_V"][0], torch.eye(8))
    assert not torch.equal(results[0].weights["W_V"], OneLayerTransformer.from_seeds(9, specs[0].model, [0]).W_V)


@pytest.mark.parametrize("fused", [False, True])
def test_batched_adamw_leaves_a_frozen_models_entries_exactly(fused):
    g = torch.Generator().manual_seed(1)
    start = torch.randn(2, 3, 3, generator=g)
    p = start.clone().requires_grad_()
    opt = BatchedAdamW([p], lr=torch.tensor([0.1, 0.1]), trainable=[torch.tensor([True, False])], fused=fused)
    for _ in range(3):
        p.grad = torch.randn(2, 3, 3, generator=g)
        opt.step()
    assert torch.equal(p.detach()[1], start[1]) and not torch.equal(p.detach()[0], start[0])
    assert float(opt.t) == 3.0  # the step count lives on the device


def test_fused_and_elementwise_adamw_agree_over_many_steps_with_mixed_rates_and_frozen_slices():
    g = torch.Generator().manual_seed(3)
    starts = [torch.randn(4, 8, 6, generator=g), torch.randn(4, 5, generator=g)]
    grads = [[torch.randn(4, 8, 6, generator=g), torch.randn(4, 5, generator=g)] for _ in range(50)]
    masks = [torch.tensor([True, True, False, True]), torch.tensor([True, False, True, True])]
    out = {}
    for fused in (False, True):
        ps = [s.clone().requires_grad_() for s in starts]
        opt = BatchedAdamW(ps, lr=torch.tensor([0.01, 0.001, 0.01, 0.001]), weight_decay=0.1, betas=(0.9, 0.99),
                           trainable=masks, lr_factors=torch.linspace(0.1, 1, 50, dtype=torch.float64), fused=fused)
        for step in grads:
            for p, grad in zip(ps, step):
                p.grad = grad.clone()
            opt.step()
        out[fused] = [p.detach() for p in ps]
    for a, b, start, mask in zip(out[False], out[True], starts, masks):
        assert (a - b).abs().max() <= 1e-6
        for e, trains in enumerate(mask.tolist()):
            assert torch.equal(b[e], start[e]) != trains


def test_protocol_presets_by_name():
    from assocmem.lca.protocols import PROTOCOLS, protocol

    paper = protocol("paper")
    assert paper.task(m=5).vocab_size == 33 and paper.model(d=64).init == "torch"
    assert (paper.train.steps, paper.train.batch_size, paper.train.betas, paper.train.schedule,
            paper.train.warmup_steps, paper.train.eval_samples) == (500, 256, (0.9, 0.99), "constant", 0, 1024)
    assert protocol("ours").train == TrainConfig() and set(PROTOCOLS) == {"ours", "paper"}
    with pytest.raises(ConfigError, match="did you mean paper"):
        protocol("papers")
    with pytest.raises(ConfigError, match="betas"):
        TrainConfig(betas=(0.9, 1.5))
