import pytest
import torch

from assocmem.errors import ConfigError
from assocmem.models.llm import cache_root, load_causal_lm, tiny_random_lm


@pytest.mark.parametrize("spec, match", [
    ("not a model!", "is invalid"),
    ("./no/such/dir", "no such directory"),
    ("/tmp/none/model.gguf", "no such .gguf file"),
    ("tiny-random-mamba", "tiny-random-gpt2|llama|gemma3"),
])
def test_unknown_models_fail_in_one_line_without_network(spec, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_causal_lm(spec, device="cpu")
    assert "\n" not in str(err.value)


def test_local_directory_round_trip(tmp_path, tiny_lms):
    lm = tiny_lms["gemma3"]
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    again = load_causal_lm(str(tmp_path), device="cpu")
    ids = torch.tensor([lm.tokenizer("Moscow is")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(lm.model(ids).logits, again.model(ids).logits)
    assert again.tokenizer("Moscow is")["input_ids"] == lm.tokenizer("Moscow is")["input_ids"]
    assert not again.model.training


def test_tiny_models_are_seeded_and_leave_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = tiny_random_lm("llama", seed=1)
    after = torch.rand(1)
    b = tiny_random_lm("llama", seed=1)
    c = tiny_random_lm("llama", seed=2)
    assert torch.equal(before, after)
    pa, pb, pc = (next(m.model.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSOCMEM_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path


def test_parse_max_memory_reads_devices_and_sizes():
    from assocmem.models.llm import parse_max_memory

    assert parse_max_memory(None) is None and parse_max_memory(" ") is None
    assert parse_max_memory("0=500MiB, 1 = 8GiB,cpu=64GB") == {0: "500MiB", 1: "8GiB", "cpu": "64GB"}
    with pytest.raises(ConfigError, match="--max-memory='gpu0=1GiB' is invalid"):
        parse_max_memory("gpu0=1GiB")


def test_loading_a_local_model_shows_no_loading_bar(tmp_path, tiny_lms, capfd):
    lm = tiny_lms["llama"]
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    capfd.readouterr()
    again = load_causal_lm(str(tmp_path), device="cpu")
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err and again.spec == str(tmp_path)
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()          # switched off for the load only
