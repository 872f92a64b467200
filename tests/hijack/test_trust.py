"""Runs you can trust: fingerprints, bad records, damaged folders, verify, and kill -9 then resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from assocmem.cli import main
from assocmem.errors import ConfigError
from assocmem.hijack.counterfact import BadRecord
from assocmem.hijack.run import HijackConfig, rows_code, run_hijack
from assocmem.hijack.verify import verify_run

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "counterfact_small.json"
SRC = Path(__file__).resolve().parents[2] / "src"


def _config(cf: Path, **kw) -> HijackConfig:
    base = dict(model="tiny-random-llama", schemes=("not-think",), max_n=2, counterfact=str(cf), chunk_size=4,
                device="cpu", batch_tokens=256)
    return HijackConfig.of(**{**base, **kw})


def _copy_fixture(tmp_path: Path, edit=None) -> Path:
    records = json.loads(FIXTURE.read_text())
    if edit:
        edit(records)
    path = tmp_path / "cf.json"
    path.write_text(json.dumps(records))
    return path


def _rows(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "rows.parquet").sort_values(["case_id", "scheme", "n"]).reset_index(drop=True)


def test_config_records_what_the_run_was_computed_from(tmp_path):
    cf = _copy_fixture(tmp_path)
    run_hijack(_config(cf), tmp_path / "run", progress=False, plot=False)
    prints = json.loads((tmp_path / "run" / "config.json").read_text())["fingerprints"]
    assert prints["counterfact"]["path"] == str(cf.resolve()) and len(prints["counterfact"]["sha256"]) == 64
    assert prints["counterfact"]["copy"] == "other"
    assert prints["model"]["kind"] == "tiny" and prints["assocmem"] == __import__("assocmem").__version__
    assert prints["code"] == rows_code() and len(prints["code"]) == 16
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["fingerprints"] == prints and summary["counterfact"] == str(cf.resolve())
    chunks = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "chunks").glob("*.engine.json"))]
    assert len(chunks) == 6 and summary["engine"]["requests"] == sum(c["requests"] for c in chunks)   # 24 records / 4


def test_a_resume_on_a_changed_counterfact_file_is_refused(tmp_path):
    cf = _copy_fixture(tmp_path)
    run_hijack(_config(cf), tmp_path / "run", progress=False, plot=False)

    def swap(records):
        records[0]["requested_rewrite"]["target_new"]["str"] = "Italian"
    _copy_fixture(tmp_path, swap)                                     # same path, new content
    with pytest.raises(ConfigError, match=r"different the CounterFact file \(sha256 .* then, .* now"):
        run_hijack(_config(cf), tmp_path / "run", progress=False, plot=False)


def _run_on_a_saved_model(tmp_path, tiny_lms):
    """A finished run of the tiny llama saved as a local model folder: (that folder, the CounterFact copy)."""
    model_dir = tmp_path / "model"
    lm = tiny_lms["llama"]
    lm.model.save_pretrained(model_dir)
    lm.tokenizer.save_pretrained(model_dir)
    cf = _copy_fixture(tmp_path)
    run_hijack(_config(cf, model=str(model_dir)), tmp_path / "run", progress=False, plot=False)
    return model_dir, cf


def test_a_resume_on_a_changed_model_is_refused(tmp_path, tiny_lms):
    from assocmem.models.llm import tiny_random_lm

    model_dir, cf = _run_on_a_saved_model(tmp_path, tiny_lms)
    other = tiny_random_lm("llama", seed=1)
    other.model.save_pretrained(model_dir)                            # same folder, new weights
    with pytest.raises(ConfigError, match="different the model's sha256"):
        run_hijack(_config(cf, model=str(model_dir)), tmp_path / "run", progress=False, plot=False)


def test_equal_targets_are_a_bad_record(tmp_path):
    def same(records):
        rw = records[2]["requested_rewrite"]
        rw["target_new"]["str"] = " " + rw["target_true"]["str"] + " "
    cf = _copy_fixture(tmp_path, same)
    case = json.loads(cf.read_text())[2]["case_id"]
    with pytest.raises(BadRecord, match=f"case_id={case}: target_true .* and target_false .* are the same"):
        run_hijack(_config(cf), tmp_path / "a", progress=False, plot=False)
    summary = run_hijack(_config(cf, skip_bad=True), tmp_path / "b", progress=False, plot=False).summary
    assert summary["skipped"]["by_reason"] == {"equal-targets": 1} and summary["records"] == 23
    assert case not in set(_rows(tmp_path / "b")["case_id"])


def test_targets_sharing_their_first_token_are_bad_in_first_token_mode_only(tmp_path, tiny_lms):
    tok = tiny_lms["llama"].tokenizer

    def share(records):
        rw = records[5]["requested_rewrite"]
        rw["target_true"]["str"], rw["target_new"]["str"] = "Paris", "Paris Hilton"
    cf = _copy_fixture(tmp_path, share)
    assert tok(" Paris")["input_ids"][-1] == tok(" Paris Hilton")["input_ids"][1]  # the same first token
    case = json.loads(cf.read_text())[5]["case_id"]
    with pytest.raises(BadRecord, match=f"case_id={case}: in first-token mode .* share their first token"):
        run_hijack(_config(cf), tmp_path / "a", progress=False, plot=False)
    summary = run_hijack(_config(cf, skip_bad=True), tmp_path / "b", progress=False, plot=False).summary
    assert summary["skipped"]["by_reason"] == {"shared-first-token": 1}
    summary = run_hijack(_config(cf, mode="mean-target"), tmp_path / "c", progress=False, plot=False).summary
    assert summary["skipped"]["count"] == 0                       # full targets differ: measurable


def test_a_damaged_chunk_is_recomputed_and_said_so(tmp_path, capsys):
    cf = _copy_fixture(tmp_path)
    run_hijack(_config(cf), tmp_path / "whole", progress=False, plot=False)
    shutil.copytree(tmp_path / "whole", tmp_path / "damaged")
    chunk = tmp_path / "damaged" / "chunks" / "chunk-00002.parquet"
    chunk.write_bytes(chunk.read_bytes()[:100])                        # truncated
    (tmp_path / "damaged" / "chunks" / "chunk-00004.parquet").write_text("not parquet")
    summary = run_hijack(_config(cf), tmp_path / "damaged", progress=False, plot=False).summary
    err = capsys.readouterr().err
    assert "chunk-00002.parquet is damaged" in err and "chunk-00004.parquet is damaged" in err
    assert len(summary["recomputed_chunks"]) == 2
    pd.testing.assert_frame_equal(_rows(tmp_path / "damaged"), _rows(tmp_path / "whole"))


def test_an_unreadable_config_is_a_one_line_error(tmp_path, capsys):
    cf = _copy_fixture(tmp_path)
    run_hijack(_config(cf), tmp_path / "run", progress=False, plot=False)
    (tmp_path / "run" / "config.json").write_text("{broken")
    code = main(["hijack", "--model", "tiny-random-llama", "--counterfact", str(cf), "--schemes", "not-think",
                 "--max-n", "2", "--chunk-size", "4", "--device", "cpu", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "config.json is unreadable" in err and len(err.strip().splitlines()) == 1


def test_verify_agrees_with_an_honest_run_and_catches_a_tampered_one(tmp_path):
    cf = _copy_fixture(tmp_path)
    run_hijack(_config(cf), tmp_path / "run", progress=False, plot=False)
    report = verify_run(tmp_path / "run", sample=30, device="cpu")
    assert report["rows_checked"] == 30 and report["same_decisions"] == 30 == report["within_tolerance"]
    assert report["fingerprints"] == "recorded, matching"
    rows = pd.read_parquet(tmp_path / "run" / "rows.parquet")
    rows["logp_true"], rows["logp_false"] = rows["logp_false"], rows["logp_true"]   # every decision flipped
    rows.to_parquet(tmp_path / "run" / "rows.parquet", index=False)
    report = verify_run(tmp_path / "run", sample=30, device="cpu")
    assert report["same_decisions"] < 30
    assert main(["verify", str(tmp_path / "run"), "--sample", "10", "--device", "cpu"]) == 1


def test_verify_refuses_a_changed_file(tmp_path):
    cf = _copy_fixture(tmp_path)
    run_hijack(_config(cf), tmp_path / "run", progress=False, plot=False)
    cf.write_text(cf.read_text().replace("Russian", "Italian"))
    with pytest.raises(ConfigError, match="computed from a different the CounterFact file"):
        verify_run(tmp_path / "run", sample=5, device="cpu")


@pytest.mark.slow
def test_kill_9_at_chosen_moments_then_resume_gives_the_uninterrupted_rows(tmp_path):
    """The run SIGKILLs itself at a chosen moment (a test hook: before a scored chunk is written, between
    its packing counts and its rows, after k chunks are done; and once more inside a resumed run); each
    resumed run's rows equal the uninterrupted run's, value for value. The moments are deterministic, so
    a fast machine cannot finish the run before the kill."""
    cf = _copy_fixture(tmp_path)
    args = [sys.executable, "-m", "assocmem.cli", "hijack", "--model", "tiny-random-gpt2", "--counterfact", str(cf),
            "--schemes", "not-think", "relation", "--max-n", "3", "--chunk-size", "2", "--device", "cpu", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    env.pop("ASSOCMEM_TEST_KILL_AT", None)
    subprocess.run(args + ["--out", str(tmp_path / "whole")], env=env, check=True, capture_output=True)
    whole = _rows(tmp_path / "whole")
    n_chunks = len(list((tmp_path / "whole" / "chunks").glob("chunk-*.parquet")))       # 12
    # (kill points of successive invocations, chunks on disk after each kill)
    plans = [(("scored:1",), (0,)), (("stats-written:2",), (1,)), (("written:7",), (7,)),
             (("written:3", "scored:2"), (3, 4))]
    for point, (kills, expected) in enumerate(plans):
        out = tmp_path / f"killed{point}"
        for kill, done in zip(kills, expected):
            proc = subprocess.run(args + ["--out", str(out)], env={**env, "ASSOCMEM_TEST_KILL_AT": kill},
                                  capture_output=True)
            assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
            assert not (out / "rows.parquet").exists()              # it really was interrupted
            assert len(list((out / "chunks").glob("chunk-*.parquet"))) == done < n_chunks
        subprocess.run(args + ["--out", str(out)], env=env, check=True, capture_output=True)
        pd.testing.assert_frame_equal(_rows(out), whole)


def test_a_resume_with_another_tokenizer_is_refused(tmp_path, tiny_lms):
    """The same weights with another tokenizer score other tokens (seen on a GPU machine whose
    transformers converted the bundled Gemma's GGUF with a different tokenizer): refused."""
    from assocmem.models.llm import tiny_random_lm

    model_dir, cf = _run_on_a_saved_model(tmp_path, tiny_lms)
    prints = json.loads((tmp_path / "run" / "config.json").read_text())["fingerprints"]
    assert len(prints["model"]["tokenizer"]) == 64
    other = tiny_random_lm("gpt2")                    # another tokenizer, same weights file
    other.tokenizer.save_pretrained(model_dir)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["fingerprints"]["model"]["sha256"] = __import__("assocmem.provenance", fromlist=["x"]).model_fingerprint(
        str(model_dir))["sha256"]                     # only the tokenizer is to differ
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="with tokenizer .* now .*: the same weights would score other tokens"):
        run_hijack(_config(cf, model=str(model_dir)), tmp_path / "run", progress=False, plot=False)


def test_verify_reads_a_folder_older_than_fingerprints(tmp_path):
    """A run folder written before this version (flat config.json, no fingerprints, no dtype in the
    summary) is re-checked against the files its config names, and says so."""
    from assocmem.config import flat_dict_of

    cf = _copy_fixture(tmp_path)
    run_hijack(_config(cf), tmp_path / "run", progress=False, plot=False)
    config = flat_dict_of(json.loads((tmp_path / "run" / "config.json").read_text()))
    (tmp_path / "run" / "config.json").write_text(json.dumps({**config, "batch_size": 32, "dtype": "float32"}))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    summary["placement"].pop("dtype")
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    report = verify_run(tmp_path / "run", sample=10, device="cpu")
    assert report["same_decisions"] == 10 and report["fingerprints"].startswith("not recorded")


def test_a_given_model_is_the_configs_or_is_fingerprinted_by_its_weights(tmp_path, tiny_lms):
    """run_hijack(config, out, lm=...) records the model it scored with: the config's own (same fingerprints
    as loading it), one built in memory by its weights; a model loaded from another spec is refused."""
    from assocmem.models.llm import load_causal_lm, tiny_random_lm

    cf = _copy_fixture(tmp_path)
    run_hijack(_config(cf), tmp_path / "loaded", progress=False, plot=False)
    run_hijack(_config(cf), tmp_path / "given", progress=False, plot=False, lm=load_causal_lm("tiny-random-llama"))
    prints = [json.loads((tmp_path / f / "config.json").read_text())["fingerprints"] for f in ("loaded", "given")]
    assert prints[0] == prints[1]
    pd.testing.assert_frame_equal(_rows(tmp_path / "loaded"), _rows(tmp_path / "given"))

    with pytest.raises(ConfigError, match="loaded from 'tiny-random-gpt2', its config names model='tiny-random-llama'"):
        run_hijack(_config(cf), tmp_path / "other", progress=False, plot=False, lm=tiny_lms["gpt2"])
    assert not (tmp_path / "other").exists()
    half = load_causal_lm("tiny-random-llama", dtype="bfloat16")
    with pytest.raises(ConfigError, match="is in bfloat16, its config says dtype=float32"):
        run_hijack(_config(cf, dtype="float32"), tmp_path / "other", progress=False, plot=False, lm=half)

    built = tiny_random_lm("llama", seed=1)               # not what any spec loads: its weights identify it
    run_hijack(_config(cf), tmp_path / "built", progress=False, plot=False, lm=built)
    model = json.loads((tmp_path / "built" / "config.json").read_text())["fingerprints"]["model"]
    assert model["kind"] == "in-memory" and model["sha256"] != prints[0]["model"]["sha256"]
    assert model["sha256"] == __import__("assocmem.provenance", fromlist=["x"]).weights_fingerprint(built.model)
    run_hijack(_config(cf), tmp_path / "built", progress=False, plot=False, lm=built)   # the same weights resume
    with pytest.raises(ConfigError, match="different the model's sha256"):
        run_hijack(_config(cf), tmp_path / "built", progress=False, plot=False, lm=tiny_random_lm("llama", seed=2))


def test_a_resume_by_other_code_is_refused_and_verify_says_the_code_changed(tmp_path):
    cf = _copy_fixture(tmp_path)
    run_hijack(_config(cf), tmp_path / "run", progress=False, plot=False)
    (tmp_path / "run" / "rows.parquet").unlink()                        # an unfinished run, to be resumed
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["fingerprints"]["code"] = "0123456789abcdef"                 # as if another version scored its chunks
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"different code that computes the rows \(0123456789abcdef then, "
                                          rf"{rows_code()} now\)"):
        run_hijack(_config(cf), tmp_path / "run", progress=False, plot=False)
    run_hijack(_config(cf), tmp_path / "fresh", progress=False, plot=False)
    config = json.loads((tmp_path / "fresh" / "config.json").read_text())
    config["fingerprints"]["code"] = "0123456789abcdef"
    (tmp_path / "fresh" / "config.json").write_text(json.dumps(config))
    report = verify_run(tmp_path / "fresh", sample=5, device="cpu")     # re-checking with today's code is its job
    assert report["same_decisions"] == 5 and report["fingerprints"].endswith("the code that computes rows changed "
                                                                            "since the run")


@pytest.mark.parametrize("edit, match", [
    (None, "relation 'P19O' has no records"),
    ("equal", "are the same"),
])
def test_a_run_refused_by_validation_leaves_no_folder_and_no_config(tmp_path, edit, match):
    def same(records):
        rw = records[2]["requested_rewrite"]
        rw["target_new"]["str"] = rw["target_true"]["str"]
    cf = _copy_fixture(tmp_path, same if edit else None)
    config = _config(cf, relations=("P19O",)) if edit is None else _config(cf)
    with pytest.raises(ConfigError, match=match):
        run_hijack(config, tmp_path / "run", progress=False, plot=False)
    assert not (tmp_path / "run").exists()


def test_the_same_file_under_another_path_resumes_and_another_file_under_the_same_path_does_not(tmp_path):
    cf = _copy_fixture(tmp_path)
    run_hijack(_config(cf), tmp_path / "run", progress=False, plot=False)
    (tmp_path / "run" / "rows.parquet").unlink()
    link = tmp_path / "elsewhere"
    link.mkdir()
    (link / "same.json").write_bytes(cf.read_bytes())
    summary = run_hijack(_config(link / "same.json"), tmp_path / "run", progress=False, plot=False).summary
    assert summary["records"] == 24 and summary["counterfact"] == str((link / "same.json").resolve())
    (link / "same.json").write_text(cf.read_text().replace("Russian", "Italian"))
    (tmp_path / "run" / "rows.parquet").unlink()
    with pytest.raises(ConfigError, match="different the CounterFact file"):
        run_hijack(_config(link / "same.json"), tmp_path / "run", progress=False, plot=False)
