"""The relation atlas: every relation × scheme × n, both shares with 95% Wilson intervals, relations
ranked by how hijackable they are (the paper's Fig. 2 split by relation).

    rows = pd.read_parquet("runs/atlas/rows.parquet")   # from assocmem.hijack.run.run_hijack
    atlas = build_atlas(rows)
    write_atlas(atlas, "runs/atlas")                     # atlas.parquet + atlas.csv
    plot_atlas(atlas, "not-think", "runs/atlas/atlas_not-think.png")

`hijackability` of a relation under a scheme is the drop of `true_preferred_share` from n = 0 to the
largest n measured: positive when prepending sentences takes recall away (hijacking), negative when
it adds recall (reverse schemes). Ties (P(true) = P(false)) count in neither share.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from assocmem.errors import ConfigError

_ROW_COLUMNS = ("relation_id", "scheme", "n", "hijacked", "true_preferred")
_KEYS = ("mode", "scheme", "relation_id", "n")


def build_atlas(rows: pd.DataFrame) -> pd.DataFrame:
    """Aggregate per-record rows (run_hijack's rows.parquet) into the atlas.

    One row per (mode, scheme, relation_id, n) with the columns of `metrics.rates` (records, counts,
    hijacked_share / true_preferred_share and their 95% Wilson bounds `*_lo`, `*_hi`, ties), plus
    the relation's `hijackability` under that scheme (true_preferred_share at the smallest n minus
    at the largest n) and its `rank` (1 = most hijackable). Sorted by mode, scheme, rank, n.
    """
    from assocmem.hijack.metrics import rates

    missing = [c for c in _ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ConfigError(f"atlas: rows lack column(s) {', '.join(missing)} (expected run_hijack's rows.parquet)")
    if rows.empty:
        raise ConfigError("atlas: no rows to aggregate")
    rows = rows if "mode" in rows.columns else rows.assign(mode="first-token")
    atlas = rates(rows, by=_KEYS)

    def drop(group: pd.DataFrame) -> float:
        group = group.sort_values("n")
        return float(group["true_preferred_share"].iloc[0] - group["true_preferred_share"].iloc[-1])

    per_relation = (atlas.groupby(["mode", "scheme", "relation_id"])[["n", "true_preferred_share"]]
                    .apply(drop).rename("hijackability").reset_index())
    per_relation = per_relation.sort_values(["mode", "scheme", "hijackability", "relation_id"],
                                            ascending=[True, True, False, True])
    per_relation["rank"] = per_relation.groupby(["mode", "scheme"]).cumcount() + 1
    atlas = atlas.merge(per_relation, on=["mode", "scheme", "relation_id"])
    return atlas.sort_values(["mode", "scheme", "rank", "n"]).reset_index(drop=True)


def write_atlas(atlas: pd.DataFrame, out_dir: str | Path, stem: str = "atlas") -> tuple[Path, Path]:
    """Write `<stem>.parquet` and `<stem>.csv` under `out_dir`; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parquet, csv = out_dir / f"{stem}.parquet", out_dir / f"{stem}.csv"
    atlas.to_parquet(parquet, index=False)
    atlas.to_csv(csv, index=False)
    return parquet, csv


def _select(atlas: pd.DataFrame, scheme: str, mode: str | None) -> pd.DataFrame:
    schemes = sorted(atlas["scheme"].unique())
    if scheme not in schemes:
        raise ConfigError(f"atlas: scheme={scheme!r} is not in the atlas: allowed {', '.join(schemes)}")
    part = atlas[atlas["scheme"] == scheme]
    modes = sorted(part["mode"].unique())
    if mode is None and len(modes) > 1:
        raise ConfigError(f"atlas: several modes ({', '.join(modes)}): pass mode=")
    if mode is not None and mode not in modes:
        raise ConfigError(f"atlas: mode={mode!r} is not in the atlas: allowed {', '.join(modes)}")
    return part[part["mode"] == (mode or modes[0])]


def plot_atlas(atlas: pd.DataFrame, scheme: str, path: str | Path, mode: str | None = None) -> Path:
    """Heatmap of true_preferred_share, relations (rows, most hijackable on top) × n (columns)."""
    from assocmem.plotting import new_figure, save_figure

    part = _select(atlas, scheme, mode)
    order = part.drop_duplicates("relation_id").sort_values("rank")["relation_id"].tolist()
    grid = part.pivot(index="relation_id", columns="n", values="true_preferred_share").loc[order]
    counts = part.groupby("relation_id")["records"].min().loc[order]
    fig, axes = new_figure(width=0.45 * grid.shape[1] + 3.2, height=0.24 * len(order) + 1.4)
    ax = axes[0][0]
    image = ax.imshow(grid.to_numpy(), aspect="auto", cmap="RdYlBu", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(grid.shape[1]), [str(n) for n in grid.columns])
    ax.set_yticks(range(len(order)), [f"{r} ({c})" for r, c in zip(order, counts)], fontsize=7)
    ax.set_xlabel("n (prepended sentences)")
    ax.set_ylabel("relation (records); most hijackable on top")
    ax.grid(False)
    ax.set_title(f"P(true) > P(false) share, scheme {scheme}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, label="true_preferred_share")
    return save_figure(fig, path)


def make_atlas(rows: pd.DataFrame | str | Path, out_dir: str | Path) -> pd.DataFrame:
    """rows (a DataFrame or a rows.parquet path) → atlas.parquet, atlas.csv and one heatmap per
    scheme (and mode, when several) `atlas_<scheme>[_<mode>].png` under `out_dir`; returns the atlas."""
    if not isinstance(rows, pd.DataFrame):
        path = Path(rows)
        if not path.is_file():
            raise ConfigError(f"atlas: rows={str(path)!r} is invalid: no such file (run `assocmem hijack` first)")
        rows = pd.read_parquet(path)
    atlas = build_atlas(rows)
    write_atlas(atlas, out_dir)
    modes = sorted(atlas["mode"].unique())
    for (mode, scheme), _ in atlas.groupby(["mode", "scheme"]):
        suffix = f"_{mode}" if len(modes) > 1 else ""
        plot_atlas(atlas, scheme, Path(out_dir) / f"atlas_{scheme}{suffix}.png", mode=mode)
    return atlas
