"""Fig. 2-style curves: share vs number of prepended sentences, one line per scheme, 95% CI bands."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.ticker import MaxNLocator

from assocmem.plotting import new_figure, save_figure

PANELS = (
    ("hijacked", "hijacked share = ES\nP(target_false) > P(target_true)"),
    ("true_preferred", "true-preferred share\nP(target_true) > P(target_false)"),
)


def plot_rates(table: pd.DataFrame, path: str | Path, title: str = "", by: tuple[str, ...] = ("scheme",)) -> Path:
    """`table` = metrics.rates(rows, by=(*by, "n")); one curve per value of `by` (e.g. scheme, or
    model and scheme), with 95% CI bands; writes a two-panel PNG (ES, recall)."""
    by = tuple(c for c in by if c in table.columns)
    fig, axes = new_figure(4.6, 3.4, ncols=2)
    for ax, (share, label) in zip(axes[0], PANELS):
        for key, grp in table.groupby(list(by), sort=True):
            grp = grp.sort_values("n")
            name = ", ".join(map(str, key if isinstance(key, tuple) else (key,)))
            line, = ax.plot(grp["n"], grp[f"{share}_share"], marker="o", ms=3, label=name)
            ax.fill_between(grp["n"], grp[f"{share}_lo"], grp[f"{share}_hi"], color=line.get_color(), alpha=0.15)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("prepended sentences n")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
    if len(table.groupby(list(by))) > 3:  # many curves: a legend inside would cover some of them
        fig.legend(*axes[0][0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    else:
        axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
