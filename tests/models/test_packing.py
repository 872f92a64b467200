"""The shared-prefix layout, checked against its definition on random sequences (no model)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from assocmem.models.packing import (attention_allowed, batch_rows, common_prefix_length, layout, pack_rows,
                                     share_prefixes)


def _groups_of_sequences():
    """Groups that look like hijacking prompts: a common prefix, n of N sentences, then a tail."""
    token = st.integers(1, 9)
    group = st.tuples(st.lists(token, min_size=0, max_size=3), st.lists(token, min_size=1, max_size=4),
                      st.integers(0, 4), st.lists(st.lists(token, min_size=0, max_size=4), min_size=1, max_size=6))
    return st.lists(group, min_size=1, max_size=5)


def _build(groups):
    sequences, keys = [], []
    for g, (prefix, sentence, N, tails) in enumerate(groups):
        for k, tail in enumerate(tails):
            n = k % (N + 1)
            seq = tuple(prefix + sentence * n + tail)
            if seq and seq not in sequences:
                sequences.append(seq)
                keys.append(g)
    return sequences, keys


@settings(max_examples=150, deadline=None)
@given(_groups_of_sequences(), st.integers(1, 40), st.integers(1, 200))
def test_every_sequence_sees_exactly_its_own_prefix(groups, row_tokens, batch_tokens):
    sequences, keys = _build(groups)
    if not sequences:
        return
    segments, fallback = share_prefixes(sequences, keys)
    assert not fallback
    covered = sorted(i for s in segments for i in (s.trunk, *(b for b, _ in s.branches)))
    assert covered == list(range(len(sequences)))
    rows = pack_rows([s.length for s in segments], row_tokens)
    assert sorted(i for r in rows for i in r) == list(range(len(segments)))
    row_len = [sum(segments[i].length for i in r) for r in rows]
    assert row_len == sorted(row_len, reverse=True)
    assert all(L <= max(row_tokens, max(s.length for s in segments)) for L in row_len)
    batches = batch_rows(row_len, batch_tokens)
    assert [r for b in batches for r in b] == list(range(len(rows)))
    for b in batches:
        assert len(b) == 1 or len(b) * row_len[b[0]] <= batch_tokens
        packed = layout(sequences, segments, [rows[r] for r in b], pad_id=0)
        allowed = attention_allowed(packed)
        assert allowed.any(axis=-1).all()                       # no empty query row, padding included
        for i, (row, start, attach, own, length) in packed.where.items():
            _, cols = packed.columns(i, np.arange(length))
            assert packed.input_ids[row, cols].tolist() == list(sequences[i])
            assert packed.position_ids[row, cols].tolist() == list(range(length))
            for j, q in enumerate(cols):                        # sees exactly positions 0..j of its sequence
                assert set(np.flatnonzero(allowed[row, q])) == set(cols[: j + 1].tolist())


def test_sliding_window_counts_positions_not_columns():
    sequences = [(1, 2, 3, 4, 5, 6), (1, 2, 3, 7, 8)]
    segments, _ = share_prefixes(sequences, [0, 0])
    packed = layout(sequences, segments, [[0]], pad_id=0)
    allowed = attention_allowed(packed, window=2)
    _, cols = packed.columns(1, range(5))
    q = cols[4]                                              # position 4 of sequence 1 sees positions 3, 4
    assert set(np.flatnonzero(allowed[0, q])) == {cols[3], cols[4]}


def test_a_sequence_that_does_not_share_what_it_should_is_laid_out_alone():
    sequences = [(1, 2, 3, 4), (1, 2, 9)]
    segments, fallback = share_prefixes(sequences, [0, 0], expected=[0, 3])
    assert fallback == [1] and len(segments) == 2 and all(not s.branches for s in segments)
    segments, fallback = share_prefixes(sequences, [0, 0], expected=[0, 2])
    assert fallback == [] and segments[0].branches == ((1, 2),) and segments[0].length == 5


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([1, 2], [1, 2, 4]) == 2
    assert common_prefix_length([], [1]) == 0


def test_rank_shares_cover_every_segment_once_and_balance_tokens():
    """The ranks' shares partition the segments, and their token counts differ by at most the longest segment."""
    import random

    from assocmem.models.packing import Segment, rank_share

    rng = random.Random(3)
    segments = sorted((Segment(trunk=i, length=rng.randint(1, 300), branches=()) for i in range(200)),
                      key=lambda s: (-s.length, s.trunk))
    for world in (1, 2, 3, 8):
        shares = [rank_share(segments, r, world) for r in range(world)]
        assert sorted(s.trunk for share in shares for s in share) == list(range(200))
        tokens = [sum(s.length for s in share) for share in shares]
        assert max(tokens) - min(tokens) <= max(s.length for s in segments)
