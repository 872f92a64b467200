"""Control distractors: sentences as long as a hijacking scheme's that do not name the record's false target.

A hijacking sentence ("Do not think of Baghdad.") could lower P(true) because any extra sentence disturbs
recall, or because it names an entity of the right type, rather than because it primes *this* false
target. Two controls separate those (schemes.py registers them, each beside the scheme it controls):

    mismatched   the same sentence naming another record's target of the same relation, neither this
                 record's true nor its false target ("Do not think of Lyon.")
    neutral      a sentence of about the same length that names no target ("This is a plain sentence.")

"Contain" (the rule every control sentence is held to, `names_target`): a target occurs in a text when
it appears as a whole word or phrase, case-insensitively: "Paris" occurs in "paris is" and in "New
Paris", not in "Parisian". A control sentence that contains either of its record's targets is refused
for that record (`BadRecord` kind "control-names-target"), never scored.

The mismatched target of a record is chosen deterministically from the CounterFact file (not from the
sample), so a record's control is the same in every run: the distinct targets (true and false) of the
record's relation, sorted; start at a position fixed by the case_id and take the first that
- neither contains nor is contained in either of the record's targets (the rule above, both ways), and
- does not start with the same word as either target (in first-token mode "New York" would prime the
  first token of the false target "New Delhi": a proxy, tokenizer-free, for "another first token").
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Sequence

from assocmem.hijack.counterfact import CounterFactSelection, LoadResult, Record

# Knuth's multiplicative hash: spreads consecutive case_ids over the pool (a plain case_id % len would give
# neighbouring records neighbouring controls).
_SPREAD = 2654435761


def mentions_word(text: str, word: str) -> bool:
    """Does `word` occur in `text` as a whole word or phrase, ignoring case?"""
    return re.search(rf"(?<!\w){re.escape(word.strip())}(?!\w)", text, flags=re.IGNORECASE) is not None


def names_target(text: str, record: Record) -> bool:
    """Does `text` contain the record's true or false target (`mentions_word`)?"""
    return mentions_word(text, record.target_true) or mentions_word(text, record.target_false)


def _first_word(text: str) -> str:
    match = re.match(r"\W*(\w+)", text)
    return match.group(1).casefold() if match else text.casefold()


def _usable(candidate: str, record: Record) -> bool:
    targets = (record.target_true, record.target_false)
    return not any(mentions_word(candidate, t) or mentions_word(t, candidate) or
                   _first_word(candidate) == _first_word(t) for t in targets)


def mismatched_target(record: Record, pool: Sequence[str]) -> str | None:
    """The record's mismatched target from `pool` (its relation's distinct targets, sorted), or None when
    no target of the pool is usable."""
    if not pool:
        return None
    start = (record.case_id * _SPREAD) % len(pool)
    for k in range(len(pool)):
        candidate = pool[(start + k) % len(pool)]
        if _usable(candidate, record):
            return candidate
    return None


def relation_pools(records: Sequence[Record]) -> dict[str, list[str]]:
    """relation_id → the sorted distinct targets (true and false) of its records."""
    pools: dict[str, set[str]] = defaultdict(set)
    for r in records:
        pools[r.relation_id].update((r.target_true, r.target_false))
    return {rel: sorted(targets) for rel, targets in pools.items()}


def with_mismatched_targets(records: Sequence[Record], file_records: Sequence[Record]) -> list[Record]:
    """`records` with `target_mismatched` set, chosen from the targets of `file_records` (the whole
    CounterFact file the records come from)."""
    pools = relation_pools(file_records)
    return [dataclasses.replace(r, target_mismatched=mismatched_target(r, pools.get(r.relation_id, [])))
            for r in records]


def load_selection(selection: CounterFactSelection) -> tuple[LoadResult, list[Record]]:
    """`selection.load()` with every selected record's mismatched target, chosen from the whole file (not from
    the sample): how every command that scores or traces a selection reads it."""
    loaded, chosen = selection.load()
    return loaded, with_mismatched_targets(chosen, loaded.records)
