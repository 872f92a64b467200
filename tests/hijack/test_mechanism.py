"""Causal interventions (hijack.mechanism, models.extension) against what they must equal, on tiny
random gpt2 (no BOS, absolute positions), llama and gemma3 (BOS, RoPE; gemma3 mixes sliding-window
and full layers: a dict of masks)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from assocmem.errors import ConfigError
from assocmem.hijack import mechanism as M
from assocmem.hijack.counterfact import load_counterfact
from assocmem.models.packed_forward import forward_rows
from assocmem.models.packing import Rows

ARCHS = ("gpt2", "llama", "gemma3")


@pytest.fixture(scope="module")
def records(counterfact_small):
    return load_counterfact(counterfact_small, skip_bad=True).records[:6]


def _analyse(lm, records, planner, components=("resid", "attn", "mlp")):
    data = M.build_items(lm.tokenizer, records, "not-think", (1, 3))
    config = M.MechanismConfig.of(model=lm.name, min_shift=0.0, components=components,
                               probe_tokens=40)
    return data, M.analyse(lm, data, config, planner=planner)


def _hijacked(result) -> pd.DataFrame:
    return result.records[result.records["n"] > 0].set_index(["case_id", "n"])["margin"]


def _by(result, analysis: str, variant: str) -> pd.Series:
    iv = result.interventions
    return iv[(iv["analysis"] == analysis) & (iv["variant"] == variant)].set_index(["case_id", "n"])["margin"]


def _plan(kind):
    """Planner: one intervention per hijacked item, built by kind(item, index, n_layers)."""
    return lambda items, which, L: [kind(items[i], i, L) for i in which]


@pytest.mark.parametrize("arch", ARCHS)
def test_knockout_of_nothing_equals_the_plain_forward(tiny_lms, records, arch):
    lm = tiny_lms[arch]
    for variant in ("read", "prompt"):
        def nothing(it, i, L, variant=variant):
            first = it.length - 1 if variant == "read" else it.distractor_end
            return M.Intervention(i, first, tuple(range(L)), "knockout", variant, "all", "all",
                                  tuple(range(first, it.length)), ())
        _, result = _analyse(lm, records, _plan(nothing))
        got, plain = _by(result, "knockout", variant), _hijacked(result)
        assert len(got) == len(plain) > 0
        np.testing.assert_allclose(got.loc[plain.index].to_numpy(), plain.to_numpy(), atol=1e-5, rtol=0)


def _alone(lm, ids, positions):
    """Margin-ready hidden state of `ids` fed alone at `positions` (one causal row)."""
    T = len(ids)
    rows = Rows(np.array([ids]), np.array([positions]), np.zeros((1, T), dtype=np.int64),
                np.zeros((1, T), dtype=np.int64), np.arange(T)[None].copy(), {0: (0, 0, T, T, T)})
    return forward_rows(lm, rows, np.array([0]), np.array([T - 1])).hidden


@pytest.mark.parametrize("arch", ARCHS)
def test_blocking_every_prompt_token_from_the_distractors_everywhere_equals_the_prompt_alone(tiny_lms, records, arch):
    """With every prompt-token query blind to the distractors in every block, the prompt sees only
    [BOS] and itself: exactly the prompt fed alone at the same position ids (for absolute and rotary
    positions alike), and not the hijacked prompt."""
    lm = tiny_lms[arch]

    def blind(it, i, L):
        return M.Intervention(i, it.distractor_end, tuple(range(L)), "knockout", "prompt", "all", "all",
                              tuple(range(it.distractor_end, it.length)), tuple(it.distractor().tolist()))
    data, result = _analyse(lm, records, _plan(blind))
    got = _by(result, "knockout", "prompt")
    checked = 0
    for it in data.items:
        if it.n == 0:
            continue
        ids = list(data.requests[it.request])
        keep = list(range(it.n_prefix)) + list(range(it.distractor_end, it.length))
        h = _alone(lm, [ids[p] for p in keep], keep)
        want = M.target_margins(lm, h, [it.true_id], [it.false_id])[0]
        assert got.loc[(it.case_id, it.n)] == pytest.approx(want, abs=1e-5)
        assert abs(want - _hijacked(result).loc[(it.case_id, it.n)]) > 1e-4   # the test can fail
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", ("read", "prompt"))
def test_knockout_in_the_top_block_equals_the_full_forward_with_that_mask_edit(tiny_lms, records, arch, variant):
    """The extension (only the intervened tokens recomputed, block 0 handed on from the cache) against
    the whole packed forward with the same edit made to the mask the block sees (bool for SDPA; for
    gemma3 the mask of that block's layer type)."""
    lm = tiny_lms[arch]
    layer = 1

    def block(it, i, L):
        first = it.length - 1 if variant == "read" else it.distractor_end
        return M.Intervention(i, first, (layer,), "knockout", variant, "single", str(layer),
                              tuple(range(first, it.length)), tuple(it.distractor().tolist()))
    data, result = _analyse(lm, records, _plan(block))
    got = _by(result, "knockout", variant)
    for it in [it for it in data.items if it.n == 3][:3]:
        seq = tuple(data.requests[it.request])
        T = len(seq)
        rows = Rows(np.array([seq]), np.arange(T)[None].copy(), np.zeros((1, T), dtype=np.int64),
                    np.zeros((1, T), dtype=np.int64), np.arange(T)[None].copy(), {0: (0, 0, T, T, T)})
        queries = [T - 1] if variant == "read" else list(range(it.distractor_end, T))
        q, k = (torch.tensor(a) for a in zip(*[(q, k) for q in queries for k in it.distractor()]))
        cells = {layer: (torch.zeros(len(q), dtype=torch.long), q, k)}
        h = forward_rows(lm, rows, np.array([0]), np.array([T - 1]), attention_edit=M._knockout_edit(cells)).hidden
        want = M.target_margins(lm, h, [it.true_id], [it.false_id])[0]
        assert got.loc[(it.case_id, it.n)] == pytest.approx(want, abs=1e-5)
        assert abs(want - _hijacked(result).loc[(it.case_id, it.n)]) > 1e-5


@pytest.mark.parametrize("arch", ARCHS)
def test_patching_every_blocks_output_at_the_read_gives_the_clean_margin(tiny_lms, records, arch):
    lm = tiny_lms[arch]

    def patch_all(it, i, L):
        return M.Intervention(i, it.length - 1, tuple(range(L)), "patch", "resid", "all", "all")
    _, result = _analyse(lm, records, _plan(patch_all), components=("resid",))
    iv = result.interventions
    np.testing.assert_allclose(iv["margin"], iv["margin_clean"], atol=1e-5, rtol=0)
    assert np.abs(iv["margin_hijacked"] - iv["margin_clean"]).max() > 1e-3

    def patch_top(it, i, L):     # the top block alone (blocks below handed on from the cache)
        return M.Intervention(i, it.length - 1, (L - 1,), "patch", "resid", "single", str(L - 1))
    _, top = _analyse(lm, records, _plan(patch_top), components=("resid",))
    np.testing.assert_allclose(top.interventions["margin"], top.interventions["margin_clean"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ("llama", "gemma3"))
def test_patching_every_attention_output_gives_the_clean_margin_and_every_mlp_output_does_not(tiny_lms, records, arch):
    """With rotary positions the read token's embedding is the same in both prompts and an MLP sees
    only its own position: once every attention output at the read is the clean one, so is everything
    there. MLP outputs alone cannot do that (attention still reads the distractors)."""
    lm = tiny_lms[arch]

    def patch(component):
        return _plan(lambda it, i, L: M.Intervention(i, it.length - 1, tuple(range(L)), "patch", component, "all", "all"))
    _, attn = _analyse(lm, records, patch("attn"), components=("attn", "mlp"))
    np.testing.assert_allclose(attn.interventions["margin"], attn.interventions["margin_clean"], atol=1e-5, rtol=0)
    _, mlp = _analyse(lm, records, patch("mlp"), components=("attn", "mlp"))
    assert (mlp.interventions["margin"] - mlp.interventions["margin_clean"]).abs().max() > 1e-4


def test_margin_equals_the_scorers_log_probability_difference(tiny_lms, records):
    from assocmem.hijack.schemes import build_prompt, get_scheme
    from assocmem.hijack.scoring import score_targets

    lm = tiny_lms["gemma3"]
    data, result = _analyse(lm, records, lambda items, which, L: [])
    recs = {r.case_id: r for r in records}
    rows = result.records
    prompts = [build_prompt(recs[c], get_scheme("not-think"), int(n)) for c, n in zip(rows["case_id"], rows["n"])]
    lt, lf = score_targets(lm, prompts, [recs[c].target_true for c in rows["case_id"]],
                           [recs[c].target_false for c in rows["case_id"]])
    np.testing.assert_allclose(rows["margin"].to_numpy(), (lt - lf).numpy(), atol=1e-5, rtol=0)


def test_control_positions_are_prompt_tokens_never_bos_the_subject_nor_the_read_and_seeded(tiny_lms, records):
    data = M.build_items(tiny_lms["llama"].tokenizer, records, "not-think", (1, 3))
    for it in data.items:
        if it.n == 0:
            continue
        c = M.control_positions(it, seed=0)
        subject = set(range(it.subject_start, it.subject_end))
        others = [p for p in range(it.distractor_end, it.length - 1) if p not in subject]
        assert len(c) == min(it.distractor_end - it.n_prefix, len(others))
        assert set(c.tolist()) <= set(others) and len(set(c)) == len(c)
        np.testing.assert_array_equal(c, M.control_positions(it, seed=0))
        m = M.matched_positions(it, seed=0)
        assert len(m) == len(c) and set(m.tolist()) <= set(it.distractor().tolist()) and len(set(m)) == len(m)
    assert data.items[0].n_prefix == 1 and M.build_items(tiny_lms["gpt2"].tokenizer, records, "not-think",
                                                         (1,)).items[0].n_prefix == 0


def test_a_record_repeating_another_records_prompt_is_skipped_and_the_others_keep_their_positions(tiny_lms, records):
    """Two records with the same prompt share one planned request at n = 0; the later one is skipped (its
    distractor positions would be read from the wrong request), and every kept item's positions are its own."""
    import dataclasses

    twin = dataclasses.replace(records[0], case_id=99999, target_false=records[1].target_false)
    data = M.build_items(tiny_lms["llama"].tokenizer, [records[0], twin, *records[1:]], "not-think", (1, 3))
    assert [c for c, _ in data.skipped] == [99999] and "repeated prompt" in data.skipped[0][1]
    alone = M.build_items(tiny_lms["llama"].tokenizer, records, "not-think", (1, 3))
    key = lambda d: [(it.case_id, it.n, it.distractor_end, it.subject_start, it.length, data_ids(d, it))  # noqa: E731
                     for it in d.items]
    assert key(data) == key(alone)


def test_records_the_scheme_cannot_build_all_skipped_give_no_items_not_a_crash(tiny_lms, counterfact_small):
    manufacturers = [r for r in load_counterfact(counterfact_small, skip_bad=True).records if r.relation_id == "P176"]
    data = M.build_items(tiny_lms["llama"].tokenizer, manufacturers, "associated", (1, 3))
    assert data.items == [] and data.requests == [] and len(data.skipped) == len(manufacturers) == 3
    assert all("associated" in reason for _, reason in data.skipped)


def data_ids(data, it):
    return tuple(data.requests[it.request])


@pytest.mark.parametrize("arch", ARCHS)
def test_subject_positions_hold_the_subjects_tokens(tiny_lms, records, arch):
    """The subject span decodes to the subject (up to a leading space) at every n, and nothing else."""
    tok = tiny_lms[arch].tokenizer
    data = M.build_items(tok, records, "not-think", (1, 3))
    subjects = {r.case_id: r.subject for r in records}
    for it in data.items:
        ids = data.requests[it.request]
        assert it.distractor_end <= it.subject_start < it.subject_end <= it.length - 1
        assert tok.decode(ids[it.subject_start:it.subject_end]).strip() == subjects[it.case_id]
        assert subjects[it.case_id] not in tok.decode(ids[it.subject_start + 1:it.subject_end])


def test_restoration_arithmetic_on_hand_numbers():
    np.testing.assert_allclose(M.restoration([1.0, -2.0, 3.0], [2.0, 2.0, 2.0], [0.0, -2.0, -2.0]), [0.5, 0.0, 1.25])
    iv = pd.DataFrame({"case_id": [1, 2, 1, 2], "scheme": "not-think", "n": 1,
                       "analysis": ["knockout", "knockout", "control", "control"], "head": -1,
                       "variant": "read", "set_kind": "all", "label": "all", "layer_lo": 0, "layer_hi": 1,
                       "margin": [1.0, 3.0, 0.0, 0.5], "margin_clean": [2.0, 4.0, 2.0, 4.0],
                       "margin_hijacked": [0.0, 0.0, 0.0, 0.0], "used": True})
    iv["restoration"] = M.restoration(iv["margin"], iv["margin_clean"], iv["margin_hijacked"])
    t = M.restoration_table(iv).set_index("analysis")
    assert t.loc["knockout", "mean"] == pytest.approx(0.625)           # (0.5 + 0.75) / 2
    assert t.loc["knockout", "ratio_of_means"] == pytest.approx(4 / 6)
    assert t.loc["knockout", "se"] == pytest.approx(0.125)
    assert t.loc["knockout", "minus_control"] == pytest.approx((0.5 + 0.625) / 2)
    assert t.loc["control", "records"] == 2


def test_layer_sets():
    sets = M.layer_sets(6, M.LAYER_SETS, window=4, stride=3)
    assert [(label, kind) for label, kind, _ in sets][-3:] == [("0-3", "window"), ("2-5", "window"), ("all", "all")]
    assert len(M.layer_sets(18, ("window",), 4, 2)) == 8
    assert M.layer_sets(3, ("window",), 4, 1) == []


@pytest.mark.parametrize("kwargs, option", [({"ns": (0, 1)}, "^ns="), ({"variants": ("query",)}, "^variants="),
                                            ({"window": 0}, "^window="), ({"components": ("ffn",)}, "^components="),
                                            ({"min_shift": -1.0}, "^min_shift="), ({"records": 0}, "^records=")])
def test_bad_options_are_one_line_config_errors(kwargs, option):
    with pytest.raises(ConfigError, match=option) as err:
        M.MechanismConfig.of(**kwargs)
    assert "\n" not in str(err.value)


def test_run_mechanism_writes_tables_figures_and_summary(tmp_path, tiny_lms, counterfact_small):
    import json

    from assocmem.hijack.mechanism_report import run_mechanism

    config = M.MechanismConfig.of(model="tiny-random-gemma3", counterfact=str(counterfact_small), records=6,
                                  min_shift=0.0, window=1, stride=1, extra_records=4)
    summary = run_mechanism(config, tmp_path, lm=tiny_lms["gemma3"]).summary
    for name in ("records.parquet", "interventions.parquet", "restoration.parquet", "restoration.csv", "heads.csv",
                 "defence.parquet", "defence_records.parquet", "defence.csv", "knockout.png", "patching.png",
                 "heads.png", "defence.png", "summary.json", "config.json"):
        assert (tmp_path / name).is_file(), name
    table = pd.read_parquet(tmp_path / "restoration.parquet")
    assert set(table["analysis"]) == {"knockout", "control", "patch", "matched"}
    assert set(table["scheme"]) == {"not-think", "associated"}
    iv = pd.read_parquet(tmp_path / "interventions.parquet")
    for scheme in ("not-think", "associated"):              # the size-matched knockout: the chosen set, control's size
        part = iv[iv["scheme"] == scheme]
        same = part[part["analysis"] == "matched"]
        assert set(same["label"]) == {summary["per_scheme"][scheme]["layer_set"]}
        ctl = part[(part["analysis"] == "control") & (part["label"] == same["label"].iloc[0])
                   & (part["variant"] == "read") & (part["head"] == -1)]
        sizes = same.merge(ctl, on=["case_id", "n"], suffixes=("", "_control"))
        assert len(sizes) == len(same) > 0 and (sizes["n_keys"] == sizes["n_keys_control"]).all()
    assert set(table.loc[table["variant"] == "prompt", "set_kind"]) == {"all"}   # the sanity check only
    assert table.loc[table["analysis"] == "knockout", "minus_control"].notna().all()
    heads = table[table["head"] >= 0]
    blocks = summary["head_blocks"]
    assert set(heads["layer_lo"]) == set(blocks) and set(heads["head"]) == {0, 1}          # 2 heads per block
    assert set(heads["analysis"]) == {"knockout", "control", "patch"}
    for scheme in ("not-think", "associated"):
        assert set(summary["per_scheme"][scheme]["carrying_blocks"]) <= set(blocks)
    records = pd.read_parquet(tmp_path / "records.parquet")
    for scheme, part in records.groupby("scheme"):
        halves = part.drop_duplicates("case_id")["half"].value_counts()
        assert set(halves.index) == {"choose", "judge"} and abs(halves["choose"] - halves["judge"]) <= 1
    rows = pd.read_parquet(tmp_path / "defence_records.parquet")
    assert set(rows["method"]) == {"none", "defence", "block", "heads"}
    assert rows.groupby("scheme")["case_id"].nunique().min() > 6            # the extra records of the defence
    mech = set(records["case_id"])
    for scheme, part in rows.groupby("scheme"):
        extra = set(part["case_id"]) - set(records.loc[records["scheme"] == scheme, "case_id"])
        assert extra and not extra & set(records.loc[records["scheme"] == scheme, "case_id"])
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["layers"] == 2 and set(saved["headline"]) == {"not-think", "associated"}
    assert set(saved["headline"]["not-think"]) == {"1", "3"} and summary["records"]["not-think"] == 6
    assert mech


def test_associated_sample_is_drawn_from_the_records_the_scheme_can_build(counterfact_small):
    from assocmem.hijack.counterfact import CounterFactSelection
    from assocmem.hijack.schemes import associate

    selection = CounterFactSelection(counterfact=str(counterfact_small), records=6, skip_bad=True)
    recs, unbuildable = M.scheme_records(selection, "associated")
    assert len(recs) == 6 and unbuildable > 0
    assert all(associate(r.target_false) for r in recs)
    again, _ = M.scheme_records(selection, "associated", exclude={r.case_id for r in recs}, records=3)
    assert len(again) == 3 and not {r.case_id for r in again} & {r.case_id for r in recs}


def test_mechanism_cli_takes_lists_and_reports_bad_options_on_one_line(tmp_path, capsys, counterfact_small):
    from assocmem.cli import main

    base = ["hijack", "mechanism", "--model", "tiny-random-llama", "--counterfact", str(counterfact_small),
            "--device", "cpu", "--records", "3", "--min-shift", "0"]
    assert main(base + ["--n", "2", "--schemes", "not-think", "--variants", "read", "--layer-sets", "single", "all",
                        "--components", "attn", "--no-heads", "--no-defend", "--out", str(tmp_path / "a")]) == 0
    table = pd.read_parquet(tmp_path / "a" / "restoration.parquet")
    assert set(table["variant"]) == {"read", "attn"} and set(table["n"]) == {2} and (table["head"] == -1).all()
    capsys.readouterr()
    for bad, option in ((["--n", "0"], "--n"), (["--variants", "query"], "--variants"), (["--window", "0"], "--window"),
                        (["--n", "x"], "--n"), (["--scales", "1.5"], "--scales"),
                        (["--scale-heads", "1"], "--scale-heads"),
                        (["--schemes", "nothink"], "--schemes"), (["--variants", "prompt"], "--heads")):
        assert main(base + bad + ["--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err
        assert option in err and len(err.strip().splitlines()) == 1


def test_defend_cli_runs_on_any_model_and_checks_named_heads(tmp_path, capsys, counterfact_small):
    from assocmem.cli import main

    base = ["hijack", "defend", "--model", "tiny-random-llama", "--counterfact", str(counterfact_small), "--device",
            "cpu", "--records", "4", "--min-shift", "0", "--n", "1", "--extra-records", "2", "--scales", "0", "0.5"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "not-think" in out and "associated" in out and "known-fact ES" in out
    iv = pd.read_parquet(tmp_path / "a" / "interventions.parquet")
    assert set(iv["set_kind"]) == {"single", "head"} and set(iv["variant"]) <= {"read", "head"}
    rows = pd.read_parquet(tmp_path / "a" / "defence_records.parquet")
    assert set(rows.loc[rows["method"] == "heads", "scale"]) == {0.0, 0.5}
    assert main(base + ["--scale-heads", "1.3", "--out", str(tmp_path / "b")]) == 0      # named: no search
    assert not (tmp_path / "b" / "heads.csv").exists()
    assert pd.read_parquet(tmp_path / "b" / "defence_records.parquet")["case_id"].nunique() >= 4
    capsys.readouterr()
    assert main(base + ["--scale-heads", "7.0", "--out", str(tmp_path / "c")]) == 2     # the tiny model has 2 blocks
    err = capsys.readouterr().err
    assert "--scale-heads" in err and len(err.strip().splitlines()) == 1


def test_reproduce_experiment_runs_on_a_tiny_model_and_judges_every_claim(tmp_path, counterfact_small):
    import dataclasses
    import json

    from assocmem.experiments.hijack_mechanism import EXPERIMENTS, MechanismStudy
    from assocmem.experiments.registry import Registry
    from assocmem.experiments.report import write_report
    from assocmem.experiments.runner import run_experiments
    from assocmem.hijack.counterfact import CounterFactSelection
    from assocmem.hijack.mechanism_config import DefenceSettings

    exp = dataclasses.replace(EXPERIMENTS[0], quick=MechanismStudy(CounterFactSelection(records=4, skip_bad=True),
                                                                   ns=(1,), min_shift=0.0, window=1, stride=1,
                                                                   defence=DefenceSettings(extra_records=2)))
    [outcome] = run_experiments([exp], "quick", tmp_path, torch.device("cpu"), llms=("tiny-random-llama",),
                                counterfact=counterfact_small)
    assert outcome.status == "ran", outcome.error
    result = json.loads((tmp_path / "mechanism" / "result.json").read_text())
    assert [c["claim"] for c in result["claims"]] == [
        "hijack-through-attention", "hijack-attention-carries", "hijack-heads",
        "hijack-through-attention", "hijack-attention-carries", "hijack-heads",
        "hijack-same-heads", "hijack-defence", "hijack-defence"]
    assert result["figures"] == [f"tiny-random-llama/{f}" for f in ("knockout.png", "patching.png", "heads.png",
                                                                    "defence.png")] and result["rows"]
    assert all(c["criterion"].startswith("tiny-random-llama: ") for c in result["claims"])
    report = write_report(tmp_path, Registry([exp]), "quick", [outcome]).read_text()
    assert "Inside the LLM the hijack travels through attention" in report and "`mechanism`" in report
    assert "A single attention head carries" in report and "Scaling those heads down" in report
