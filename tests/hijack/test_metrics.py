import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from assocmem.hijack.metrics import decide, directions, rates, wilson_interval, wilson_intervals


def test_wilson_matches_known_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_vectorised_wilson_is_scipys(kn, confidence):
    k, n = kn
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    lo, hi = wilson_intervals(np.array([k, 0]), np.array([n, 0]), confidence)
    assert lo[0] == pytest.approx(ci.low, abs=1e-12) and hi[0] == pytest.approx(ci.high, abs=1e-12)
    assert np.isnan(lo[1]) and np.isnan(hi[1])


def _rows():
    # scheme a, 10 records: n=0 true preferred 9 times and one tie; n=1 all hijacked
    lt = [-1] * 9 + [-2] + [-3] * 10
    lf = [-2] * 10 + [-1] * 10
    h, t = decide(pd.Series(lt), pd.Series(lf))
    return pd.DataFrame({"case_id": list(range(10)) * 2, "relation_id": ["P1"] * 5 + ["P2"] * 5 + ["P1"] * 5 + ["P2"] * 5,
                         "scheme": "a", "n": [0] * 10 + [1] * 10, "logp_true": lt, "logp_false": lf,
                         "hijacked": h, "true_preferred": t})


def test_rates_and_ties():
    table = rates(_rows())
    first, last = table.iloc[0], table.iloc[1]
    assert (first["records"], first["hijacked"], first["true_preferred"], first["ties"]) == (10, 0, 9, 1)
    assert last["hijacked_share"] == 1.0 and last["true_preferred_share"] == 0.0
    assert first["hijacked_lo"] == 0.0 and first["hijacked_hi"] == pytest.approx(wilson_interval(0, 10)[1])
    per_rel = rates(_rows(), by=("relation_id", "scheme", "n"))
    assert len(per_rel) == 4 and set(per_rel["records"]) == {5}


def test_directions_need_separated_intervals():
    d = directions(rates(_rows()))["a"]
    assert d["hijacked"]["moves"] == "up" and d["true_preferred"]["moves"] == "down"
    assert (d["n_from"], d["n_to"]) == (0, 1)
