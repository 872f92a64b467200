"""The relation atlas: shares, Wilson intervals and the hijackability ranking, from synthetic rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assocmem.errors import ConfigError
from assocmem.hijack.atlas import build_atlas, make_atlas, plot_atlas
from assocmem.hijack.metrics import wilson_interval


def _rows(seed: int = 0) -> pd.DataFrame:
    """Three relations under two schemes, n = 0..3; P17 loses recall fastest, P103 never."""
    rng = np.random.default_rng(seed)
    lines = []
    drop = {"P17": 0.25, "P190": 0.1, "P103": 0.0}
    for scheme, sign in (("not-think", 1), ("reverse", -1)):
        for rel, d in drop.items():
            for case in range(40):
                for n in range(4):
                    p_true = float(np.clip(0.6 - sign * d * n, 0, 1))
                    u = rng.random()
                    true_pref = u < p_true
                    tie = not true_pref and u < p_true + 0.05
                    lines.append({"case_id": hash((rel, case)) % 10_000, "relation_id": rel, "scheme": scheme,
                                  "n": n, "mode": "first-token", "logp_true": -1.0, "logp_false": -1.0,
                                  "hijacked": not true_pref and not tie, "true_preferred": true_pref})
    return pd.DataFrame(lines)


def test_shares_and_wilson_intervals_match_a_direct_count():
    rows = _rows()
    atlas = build_atlas(rows)
    assert len(atlas) == 2 * 3 * 4
    for _, line in atlas.iterrows():
        grp = rows[(rows.scheme == line.scheme) & (rows.relation_id == line.relation_id) & (rows.n == line.n)]
        k_true, k_hij, total = int(grp.true_preferred.sum()), int(grp.hijacked.sum()), len(grp)
        assert line.records == total == 40
        assert line.true_preferred_share == pytest.approx(k_true / total)
        assert line.hijacked_share == pytest.approx(k_hij / total)
        assert (line.true_preferred_lo, line.true_preferred_hi) == pytest.approx(wilson_interval(k_true, total))
        assert (line.hijacked_lo, line.hijacked_hi) == pytest.approx(wilson_interval(k_hij, total))
        assert line.true_preferred_lo <= line.true_preferred_share <= line.true_preferred_hi


def test_relations_are_ranked_by_the_drop_in_recall():
    atlas = build_atlas(_rows())
    for scheme, grp in atlas.groupby("scheme"):
        per_rel = grp.drop_duplicates("relation_id").sort_values("rank")
        for _, line in per_rel.iterrows():
            part = grp[grp.relation_id == line.relation_id].sort_values("n")
            expected = part.true_preferred_share.iloc[0] - part.true_preferred_share.iloc[-1]
            assert line.hijackability == pytest.approx(expected)
        assert list(per_rel["rank"]) == [1, 2, 3]
        assert per_rel.hijackability.is_monotonic_decreasing
    hijack_order = atlas[atlas.scheme == "not-think"].drop_duplicates("relation_id")["relation_id"].tolist()
    assert hijack_order[0] == "P17"  # the relation built to lose recall fastest
    reverse = atlas[atlas.scheme == "reverse"].drop_duplicates("relation_id")
    assert reverse.set_index("relation_id").loc["P17", "hijackability"] < 0  # reverse adds recall


def test_make_atlas_writes_tables_and_one_heatmap_per_scheme(tmp_path):
    rows = _rows()
    rows.to_parquet(tmp_path / "rows.parquet", index=False)
    atlas = make_atlas(tmp_path / "rows.parquet", tmp_path / "atlas")
    for name in ("atlas_not-think.png", "atlas_reverse.png"):
        assert (tmp_path / "atlas" / name).read_bytes()[:4] == b"\x89PNG", name
    back = pd.read_parquet(tmp_path / "atlas" / "atlas.parquet")
    pd.testing.assert_frame_equal(back, atlas)
    assert len(pd.read_csv(tmp_path / "atlas" / "atlas.csv")) == len(atlas)


def test_bad_input_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="true_preferred"):
        build_atlas(_rows().drop(columns=["true_preferred"]))
    with pytest.raises(ConfigError, match="did you|allowed not-think, reverse"):
        plot_atlas(build_atlas(_rows()), "relaton", tmp_path / "x.png")
    with pytest.raises(ConfigError, match="no such file"):
        make_atlas(tmp_path / "missing.parquet", tmp_path)
    two_modes = pd.concat([_rows(), _rows(1).assign(mode="full-target")])
    with pytest.raises(ConfigError, match="several modes"):
        plot_atlas(build_atlas(two_modes), "reverse", tmp_path / "x.png")
