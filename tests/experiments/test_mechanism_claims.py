"""The mechanism experiment's verdicts on made-up tables: each criterion can go either way, and a choice
made on the choosing half that does not hold on the judging half is not supported."""

from __future__ import annotations

import numpy as np
import pandas as pd

from assocmem.experiments.hijack_mechanism import (defence_claim, heads_claim, knockout_claim, patching_claim,
                                                   same_heads_claim)

K = 12   # records per half


def _rows(analysis: str, variant: str, set_kind: str, means: dict[str, tuple[float, float]], scheme: str = "s",
          seed: int = 0) -> list[dict]:
    """Per label (choosing-half mean, judging-half mean): K records per half, restoration ± 0.05 noise."""
    rng = np.random.default_rng(seed)
    out = []
    for label, (choose, judge) in means.items():
        head = int(label.split(".")[1]) if set_kind == "head" else -1
        lo = int(label.split(".")[0].split("-")[0]) if label != "all" else 0
        for half, m in (("choose", choose), ("judge", judge)):
            for i in range(K):
                out.append({"scheme": scheme, "n": 1, "analysis": analysis, "variant": variant, "set_kind": set_kind,
                            "label": label, "layer_lo": lo, "head": head, "half": half, "used": True,
                            "case_id": i + (K if half == "judge" else 0), "restoration": m + rng.normal(0, 0.05)})
    return out


def _iv(*parts) -> pd.DataFrame:
    return pd.DataFrame([r for p in parts for r in p])


def _knockouts(knockout: dict, control: float = 0.0) -> pd.DataFrame:
    return _iv(_rows("knockout", "read", "single", knockout),
               _rows("control", "read", "single", {k: (control, control) for k in knockout}, seed=1),
               _rows("knockout", "prompt", "all", {"all": (1.0, 1.0)}, seed=2))


def test_knockout_claim_judges_the_set_chosen_on_the_other_half():
    good = knockout_claim(_knockouts({"5": (0.8, 0.8), "6": (0.1, 0.1)}), "s", 1)
    assert good.supported and "blocks 5 chosen" in good.numbers and "sanity check" in good.numbers
    lucky = knockout_claim(_knockouts({"5": (0.8, 0.0), "6": (0.1, 0.1)}), "s", 1)   # does not replicate
    assert not lucky.supported and "blocks 5 chosen" in lucky.numbers
    same = knockout_claim(_knockouts({"5": (0.8, 0.8)}, control=0.8), "s", 1)         # no better than the control
    assert not same.supported
    assert not knockout_claim(_knockouts({"5": (0.8, 0.8)}), "other", 1).supported


def test_patching_claim_compares_the_best_attention_and_mlp_blocks_on_the_judging_half():
    attn = _iv(_rows("patch", "attn", "single", {"5": (0.7, 0.7), "3": (0.1, 0.1)}),
               _rows("patch", "mlp", "single", {"5": (0.1, 0.1), "2": (0.2, 0.2)}, seed=1))
    ok = patching_claim(attn, "s", 1)
    assert ok.supported and "attention block 5" in ok.numbers and "MLP block 2" in ok.numbers
    mlp = _iv(_rows("patch", "attn", "single", {"5": (0.1, 0.1)}),
              _rows("patch", "mlp", "single", {"2": (0.7, 0.7)}, seed=1))
    assert not patching_claim(mlp, "s", 1).supported


def _heads(head: float) -> pd.DataFrame:
    return _iv(_rows("knockout", "read", "head", {"5.0": (head, head), "5.1": (0.05, 0.05)}),
               _rows("control", "read", "head", {"5.0": (0.0, 0.0), "5.1": (0.0, 0.0)}, seed=1),
               _rows("knockout", "read", "single", {"5": (0.8, 0.8)}, seed=2))


def test_heads_claim_needs_one_head_to_carry_half_of_its_block():
    ok = heads_claim(_heads(0.6), "s", 1)
    assert ok.supported and "head 5.0" in ok.numbers
    assert not heads_claim(_heads(0.3), "s", 1).supported           # real, but less than half of block 5's 0.8


def test_same_heads_claim_correlates_the_schemes_heads():
    a = [0.6, 0.3, 0.1, 0.0, 0.02, 0.05, 0.2, 0.01]
    labels = [f"{b}.{h}" for b in (4, 5) for h in range(4)]

    def table(b_means):
        return _iv(_rows("knockout", "read", "head", {lab: (m, m) for lab, m in zip(labels, a)}, "not-think"),
                   _rows("knockout", "read", "head", {lab: (m, m) for lab, m in zip(labels, b_means)}, "associated", 1))
    ok = same_heads_claim(table([m * 0.8 for m in a]), "not-think", "associated", 1)
    assert ok.supported and "4.0" in ok.numbers
    assert not same_heads_claim(table(list(reversed(a))), "not-think", "associated", 1).supported


def _defence(es_none: float, es_defence: float, kept: float, k: int = 30) -> pd.DataFrame:
    out = []
    for method, es, recall in (("none", es_none, 1.0), ("defence", es_defence, kept), ("block", 0.0, 0.2)):
        for i in range(k):
            base = {"scheme": "s", "method": method, "scale": 0.5 if method == "defence" else 1.0, "half": "judge",
                    "known": True, "case_id": i}
            out.append({**base, "n": 0, "rank_true": 1 if i < recall * k else 4, "hijacked": False,
                        "dlogp_true": 0.0 if method == "none" else -0.3})
            out.append({**base, "n": 3, "rank_true": 7, "hijacked": i < es * k, "dlogp_true": 0.0})
    rows = pd.DataFrame(out)
    chosen = rows.assign(half="choose", hijacked=False)           # the choosing half never decides
    return pd.concat([rows, chosen], ignore_index=True)


def test_defence_claim_needs_a_drop_on_the_judging_half_and_recall_kept():
    ok = defence_claim(_defence(0.8, 0.1, 1.0), "s", 3, 0.9)
    assert ok.supported and "0.800 → 0.100" in ok.numbers and "whole blocks" in ok.numbers
    assert not defence_claim(_defence(0.8, 0.1, 0.5), "s", 3, 0.9).supported      # recall lost
    assert not defence_claim(_defence(0.8, 0.75, 1.0), "s", 3, 0.9).supported     # no real drop
    assert not defence_claim(pd.DataFrame(), "s", 3, 0.9).supported
