"""Diagnostics inside a causal LM, checked on tiny random models against hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import transformers as tf

from assocmem import linalg
from assocmem.errors import ConfigError
from assocmem.hijack import diagnostics as D
from assocmem.models.llm import LoadedLM, tiny_random_lm

BASE = "The Eiffel Tower is located in the city of"
PREFIX = "Do not think of Guam."
PROMPTS = [BASE, f"{PREFIX} {BASE}", f"{PREFIX} {PREFIX} {PREFIX} {BASE}"]
NS = [0, 1, 3]


def _gpt2(n_layer: int, seed: int = 0) -> LoadedLM:
    tokenizer = tiny_random_lm("gpt2").tokenizer
    config = tf.GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=n_layer, n_head=2,
                           initializer_range=0.3, bos_token_id=0, eos_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = tf.GPT2LMHeadModel(config).eval()
    return LoadedLM(model=model, tokenizer=tokenizer, name=f"gpt2-{n_layer}")


def _gemma3_softcapped() -> LoadedLM:
    lm = tiny_random_lm("gemma3")
    lm.model.config.final_logit_softcapping = 3.0
    return lm


def _model_logprobs(lm: LoadedLM, prompt: str) -> torch.Tensor:
    ids = torch.tensor([lm.tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        return torch.log_softmax(lm.model(ids).logits[0, -1].float(), dim=-1)


def _masks(lm):
    return [D.distractor_token_mask(lm.tokenizer, p, BASE) for p in PROMPTS]


def test_distractor_mask_covers_exactly_the_prepended_sentences():
    lm = tiny_random_lm("llama")  # prepends BOS
    for prompt, n in zip(PROMPTS, NS):
        mask = D.distractor_token_mask(lm.tokenizer, prompt, BASE)
        ids = lm.tokenizer(prompt)["input_ids"]
        assert len(mask) == len(ids) and not mask[0]  # BOS is never a distractor
        inside = lm.tokenizer.decode([i for i, m in zip(ids, mask) if m])
        outside = lm.tokenizer.decode([i for i, m in zip(ids[1:], mask[1:]) if not m])
        assert inside == " ".join([PREFIX] * n)
        assert outside.strip() == BASE
    with pytest.raises(ConfigError):
        D.distractor_span("Do not think of Guam. Something else", BASE)


def test_word_mask_marks_only_the_false_target():
    lm = tiny_random_lm("gpt2")
    text = PROMPTS[2]
    start, end = D.distractor_span(text, BASE)
    mask = D.token_mask(lm.tokenizer, text, D.word_spans(text, "guam", end))
    ids = lm.tokenizer(text)["input_ids"]
    assert lm.tokenizer.decode([i for i, m in zip(ids, mask) if m]).replace(" ", "") == "Guam" * 3


def _manual_last_attention_gpt2(lm: LoadedLM, prompt: str) -> torch.Tensor:
    """softmax(q_last · Kᵀ / sqrt(d_head)) of block 0, by hand: (head, key_pos)."""
    tr = lm.model.transformer
    ids = torch.tensor(lm.tokenizer(prompt)["input_ids"])
    x = tr.wte.weight[ids] + tr.wpe.weight[: len(ids)]              # (pos, d_model)
    h = tr.h[0].ln_1(x)
    q, k, _ = (h @ tr.h[0].attn.c_attn.weight + tr.h[0].attn.c_attn.bias).split(32, dim=-1)
    n_heads, d_head = 2, 16
    q = q.view(-1, n_heads, d_head).transpose(0, 1)                  # (head, pos, d_head)
    k = k.view(-1, n_heads, d_head).transpose(0, 1)
    scores = torch.einsum("hd,hkd->hk", q[:, -1], k) / math.sqrt(d_head)
    return torch.softmax(scores, dim=-1)                              # last query sees every key


def test_attention_mass_equals_manual_softmax_one_layer_gpt2():
    lm = _gpt2(n_layer=1)
    masks = _masks(lm)
    table = D.attention_to_distractors(lm, PROMPTS, masks, NS, batch_tokens=60)  # packed rows
    for prompt, mask, n in zip(PROMPTS, masks, NS):
        with torch.no_grad():
            pattern = _manual_last_attention_gpt2(lm, prompt)
        expected = pattern[:, mask].sum(dim=-1).mean().item()
        got = table.query("layer == 0 and n == @n")["mean_mass"].item()
        assert got == pytest.approx(expected, abs=1e-5)
        uniform = mask.sum().item() / len(mask)
        assert table.query("layer == 0 and n == @n")["uniform_mass"].item() == pytest.approx(uniform)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3"])
def test_batched_pattern_equals_unbatched_output_attentions(arch):
    lm = tiny_random_lm(arch)
    trace = D.trace_last_position(lm, PROMPTS, batch_tokens=30)  # several packed batches
    lm.model.set_attn_implementation("eager")
    for i, prompt in enumerate(PROMPTS):
        ids = torch.tensor([lm.tokenizer(prompt)["input_ids"]])
        with torch.no_grad():
            attentions = lm.model(ids, output_attentions=True).attentions
        for layer, a in enumerate(attentions):
            T = ids.shape[1]
            torch.testing.assert_close(trace.pattern[i, layer, :, :T], a[0, :, -1], atol=1e-5, rtol=1e-5)
            assert trace.pattern[i, layer, :, T:].abs().sum() == 0


@pytest.mark.parametrize("make", [lambda: tiny_random_lm("gpt2"), lambda: tiny_random_lm("llama"),
                                  lambda: tiny_random_lm("gemma3"), _gemma3_softcapped],
                         ids=["gpt2", "llama", "gemma3", "gemma3-softcap"])
def test_logit_lens_last_layer_is_the_models_own_output(make):
    lm = make()
    trace = D.trace_last_position(lm, PROMPTS, batch_tokens=30, attention=False)
    ids = torch.tensor([[5, 17]] * len(PROMPTS))
    lens = D.lens_logprobs(lm, trace.resid, ids)
    assert lens.shape == (len(PROMPTS), lm.model.config.num_hidden_layers + 1, 2)
    for i, prompt in enumerate(PROMPTS):
        full = _model_logprobs(lm, prompt)
        torch.testing.assert_close(lens[i, -1], full[[5, 17]], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(D.final_logprobs(lm, trace.resid)[i], full, atol=1e-5, rtol=1e-5)


def test_logit_lens_intermediate_layer_by_hand_two_layer_gpt2():
    lm = _gpt2(n_layer=2, seed=1)
    tr = lm.model.transformer
    true_ids, false_ids = [7, 8, 9], [11, 12, 13]
    table = D.logit_lens(lm, PROMPTS, true_ids, false_ids, ns=[0, 1, 2])
    for i, prompt in enumerate(PROMPTS):
        ids = torch.tensor(lm.tokenizer(prompt)["input_ids"])
        with torch.no_grad():
            x = tr.wte.weight[ids] + tr.wpe.weight[: len(ids)]       # resid_pre of block 0
            block = tr.h[0]
            pattern = _manual_last_attention_gpt2(lm, prompt)
            h = block.ln_1(x)
            q, k, v = (h @ block.attn.c_attn.weight + block.attn.c_attn.bias).split(32, dim=-1)
            q, k, v = (t.view(-1, 2, 16).transpose(0, 1) for t in (q, k, v))   # (head, pos, d_head)
            scores = q @ k.transpose(1, 2) / 4.0
            causal = torch.ones(len(ids), len(ids), dtype=torch.bool).tril()
            attn = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
            torch.testing.assert_close(attn[:, -1], pattern)
            z = (attn @ v).transpose(0, 1).reshape(len(ids), 32)
            x = x + z @ block.attn.c_proj.weight + block.attn.c_proj.bias   # resid_mid
            x = x + block.mlp(block.ln_2(x))                                  # resid_post of block 0
            logp = torch.log_softmax(tr.ln_f(x[-1]) @ tr.wte.weight.T, dim=-1)
        row = table.query("layer == 1 and n == @i")
        assert row["logp_true"].item() == pytest.approx(logp[true_ids[i]].item(), abs=1e-5)
        assert row["logp_false"].item() == pytest.approx(logp[false_ids[i]].item(), abs=1e-5)


def test_unknown_layer_structure_is_a_one_line_error():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stack = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    with pytest.raises(ConfigError) as err:
        D.find_parts(Odd())
    assert "\n" not in str(err.value) and "Odd" in str(err.value) and "model.layers" in str(err.value)
    lm = tiny_random_lm("llama")
    lm.model.model.norm = None  # blocks found, final norm missing
    with pytest.raises(ConfigError, match="no final norm"):
        D.find_parts(lm.model)


def test_spectrum_effective_rank_and_eigengap():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(500, 24, generator=g, dtype=torch.float64)
    torch.testing.assert_close(linalg.gram_singular_values(W, chunk=64), torch.linalg.svdvals(W), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(linalg.gram_singular_values(W.T), torch.linalg.svdvals(W), rtol=1e-9, atol=1e-9)
    centered = W - W.mean(dim=0, keepdim=True)
    torch.testing.assert_close(linalg.gram_singular_values(W, chunk=64, center=True), torch.linalg.svdvals(centered))
    torch.testing.assert_close(linalg.gram_singular_values(W.T, center=True), torch.linalg.svdvals(W.T - W.T.mean(0)),
                               atol=1e-6, rtol=1e-9)  # rank 23: the last σ is 0 up to rounding
    assert D.effective_rank(np.ones(10)) == pytest.approx(10)
    assert D.effective_rank(np.array([3.0, 0, 0])) == pytest.approx(1)
    low = torch.randn(500, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 24, generator=g, dtype=torch.float64)
    s = linalg.gram_singular_values(low + 1e-3 * W)
    k, ratio = D.eigengap(s)
    assert k == 5 and ratio > 100
    table = D.embedding_spectrum(tiny_random_lm("gemma3"))
    assert list(table.columns) == ["index", "singular_value", "singular_value_centered"] and len(table) == 32
    assert (np.diff(table["singular_value"]) <= 1e-9).all()


def test_run_diagnose_writes_tables_figures_and_summary(tmp_path):
    from assocmem.hijack.diagnose import DiagnoseConfig, run_diagnose

    records = [{"case_id": i, "requested_rewrite": {
        "prompt": p, "relation_id": rel, "subject": s, "target_true": {"str": t}, "target_new": {"str": f}}}
        for i, (p, rel, s, t, f) in enumerate([
            ("{} is located in the city of", "P131", "The Eiffel Tower", "Paris", "Guam"),
            ("The twin city of {} is", "P190", "Moscow", "Berlin", "Tokyo"),
            ("The mother tongue of {} is", "P103", "Danielle Darrieux", "French", "English"),
            ("{} is a citizen of", "P27", "Toyota", "Japan", "Canada")])]
    path = tmp_path / "cf.json"
    path.write_text(json.dumps(records))
    config = DiagnoseConfig.of(model="tiny-random-gemma3", counterfact=str(path), records=3, ns=(0, 2),
                            schemes=("not-think", "reverse"), device="cpu")
    summary = run_diagnose(config, tmp_path / "out").summary
    import pandas as pd

    for name in ("attention", "logit_lens", "embedding_spectrum"):
        table = pd.read_parquet(tmp_path / "out" / f"{name}.parquet")
        assert len(table) and len(pd.read_csv(tmp_path / "out" / f"{name}.csv")) == len(table), name
        assert (tmp_path / "out" / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    assert summary["records"] == 3 and summary["prompts"] == 3 * 2 * 2

    att = pd.read_parquet(tmp_path / "out" / "attention.parquet")
    assert set(att["scheme"]) == {"not-think", "reverse"} and (att.query("n == 0")["mean_mass"] == 0).all()
    nt = att.query("scheme == 'not-think' and n == 2")
    assert (nt["mean_target_false_mass"] <= nt["mean_mass"] + 1e-6).all()
    assert (att.query("scheme == 'reverse'")["mean_target_false_mass"] == 0).all()


def test_diagnose_cli_takes_space_separated_lists_and_reports_bad_input(tmp_path, capsys):
    from assocmem.cli import main

    records = [{"case_id": i, "requested_rewrite": {"prompt": "The twin city of {} is", "relation_id": rel,
                                                    "subject": s, "target_true": {"str": t}, "target_new": {"str": f}}}
               for i, (rel, s, t, f) in enumerate([("P190", "Moscow", "Berlin", "Tokyo"),
                                                   ("P999", "Kyoto", "Boston", "Rome")])]
    path = tmp_path / "cf.json"
    path.write_text(json.dumps(records))
    base = ["hijack", "diagnose", "--model", "tiny-random-llama", "--counterfact", str(path), "--device", "cpu",
            "--records", "2"]
    assert main(base + ["--n", "0", "2", "--schemes", "not-think", "reverse", "--out", str(tmp_path / "a")]) == 0
    import pandas as pd

    lens = pd.read_parquet(tmp_path / "a" / "logit_lens.parquet")
    assert sorted(lens["n"].unique()) == [0, 2] and sorted(lens["scheme"].unique()) == ["not-think", "reverse"]
    assert lens["layer"].max() == 2  # tiny llama: 2 blocks
    # P999 has no relation template: a one-line error, or skipped and counted with --skip-bad
    capsys.readouterr()
    assert main(base + ["--schemes", "relation", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "P999" in err and "--skip-bad" in err and len(err.strip().splitlines()) == 1
    assert main(base + ["--schemes", "relation", "--skip-bad", "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["skipped"] == 1
    assert main(base + ["--n", "0", "x", "--out", str(tmp_path / "d")]) == 2
    assert "--n" in capsys.readouterr().err


def test_diagnose_lens_last_layer_equals_the_scorers_first_token_logprob(tmp_path):
    from assocmem.hijack.scoring import score_targets

    lm = tiny_random_lm("gpt2")
    prompts = [PROMPTS[1], PROMPTS[2]]
    true_ids = D.first_token_ids(lm.tokenizer, prompts, ["Paris", "Paris"])
    false_ids = D.first_token_ids(lm.tokenizer, prompts, ["Guam", "Guam"])
    table = D.logit_lens(lm, prompts, true_ids, false_ids, ns=[1, 3])
    lp_true, lp_false = score_targets(lm, prompts, ["Paris"] * 2, ["Guam"] * 2, mode="first-token")
    last = table[table["layer"] == table["layer"].max()].sort_values("n")
    assert last["logp_true"].tolist() == pytest.approx(lp_true.tolist(), abs=1e-5)
    assert last["logp_false"].tolist() == pytest.approx(lp_false.tolist(), abs=1e-5)
