"""The notebook API (`import assocmem`): a model already in memory goes in as it is, every call returns a typed
result, a run folder comes back through load_run, and `import assocmem` itself loads nothing heavy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import assocmem
from assocmem.errors import ConfigError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "counterfact_small.json"
PROMPTS = ["The Eiffel Tower is in the city of", "Do not think of Rome. The Eiffel Tower is in the city of"]


@pytest.fixture(scope="module")
def tiny():
    """A Hugging Face model and its tokenizer built in memory (no folder, no spec): what a notebook holds."""
    from assocmem.models.llm import tiny_random_lm

    torch.set_num_threads(1)
    lm = tiny_random_lm("llama", seed=3)
    return lm.model, lm.tokenizer


def test_import_is_cheap_and_every_name_resolves():
    code = "import sys, assocmem; print(sorted(m for m in ('torch', 'pandas', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for name in assocmem.__all__:
        assert getattr(assocmem, name) is not None
    with pytest.raises(AttributeError):
        assocmem.no_such_name  # noqa: B018


def test_a_model_in_memory_goes_in_as_it_is(tiny):
    from assocmem.hijack.scoring import score_with_ranks
    from assocmem.models.llm import LoadedLM, as_lm, load_causal_lm

    model, tok = tiny
    table = assocmem.score_prompts(model, PROMPTS, "Paris", "Rome", tokenizer=tok)
    assert list(table.columns[:5]) == ["prompt", "target_true", "target_false", "logp_true", "logp_false"]
    direct = score_with_ranks(LoadedLM(model, tok, "x"), PROMPTS, ["Paris"] * 2, ["Rome"] * 2)
    assert table["logp_true"].tolist() == direct.logp_true.tolist()
    assert table["rank_false"].tolist() == direct.rank_false.tolist()
    assert (table["hijacked"] == (table["logp_false"] > table["logp_true"])).all()
    pd.testing.assert_frame_equal(assocmem.score_prompts((model, tok), PROMPTS, "Paris", "Rome"), table)
    assert isinstance(load_causal_lm(model, tokenizer=tok), LoadedLM)           # once an OSError
    assert as_lm(as_lm(model, tok)).model is model
    with pytest.raises(ConfigError, match="^tokenizer is required"):
        assocmem.score_prompts(model, PROMPTS, "Paris", "Rome")                # once an AttributeError
    with pytest.raises(ConfigError, match="^true has 3 targets for 2 prompts"):
        assocmem.score_prompts(model, PROMPTS, ["a", "b", "c"], "Rome", tokenizer=tok)
    with pytest.raises(ConfigError, match="^model=int is invalid"):
        assocmem.score_prompts(3, PROMPTS, "Paris", "Rome")


def test_hijacking_in_memory_equals_the_run_folder_and_load_run_reads_it_back(tiny, tmp_path):
    model, tok = tiny
    kw = dict(tokenizer=tok, records=6, schemes=("not-think", "relation"), max_n=2, counterfact=str(FIXTURE),
              skip_bad=True, extra_modes=("mean-target",), chunk_size=4)
    memory = assocmem.evaluate_hijacking(model, **kw)
    folder = assocmem.evaluate_hijacking(model, out=tmp_path / "run", **kw)
    assert len(memory.rows) == memory.summary["records"] * 2 * 3 > 0
    pd.testing.assert_frame_equal(memory.rows, folder.rows)
    back = assocmem.load_run(tmp_path / "run")
    assert isinstance(back, assocmem.HijackResult) and back.config == folder.config
    pd.testing.assert_frame_equal(back.rows, memory.rows)
    pd.testing.assert_frame_equal(back.rates, memory.rates)
    assert set(back.rates.columns) >= {"scheme", "n", "hijacked_share", "hijacked_lo", "hijacked_hi"}
    records = assocmem.counterfact(path=FIXTURE, relations=("P190",))
    own = assocmem.evaluate_hijacking(model, tokenizer=tok, records=records, schemes="not-think", max_n=1)
    assert set(own.rows["case_id"]) == {r.case_id for r in records} and own.summary["counterfact"] == "records given"
    with pytest.raises(ConfigError, match="^max_n=-1 is invalid"):
        assocmem.evaluate_hijacking(model, tokenizer=tok, max_n=-1)
    with pytest.raises(ConfigError, match="^max_m=3 is invalid: HijackConfig has no setting max_m .did you mean max_n"):
        assocmem.evaluate_hijacking(model, tokenizer=tok, max_m=3)


def test_one_fact_diagnose_and_mechanism_are_typed_results(tiny, tmp_path):
    from assocmem.models.llm import tiny_random_lm

    model, tok = tiny
    fact = assocmem.hijack_fact(model, PROMPTS[0], "Paris", "Rome", tokenizer=tok, max_n=2, top_k=3)
    assert fact["n"].tolist() == [0, 1, 2] and all(len(top) == 3 for top in fact["top"])
    diag = assocmem.diagnose(model, tokenizer=tok, records=3, ns=(0, 1), counterfact=str(FIXTURE), skip_bad=True,
                             out=tmp_path / "diag")
    assert isinstance(diag, assocmem.DiagnoseResult) and set(diag.logit_lens["n"]) == {0, 1}
    pd.testing.assert_frame_equal(assocmem.load_run(tmp_path / "diag").attention, diag.attention)
    gemma = tiny_random_lm("gemma3", seed=0)
    mech = assocmem.mechanism(gemma, records=3, ns=(1,), schemes="not-think", counterfact=str(FIXTURE),
                              components=("attn",), heads=False, defend=False, min_shift=0.0)
    assert isinstance(mech, assocmem.MechanismResult) and len(mech.interventions) and not len(mech.defence)
    assert set(mech.restoration["analysis"]) >= {"knockout", "patch"}


def test_train_lca_gives_weights_and_accuracies_and_its_folder_loads(tmp_path):
    models = assocmem.train_lca(m=3, L=8, d=8, seeds=2, steps=20, eval_every=10, eval_samples=128, device="cpu",
                                out=tmp_path / "lca")
    assert tuple(models.W_V.shape) == (2, 8, 8) and list(models.table["seed"]) == [0, 1]
    back = assocmem.load_run(tmp_path / "lca")
    assert isinstance(back, assocmem.TrainedModels) and back.final_accuracy == models.final_accuracy
    assert torch.equal(back.W_V, models.W_V) and back.history.equals(models.history)
    paper = assocmem.train_lca("paper", m=3, L=8, d=8, steps=5, eval_samples=64, device="cpu")
    assert paper[0].task.extra_tokens == 1 and paper[0].model.init == "torch" and paper.train.betas == (0.9, 0.99)
    with pytest.raises(ConfigError, match="^protocol='papr' is invalid"):
        assocmem.train_lca("papr")


def test_load_run_reads_a_folder_of_runs_and_refuses_anything_else(tmp_path):
    with pytest.raises(ConfigError, match=r"^folder=.* \(no such folder\)"):
        assocmem.load_run(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="^folder=.* is invalid: allowed a folder written by"):
        assocmem.load_run(tmp_path / "empty")
    assocmem.train_lca(m=3, L=8, d=8, steps=5, eval_samples=64, device="cpu", out=tmp_path / "all" / "a")
    runs = assocmem.load_run(tmp_path / "all")
    assert list(runs) == ["a"] and isinstance(runs["a"], assocmem.TrainedModels)


def test_a_result_whose_config_is_read_back_raw_saves_again(tmp_path):
    """A folder's config that cannot be rebuilt here (it names a CounterFact file this machine lacks) is kept as
    the raw dict (`config.read_config`); every result type writes it back as it is."""
    from assocmem.config import read_config
    from assocmem.hijack.diagnose import DiagnoseConfig, DiagnoseResult
    from assocmem.hijack.mechanism_report import MechanismResult
    from assocmem.hijack.run import HijackConfig, HijackResult
    from assocmem.io import read_json

    raw = {"data": {"counterfact": str(tmp_path / "gone.json"), "records": 3}, "max_n": 1,
           "fingerprints": {"code": "0123456789abcdef"}}
    assert read_config(HijackConfig, raw) is raw and read_config(DiagnoseConfig, raw) is raw
    summary = {"model": "m", "records": 0, "config": raw, "fingerprints": raw["fingerprints"]}
    HijackResult(pd.DataFrame({"n": [0]}), summary, raw).save(tmp_path / "hijack")
    assert read_json(tmp_path / "hijack" / "config.json") == raw
    empty = pd.DataFrame()
    DiagnoseResult(empty, empty, empty, summary, raw).save(tmp_path / "diagnose")
    assert read_json(tmp_path / "diagnose" / "config.json") == raw
    MechanismResult(empty, empty, empty, empty, empty, summary, raw).save(tmp_path / "mechanism")
    assert read_json(tmp_path / "mechanism" / "config.json") == raw
