"""Figures of `hijack mechanism`: pure functions of its long tables (restoration, defence)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from assocmem.hijack.mechanism_config import COMPONENTS, VARIANTS
from assocmem.plotting import new_figure, save_figure

_COLOURS = {"knockout": "tab:blue", "control": "tab:gray", "resid": "tab:green", "attn": "tab:blue", "mlp": "tab:red"}
_NAMES = {"read": "from the read position", "prompt": "from every prompt token (sanity check)",
          "resid": "residual stream", "attn": "attention output", "mlp": "MLP output"}


def _band(ax, part: pd.DataFrame, colour, label, x="layer_lo", **kw):
    part = part.sort_values(x)
    ax.plot(part[x], part["mean"], color=colour, marker="o", ms=3, label=label, **kw)
    ax.fill_between(part[x], part["ci_lo"], part["ci_hi"], color=colour, alpha=0.15, lw=0)


def _frame(ax, n_layers: int, title: str):
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(1, color="black", lw=0.8, ls=":")
    ax.set_xlim(-0.5, n_layers - 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("block (0-based)")
    ax.set_ylabel("restoration (1 = clean margin)")
    ax.set_title(title, fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)


def _blocks(table: pd.DataFrame) -> pd.DataFrame:
    """The block-level rows (no per-head rows)."""
    if not len(table):
        return table
    return table[table["head"] < 0] if "head" in table else table


def _panels(table: pd.DataFrame) -> list[tuple[str, int]]:
    if not len(table):
        return [("", 0)]
    return [(s, int(n)) for s, n in table[["scheme", "n"]].drop_duplicates().itertuples(index=False)]


def plot_knockout(table: pd.DataFrame, path: str | Path, model: str, n_layers: int) -> Path:
    """Restoration vs block: rows scheme × n, columns variant. Lines: one block knocked out (knockout
    blue, random-token control grey), with 95% CI bands; squares with horizontal bars: windows of
    blocks; dashed lines: every block."""
    t = _blocks(table)
    ko = t[t["analysis"].isin(["knockout", "control"])] if len(t) else t
    panels = _panels(ko)
    variants = [v for v in VARIANTS if len(ko) and (ko["variant"] == v).any()] or ["read"]
    fig, axes = new_figure(4.6, 3.3, ncols=len(variants), nrows=len(panels))
    for r, (scheme, n) in enumerate(panels):
        for c, variant in enumerate(variants):
            ax = axes[r][c]
            part = ko[(ko["scheme"] == scheme) & (ko["n"] == n) & (ko["variant"] == variant)] if len(ko) else ko
            for analysis in ("knockout", "control"):
                colour = _COLOURS[analysis]
                sub = part[part["analysis"] == analysis]
                single = sub[sub["set_kind"] == "single"]
                if len(single):
                    _band(ax, single, colour, f"{analysis}, one block")
                win = sub[sub["set_kind"] == "window"]
                if len(win):
                    mid = (win["layer_lo"] + win["layer_hi"]) / 2
                    ax.errorbar(mid, win["mean"], xerr=(win["layer_hi"] - win["layer_lo"]) / 2,
                                yerr=[win["mean"] - win["ci_lo"], win["ci_hi"] - win["mean"]], fmt="s", ms=3,
                                color=colour, alpha=0.7, capsize=0, lw=0.8, label=f"{analysis}, window")
                every = sub[sub["set_kind"] == "all"]
                if len(every):
                    ax.axhline(float(every["mean"].iloc[0]), color=colour, ls="--", lw=1,
                               label=f"{analysis}, all blocks ({every['mean'].iloc[0]:.2f})")
            used = int(part["records"].max()) if len(part) else 0
            _frame(ax, n_layers, f"{model}, {scheme}, n={n} ({used} records):\nknockout {_NAMES[variant]} "
                                 "to the distractors")
    return save_figure(fig, path)


def plot_patching(table: pd.DataFrame, path: str | Path, model: str, n_layers: int) -> Path:
    """Restoration vs block when one component's output at the read position is the clean prompt's;
    one panel per scheme × n, one line per component, 95% CI bands."""
    t = _blocks(table)
    pt = t[(t["analysis"] == "patch") & t["variant"].isin(COMPONENTS)] if len(t) else t
    panels = _panels(pt)
    fig, axes = new_figure(4.6, 3.3, ncols=len(panels))
    for ax, (scheme, n) in zip(axes[0], panels):
        part = pt[(pt["scheme"] == scheme) & (pt["n"] == n)] if len(pt) else pt
        for component in COMPONENTS:
            sub = part[part["variant"] == component]
            if len(sub):
                _band(ax, sub, _COLOURS[component], _NAMES[component])
        used = int(part["records"].max()) if len(part) else 0
        _frame(ax, n_layers, f"{model}, {scheme}, n={n} ({used} records):\npatch at the read position from "
                             "the n=0 prompt")
    return save_figure(fig, path)


def plot_heads(table: pd.DataFrame, path: str | Path, model: str, n_heads: int) -> Path:
    """Heat maps of the carrying blocks' heads: rows scheme × n, columns knockout from the read position
    (that head alone), knockout − control, patching that head's output; cells: mean restoration."""
    h = table[table["head"] >= 0]
    panels = _panels(h)
    kinds = (("knockout", "mean", "knockout (read → distractors)"),
             ("knockout", "minus_control", "knockout − control"), ("patch", "mean", "patch z_h from n=0"))
    blocks = sorted(h["layer_lo"].unique())
    fig, axes = new_figure(0.5 * n_heads + 2.2, 0.45 * len(blocks) + 1.6, ncols=len(kinds), nrows=len(panels))
    lim = float(np.nanmax(np.abs(h[["mean", "minus_control"]].to_numpy(dtype=float)))) if len(h) else 1.0
    for r, (scheme, n) in enumerate(panels):
        for c, (analysis, column, title) in enumerate(kinds):
            ax = axes[r][c]
            part = h[(h["scheme"] == scheme) & (h["n"] == n) & (h["analysis"] == analysis)]
            grid = np.full((len(blocks), n_heads), np.nan)
            for b, hd, v in zip(part["layer_lo"], part["head"], part[column]):
                grid[blocks.index(b), int(hd)] = v
            im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
            for i in range(len(blocks)):
                for j in range(n_heads):
                    if np.isfinite(grid[i, j]):
                        ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6,
                                color="white" if abs(grid[i, j]) > 0.6 * lim else "black")
            ax.set_xticks(range(n_heads))
            ax.set_yticks(range(len(blocks)), [str(b) for b in blocks])
            ax.set_xlabel("head")
            ax.set_ylabel("block")
            ax.grid(False)
            ax.set_title(f"{model}, {scheme}, n={n}:\n{title}", fontsize=8)
        fig.colorbar(im, ax=axes[r][-1], fraction=0.05, label="restoration")
    return save_figure(fig, path)


_METHOD = {"none": ("nothing", "tab:gray", dict(lw=4, alpha=0.5)),
           "defence": ("heads found × chosen scale", "tab:blue", dict(lw=1.5, marker="o")),
           "block": ("their blocks' attention removed", "tab:red", dict(lw=1.5, marker="s", ls="--"))}


def plot_defence(table: pd.DataFrame, path: str | Path, model: str) -> Path:
    """Per scheme, on the judging half: the known-fact ES vs n for doing nothing, the defence and the
    block removal (left), and at n = 0 the share of known facts still known (right)."""
    judge = table[table["half"] == "judge"]
    schemes = list(dict.fromkeys(judge["scheme"])) or [""]
    fig, axes = new_figure(4.2, 3.2, ncols=2, nrows=len(schemes))
    for r, scheme in enumerate(schemes):
        part = judge[judge["scheme"] == scheme]
        ax, bx = axes[r]
        for i, (method, (name, colour, style)) in enumerate(_METHOD.items()):
            m = part[part["method"] == method].sort_values("n")
            if not len(m):
                continue
            scale = float(m["scale"].iloc[0])
            ax.plot(m["n"], m["es_known"], color=colour, label=name + (f" ({scale:g})" if method == "defence" else ""),
                    **style)
            at0 = m[m["n"] == 0]
            if len(at0):
                bx.bar(i, float(at0["still_known"].iloc[0]), color=colour)
                bx.text(i, float(at0["still_known"].iloc[0]), f"Δlog P(true)\n{at0['dlogp_true'].iloc[0]:+.2f}",
                        ha="center", va="bottom", fontsize=6)
        known = int(part.loc[part["method"] == "none", "known"].max()) if len(part) else 0
        ax.set_xticks(sorted(part["n"].unique()) if len(part) else [0])
        ax.set_xlabel("n (prepended sentences)")
        ax.set_ylabel("ES over known facts")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{model}, {scheme}: judging half ({known} known facts)", fontsize=8)
        ax.legend(fontsize=6)
        bx.set_xticks(range(len(_METHOD)), [v[0] for v in _METHOD.values()], fontsize=6, rotation=15)
        bx.set_ylim(0, 1.15)
        bx.set_ylabel("known facts still known at n = 0")
        bx.set_title(f"{model}, {scheme}: the cost on clean recall", fontsize=8)
    return save_figure(fig, path)
