"""What a run tells its user: a progress bar over a fixed count of prompts, what a resume picked up, and a
finished run answered without loading the model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from assocmem.hijack.run import HijackConfig, run_hijack
from assocmem.models.spec import ModelSpec

FIXTURE = str(Path(__file__).resolve().parent.parent / "fixtures" / "counterfact_small.json")


def _config(**kw) -> HijackConfig:
    base = dict(model="tiny-random-llama", schemes=("not-think", "relation"), max_n=3, counterfact=FIXTURE,
                chunk_size=5, device="cpu", batch_tokens=96)
    return HijackConfig.of(**{**base, **kw})


def _bar_counts(err: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+) \[", err)]


def test_the_bar_counts_prompts_towards_a_fixed_total(tmp_path, capsys, tiny_lms):
    run_hijack(_config(), tmp_path, progress=True, plot=False)
    err = capsys.readouterr().err
    counts = _bar_counts(err)
    prompts = 24 * 2 * 4                                   # records × schemes × n = 0..3
    assert counts and {total for _, total in counts} == {prompts}
    assert counts[-1] == (prompts, prompts) and [done for done, _ in counts] == sorted(done for done, _ in counts)
    assert "prompt/s" in err and "forward" not in err


def test_a_resume_says_what_it_picked_up_and_a_finished_run_loads_no_model(tmp_path, capsys, monkeypatch):
    run_hijack(_config(), tmp_path, progress=False, plot=False)
    for c in (3, 4):
        (tmp_path / "chunks" / f"chunk-{c:05d}.parquet").unlink()
    (tmp_path / "rows.parquet").unlink()
    run_hijack(_config(), tmp_path, progress=True, plot=False)
    err = capsys.readouterr().err
    assert f"resuming {tmp_path}: 3 of 5 chunks (120 prompts) finished earlier; scoring the other 2" in err
    assert {total for _, total in _bar_counts(err)} == {(24 - 15) * 2 * 4}      # the two chunks left: 9 records

    def no_load(self, device=None):
        raise AssertionError("a finished run loaded its model")

    monkeypatch.setattr(ModelSpec, "load", no_load)
    summary = run_hijack(_config(), tmp_path, progress=True, plot=True).summary
    err = capsys.readouterr().err
    assert f"{tmp_path}: finished earlier (5 chunks, 192 rows); nothing to score, the model is not loaded" in err
    assert summary["records"] == 24 and not _bar_counts(err) and (tmp_path / "rates.png").is_file()
    (tmp_path / "chunks" / "chunk-00001.parquet").write_text("damaged")    # a damaged chunk: the usual path
    with pytest.raises(AssertionError, match="loaded its model"):
        run_hijack(_config(), tmp_path, progress=False, plot=False)
