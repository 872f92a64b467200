"""Shared-prefix packing: many token sequences laid out in few rows of one forward pass (pure layout).

The hijacking prompts of one (record, scheme) are `[prefix] s_1 … s_n p` for n = 0..N: the prompt for
n repeats the first n sentences of the prompt for N. With causal attention the keys and values of a
position depend only on the tokens up to it, so the N + 1 prompts need not be fed N + 1 times. One
*segment* holds the longest sequence of a group (its *trunk*) and, after it, each other sequence's
tokens beyond its longest common prefix with the trunk (its *branch*):

    trunk   [BOS] s_1 s_2 … s_N p⁽ᴺ⁾          every token attends causally inside the trunk
    branch  p⁽ⁿ⁾                              attends to trunk[:attach] and causally to itself,
                                              position ids continuing from attach

Several segments share a row (best-fit decreasing); a token never sees another segment, and a padding
token sees only itself, so no query row of the mask is empty (fused attention kernels give wrong
numbers for an empty row on CUDA). Positions are a sequence's own (0..len-1), so a read at position j
of a sequence gives the logits that sequence alone gives at j, whatever else shares its row.

Per token, four integers describe the mask (`Rows`): its segment, its branch (0 = trunk), the last
trunk column it may see, and its position id; `attention_allowed` turns them into the boolean mask.
Everything here is numpy on lists of ints: no model, no torch.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Segment:
    """One trunk and the sequences that share its first tokens.

    trunk     index of the longest sequence of the group
    branches  (sequence, attach): it equals trunk[:attach] followed by its own len(seq) - attach tokens
              (attach = len(seq) for a sequence that is a prefix of the trunk: read from the trunk)
    length    tokens it occupies in a row
    """

    trunk: int
    branches: tuple[tuple[int, int], ...]
    length: int


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if len(diff) else n


def share_prefixes(sequences: Sequence[Sequence[int]], groups: Sequence[Hashable] | None = None,
                   expected: Sequence[int] | None = None) -> tuple[list[Segment], list[int]]:
    """Segments of `sequences`: one per group (its longest sequence the trunk), in first-seen order.

    `expected[i]`: how many leading tokens sequence i should share with its group's trunk (the special
    prefix and the n distractor sentences, as the caller tokenised them). A sequence that shares fewer
    (a tokenizer that merges across a sentence boundary, a scheme whose sentences are no common prefix)
    gets a segment of its own, i.e. the one-prompt layout; its index is returned in `fallback`.
    Without `groups` every sequence is its own segment.
    """
    if groups is None:
        groups = range(len(sequences))
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    segments, fallback = [], []
    for idx in members.values():
        trunk = max(idx, key=lambda i: (len(sequences[i]), -i))
        branches, length = [], len(sequences[trunk])
        for i in idx:
            if i == trunk:
                continue
            attach = common_prefix_length(sequences[i], sequences[trunk])
            if expected is not None and attach < expected[i]:
                fallback.append(i)
                segments.append(Segment(i, (), len(sequences[i])))
                continue
            branches.append((i, attach))
            length += len(sequences[i]) - attach
        segments.append(Segment(trunk, tuple(branches), length))
    return segments, sorted(fallback)


def pack_rows(lengths: Sequence[int], row_tokens: int) -> list[list[int]]:
    """Items (by length) into rows of at most max(row_tokens, longest) tokens: best-fit decreasing.

    Returns item indices per row, rows longest first (so an out-of-memory shows on the first batch).
    """
    if not len(lengths):
        return []
    capacity = max(int(row_tokens), max(lengths))
    free: list[tuple[int, int]] = []  # (free tokens, row), sorted
    rows: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        k = bisect.bisect_left(free, (lengths[i], -1))
        if k < len(free):
            room, r = free.pop(k)
        else:
            room, r = capacity, len(rows)
            rows.append([])
        rows[r].append(i)
        bisect.insort(free, (room - lengths[i], r))
    used = [sum(lengths[i] for i in row) for row in rows]
    return [rows[r] for r in sorted(range(len(rows)), key=lambda r: (-used[r], r))]


def batch_rows(row_lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Consecutive rows (longest first) into batches of at most `batch_tokens` = rows × longest row
    (at least one row each)."""
    batches: list[list[int]] = []
    for r in range(len(row_lengths)):
        if batches and (len(batches[-1]) + 1) * row_lengths[batches[-1][0]] <= batch_tokens:
            batches[-1].append(r)
        else:
            batches.append([r])
    return batches


@dataclass
class Rows:
    """A batch of packed rows: every array is (rows, T).

    input_ids, position_ids   what the model is fed (position ids are each sequence's own)
    segment                   segment id (unique in the batch; each padding token has its own, negative)
    branch                    0 for trunk tokens, k ≥ 1 for the k-th branch of its segment
    trunk_end                 the last column of the segment's trunk this token may see
    where                     sequence index -> (row, trunk start column, attach, own start column, length)
    """

    input_ids: np.ndarray
    position_ids: np.ndarray
    segment: np.ndarray
    branch: np.ndarray
    trunk_end: np.ndarray
    where: dict[int, tuple[int, int, int, int, int]]

    def columns(self, seq: int, positions: np.ndarray | Sequence[int]) -> tuple[int, np.ndarray]:
        """(row, columns) holding sequence `seq`'s tokens at `positions` (its own 0-based positions)."""
        row, start, attach, own, _ = self.where[seq]
        pos = np.asarray(positions, dtype=np.int64)
        return row, np.where(pos < attach, start + pos, own + pos - attach)

    def last_columns(self, seq: int, k: int) -> tuple[int, np.ndarray]:
        """(row, columns) of the last k tokens of sequence `seq`."""
        length = self.where[seq][4]
        return self.columns(seq, np.arange(length - k, length))


def layout(sequences: Sequence[Sequence[int]], segments: Sequence[Segment], rows: Sequence[Sequence[int]],
           pad_id: int) -> Rows:
    """The arrays of a batch whose row r holds `segments[i]` for i in rows[r], in that order."""
    T = max(sum(segments[i].length for i in row) for row in rows)
    B = len(rows)
    ids = np.full((B, T), pad_id, dtype=np.int64)
    pos = np.zeros((B, T), dtype=np.int64)
    seg = -1 - np.arange(B * T, dtype=np.int64).reshape(B, T)  # padding: a segment of its own
    branch = np.zeros((B, T), dtype=np.int64)
    trunk_end = np.broadcast_to(np.arange(T, dtype=np.int64), (B, T)).copy()  # padding sees itself
    where: dict[int, tuple[int, int, int, int, int]] = {}
    seg_id = 0
    for r, row in enumerate(rows):
        col = 0
        for s in row:
            segment = segments[s]
            trunk = sequences[segment.trunk]
            n = len(trunk)
            ids[r, col:col + n] = trunk
            pos[r, col:col + n] = np.arange(n)
            seg[r, col:col + segment.length] = seg_id
            start = col
            where[segment.trunk] = (r, start, n, start + n, n)
            col += n
            for b, (i, attach) in enumerate(segment.branches, start=1):
                own = len(sequences[i]) - attach
                ids[r, col:col + own] = sequences[i][attach:]
                pos[r, col:col + own] = np.arange(attach, attach + own)
                branch[r, col:col + own] = b
                trunk_end[r, col:col + own] = start + attach - 1
                where[i] = (r, start, attach, col, len(sequences[i]))
                col += own
            seg_id += 1
    return Rows(ids, pos, seg, branch, trunk_end, where)


def attention_allowed(rows: Rows, window: int | None = None) -> np.ndarray:
    """(B, T, T) bool: may the query at column q see the key at column k (numpy reference of the rule
    the forward builds on the device; `window`: sliding-window attention over position ids)."""
    return allowed_from_arrays(np, rows.segment, rows.branch, rows.trunk_end, rows.position_ids, window)


def mask_rule(seg_q, seg_k, branch_q, branch_k, trunk_end_q, col_q, col_k, pos_q, pos_k, window: int | None = None):
    """May the query see the key: the same segment, and the key is a trunk token at or before the query's
    last visible trunk column, or a token of the query's own branch at or before the query; with `window`,
    the key's position is within the window. Elementwise on broadcastable numpy or torch arrays, or on a
    FlexAttention mask_mod's index tensors: the one statement of the rule."""
    key_trunk = (branch_k == 0) & (col_k <= trunk_end_q)
    own = (branch_q == branch_k) & (branch_q != 0) & (col_k <= col_q)
    allowed = (seg_q == seg_k) & (key_trunk | own)
    if window is not None:
        allowed = allowed & (pos_k > pos_q - window)
    return allowed


def allowed_from_arrays(xp, segment, branch, trunk_end, position_ids, window: int | None = None):
    """The (rows, T, T) boolean mask of `mask_rule` (query rows, key columns) for numpy or torch arrays (`xp`
    is the module)."""
    T = segment.shape[-1]
    col = xp.arange(T, device=segment.device) if xp.__name__ == "torch" else xp.arange(T)
    q, k = (slice(None), slice(None), None), (slice(None), None, slice(None))
    return mask_rule(segment[q], segment[k], branch[q], branch[k], trunk_end[q], col[None, :, None],
                     col[None, None, :], position_ids[q], position_ids[k], window)


@dataclass
class PackingStats:
    """What packing saved: tokens fed vs the tokens of the sequences fed one by one; sequences laid
    out alone because they did not share what they should (`share_prefixes`' fallback)."""

    requests: int = 0
    tokens_fed: int = 0
    tokens_one_by_one: int = 0
    fallback_requests: int = 0
    forwards: int = 0

    def add(self, other: "PackingStats") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict:
        ratio = self.tokens_one_by_one / self.tokens_fed if self.tokens_fed else float("nan")
        return {**{name: getattr(self, name) for name in self.__dataclass_fields__}, "token_saving": round(ratio, 3)}


@dataclass
class BatchPlan:
    """Segments, their rows and the rows' batches, for one rank's share of the sequences."""

    segments: list[Segment]
    rows: list[list[int]]
    batches: list[list[int]]
    stats: PackingStats = field(default_factory=PackingStats)

    def members(self, batch: int) -> list[int]:
        """The sequences of one batch: every segment's trunk and branches, row by row."""
        return [r for row in self.batches[batch] for s in self.rows[row]
                for r in (self.segments[s].trunk, *(b for b, _ in self.segments[s].branches))]


def rank_share(segments: Sequence[Segment], rank: int, world: int) -> list[Segment]:
    """Rank `rank`'s share of `segments` (given longest first) under `world` processes: each segment goes to
    the rank with the fewest tokens so far (ties: the lowest rank), so the ranks' token counts differ by at
    most one segment's length; every rank computes the same assignment, with no communication."""
    import heapq

    if world == 1:
        return list(segments)
    load = [(0, r) for r in range(world)]
    mine = []
    for seg in segments:
        tokens, r = heapq.heappop(load)
        if r == rank:
            mine.append(seg)
        heapq.heappush(load, (tokens + seg.length, r))
    return mine


def plan_batches(sequences: Sequence[Sequence[int]], groups: Sequence[Hashable] | None, expected: Sequence[int] | None,
                 batch_tokens: int, row_tokens: int, shard: tuple[int, int] = (0, 1)) -> BatchPlan:
    """Share prefixes, then this rank's segments (see `rank_share`) into rows and batches."""
    rank, world = shard
    segments, fallback = share_prefixes(sequences, groups, expected)
    segments = rank_share(sorted(segments, key=lambda s: (-s.length, s.trunk)), rank, world)
    rows = pack_rows([s.length for s in segments], row_tokens)
    row_len = [sum(segments[i].length for i in row) for row in rows]
    batches = batch_rows(row_len, batch_tokens)
    mine = [r for s in segments for r in (s.trunk, *(b for b, _ in s.branches))]
    stats = PackingStats(len(mine), sum(row_len), sum(len(sequences[r]) for r in mine),
                         len(set(fallback) & set(mine)), len(batches))
    return BatchPlan(segments, rows, batches, stats)


def iter_layouts(sequences: Sequence[Sequence[int]], plan: BatchPlan, pad_id: int) -> Iterator[tuple[Rows, list[int]]]:
    """(the batch's arrays, its sequences) for every batch of `plan`, in order."""
    for b, batch in enumerate(plan.batches):
        yield layout(sequences, plan.segments, [plan.rows[r] for r in batch], pad_id), plan.members(b)
