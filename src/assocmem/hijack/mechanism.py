"""Does the hijack travel through attention to the distractor tokens? Causal tests inside a real LM.

The paper's account of context hijacking (§5.5, Theorem 1) is mechanistic: attention aggregates the
context's tokens, the value matrix W_V reads the concept they point to out of an associative memory,
so adding tokens of another concept (the distractor sentences "Do not think of {target_false}.")
moves the answer. `hijack diagnose` shows correlates (attention mass, logit lens); this module
intervenes:

- **attention knockout from the read position** (the headline test): in the hijacked prompt (n ≥ 1)
  the read (last) position may not attend to the distractor tokens, in one block, a window of
  consecutive blocks or all blocks; every other position, the subject's included, is untouched.
  Control: block as many randomly chosen prompt tokens instead (never BOS, never the subject's tokens,
  never the read position; all of them when the prompt has fewer; seeded per record);
- **from every prompt token** (the sanity check): the same from every token of the record's own
  prompt; in all blocks this is the prompt without the distractors (tested), so it restores by
  construction;
- **activation patching**: replace the residual stream (a block's output), the attention output or
  the MLP output at the read position of the hijacked prompt by the clean (n = 0) prompt's value at
  its read position, one block at a time;
- **heads** (`models.heads`): per head of a block, the knockout above for that head's query alone,
  and patching that head's output z_h (its slice of the attention's output projection input).

Each intervention is scored by the true target's margin at the read position,
margin = log P(target_true) − log P(target_false) (first token of " " + target, tokenised with the
prompt as the scorer does; a difference of two logits, so no vocabulary-wide softmax is needed), and
by how much of the hijack it undoes:

    restoration = (margin_intervened − margin_hijacked) / (margin_clean − margin_hijacked)

(1: back to the clean prompt, 0: no effect), over records whose hijack moved the margin by more than
`min_shift` nats. One packed forward per batch of records keeps every block's keys and values; each
intervention then feeds only the positions it can change (`models.extension`): one token for the read
variant and for patching, the prompt's tokens for the prompt variant. The numbers equal those of a
full forward of each intervened prompt (tested), on the model's own modules (GPT-2, Llama, Gemma 3).
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from assocmem.hijack.mechanism_config import (COMPONENTS, LAYER_SETS, VARIANTS, DefenceSettings,  # noqa: F401
                                              DefendConfig, MechanismConfig)
from assocmem.models.anatomy import block_parts, find_parts
from assocmem.models.llm import LoadedLM
from assocmem.models.readout import unembed


def layer_sets(n_layers: int, kinds: Sequence[str], window: int, stride: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """(label, kind, blocks) of every knockout layer set: "7" (single), "4-7" (window), "all"."""
    out = []
    if "single" in kinds:
        out += [(str(l), "single", (l,)) for l in range(n_layers)]
    if "window" in kinds and window < n_layers:
        starts = list(range(0, n_layers - window + 1, stride))
        if starts[-1] != n_layers - window:
            starts.append(n_layers - window)
        out += [(f"{a}-{a + window - 1}", "window", tuple(range(a, a + window))) for a in starts]
    if "all" in kinds:
        out.append(("all", "all", tuple(range(n_layers))))
    return out


# ---------------------------------------------------------------------------------------------
# Items: a record at one n, tokenised as the scorer does

@dataclass(frozen=True)
class Item:
    """One record at one n. Positions are the request's own (0 = BOS where the tokenizer adds one).

    request          index in `Items.requests` (prefix + prompt ids)
    distractor       [n_prefix, end): the n distractor sentences' tokens (empty for n = 0)
    subject          [subject_start, subject_end): the tokens of the record's subject in its prompt
    true_id/false_id first token of " " + target_true / " " + target_false after the prompt
    """

    case_id: int
    relation_id: str
    n: int
    request: int
    length: int
    n_prefix: int
    distractor_end: int
    true_id: int
    false_id: int
    subject_start: int = 0
    subject_end: int = 0

    def distractor(self) -> np.ndarray:
        return np.arange(self.n_prefix, self.distractor_end)

    def prompt_positions(self) -> np.ndarray:
        """The record's own prompt after the distractors (the read position is the last)."""
        return np.arange(self.distractor_end, self.length)

    def control_pool(self) -> np.ndarray:
        """Prompt tokens a control may block: after the distractors, before the read, not the subject's."""
        pool = np.arange(self.distractor_end, self.length - 1)
        return pool[(pool < self.subject_start) | (pool >= self.subject_end)]


@dataclass
class Items:
    requests: list[tuple[int, ...]]
    groups: list[int]
    expected: list[int]
    items: list[Item]
    skipped: list[tuple[object, str]]


def scheme_records(selection, scheme_name: str, template: str | None = None, exclude=frozenset(),
                   records: int | None = None) -> tuple[list, int]:
    """(the selection's records among those `scheme_name` can build, how many the file has that it cannot).

    The sample is drawn after the filter, so a scheme that needs an association (`associated`: the
    false target's associated word, for the language and country relations) gets as many records as
    one that builds every record, spread over the relations it can use. `exclude`: case ids left out
    first; `records`: how many instead of the selection's own."""
    from assocmem.hijack.controls import with_mismatched_targets
    from assocmem.hijack.counterfact import BadRecord, load_counterfact, select_records
    from assocmem.hijack.schemes import get_scheme, sentence

    scheme = get_scheme(scheme_name, template)
    loaded = load_counterfact(selection.counterfact, skip_bad=selection.skip_bad)
    in_file = with_mismatched_targets(loaded.records, loaded.records) if scheme.names_mismatched else loaded.records
    usable = []
    for rec in in_file:
        try:
            sentence(rec, scheme)
        except BadRecord:
            continue
        usable.append(rec)
    pool = [r for r in usable if r.case_id not in exclude]
    chosen = select_records(pool, selection.relations, selection.limit, selection.per_relation, selection.seed,
                            records if records is not None else selection.records)
    return chosen, len(loaded.records) - len(usable)


def subject_spans(tokenizer, texts: Sequence[str], spans: Sequence[tuple[int, int]]) -> list[tuple[int, int] | None]:
    """Per text, the [first, end) token indices (no special prefix) of the characters spans[i]: the tokens
    whose characters overlap it (offsets of a fast tokenizer; else the token counts of the text's prefixes)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        out = []
        for offsets, (a, b) in zip(enc["offset_mapping"], spans):
            hit = [i for i, (s, e) in enumerate(offsets) if s < b and e > a]
            out.append((hit[0], hit[-1] + 1) if hit else None)
        return out
    count = lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"])  # noqa: E731
    return [(count(t[:a]), max(count(t[:b]), count(t[:a]) + 1)) for t, (a, b) in zip(texts, spans)]


def build_items(tokenizer, records, scheme_name: str, ns: Sequence[int], template: str | None = None,
                skip_bad: bool = True) -> Items:
    """Every record at n = 0 and each n of `ns` (one packing group per record; the distractor sentences
    are the prefix the n's share). Skipped, with a reason: records the scheme cannot build, whose
    prompt does not start with its distractor sentences' own tokens (a merge across the boundary:
    the distractor positions would be ambiguous), whose subject's tokens cannot be located, or whose
    two targets share their first token."""
    from assocmem.hijack.counterfact import BadRecord
    from assocmem.hijack.schemes import get_scheme, prompt_parts
    from assocmem.hijack.scoring import plan_requests

    scheme = get_scheme(scheme_name, template)
    all_ns = (0, *sorted(set(ns) - {0}))
    kept, skipped = [], []
    for rec in records:
        try:
            parts = [prompt_parts(rec, scheme, n) for n in all_ns]
        except BadRecord as bad:
            if not skip_bad:
                raise
            skipped.append((bad.case_id, bad.reason))
            continue
        kept.append((rec, parts))
    if not kept:    # nothing to plan (the planner and the tokenizer take no empty batch)
        return Items([], [], [], [], skipped)
    flat = [(rec, n, shared, prompt) for rec, parts in kept for n, (shared, prompt) in zip(all_ns, parts)]
    plan = plan_requests(tokenizer, [f[3] for f in flat], [f[0].target_true for f in flat],
                         [f[0].target_false for f in flat], groups=[f[0].case_id for f in flat],
                         shared=[f[2] for f in flat])
    n_prefix = plan.expected[0]   # n = 0 comes first: expected = the special prefix
    # the subject's characters: the prompt ends with the record's own filled prompt
    at = [len(p) - len(rec.filled_prompt) + rec.prompt.index("{}") for rec, _, _, p in flat]
    subjects = subject_spans(tokenizer, [p.rstrip() for *_, p in flat],
                             [(a, a + len(rec.subject)) for a, (rec, *_) in zip(at, flat)])
    items, bad_case, owner = [], {}, {}
    for i, (rec, n, _, _) in enumerate(flat):
        (r, g_true), (r2, g_false) = plan.index[i]
        true_id, false_id = plan.gathers[r][g_true][0], plan.gathers[r2][g_false][0]
        first, end = subjects[i] or (0, 0)
        if owner.setdefault(r, rec.case_id) != rec.case_id:     # the planner fed one copy of equal prompts
            bad_case.setdefault(rec.case_id, f"its prompt at n = {n} is record {owner[r]}'s (a repeated prompt)")
        elif plan.expected[r] >= 1 << 30:
            bad_case.setdefault(rec.case_id, "prompt does not start with its distractor sentences' tokens")
        elif true_id == false_id:
            bad_case.setdefault(rec.case_id, "both targets start with the same token")
        elif subjects[i] is None:
            bad_case.setdefault(rec.case_id, "the subject's tokens cannot be located in the prompt")
        items.append(Item(rec.case_id, rec.relation_id, n, r, len(plan.requests[r]), n_prefix,
                          plan.expected[r] if n else n_prefix, true_id, false_id, n_prefix + first, n_prefix + end))
    if bad_case and not skip_bad:
        case, reason = next(iter(bad_case.items()))
        raise BadRecord(case, reason)
    skipped += list(bad_case.items())
    items = [it for it in items if it.case_id not in bad_case]
    return Items(plan.requests, plan.groups, plan.expected, items, skipped)


# ---------------------------------------------------------------------------------------------
# Margins and restoration

@torch.inference_mode()
def target_margins(lm: LoadedLM, hidden: torch.Tensor, true_ids: Sequence[int], false_ids: Sequence[int]) -> np.ndarray:
    """(R,) float64 log P(true) − log P(false) from the body's output at R reads: the difference of the
    two (softcapped) logits, which equals the difference of the scorer's log-probabilities (tested)."""
    ids = torch.tensor([list(true_ids), list(false_ids)])                                # (2, R)
    logits = unembed(find_parts(lm.model), hidden, normed=True, tokens=ids)            # (2, R)
    return (logits[0] - logits[1]).double().cpu().numpy()


def restoration(margin: np.ndarray, clean: np.ndarray, hijacked: np.ndarray) -> np.ndarray:
    """(margin − hijacked) / (clean − hijacked), elementwise: 1 = the clean margin is back, 0 = no effect."""
    margin, clean, hijacked = (np.asarray(a, dtype=np.float64) for a in (margin, clean, hijacked))
    return (margin - hijacked) / (clean - hijacked)


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, standard error, CI low, CI high) over the finite values, Student t interval
    (`metrics.t_half_width`, the one the hijacking tables use)."""
    from assocmem.hijack.metrics import t_half_width

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (math.nan,) * 4
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan, math.nan
    sd = float(x.std(ddof=1))
    half = float(t_half_width(sd, len(x), level))
    return m, sd / math.sqrt(len(x)), m - half, m + half


# ---------------------------------------------------------------------------------------------
# Interventions

@dataclass(frozen=True)
class Intervention:
    """One probe of one item: recompute positions first..len-1 with an edit in `layers`.

    knockout: queries at `queries` may not attend to `keys` (positions), in every head (`heads` None) or
    in those heads only; patch: the `component`'s output at the read position is the clean prompt's
    (variant "head": the output z of each head of `heads`). `label` etc. say what it is for the tables.
    """

    item: int
    first: int
    layers: tuple[int, ...]
    analysis: str                   # knockout | control | patch
    variant: str                    # read | prompt | resid | attn | mlp | head
    set_kind: str                   # single | window | all | head
    label: str
    queries: tuple[int, ...] = ()
    keys: tuple[int, ...] = ()
    heads: tuple[int, ...] | None = None


def control_positions(item: Item, seed: int) -> np.ndarray:
    """As many random prompt positions as the item has distractor tokens (all of the pool when it has
    fewer), from `Item.control_pool` (never BOS, the subject or the read); seeded by (seed, case_id, n)."""
    pool = item.control_pool()
    k = min(item.distractor_end - item.n_prefix, len(pool))
    rng = np.random.default_rng([seed, int(item.case_id) & 0x7FFFFFFF, item.n])
    return np.sort(rng.choice(pool, size=k, replace=False))


def matched_positions(item: Item, seed: int) -> np.ndarray:
    """As many random distractor positions as `control_positions` blocks (a size-matched knockout: the
    control's pool is often smaller than the distractors); seeded by (seed, case_id, n) on a stream of its own."""
    k = len(control_positions(item, seed))
    rng = np.random.default_rng([seed, int(item.case_id) & 0x7FFFFFFF, item.n, 1])
    return np.sort(rng.choice(item.distractor(), size=k, replace=False))


def plan_matched(items: Sequence[Item], which: Sequence[int], label: str, kind: str, layers: tuple[int, ...],
                 seed: int) -> list[Intervention]:
    """Per hijacked item, the read-position knockout in `layers` of as many random distractor tokens as
    its control blocks (analysis "matched")."""
    out = []
    for i in which:
        it = items[i]
        read = it.length - 1
        out.append(Intervention(i, read, layers, "matched", "read", kind, label, (read,),
                                tuple(matched_positions(it, seed).tolist())))
    return out


def plan_interventions(items: Sequence[Item], which: Sequence[int], config: MechanismConfig,
                       n_layers: int) -> list[Intervention]:
    """Every block-level intervention of the hijacked items `which` (indices into `items`)."""
    sets = layer_sets(n_layers, config.layer_sets, config.window, config.stride)
    out = []
    for i in which:
        it = items[i]
        read = it.length - 1
        keys = {"knockout": tuple(it.distractor().tolist())}
        if config.control:
            keys["control"] = tuple(control_positions(it, config.seed).tolist())
        for variant in config.variants:
            first = read if variant == "read" else it.distractor_end
            queries = tuple(range(first, it.length))
            for label, kind, layers in sets:
                if variant == "prompt" and kind not in config.prompt_layer_sets:
                    continue
                for analysis, k in keys.items():
                    out.append(Intervention(i, first, layers, analysis, variant, kind, label, queries, k))
        for component in config.components:
            out += [Intervention(i, read, (l,), "patch", component, "single", str(l)) for l in range(n_layers)]
    return out


def plan_head_interventions(items: Sequence[Item], which: Sequence[int], blocks: Sequence[int], n_heads: int,
                            seed: int, control: bool = True) -> list[Intervention]:
    """Per hijacked item, block of `blocks` and head: knockout from the read position to the distractors
    in that head alone, its random-token control, and patching that head's output z at the read."""
    out = []
    for i in which:
        it = items[i]
        read = it.length - 1
        keys = {"knockout": tuple(it.distractor().tolist())}
        if control:
            keys["control"] = tuple(control_positions(it, seed).tolist())
        for layer in blocks:
            for h in range(n_heads):
                label = f"{layer}.{h}"
                out += [Intervention(i, read, (layer,), analysis, "read", "head", label, (read,), k, (h,))
                        for analysis, k in keys.items()]
                out.append(Intervention(i, read, (layer,), "patch", "head", "head", label, heads=(h,)))
    return out


def _knockout_edit(cells: dict[int, tuple[torch.Tensor, ...]], n_heads: int | None = None) -> Callable:
    """attention_edit: in block l, query (row b, new column q) may not see column k, for (b, q, k) in
    cells[l] (every head), or in head h only for (b, h, q, k) (h = -1: every head); every mask format
    (bool for SDPA, additive for eager, a dict of those per layer type). A mask shared by the heads
    is expanded to `n_heads` where one head differs."""
    def block(mask, b, h, q, k):
        every = h < 0
        if not bool(every.all()):
            mask = mask.expand(-1, n_heads, -1, -1)
        mask = mask.clone()
        value = False if mask.dtype == torch.bool else torch.finfo(mask.dtype).min
        mask[b[every], :, q[every], k[every]] = value
        one = ~every
        mask[b[one], h[one], q[one], k[one]] = value
        return mask

    def edit(layer, mask):
        if layer not in cells:
            return mask
        cell = cells[layer]
        if len(cell) == 3:
            cell = (cell[0], torch.full_like(cell[0], -1), cell[1], cell[2])
        device = next(iter(mask.values())).device if isinstance(mask, dict) else mask.device
        b, h, q, k = (t.to(device) for t in cell)
        if isinstance(mask, dict):
            return {kind: block(m, b, h, q, k) for kind, m in mask.items()}
        return block(mask, b, h, q, k)
    return edit


def run_interventions(lm: LoadedLM, rows, cache, ext, interventions: Sequence[Intervention], probe_index: Sequence[int],
                      items: Sequence[Item], clean: dict, clean_row: dict[int, int],
                      start: int = 0, entering: torch.Tensor | None = None) -> torch.Tensor:
    """One extension forward: (probes of `ext`, d_model) body output at each probe's read.

    `probe_index[p]`: the intervention of probe p; `clean[component]`: (packed batch's sequences,
    layers, d) values at their reads, `clean["head"][layer]`: (sequences, heads, head_dim) z there;
    `clean_row[item]`: the sequence of that item's clean (n = 0) prompt; `start`, `entering`: see
    `models.extension.forward_extension` (no edit below `start`).
    """
    from assocmem.models.extension import forward_extension
    from assocmem.models.heads import HeadEdit, edited_heads, head_layout

    Tp = rows.input_ids.shape[1]
    cells: dict[int, list[np.ndarray]] = defaultdict(list)                              # layer -> (4, m) arrays
    patches: dict[tuple[str, int], list[tuple[int, int, int]]] = defaultdict(list)   # (component, layer) -> (b, q, src)
    head_patches: list[tuple[int, int, int, int, int]] = []                          # (layer, head, b, q, src)
    for p, row, col, count in ext.where:
        iv = interventions[probe_index[p]]
        if iv.analysis == "patch":
            for layer in iv.layers:
                if iv.variant == "head":
                    head_patches += [(layer, h, row, col + count - 1, clean_row[iv.item]) for h in iv.heads]
                else:
                    patches[(iv.variant, layer)].append((row, col + count - 1, clean_row[iv.item]))
            continue
        keys, queries = np.asarray(iv.keys, dtype=np.int64), np.asarray(iv.queries, dtype=np.int64)
        if not len(keys) or iv.heads == ():
            continue
        _, past_cols = rows.columns(items[iv.item].request, keys)
        key_cols = np.where(keys >= iv.first, Tp + col + keys - iv.first, past_cols)
        q, k = np.meshgrid(np.arange(len(queries)), np.arange(len(keys)), indexing="ij")
        keep = keys[k] < queries[q]          # a key after the query is not seen anyway; a token always sees itself
        m = int(keep.sum())
        for h in (-1,) if iv.heads is None else iv.heads:
            block = np.stack([np.full(m, row), np.full(m, h), col + queries[q[keep]] - iv.first, key_cols[k[keep]]])
            for layer in iv.layers:
                cells[layer].append(block)
    layout = head_layout(lm.model) if head_patches or any(
        (c[1] >= 0).any() for v in cells.values() for c in v) else None
    edit = None
    if cells:
        joined = {l: tuple(torch.from_numpy(a) for a in np.concatenate(v, axis=1)) for l, v in cells.items()}
        edit = _knockout_edit(joined, layout.n_heads if layout else None)
    replace = []
    if patches:
        parts = find_parts(lm.model)
        subs = block_parts(parts.blocks)
        for (component, layer), v in patches.items():
            module = {"resid": parts.blocks[layer], "attn": subs[layer].attention, "mlp": subs[layer].mlp}[component]
            b, q, src = (torch.tensor(a) for a in zip(*v))
            replace.append((module, b, q, torch.from_numpy(clean[component][src.numpy(), layer])))
    grouped: dict[tuple[int, int], list[tuple[int, int, int]]] = defaultdict(list)
    for layer, h, b, q, src in head_patches:
        grouped[(layer, h)].append((b, q, src))
    edits = []
    for (layer, h), v in grouped.items():
        b, q, src = (torch.tensor(a) for a in zip(*v))
        edits.append(HeadEdit(layer, h, b, q, values=clean["head"][layer][src, h]))
    with edited_heads(layout, edits) if edits else contextlib.nullcontext():
        return forward_extension(lm, rows, cache, ext, attention_edit=edit, replace=replace, start=start,
                                 entering=entering)


def _head_column(heads: tuple[int, ...] | None) -> int:
    """The tables' `head`: -1 for the whole block, the head for one head, -2 for another set of heads."""
    if heads is None:
        return -1
    return heads[0] if len(heads) == 1 else -2


# ---------------------------------------------------------------------------------------------
# The analysis: one packed forward per batch of records, then its interventions

@dataclass
class Analysis:
    """Per-item margins (`records`), per-(item, intervention) margins and restoration (`interventions`),
    and what it cost (`stats`: forwards, tokens fed, seconds)."""

    records: pd.DataFrame
    interventions: pd.DataFrame
    stats: dict


def analyse(lm: LoadedLM, data: Items, config: MechanismConfig, progress: Callable[[float, str], None] | None = None,
            planner: Callable[[Sequence[Item], list[int], int], list[Intervention]] | None = None) -> Analysis:
    """Margins of every item, then every intervention on its hijacked items: `planner(items, which,
    n_layers)` (default: `plan_interventions` with `config`) lists them per packed batch."""
    import dataclasses
    import time

    from assocmem.hijack.scoring import pad_token, resolve_batch_tokens
    from assocmem.models.extension import Probe, layout_probes
    from assocmem.models.heads import captured_z, head_layout
    from assocmem.models.packed_forward import forward_rows
    from assocmem.models.packing import iter_layouts, plan_batches

    t0 = time.perf_counter()
    parts = find_parts(lm.model)
    L = len(parts.blocks)
    subs = block_parts(parts.blocks) if {"attn", "mlp"} & set(config.components) else []
    if planner is not None:        # a custom planner may patch any component
        subs = block_parts(parts.blocks)
    used = sorted({it.request for it in data.items})
    local = {r: j for j, r in enumerate(used)}
    items = [dataclasses.replace(it, request=local[it.request]) for it in data.items]
    seqs = [data.requests[r] for r in used]
    plan = plan_batches(seqs, [data.groups[r] for r in used], [data.expected[r] for r in used],
                        resolve_batch_tokens(config.batching.batch_tokens, lm.device), config.batching.row_tokens)
    by_request: dict[int, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_request[it.request].append(i)
    clean_item = {it.case_id: i for i, it in enumerate(items) if it.n == 0}
    margin = np.full(len(items), np.nan)
    rows_out: list[dict] = []
    stats = {"plain_forwards": 0, "plain_tokens": int(plan.stats.tokens_fed), "extension_forwards": 0,
             "extension_tokens": 0, "extension_token_blocks": 0, "interventions": 0}
    pad = pad_token(lm.tokenizer)
    capture = [s.attention for s in subs] + [s.mlp for s in subs]
    planner = planner or (lambda its, which, n: plan_interventions(its, which, config, n))
    for b, (rows, members) in enumerate(iter_layouts(seqs, plan, pad)):
        if progress is not None:
            progress(b / max(len(plan.batches), 1), f"batch {b + 1}/{len(plan.batches)}")
        here = [i for m in members for i in by_request[m]]
        hijacked = [i for i in here if items[i].n > 0 and clean_item.get(items[i].case_id) in here]
        ivs = planner(items, hijacked, L)
        # reads: every member's last position, then each position an intervention feeds again (its
        # residual stream entering the first intervened block is the plain forward's)
        first: dict[int, int] = {}
        for iv in ivs:
            seq = items[iv.item].request
            first[seq] = min(first.get(seq, iv.first), iv.first)
        slots = [(m, rows.where[m][4] - 1) for m in members]
        slots += [(seq, pos) for seq, f in first.items() for pos in range(f, rows.where[seq][4] - 1)]
        slot = {s: k for k, s in enumerate(slots)}
        located = [rows.columns(seq, [pos]) for seq, pos in slots]
        read_rows, read_cols = np.array([r for r, _ in located]), np.concatenate([c for _, c in located])
        z_layers = sorted({l for iv in ivs if iv.variant == "head" for l in iv.layers})
        z: dict[int, torch.Tensor] = {}
        with (captured_z(head_layout(lm.model), z_layers, torch.from_numpy(read_rows[: len(members)]),
                         torch.from_numpy(read_cols[: len(members)]), z) if z_layers else contextlib.nullcontext()):
            out = forward_rows(lm, rows, read_rows, read_cols, resid=True, capture=capture, keep_cache=True)
        stats["plain_forwards"] += 1
        read_of = {m: k for k, m in enumerate(members)}
        margin[here] = target_margins(lm, out.hidden[[read_of[items[i].request] for i in here]],
                                      [items[i].true_id for i in here], [items[i].false_id for i in here])
        clean = {"resid": out.resid[: len(members), 1:].cpu().numpy()}                # (members, L, d): block outputs
        if subs:
            clean["attn"] = torch.stack([c[: len(members)] for c in out.captured[:L]], dim=1).cpu().numpy()
            clean["mlp"] = torch.stack([c[: len(members)] for c in out.captured[L:]], dim=1).cpu().numpy()
        clean["head"] = z                                                    # layer -> (members, heads, head_dim)
        clean_row = {i: read_of[items[clean_item[items[i].case_id]].request] for i in hijacked}
        stats["interventions"] += len(ivs)
        by_start: dict[int, list[int]] = defaultdict(list)
        for k, iv in enumerate(ivs):
            by_start[min(iv.layers)].append(k)
        for start, chosen_ivs in sorted(by_start.items()):
            probes = [Probe(items[ivs[k].item].request, ivs[k].first) for k in chosen_ivs]
            for ext in layout_probes(rows, probes, config.probe_tokens, pad):
                index = np.zeros(ext.input_ids.shape, dtype=np.int64)                # slot of each new token
                for p, row, col, count in ext.where:
                    seq = probes[p].seq
                    index[row, col:col + count] = [slot[(seq, pos)] for pos in range(probes[p].first,
                                                                                    probes[p].first + count)]
                entering = out.resid[torch.from_numpy(index).to(out.resid.device), start] if start else None
                hidden = run_interventions(lm, rows, out.cache, ext, ivs, chosen_ivs, items, clean, clean_row,
                                           start, entering)
                stats["extension_forwards"] += 1
                stats["extension_tokens"] += int(ext.input_ids.size)
                stats["extension_token_blocks"] += int(ext.input_ids.size) * (L - start)
                chosen = [ivs[chosen_ivs[p]] for p, *_ in ext.where]
                m = target_margins(lm, hidden, [items[iv.item].true_id for iv in chosen],
                                   [items[iv.item].false_id for iv in chosen])
                for iv, value in zip(chosen, m):
                    it = items[iv.item]
                    rows_out.append({"case_id": it.case_id, "n": it.n, "analysis": iv.analysis, "variant": iv.variant,
                                     "set_kind": iv.set_kind, "label": iv.label, "layer_lo": min(iv.layers),
                                     "layer_hi": max(iv.layers), "head": _head_column(iv.heads),
                                     "n_keys": len(iv.keys), "margin": float(value)})
        del out
    records = pd.DataFrame([{"case_id": it.case_id, "relation_id": it.relation_id, "n": it.n, "length": it.length,
                             "distractor_tokens": it.distractor_end - it.n_prefix,
                             "subject_tokens": it.subject_end - it.subject_start,
                             "control_tokens": len(control_positions(it, config.seed)) if it.n else 0,
                             "margin": margin[i]}
                            for i, it in enumerate(items)])
    clean_m = records[records["n"] == 0].set_index("case_id")["margin"]
    records["margin_clean"] = records["case_id"].map(clean_m)
    records["shift"] = records["margin_clean"] - records["margin"]
    records["used"] = (records["n"] > 0) & (records["shift"] > config.min_shift)
    iv_df = pd.DataFrame(rows_out)
    if len(iv_df):
        hij = records[records["n"] > 0].rename(columns={"margin": "margin_hijacked"})
        iv_df = iv_df.merge(hij[["case_id", "n", "margin_hijacked", "margin_clean", "used"]], on=["case_id", "n"])
        iv_df["restoration"] = restoration(iv_df["margin"], iv_df["margin_clean"], iv_df["margin_hijacked"])
    stats["seconds"] = time.perf_counter() - t0
    return Analysis(records, iv_df, stats)


# ---------------------------------------------------------------------------------------------
# Tables

KEYS = ["scheme", "n", "analysis", "variant", "set_kind", "label", "layer_lo", "layer_hi", "head"]


def restoration_table(interventions: pd.DataFrame) -> pd.DataFrame:
    """Per (scheme, n, analysis, variant, layer set, head) over the used records: mean restoration with its
    SE and 95% t interval, `ratio_of_means` = mean(margin − hijacked) / mean(clean − hijacked) (robust to
    small denominators), and for knockouts the paired per-record difference to the control's restoration."""
    used = interventions[interventions["used"]]
    keys = [k for k in KEYS if k in interventions.columns]
    rows = []
    for key, g in used.groupby(keys, sort=False):
        mean, se, lo, hi = mean_ci(g["restoration"].to_numpy())
        ratio = float((g["margin"] - g["margin_hijacked"]).mean() / (g["margin_clean"] - g["margin_hijacked"]).mean())
        rows.append(dict(zip(keys, key), records=len(g), mean=mean, se=se, ci_lo=lo, ci_hi=hi,
                         ratio_of_means=ratio, mean_margin=float(g["margin"].mean())))
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    pair = [k for k in ("scheme", "n", "variant", "label") if k in keys]
    ko, ctl = used[used["analysis"] == "knockout"], used[used["analysis"] == "control"]
    paired = ko.merge(ctl, on=["case_id", *pair], suffixes=("", "_control"))
    diff = []
    for key, g in paired.groupby(pair, sort=False):
        mean, se, lo, hi = mean_ci((g["restoration"] - g["restoration_control"]).to_numpy())
        diff.append({**dict(zip(pair, key)), "analysis": "knockout", "minus_control": mean,
                     "minus_control_se": se, "minus_control_lo": lo, "minus_control_hi": hi})
    if diff:
        table = table.merge(pd.DataFrame(diff), on=[*pair, "analysis"], how="left")
    order = [k for k in ("scheme", "n", "analysis", "variant", "set_kind", "layer_lo", "layer_hi", "head") if k in keys]
    seen = {s: i for i, s in enumerate(dict.fromkeys(interventions.get("scheme", pd.Series(dtype=str))))}
    return table.sort_values(order, kind="stable", ignore_index=True,          # schemes in the run's order
                             key=lambda c: c.map(seen) if c.name == "scheme" else c)


def headline(table: pd.DataFrame, records: pd.DataFrame) -> dict:
    """{scheme: `scheme_headline`} over the schemes of `records` (descriptive: every record, best sets)."""
    return {str(s): scheme_headline(table[table["scheme"] == s] if len(table) else table,
                                    records[records["scheme"] == s]) for s in records["scheme"].unique()}


def scheme_headline(table: pd.DataFrame, records: pd.DataFrame) -> dict:
    """Per n: records used, mean distractor / control tokens; per knockout variant the best window-or-all
    set and the best single block (largest mean restoration) with its control; per patched component
    the best block, the lowest block restoring at least half, and the sum over blocks."""
    out: dict = {}
    for n in sorted(records.loc[records["n"] > 0, "n"].unique()):
        at = records[records["n"] == n]
        entry: dict = {"records": len(at), "used": int(at["used"].sum()), "mean_shift": float(at["shift"].mean()),
                       "mean_distractor_tokens": float(at["distractor_tokens"].mean()),
                       "mean_control_tokens": float(at["control_tokens"].mean())}
        t = table[table["n"] == n] if len(table) else table
        for variant in VARIANTS:
            ko = t[(t["analysis"] == "knockout") & (t["variant"] == variant)] if len(t) else t
            if not len(ko):
                continue
            best = {}
            for kinds, name in ((("window", "all"), "best_window"), (("single",), "best_single")):
                part = ko[ko["set_kind"].isin(kinds)]
                if len(part):
                    r = part.loc[part["mean"].idxmax()]
                    ctl = t[(t["analysis"] == "control") & (t["variant"] == variant) & (t["label"] == r["label"])]
                    best[name] = {"layers": r["label"], "mean": r["mean"], "se": r["se"],
                                  "control_mean": float(ctl["mean"].iloc[0]) if len(ctl) else None,
                                  "minus_control": r.get("minus_control"), "minus_control_se": r.get("minus_control_se")}
            all_row = ko[ko["set_kind"] == "all"]
            if len(all_row):
                best["all"] = {"mean": float(all_row["mean"].iloc[0]), "se": float(all_row["se"].iloc[0])}
            entry[f"knockout_{variant}"] = best
        for component in COMPONENTS:
            pt = t[(t["analysis"] == "patch") & (t["variant"] == component)] if len(t) else t
            if len(pt):
                r = pt.loc[pt["mean"].idxmax()]
                half = pt[pt["mean"] >= 0.5]
                entry[f"patch_{component}"] = {"best_layer": int(r["layer_lo"]), "mean": r["mean"], "se": r["se"],
                                               "sum_over_layers": float(pt["mean"].sum()),
                                               "half_from": int(half["layer_lo"].min()) if len(half) else None}
        out[int(n)] = entry
    return out
