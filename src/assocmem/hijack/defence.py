"""A first defence against context hijacking: scale down, at test time, the heads that carry it.

The heads come from the per-head knockout of `hijack.mechanism` (chosen on the choosing half of the
records, `hijack.mechanism_choice`); their outputs z_h are multiplied by one scale s at every position
(`models.heads`: the same as scaling W_O's columns of those heads, an edit of the model that needs no
knowledge of where the distractors are; in the spirit of JUICE's test-time head scaling against
knowledge conflicts). The scale is the one of `DefenceSettings.scales` that lowers the known-fact
efficacy score most on the choosing half while keeping at least `min_recall` of the known facts known
at n = 0; the defence is then judged on the other half, beside doing nothing and beside removing the
whole attention of the heads' blocks.

Per record and n (first token of " " + target, as the mechanism's margins):

    known         the true target's first token is the undefended model's top-1 next token at n = 0
                  (`hijack.metrics.known`, rule "top1")
    hijacked      log P(false) > log P(true) at n; the known-fact ES is its share over known facts
    still known   at n = 0 with the defence on, the true target's first token is still the top-1
    Δ log P(true) at n = 0, defended − undefended
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from assocmem.hijack.mechanism import Items, mean_ci
from assocmem.hijack.mechanism_config import DefenceSettings
from assocmem.models.anatomy import find_parts
from assocmem.models.heads import HeadEdit, edited_heads, head_layout, scale_edits
from assocmem.models.llm import LoadedLM

METHODS = ("none", "defence", "block", "heads")   # nothing / the chosen scale / whole blocks at 0 / every scale tried


@torch.inference_mode()
def read_scores(lm: LoadedLM, data: Items, batching, runs: Sequence[Sequence[HeadEdit]] = ((),)) -> list[pd.DataFrame]:
    """Per run of `runs` (a list of head edits, applied at every forward of that run), per item of `data`:
    log P and vocabulary rank of both targets' first tokens at its read. One packed layout per batch of
    records; the first run is fed whole, every other one from the lowest block any run edits (below it
    every run is the same, so the first run's residual stream entering that block is handed on)."""
    import dataclasses

    from assocmem.hijack.scoring import pad_token, resolve_batch_tokens
    from assocmem.models.extension import captured_entering, handed_on
    from assocmem.models.packed_forward import forward_rows, token_scores
    from assocmem.models.packing import iter_layouts, plan_batches

    used = sorted({it.request for it in data.items})
    local = {r: j for j, r in enumerate(used)}
    items = [dataclasses.replace(it, request=local[it.request]) for it in data.items]
    seqs = [data.requests[r] for r in used]
    plan = plan_batches(seqs, [data.groups[r] for r in used], [data.expected[r] for r in used],
                        resolve_batch_tokens(batching.batch_tokens, lm.device), batching.row_tokens)
    of_request = {it.request: i for i, it in enumerate(items)}
    logp = np.full((len(runs), len(items), 2), np.nan)
    rank = np.zeros((len(runs), len(items), 2), dtype=np.int64)
    blocks = find_parts(lm.model).blocks
    layout = head_layout(lm.model) if any(runs) else None
    start = min((e.layer for run in runs[1:] for e in run), default=0)
    if any(runs[:1]):
        start = min(start, *(e.layer for e in runs[0]))
    for rows, members in iter_layouts(seqs, plan, pad_token(lm.tokenizer)):
        located = [rows.columns(m, [rows.where[m][4] - 1]) for m in members]
        rr, rc = np.array([r for r, _ in located]), np.concatenate([c for _, c in located])
        which = [of_request[m] for m in members]
        tokens = np.array([items[i].true_id for i in which] + [items[i].false_id for i in which], dtype=np.int64)
        index = np.tile(np.arange(len(which), dtype=np.int64), 2)
        entering: dict = {}
        for k, edits in enumerate(runs):
            skip = start if k else 0
            with (edited_heads(layout, edits) if edits else contextlib.nullcontext()), \
                    (captured_entering(blocks, start, entering) if not k else contextlib.nullcontext()), \
                    handed_on(blocks, skip, entering.get("entering")):
                out = forward_rows(lm, rows, rr, rc)
            lp, rk = token_scores(lm, out.hidden, index, tokens)
            logp[k, which] = lp.cpu().numpy().reshape(2, -1).T
            rank[k, which] = rk.cpu().numpy().reshape(2, -1).T
    ids = {"case_id": [it.case_id for it in items], "n": [it.n for it in items]}
    return [pd.DataFrame({**ids, "logp_true": logp[k, :, 0], "logp_false": logp[k, :, 1],
                          "rank_true": rank[k, :, 0], "rank_false": rank[k, :, 1]}) for k in range(len(runs))]


def choose_scale(rows: pd.DataFrame, min_recall: float) -> tuple[float, str]:
    """(scale, why) from the choosing half's rows of method "heads": among the scales keeping at least
    `min_recall` of the known facts known at n = 0, the one with the lowest known-fact ES (mean over the
    hijacked n's; ties: the larger scale, the smaller edit); none qualifies: 1.0 (no defence)."""
    part = rows[(rows["method"] == "heads") & (rows["half"] == "choose") & rows["known"]]
    if not len(part):
        return 1.0, "no known fact on the choosing half to choose a scale on"
    best = None
    for scale, g in part.groupby("scale"):
        at0 = g[g["n"] == 0]
        recall = float((at0["rank_true"] == 1).mean()) if len(at0) else float("nan")
        es = float(g[g["n"] > 0].groupby("n")["hijacked"].mean().mean())
        if not recall >= min_recall:
            continue
        key = (es, -float(scale))
        if best is None or key < best[0]:
            best = (key, float(scale), recall)
    if best is None:
        return 1.0, f"no scale keeps {min_recall:.0%} of the known facts known at n = 0 on the choosing half"
    (es, _), scale, recall = best
    return scale, f"lowest known-fact ES on the choosing half ({es:.3f}) keeping {recall:.0%} known at n = 0"


@dataclass
class DefenceResult:
    """`records`: per method × scale × record × n (long); `table`: `defence_table(records)`; `chosen`:
    the heads, their blocks and the scale, and why."""

    records: pd.DataFrame
    table: pd.DataFrame
    chosen: dict


def defend(lm: LoadedLM, data: Items, halves: dict[int, str], heads: Sequence[tuple[int, int]],
           settings: DefenceSettings,
           batching) -> DefenceResult:
    """Score every item of `data` undefended, with `heads` at each scale of `settings.scales`, and with every
    head of their blocks at 0; choose the scale on the choosing half; label the chosen rows "defence"."""
    from assocmem.hijack.metrics import known

    layout = head_layout(lm.model)
    blocks = sorted({b for b, _ in heads})
    runs = [("none", 1.0, [])]
    runs += [("heads", s, scale_edits({h: s for h in heads})) for s in settings.scales]
    runs.append(("block", 0.0, scale_edits({(b, h): 0.0 for b in blocks for h in range(layout.n_heads)})))
    scores = read_scores(lm, data, batching, [edits for _, _, edits in runs])
    frames = [f.assign(method=m, scale=s) for f, (m, s, _) in zip(scores, runs)]
    rows = pd.concat(frames, ignore_index=True)
    base = frames[0][frames[0]["n"] == 0].set_index("case_id")
    is_known = pd.Series(known(base["rank_true"].to_numpy(), base["logp_true"].to_numpy(), rule="top1"),
                         index=base.index)
    rows["known"] = rows["case_id"].map(is_known).astype(bool)
    rows["half"] = rows["case_id"].map(halves)
    rows["hijacked"] = rows["logp_false"] > rows["logp_true"]
    undefended = frames[0].set_index(["case_id", "n"])["logp_true"]
    rows["dlogp_true"] = rows["logp_true"].to_numpy() - undefended.reindex(
        pd.MultiIndex.from_frame(rows[["case_id", "n"]])).to_numpy()
    scale, why = choose_scale(rows, settings.min_recall)
    chosen = rows[(rows["method"] == "none")] if scale >= 1.0 else \
        rows[(rows["method"] == "heads") & (rows["scale"] == scale)]
    rows = pd.concat([rows, chosen.assign(method="defence", scale=scale)], ignore_index=True)
    return DefenceResult(rows, defence_table(rows),
                         {"heads": [f"{b}.{h}" for b, h in heads], "blocks": blocks, "scale": scale, "why": why})


def defence_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method × scale × half × n over the known facts: the known-fact ES (hijacked share); at n = 0 the
    share still known and the mean Δ log P(true) with its SE (95% t interval)."""
    out = []
    for (method, scale, half, n), g in rows.groupby(["method", "scale", "half", "n"], sort=True):
        k = g[g["known"]]
        entry = {"method": method, "scale": float(scale), "half": half, "n": int(n), "records": len(g),
                 "known": len(k), "hijacked_known": int(k["hijacked"].sum()),
                 "es_known": float(k["hijacked"].mean()) if len(k) else np.nan}
        if n == 0:
            m, se, lo, hi = mean_ci(k["dlogp_true"].to_numpy())
            entry |= {"still_known": float((k["rank_true"] == 1).mean()) if len(k) else np.nan,
                      "dlogp_true": m, "dlogp_true_se": se, "dlogp_true_lo": lo, "dlogp_true_hi": hi}
        out.append(entry)
    order = {m: i for i, m in enumerate(METHODS)}
    table = pd.DataFrame(out)
    return table.sort_values(["half", "n", "method", "scale"], key=lambda c: c.map(order) if c.name == "method" else c,
                             kind="stable", ignore_index=True)
