"""The test-time defence (hijack.defence) and the choices made on the choosing half (hijack.mechanism_choice)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from assocmem.hijack import mechanism as M
from assocmem.hijack import mechanism_choice as C
from assocmem.hijack.counterfact import load_counterfact
from assocmem.hijack.defence import choose_scale, defence_table, defend, read_scores
from assocmem.hijack.mechanism_config import DefenceSettings
from assocmem.hijack.scoring import Batching
from assocmem.models.heads import edited_heads, head_layout, scale_edits


@pytest.fixture(scope="module")
def data(tiny_lms, counterfact_small):
    records = load_counterfact(counterfact_small, skip_bad=True).records[:8]
    return M.build_items(tiny_lms["gemma3"].tokenizer, records, "not-think", (1, 2))


def test_read_scores_give_the_log_probability_and_vocabulary_rank_of_both_targets(tiny_lms, data):
    """Against the model's own full forward of each prompt alone (logits of the whole vocabulary)."""
    lm = tiny_lms["gemma3"]
    [got] = read_scores(lm, data, Batching(batch_tokens=64))
    got = got.set_index(["case_id", "n"])   # several batches
    for it in data.items:
        ids = torch.tensor([data.requests[it.request]])
        with torch.no_grad():
            logits = lm.model(input_ids=ids).logits[0, -1].double()
        logp = torch.log_softmax(logits, -1)
        row = got.loc[(it.case_id, it.n)]
        assert row["logp_true"] == pytest.approx(float(logp[it.true_id]), abs=1e-5)
        assert row["logp_false"] == pytest.approx(float(logp[it.false_id]), abs=1e-5)
        assert row["rank_true"] == 1 + int((logits > logits[it.true_id]).sum())
        assert row["rank_false"] == 1 + int((logits > logits[it.false_id]).sum())
    assert got["rank_true"].nunique() > 1


def test_defend_scores_nothing_each_scale_and_the_whole_blocks_and_labels_the_chosen_scale(tiny_lms, data):
    lm = tiny_lms["gemma3"]
    batching = Batching()
    halves = C.split_halves({it.case_id for it in data.items}, seed=0)
    settings = DefenceSettings(scales=(0.0, 0.5), min_recall=0.0, extra_records=0)
    result = defend(lm, data, halves, [(1, 0)], settings, batching)
    rows = result.records.set_index(["method", "scale", "case_id", "n"]).sort_index()
    plain = read_scores(lm, data, batching)[0].set_index(["case_id", "n"]).sort_index()
    np.testing.assert_allclose(rows.loc[("none", 1.0), "logp_true"].to_numpy(), plain["logp_true"].to_numpy())
    with edited_heads(head_layout(lm.model), scale_edits({(1, 0): 0.5})):
        half = read_scores(lm, data, batching)[0].set_index(["case_id", "n"]).sort_index()
    np.testing.assert_allclose(rows.loc[("heads", 0.5), "logp_true"].to_numpy(), half["logp_true"].to_numpy())
    with edited_heads(head_layout(lm.model), scale_edits({(1, 0): 0.0, (1, 1): 0.0})):
        block = read_scores(lm, data, batching)[0].set_index(["case_id", "n"]).sort_index()
    np.testing.assert_allclose(rows.loc[("block", 0.0), "logp_false"].to_numpy(), block["logp_false"].to_numpy())
    assert not np.allclose(block["logp_false"], half["logp_false"])
    scale = result.chosen["scale"]                # a random model knows no fact: nothing to choose on
    assert scale == choose_scale(result.records, 0.0)[0] and result.chosen["heads"] == ["1.0"]
    assert result.chosen["blocks"] == [1]
    chosen = ("heads", scale) if scale < 1 else ("none", 1.0)
    np.testing.assert_allclose(rows.loc[("defence", scale), "logp_true"].to_numpy(),
                               rows.loc[chosen, "logp_true"].to_numpy())
    known = plain.xs(0, level="n")["rank_true"] == 1
    assert result.records.groupby("case_id")["known"].first().equals(known.rename("known"))
    np.testing.assert_allclose(rows.loc[("none", 1.0), "dlogp_true"].to_numpy(), 0.0)


def _rows(es: dict[float, float], recall: dict[float, float], k: int = 20) -> pd.DataFrame:
    """Made-up defence rows of known facts on the choosing half: per scale, k facts at n = 0 (a share
    `recall` still top-1) and at n = 1 (a share `es` hijacked)."""
    out = []
    for scale in es:
        for i in range(k):
            out.append({"method": "heads", "scale": scale, "half": "choose", "known": True, "case_id": i, "n": 0,
                        "rank_true": 1 if i < round(recall[scale] * k) else 2, "hijacked": False})
            out.append({"method": "heads", "scale": scale, "half": "choose", "known": True, "case_id": i, "n": 1,
                        "rank_true": 5, "hijacked": i < round(es[scale] * k)})
    return pd.DataFrame(out)


def test_choose_scale_takes_the_lowest_es_that_keeps_recall_and_else_no_defence():
    rows = _rows({0.0: 0.1, 0.5: 0.3, 0.75: 0.3}, {0.0: 0.7, 0.5: 0.95, 0.75: 1.0})
    assert choose_scale(rows, 0.9)[0] == 0.75           # 0.0 loses recall; 0.5 and 0.75 tie: the smaller edit
    assert choose_scale(rows, 0.5)[0] == 0.0
    scale, why = choose_scale(rows, 1.01)
    assert scale == 1.0 and "no scale" in why
    assert choose_scale(rows.assign(known=False), 0.5) == (1.0, "no known fact on the choosing half to choose a "
                                                                "scale on")
    judged = rows.assign(half="judge", hijacked=True)   # the judging half never decides
    assert choose_scale(pd.concat([rows, judged]), 0.9)[0] == 0.75


def test_defence_table_counts_known_facts_es_and_the_cost_at_n0():
    rows = pd.DataFrame({"method": "defence", "scale": 0.5, "half": "judge", "case_id": [1, 2, 3, 1, 2, 3],
                         "n": [0, 0, 0, 1, 1, 1], "known": [True, True, False] * 2,
                         "rank_true": [1, 3, 1, 9, 9, 9], "hijacked": [False, False, True, True, False, True],
                         "dlogp_true": [-0.5, -1.5, 9.0, 0, 0, 0]})
    t = defence_table(rows).set_index("n")
    assert t.loc[0, "known"] == 2 and t.loc[0, "still_known"] == 0.5 and t.loc[0, "dlogp_true"] == -1.0
    assert t.loc[1, "es_known"] == 0.5 and t.loc[1, "hijacked_known"] == 1 and np.isnan(t.loc[1, "still_known"])


def test_split_halves_is_seeded_disjoint_and_even():
    ids = list(range(100, 141))
    a, b = C.split_halves(ids, 0), C.split_halves(reversed(ids), 0)
    assert a == b and set(a) == set(ids)
    assert sum(v == "choose" for v in a.values()) == 21
    assert C.split_halves(ids, 1) != a


def _head_rows(means: dict[str, tuple[float, float]], k: int = 12, half: str = "choose") -> pd.DataFrame:
    """Made-up per-head knockout and control rows: label -> (knockout mean, control mean), ± 0.05 noise."""
    rng = np.random.default_rng(0)
    out = []
    for label, (ko, ctl) in means.items():
        for analysis, m in (("knockout", ko), ("control", ctl)):
            for i in range(k):
                block, head = (int(p) for p in label.split("."))      # the columns the interventions table has
                out.append({"scheme": "s", "n": 1, "analysis": analysis, "set_kind": "head", "label": label,
                            "layer_lo": block, "layer_hi": block, "head": head, "case_id": i, "half": half,
                            "used": True, "restoration": m + rng.normal(0, 0.05)})
    return pd.DataFrame(out)


def test_head_ranking_and_the_heads_found():
    iv = _head_rows({"3.0": (0.6, 0.0), "3.1": (0.3, 0.0), "2.1": (0.1, 0.0), "2.0": (0.4, 0.4)})
    ranking = C.head_ranking(iv, "s", 1)
    assert list(ranking["label"]) == ["3.0", "2.0", "3.1", "2.1"]
    assert dict(zip(ranking["label"], ranking["passed"])) == {"3.0": True, "2.0": False, "3.1": True, "2.1": True}
    assert C.found_heads(ranking, 3, 0.15) == ([(3, 0), (3, 1)], True)       # 2.1 restores too little
    assert C.found_heads(ranking, 1, 0.1) == ([(3, 0)], True)
    none = C.head_ranking(_head_rows({"1.0": (0.0, 0.0), "1.1": (0.02, 0.2)}), "s", 1)
    heads, passed = C.found_heads(none, 3, 0.1)
    assert len(heads) == 1 and not passed
    judged = _head_rows({"1.1": (0.9, 0.0)}, half="judge")                   # the judging half never decides
    assert list(C.head_ranking(pd.concat([iv, judged]), "s", 1)["label"])[0] == "3.0"
