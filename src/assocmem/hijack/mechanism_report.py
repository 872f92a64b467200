"""`assocmem hijack mechanism`: the causal tests of hijack.mechanism as a pipeline, and its figures.

    assocmem hijack mechanism --model gemma3-270m --records 200 --n 1 3 \\
        --counterfact ../shared/data/counterfact_reconstructed.json --out runs/mechanism

`run_mechanism` writes, under its out folder: records.parquet (margins per record × n),
interventions.parquet (margin and restoration per record × n × intervention), restoration.{parquet,csv}
(means over the used records with SE and 95% CI, ratio of means, knockout minus control),
knockout.png, patching.png, summary.json and config.json.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from assocmem.config import save_config
from assocmem.io import write_csv, write_parquet
from assocmem.errors import ConfigError
from assocmem.hijack import mechanism as M
from assocmem.plotting import new_figure, save_figure


def run_mechanism(config: M.MechanismConfig, out_dir: str | Path, lm=None, progress=None) -> dict:
    """Knockout and patching on a stratified CounterFact sample (hijack.mechanism); writes tables,
    PNGs, summary.json and config.json under `out_dir` and returns the summary. `lm` may be passed
    (a LoadedLM) to skip loading `config.lm`; `progress(fraction, text)` is told per batch."""
    from assocmem.io import write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    _, records = config.selection.load()
    lm = lm or config.lm.load()
    n_layers = len(M.find_parts(lm.model).blocks)
    t_load = time.perf_counter()
    data = M.build_items(lm.tokenizer, records, config.scheme, config.ns, config.template, config.selection.skip_bad)
    if not data.items:
        raise ConfigError("mechanism: no usable records left (all skipped)")
    result = M.analyse(lm, data, config, progress=progress)
    table = M.restoration_table(result.interventions)
    for name, frame in (("records", result.records), ("interventions", result.interventions),
                        ("restoration", table)):
        write_parquet(out_dir / f"{name}.parquet", frame)
    write_csv(out_dir / "restoration.csv", table.round(5))
    figures = [plot_knockout(table, out_dir / "knockout.png", lm.name, n_layers),
               plot_patching(table, out_dir / "patching.png", lm.name, n_layers)]
    summary = {"model": lm.name, "layers": n_layers, "scheme": config.scheme,
               "records": len({it.case_id for it in data.items}), "skipped": len(data.skipped),
               "skipped_examples": data.skipped[:20], "headline": M.headline(table, result.records),
               "stats": result.stats, "figures": [f.name for f in figures],
               "seconds": {"load": t_load - t0, "analysis": result.stats["seconds"],
                           "total": time.perf_counter() - t0}}
    save_config(config, out_dir / "config.json")
    write_json(out_dir / "summary.json", _plain(summary))
    return summary


def _plain(obj):
    """JSON-ready: numpy scalars to Python numbers, NaN to None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    return obj


# ---------------------------------------------------------------------------------------------
# Figures

_COLOURS = {"knockout": "tab:blue", "control": "tab:gray", "resid": "tab:green", "attn": "tab:blue", "mlp": "tab:red"}
_NAMES = {"read": "from the read position", "prompt": "from every prompt token",
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
    ax.legend(fontsize=6)


def plot_knockout(table: pd.DataFrame, path: str | Path, model: str, n_layers: int) -> Path:
    """Restoration vs block: rows n, columns variant. Lines: one block knocked out (knockout blue,
    random-token control grey), with 95% CI bands; squares with horizontal bars: windows of blocks;
    dashed lines: every block."""
    ko = table[table["analysis"].isin(["knockout", "control"])] if len(table) else table
    ns = sorted(ko["n"].unique()) if len(ko) else [0]
    variants = [v for v in M.VARIANTS if len(ko) and (ko["variant"] == v).any()] or ["read"]
    fig, axes = new_figure(4.6, 3.3, ncols=len(variants), nrows=len(ns))
    for r, n in enumerate(ns):
        for c, variant in enumerate(variants):
            ax = axes[r][c]
            part = ko[(ko["n"] == n) & (ko["variant"] == variant)] if len(ko) else ko
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
            _frame(ax, n_layers, f"{model}, n={n} ({used} records):\nknockout {_NAMES[variant]} to the distractors")
    return save_figure(fig, path)


def plot_patching(table: pd.DataFrame, path: str | Path, model: str, n_layers: int) -> Path:
    """Restoration vs block when one component's output at the read position is the clean prompt's;
    one panel per n, one line per component, 95% CI bands."""
    pt = table[table["analysis"] == "patch"] if len(table) else table
    ns = sorted(pt["n"].unique()) if len(pt) else [0]
    fig, axes = new_figure(4.6, 3.3, ncols=len(ns))
    for ax, n in zip(axes[0], ns):
        part = pt[pt["n"] == n] if len(pt) else pt
        for component in M.COMPONENTS:
            sub = part[part["variant"] == component]
            if len(sub):
                _band(ax, sub, _COLOURS[component], _NAMES[component])
        used = int(part["records"].max()) if len(part) else 0
        _frame(ax, n_layers, f"{model}, n={n} ({used} records):\npatch at the read position from the n=0 prompt")
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# CLI
