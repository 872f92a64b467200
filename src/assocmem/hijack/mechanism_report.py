"""`assocmem hijack mechanism` / `hijack defend`: the causal tests and the defence as one pipeline.

    assocmem hijack mechanism --model gemma3-270m --records 200 --n 1 3 \\
        --counterfact ../shared/data/counterfact_reconstructed.json --out runs/mechanism
    assocmem hijack defend --model smollm2-135m --records 200 --out runs/defend

Per scheme (each on its own sample of the records it can build, split into a choosing and a judging
half, `hijack.mechanism_choice`):

1. block level (`hijack.mechanism`): read-position and every-prompt-token knockout with controls,
   patching of the residual stream / attention / MLP output at the read;
2. heads: the carrying blocks (the `head_blocks` single blocks whose read knockout restores most on the
   choosing half; their union over the schemes) get per-head knockout, control and patching;
3. defence (`hijack.defence`): the heads found on the choosing half, one scale chosen there, judged on
   the judging half beside doing nothing and beside removing the heads' whole blocks.

`run_mechanism` writes, under its out folder: records.parquet (margins per scheme × record × n, with
its half), interventions.parquet (margin and restoration per record × n × intervention),
restoration.{parquet,csv} (means over the used records with SE and 95% CI, ratio of means, knockout
minus control; heads included, `head` ≥ 0), heads.csv (the head rows), defence_records.parquet and
defence.{parquet,csv} (per method × scale × half × n), knockout.png, patching.png, heads.png,
defence.png, summary.json and config.json.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from assocmem.config import read_config, save_config
from assocmem.errors import ConfigError
from assocmem.hijack import mechanism as M
from assocmem.hijack import mechanism_choice as C
from assocmem.io import write_csv, write_parquet
from assocmem.models.llm import LoadedLM


TABLES = ("records", "interventions", "restoration", "defence_records", "defence")


@dataclass
class MechanismResult:
    """What `run_mechanism` gives: per scheme × record × n the margins and halves (`records`), per intervention
    its margin and restoration (`interventions`), their means (`restoration`), the defence's rows and table
    (empty without a defence), the summary (choices, headline, seconds) and the config; `heads` is the
    restoration table's per-head rows. `save`/`load` keep it in a folder."""

    records: pd.DataFrame
    interventions: pd.DataFrame
    restoration: pd.DataFrame
    defence_records: pd.DataFrame
    defence: pd.DataFrame
    summary: dict
    config: M.MechanismConfig | dict

    @property
    def heads(self) -> pd.DataFrame:
        table = self.restoration
        return table[table["head"] >= 0] if len(table) and "head" in table else table.iloc[0:0]

    def save(self, folder: str | Path) -> Path:
        """The tables (parquet; restoration, heads and defence also as CSV, rounded), summary.json, config.json."""
        from assocmem.io import write_json, write_tables

        folder = Path(folder)
        tables = {name: getattr(self, name) for name in TABLES if name in ("records", "interventions", "restoration")
                  or len(getattr(self, name))}
        write_tables(folder, tables)
        write_csv(folder / "restoration.csv", self.restoration.round(5))
        if len(self.heads):
            write_csv(folder / "heads.csv", self.heads.round(5))
        if len(self.defence):
            write_csv(folder / "defence.csv", self.defence.round(5))
        save_config(self.config, folder / "config.json")
        write_json(folder / "summary.json", _plain(self.summary))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "MechanismResult":
        from assocmem.io import read_json, read_tables

        folder = Path(folder)
        return cls(**read_tables(folder, TABLES), summary=read_json(folder / "summary.json"),
                   config=read_config(M.MechanismConfig, read_json(folder / "config.json")))


def run_mechanism(config: M.MechanismConfig, out_dir: str | Path | None = None, lm: LoadedLM | None = None,
                  progress=None) -> MechanismResult:
    """The three stages above on `config`; with `out_dir`, writes tables, PNGs, summary.json and config.json
    there. `lm` may be passed (a LoadedLM, or what `models.llm.as_lm` takes) to skip loading `config.lm`;
    `progress(fraction, text)` is told per batch."""
    from assocmem.hijack.defence import defend
    from assocmem.hijack.mechanism_plots import plot_defence, plot_heads, plot_knockout, plot_patching
    from assocmem.models.heads import head_layout
    from assocmem.models.llm import as_lm

    t0 = time.perf_counter()
    lm = as_lm(lm) if lm is not None else config.lm.load()
    n_layers = len(M.find_parts(lm.model).blocks)
    n_heads = head_layout(lm.model).n_heads if config.heads or config.defend else None
    if config.defend and config.defence.scale_heads:
        _check_heads(config.defence.given_heads(), n_layers, n_heads)
    t_load = time.perf_counter()
    n_choose = min(config.ns)
    tell = progress or (lambda fraction, text: None)
    data, halves, info, records, ivs, stats = {}, {}, {}, [], [], []
    chosen_records = {}
    for s, scheme in enumerate(config.schemes):          # 1. block level
        recs, unbuildable = M.scheme_records(config.selection, scheme, config.template)
        chosen_records[scheme] = recs
        data[scheme] = M.build_items(lm.tokenizer, recs, scheme, config.ns, config.template, config.selection.skip_bad)
        if not data[scheme].items:
            raise ConfigError(f"mechanism: no usable records left for scheme {scheme} (all skipped)")
        halves[scheme] = C.split_halves({it.case_id for it in data[scheme].items}, config.seed)
        result = M.analyse(lm, data[scheme], config, progress=lambda f, text, s=s: tell(
            (s + f) / len(config.schemes) / 3, f"{scheme}, blocks: {text}"))
        records.append(_label(result.records, scheme, halves[scheme]))
        ivs.append(_label(result.interventions, scheme, halves[scheme]))
        stats.append({"scheme": scheme, "stage": "blocks", **result.stats})
        info[scheme] = {"records": len({it.case_id for it in data[scheme].items}), "skipped": len(data[scheme].skipped),
                        "skipped_examples": data[scheme].skipped[:20], "not_buildable_in_file": unbuildable}
    records, iv = pd.concat(records, ignore_index=True), _concat(ivs)
    for scheme in config.schemes:
        info[scheme]["layer_set"] = C.chosen_layer_set(iv, scheme, n_choose) if len(iv) else None
        info[scheme]["carrying_blocks"] = C.carrying_blocks(iv, scheme, n_choose, config.head_blocks) if len(iv) else []
    head_blocks = sorted({b for s in config.schemes for b in info[s]["carrying_blocks"]})
    sets = {label: (kind, layers) for label, kind, layers in M.layer_sets(n_layers, M.LAYER_SETS, config.window,
                                                                        config.stride)}
    matched = {s: info[s]["layer_set"] for s in config.schemes if config.control and info[s]["layer_set"]}
    if (config.searches_heads and head_blocks) or matched:  # 2. heads, and the chosen set's size-matched knockout
        for s, scheme in enumerate(config.schemes):
            def planner(items, which, L, scheme=scheme):
                out = M.plan_head_interventions(items, which, head_blocks, n_heads, config.seed, config.control) \
                    if config.searches_heads else []
                if scheme in matched:
                    out += M.plan_matched(items, which, matched[scheme], *sets[matched[scheme]], config.seed)
                return out
            result = M.analyse(lm, data[scheme], config, planner=planner, progress=lambda f, text, s=s: tell(
                (len(config.schemes) + s + f) / len(config.schemes) / 3, f"{scheme}, heads: {text}"))
            ivs.append(_label(result.interventions, scheme, halves[scheme]))
            stats.append({"scheme": scheme, "stage": "heads" if config.searches_heads else "matched", **result.stats})
        iv = _concat(ivs)
    defence_rows, defence_table = [], []
    if config.defend:                                       # 3. defence
        for s, scheme in enumerate(config.schemes):
            tell((2 * len(config.schemes) + s) / len(config.schemes) / 3, f"{scheme}, defence")
            if config.defence.scale_heads:
                heads, passed = list(config.defence.given_heads()), None
            else:
                ranking = C.head_ranking(iv, scheme, n_choose)
                heads, passed = C.found_heads(ranking, config.defence.max_heads, config.defence.min_head_restoration)
                info[scheme]["head_ranking"] = ranking.head(10).to_dict("records")
            if not heads:
                continue
            t = time.perf_counter()
            items, split = _defence_sample(config, lm, scheme, chosen_records[scheme], halves[scheme])
            info[scheme]["defence_records"] = len(split)
            d = defend(lm, items, split, heads, config.defence, config.batching)
            judged = d.table[(d.table["half"] == "judge") & d.table["method"].isin(["none", "defence", "block"])]
            info[scheme]["defence"] = {**d.chosen, "heads_passed": passed, "seconds": time.perf_counter() - t,
                                       "judged": judged.drop(columns="half").to_dict("records")}
            defence_rows.append(d.records.assign(scheme=scheme))
            defence_table.append(d.table.assign(scheme=scheme))
    table = M.restoration_table(iv) if len(iv) else pd.DataFrame()
    defence_rows = pd.concat(defence_rows, ignore_index=True) if defence_rows else pd.DataFrame()
    defence_table = pd.concat(defence_table, ignore_index=True) if defence_table else pd.DataFrame()
    result = MechanismResult(records, iv, table, defence_rows, defence_table, {}, config)
    figures = []
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        blocks = table[table["head"] < 0] if len(table) else table
        if len(blocks) and blocks["analysis"].isin(["knockout", "control"]).any():
            figures.append(plot_knockout(table, out_dir / "knockout.png", lm.name, n_layers))
        if len(blocks) and (blocks["analysis"] == "patch").any():
            figures.append(plot_patching(table, out_dir / "patching.png", lm.name, n_layers))
        if len(result.heads):
            figures.append(plot_heads(table, out_dir / "heads.png", lm.name, n_heads))
        if len(defence_table):
            figures.append(plot_defence(defence_table, out_dir / "defence.png", lm.name))
    result.summary = {"model": lm.name, "layers": n_layers, "heads_per_block": n_heads, "schemes": list(config.schemes),
                      "choice_n": n_choose, "records": {s: info[s]["records"] for s in config.schemes},
                      "skipped": {s: info[s]["skipped"] for s in config.schemes}, "per_scheme": info,
                      "head_blocks": head_blocks, "headline": M.headline(table, records) if len(table) else {},
                      "stats": stats, "interventions": int(sum(x["interventions"] for x in stats)),
                      "figures": [f.name for f in figures],
                      "seconds": {"load": t_load - t0, "analysis": float(sum(x["seconds"] for x in stats)),
                                  "total": time.perf_counter() - t0}}
    if out_dir is not None:
        result.save(out_dir)
    return result


def _defence_sample(config: M.MechanismConfig, lm: LoadedLM, scheme: str, records: list, halves: dict[int, str]):
    """(items, halves) the defence is chosen and judged on: the mechanism's records with their halves, and
    `extra_records` more the scheme can build (none of the mechanism's), split into halves the same way."""
    extra, _ = M.scheme_records(config.selection, scheme, config.template, exclude={r.case_id for r in records},
                                records=config.defence.extra_records) if config.defence.extra_records else ([], 0)
    items = M.build_items(lm.tokenizer, list(records) + list(extra), scheme, config.ns, config.template,
                          config.selection.skip_bad)
    new = {it.case_id for it in items.items} - set(halves)
    return items, {**halves, **C.split_halves(new, config.seed)}


def _label(frame: pd.DataFrame, scheme: str, halves: dict[int, str]) -> pd.DataFrame:
    """The frame with its scheme and each record's half as columns."""
    if not len(frame):
        return frame
    return frame.assign(scheme=scheme, half=frame["case_id"].map(halves))


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _check_heads(heads, n_layers: int, n_heads: int) -> None:
    for b, h in heads:
        if not (0 <= b < n_layers and 0 <= h < n_heads):
            raise ConfigError(f"scale_heads={b}.{h} is invalid: allowed blocks 0..{n_layers - 1} and heads "
                              f"0..{n_heads - 1} for this model", field="scale_heads")


def _plain(obj):
    """JSON-ready: numpy scalars to Python numbers, NaN to None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    return obj
