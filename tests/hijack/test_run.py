from pathlib import Path

import pandas as pd
import pytest

import assocmem.hijack.run as run_mod
from assocmem.errors import ConfigError
from assocmem.hijack.counterfact import BadRecord
from assocmem.hijack.run import HijackConfig, run_hijack
from assocmem.io import read_json

FIXTURE = str(Path(__file__).resolve().parent.parent / "fixtures" / "counterfact_small.json")
COLUMNS = ["case_id", "relation_id", "subject", "target_true", "target_false", "target_mismatched", "scheme", "n",
           "mode", "logp_true", "logp_false", "hijacked", "true_preferred", "rank_true", "rank_false", "known",
           "known_p50", "prompt"]


def _config(**kw) -> HijackConfig:
    base = dict(model="tiny-random-llama", schemes=("not-think", "relation"), max_n=2, counterfact=FIXTURE,
                chunk_size=5, device="cpu", batch_tokens=128)
    return HijackConfig.of(**{**base, **kw})


def test_outputs_and_schema(tmp_path, tiny_lms):
    summary = run_hijack(_config(), tmp_path, progress=False).summary
    for name in ("config.json", "rows.parquet", "summary.json", "rates.png"):
        assert (tmp_path / name).is_file()
    assert len(list((tmp_path / "chunks").glob("chunk-*.parquet"))) == 5      # 24 records / 5
    rows = pd.read_parquet(tmp_path / "rows.parquet")
    assert list(rows.columns) == COLUMNS and len(rows) == 24 * 2 * 3
    assert rows["hijacked"].dtype == bool and rows["n"].dtype == "int64"
    assert (rows["hijacked"] == (rows["logp_false"] > rows["logp_true"])).all()
    assert not (rows["hijacked"] & rows["true_preferred"]).any()
    assert summary["records"] == 24 and summary["skipped"]["count"] == 0
    lines = pd.DataFrame(summary["rates"])
    assert len(lines) == 2 * 3 and {"hijacked_share", "hijacked_lo", "hijacked_hi", "true_preferred_share",
                                    "true_preferred_lo", "true_preferred_hi", "ties"} <= set(lines.columns)
    assert set(summary["directions"]) == {"not-think", "relation"}
    per_rel = pd.DataFrame(summary["per_relation"])
    assert set(per_rel["relation_id"]) == set(rows["relation_id"])
    # the n = 0 prompt is the same under every scheme: the same numbers
    n0 = rows[rows["n"] == 0].pivot(index="case_id", columns="scheme", values="logp_true")
    assert (n0["not-think"] == n0["relation"]).all()


def test_rows_name_the_record_so_no_check_needs_a_join_back_to_counterfact(tmp_path):
    from assocmem.hijack.controls import with_mismatched_targets
    from assocmem.hijack.counterfact import load_counterfact

    run_hijack(_config(schemes=("not-think", "not-think-mismatched")), tmp_path, progress=False, plot=False)
    rows = pd.read_parquet(tmp_path / "rows.parquet")
    loaded = load_counterfact(FIXTURE).records
    records = {r.case_id: r for r in with_mismatched_targets(loaded, loaded)}
    for row in rows.itertuples():
        rec = records[row.case_id]
        assert (row.subject, row.target_true, row.target_false, row.target_mismatched) == \
            (rec.subject, rec.target_true, rec.target_false, rec.target_mismatched)
        assert rec.subject in row.prompt
        if row.scheme == "not-think-mismatched" and row.n > 0:
            assert row.prompt.startswith(f"Do not think of {rec.target_mismatched}.")
    # the n = 0 status is the record's, on every row of it
    assert (rows.groupby("case_id")[["known", "known_p50"]].nunique() == 1).all().all()


def test_resume_after_interrupt_recomputes_nothing_finished(tmp_path, monkeypatch):
    cfg = _config()
    run_hijack(cfg, tmp_path / "whole", progress=False, plot=False)
    real = run_mod._finish_chunk     # a chunk's results read back and made into rows
    calls = []

    def interrupted_after_two(*args, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(run_mod, "_finish_chunk", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_hijack(cfg, tmp_path / "resumed", progress=False, plot=False)
    done = sorted((tmp_path / "resumed" / "chunks").glob("chunk-*.parquet"))
    assert len(done) == 2 and not (tmp_path / "resumed" / "rows.parquet").exists()
    stamps = [p.stat().st_mtime_ns for p in done]

    calls.clear()
    monkeypatch.setattr(run_mod, "_finish_chunk", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    run_hijack(cfg.but(batch_tokens=40), tmp_path / "resumed", progress=False, plot=False)
    assert len(calls) == 3                                            # 5 chunks, 2 were done
    assert [p.stat().st_mtime_ns for p in done] == stamps            # finished chunks untouched
    whole = pd.read_parquet(tmp_path / "whole" / "rows.parquet")
    resumed = pd.read_parquet(tmp_path / "resumed" / "rows.parquet")
    pd.testing.assert_frame_equal(whole.drop(columns=["logp_true", "logp_false"]),
                                  resumed.drop(columns=["logp_true", "logp_false"]))
    assert ((whole[["logp_true", "logp_false"]] - resumed[["logp_true", "logp_false"]]).abs() < 1e-4).all().all()

    timing = read_json(tmp_path / "resumed" / "timing.json")        # the resuming invocation's own time
    assert (timing["chunks_resumed"], timing["chunks_scored"]) == (2, 3)
    assert timing["prompts_scored"] == len(resumed) - sum(len(pd.read_parquet(p)) for p in done)
    assert 0 < timing["engine_s"] <= timing["loop_s"] and 0 < timing["loop_share_of_engine_rate"] <= 1
    assert timing["process_to_first_forward_s"] >= timing["process_to_run_s"] + timing["checks_s"]

    calls.clear()
    run_hijack(cfg, tmp_path / "resumed", progress=False, plot=False)
    assert calls == []                                                # all done: nothing scored


def test_the_next_chunks_forwards_are_queued_before_a_chunk_is_read_back_and_written(tmp_path, monkeypatch):
    events = []
    queue, finish = run_mod._queue_chunk, run_mod._finish_chunk

    def queued(lm, plan, *a, **k):
        events.append(("queue", len(plan.requests)))
        return queue(lm, plan, *a, **k)

    def finished(items, *a, **k):
        written = len(list((tmp_path / "chunks").glob("chunk-*.parquet")))
        events.append(("finish", written))
        return finish(items, *a, **k)

    monkeypatch.setattr(run_mod, "_queue_chunk", queued)
    monkeypatch.setattr(run_mod, "_finish_chunk", finished)
    rows = run_hijack(_config(), tmp_path, progress=False, plot=False).rows          # 5 chunks
    kinds = [kind for kind, _ in events]
    assert kinds == ["queue", "queue", "finish", "queue", "finish", "queue", "finish", "queue", "finish", "finish"]
    assert [n for kind, n in events if kind == "finish"] == [0, 1, 2, 3, 4]        # written in order, one by one
    monkeypatch.undo()
    pd.testing.assert_frame_equal(rows, run_mod.score_hijack(_config().lm.load(), _config()).rows)


def test_a_different_config_in_the_same_folder_is_refused(tmp_path):
    run_hijack(_config(max_n=1), tmp_path, progress=False, plot=False)
    with pytest.raises(ConfigError, match="max_n"):
        run_hijack(_config(max_n=2), tmp_path, progress=False, plot=False)


def test_skip_bad_counts_records_without_associations(tmp_path):
    with pytest.raises(BadRecord, match="no associated word"):
        run_hijack(_config(schemes=("associated",)), tmp_path / "a", progress=False, plot=False)
    summary = run_hijack(_config(schemes=("associated", "not-think"), skip_bad=True), tmp_path / "b", progress=False,
                         plot=False).summary
    assert summary["skipped"]["by_scheme"] == {"associated": 3}       # the three P176 (manufacturer) records
    assert summary["records_per_scheme"] == {"associated": 21, "not-think": 24}
    assert {i["case_id"] for i in summary["skipped"]["items"]} == {2764, 6258, 16797}


def test_chunks_whose_records_are_all_skipped_are_finished_empty_and_resumed(tmp_path):
    # chunk_size=1 with the associated scheme alone: the three P176 records' chunks hold no work item.
    config = _config(schemes=("associated",), skip_bad=True, chunk_size=1, max_n=1)
    first = run_hijack(config, tmp_path, progress=False, plot=False)
    rows = first.rows
    assert len(rows) == 21 * 2 and set(rows.columns) == set(COLUMNS)
    assert not {2764, 6258, 16797} & set(rows["case_id"])
    in_memory = run_mod.score_hijack(config.lm.load(), config).rows
    pd.testing.assert_frame_equal(rows, in_memory)
    again = run_hijack(config, tmp_path, progress=False, plot=False)  # every chunk, empty ones too, is finished
    assert again.summary == first.summary


def test_template_scheme_and_relations_filter(tmp_path):
    summary = run_hijack(_config(schemes=(), template="{subject} has nothing to do with {target_false}.",
                                 relations=("P190",), max_n=1), tmp_path, progress=False, plot=False).summary
    assert summary["records"] == 3 and list(summary["directions"]) == ["template"]


@pytest.mark.parametrize("kw, match", [
    (dict(max_n=-1), "^max_n=-1"),
    (dict(batch_tokens=0), "^batch_tokens=0"),
    (dict(row_tokens=-1), "^row_tokens=-1"),
    (dict(mode="last"), "^mode="),
    (dict(schemes=("not-thinks",)), "did you mean not-think"),
    (dict(schemes=("not-think", "not-think")), "twice"),
    (dict(per_relation=0), "^per_relation="),
    (dict(dtype="float8"), "^dtype="),
    (dict(schemes=("template",)), "needs `template`"),
])
def test_bad_config_is_one_line(kw, match):
    with pytest.raises(ConfigError, match=match) as err:
        _config(**kw)
    assert "\n" not in str(err.value)


def test_a_run_that_failed_before_any_chunk_can_be_corrected_in_place(tmp_path):
    with pytest.raises(ConfigError, match="did you mean P190"):
        run_hijack(_config(relations=("P19O",)), tmp_path, progress=False, plot=False)
    summary = run_hijack(_config(relations=("P190",)), tmp_path, progress=False, plot=False).summary
    assert summary["records"] == 3


def test_rows_carry_the_exact_prompt_and_extra_modes_from_one_forward(tmp_path):
    from assocmem.hijack.counterfact import load_counterfact
    from assocmem.hijack.schemes import build_prompt, get_scheme
    from assocmem.hijack.scoring import score_targets
    from assocmem.models.llm import tiny_random_lm

    cfg = _config(extra_modes=("mean-target", "full-target"), schemes=("not-think",))
    run_hijack(cfg, tmp_path, progress=False, plot=False)
    rows = pd.read_parquet(tmp_path / "rows.parquet")
    records = {r.case_id: r for r in load_counterfact(FIXTURE).records}
    for row in rows.head(9).itertuples():
        assert row.prompt == build_prompt(records[row.case_id], get_scheme(row.scheme), row.n)
    lm = tiny_random_lm("llama")
    sample = rows.head(12)
    recs = [records[c] for c in sample["case_id"]]
    for mode, suffix in (("first-token", ""), ("mean-target", ":mean-target"), ("full-target", ":full-target")):
        t, f = score_targets(lm, list(sample["prompt"]), [r.target_true for r in recs], [r.target_false for r in recs],
                             mode=mode)
        assert (abs(sample[f"logp_true{suffix}"].to_numpy() - t.numpy()) < 1e-5).all()
        assert (abs(sample[f"logp_false{suffix}"].to_numpy() - f.numpy()) < 1e-5).all()
    with pytest.raises(ConfigError, match="^extra_modes="):
        _config(extra_modes=("first-token",))


def test_planning_ahead_in_worker_processes_gives_the_same_rows(tmp_path, tiny_lms, monkeypatch):
    """A GPU run plans the next chunks in worker processes; on the CPU it plans inline. Same rows either way."""
    run_hijack(_config(), tmp_path / "inline", progress=False, plot=False)
    seen = []

    def always_ahead(lm):
        seen.append(1)
        return 2

    monkeypatch.setattr(run_mod, "_plan_in_background", always_ahead)
    run_hijack(_config(), tmp_path / "ahead", progress=False, plot=False)
    assert seen
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "inline" / "rows.parquet"),
                                  pd.read_parquet(tmp_path / "ahead" / "rows.parquet"))
