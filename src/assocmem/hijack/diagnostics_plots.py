"""Figures for the diagnostics tables (assocmem.hijack.diagnostics): one PNG each."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from assocmem.plotting import new_figure, save_figure


def _schemes(table: pd.DataFrame) -> list[str]:
    return sorted(table["scheme"].unique()) if "scheme" in table.columns else [""]


def _part(table: pd.DataFrame, scheme: str) -> pd.DataFrame:
    return table[table["scheme"] == scheme] if scheme else table


def _colours(ns) -> dict[int, tuple]:
    cmap = plt.get_cmap("viridis")
    ns = sorted(ns)
    return {n: cmap(i / max(1, len(ns) - 1)) for i, n in enumerate(ns)}


def plot_attention(table: pd.DataFrame, path: str | Path, model: str = "") -> Path:
    """Mass on distractors per layer (solid), uniform-attention baseline (dotted), one colour per n > 0."""
    schemes = _schemes(table)
    fig, axes = new_figure(ncols=len(schemes))
    for ax, scheme in zip(axes[0], schemes):
        part = _part(table, scheme)
        ns = [n for n in sorted(part["n"].unique()) if n > 0]
        colours = _colours(ns)
        for n in ns:
            rows = part[part["n"] == n].sort_values("layer")
            ax.errorbar(rows["layer"], rows["mean_mass"], yerr=1.96 * rows["sem_mass"].fillna(0),
                        color=colours[n], marker="o", ms=3, capsize=2, label=f"n={n}")
            ax.plot(rows["layer"], rows["uniform_mass"], color=colours[n], ls=":", lw=1)
            if "mean_target_false_mass" in rows:
                ax.plot(rows["layer"], rows["mean_target_false_mass"], color=colours[n], ls="--", lw=1)
        ax.set_xlabel("layer (block index)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("attention mass of answer position")
        ax.set_ylim(0, 1)
        ax.set_title(f"{model} {scheme}: on distractors (solid), false target (dashed),\n"
                     "uniform baseline (dotted)", fontsize=8)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_logit_lens(table: pd.DataFrame, path: str | Path, model: str = "") -> Path:
    """Per scheme, two panels against the residual-stream layer, one colour per n: log P(target_true)
    (solid) and log P(target_false) (dashed) from layer 1 on (the embedding layer's lens is far
    below), and the mean of log P(false) - log P(true) with its 95% band (above 0: false leads)."""
    schemes = _schemes(table)
    fig, axes = new_figure(nrows=2, ncols=len(schemes), height=3.0)
    for col, scheme in enumerate(schemes):
        top, bottom = axes[0][col], axes[1][col]
        part = _part(table, scheme)
        colours = _colours(part["n"].unique())
        for n, colour in colours.items():
            rows = part[(part["n"] == n) & (part["layer"] >= 1)].sort_values("layer")
            top.plot(rows["layer"], rows["logp_true"], color=colour, marker="o", ms=3, label=f"true, n={n}")
            top.plot(rows["layer"], rows["logp_false"], color=colour, marker="x", ms=3, ls="--",
                     label=f"false, n={n}")
            band = 1.96 * rows["sem_diff"].fillna(0)
            bottom.plot(rows["layer"], rows["mean_diff"], color=colour, marker="o", ms=3, label=f"n={n}")
            bottom.fill_between(rows["layer"], rows["mean_diff"] - band, rows["mean_diff"] + band,
                                color=colour, alpha=0.2, lw=0)
        bottom.axhline(0, color="k", lw=0.8)
        top.set_ylabel("mean log P (logit lens)")
        top.set_title(f"{model} {scheme}: logit lens at the answer position", fontsize=8)
        top.legend(fontsize=6, ncol=2)
        bottom.set_xlabel("layer (blocks applied)")
        bottom.set_ylabel("log P(false) - log P(true)")
        bottom.legend(fontsize=6)
        for ax in (top, bottom):
            ax.xaxis.get_major_locator().set_params(integer=True)
    return save_figure(fig, path)


def plot_spectrum(spectrum: pd.DataFrame, path: str | Path, eigengap_k: int, effective_rank: float,
                  model: str = "") -> Path:
    """Singular values of W_E and of W_E minus its mean row (log-log), with the eigen-gap marked (§5.3)."""
    fig, axes = new_figure()
    ax = axes[0][0]
    ax.loglog(spectrum["index"], spectrum["singular_value"], lw=1.2, label="W_E")
    if "singular_value_centered" in spectrum:
        ax.loglog(spectrum["index"], spectrum["singular_value_centered"], lw=1.0, ls="--",
                  label="W_E - mean row")
    ax.axvline(eigengap_k + 0.5, color="C3", ls=":", lw=1, label=f"largest gap after σ_{eigengap_k}")
    ax.set_xlabel("index")
    ax.set_ylabel("singular value")
    ax.set_title(f"{model} token embedding spectrum; effective rank {effective_rank:.1f} "
                 f"of {len(spectrum)}", fontsize=8)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
