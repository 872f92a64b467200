"""CounterFact (Meng et al., 2022) in its official JSON layout, and stratified samples of it.

The official file is a JSON list of records; only these fields are read (everything else, e.g.
`paraphrase_prompts`, `neighborhood_prompts`, target `id`s, is optional and ignored):

    {"case_id": 0,
     "requested_rewrite": {"prompt": "The mother tongue of {} is", "relation_id": "P103",
                           "subject": "Danielle Darrieux",
                           "target_true": {"str": "French"}, "target_new": {"str": "English"}}}

`target_new` is the paper's target_false. Targets carry no leading space; the scorer adds it.
"""

from __future__ import annotations

import json
import math
import os
import random
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from assocmem.config import option
from assocmem.errors import ConfigError, did_you_mean

OFFICIAL_URL = "https://rome.baulab.info/data/dsets/counterfact.json"
OFFICIAL_SHA256 = "d017056125178a13728594e66a801357a8db9ed7973a7425554bb4271de9fc6f"
OFFICIAL_SIZE = 45_108_470
# Where every command looks for CounterFact when --counterfact is not given (see `find_counterfact`).
SHARED_COPY = Path("shared") / "data" / "counterfact_reconstructed.json"
ENV_VAR = "ASSOCMEM_COUNTERFACT"


class BadRecord(ConfigError):
    """One record cannot be used (malformed field, no template, targets that cannot be told apart...).

    Raised as a one-line error, or with `--skip-bad` caught and counted as (case_id, reason), by
    `kind`: malformed | duplicate-case-id | no-template | no-association | association-names-target |
    no-mismatched-target | control-names-target (hijack.controls) | empty-target | equal-targets |
    shared-first-token.
    """

    def __init__(self, case_id: object, reason: str, kind: str = "malformed"):
        super().__init__(f"CounterFact record case_id={case_id}: {reason} (use `skip_bad` to skip such records)")
        self.case_id = case_id
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class Record:
    """One CounterFact fact (ROME's field names; target_false is the official `target_new`)."""

    case_id: int
    relation_id: str       # Wikidata property, e.g. "P190" (twin city)
    prompt: str            # with one "{}" slot for the subject: "{} is a twin city of"
    subject: str           # "Kharkiv"
    target_true: str       # "Cincinnati" (no leading space)
    target_false: str      # "Baghdad"
    # Another record's target of the same relation, named by the mismatched control schemes (not a CounterFact
    # field: hijack.controls chooses it from the file; None until then)
    target_mismatched: str | None = None

    @property
    def filled_prompt(self) -> str:
        """The prompt with the subject in its slot: "Kharkiv is a twin city of"."""
        return self.prompt.replace("{}", self.subject, 1)


@dataclass
class LoadResult:
    records: list[Record]
    skipped: list[tuple[object, str, str]]   # (case_id, reason, kind) of records left out with skip_bad
    path: Path | None = None            # the file actually read


def load_counterfact(path: str | Path | None = None, skip_bad: bool = False) -> LoadResult:
    """Read CounterFact from `path` (None: the official file, downloaded once into the user cache).

    A malformed record raises a one-line ConfigError naming its case_id and field, unless
    `skip_bad`, where it is left out and reported in `skipped`.
    """
    path = counterfact_path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"counterfact={str(path)!r} is not valid JSON ({err})", field="counterfact") from None
    if not isinstance(raw, list):
        raise ConfigError(f"counterfact={str(path)!r}: expected a JSON list of records, got {type(raw).__name__}",
                          field="counterfact")
    records, skipped, seen = [], [], set()
    for i, item in enumerate(raw):
        try:
            rec = parse_record(item, index=i)
            if rec.case_id in seen:
                raise BadRecord(rec.case_id, "duplicate case_id", "duplicate-case-id")
            seen.add(rec.case_id)
            records.append(rec)
        except BadRecord as bad:
            if not skip_bad:
                raise
            skipped.append((bad.case_id, bad.reason, bad.kind))
    return LoadResult(records=records, skipped=skipped, path=path)


def find_counterfact(path: str | Path | None = None) -> Path | None:
    """The CounterFact file a command reads, without downloading anything; the same lookup for every command:

    1. `path` (--counterfact), which must exist;
    2. ../shared/data/counterfact_reconstructed.json beside the checkout (or beside the working directory);
    3. $ASSOCMEM_COUNTERFACT, which must exist when set;
    4. None: the official file, downloaded once (`counterfact_path`).
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"counterfact={str(path)!r} is invalid: no such file", field="counterfact")
        return path.resolve()
    checkout = Path(__file__).resolve().parents[3]      # src/assocmem/hijack/counterfact.py -> the checkout
    for base in (checkout, Path.cwd()):
        if (base.parent / SHARED_COPY).is_file():
            return (base.parent / SHARED_COPY).resolve()
    if os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR]).expanduser()
        if not path.is_file():
            raise ConfigError(f"${ENV_VAR}={str(path)!r} is invalid: no such file (unset it, or pass `counterfact`)")
        return path.resolve()
    return None


def counterfact_path(path: str | Path | None = None) -> Path:
    """The file a run reads: `find_counterfact`'s, else the official file downloaded once into the user cache."""
    return find_counterfact(path) or download_counterfact()


def parse_record(item: object, index: int = 0) -> Record:
    """One official-layout record → Record, or BadRecord naming the field."""
    if not isinstance(item, dict):
        raise BadRecord(f"?(item {index})", f"expected an object, got {type(item).__name__}")
    case_id = item.get("case_id")
    if not isinstance(case_id, int) or isinstance(case_id, bool):
        raise BadRecord(f"?(item {index})", f"field case_id missing or not an integer ({case_id!r})")
    rw = item.get("requested_rewrite")
    if not isinstance(rw, dict):
        raise BadRecord(case_id, "field requested_rewrite missing or not an object")

    def text(obj: dict, key: str, where: str) -> str:
        value = obj.get(key)
        if not isinstance(value, str) or not value.strip():
            raise BadRecord(case_id, f"field {where} missing or empty")
        return value

    prompt = text(rw, "prompt", "requested_rewrite.prompt")
    if prompt.count("{}") != 1:
        raise BadRecord(case_id, f"field requested_rewrite.prompt needs exactly one '{{}}' subject slot: {prompt!r}")
    targets = {}
    for key in ("target_true", "target_new"):
        t = rw.get(key)
        if not isinstance(t, dict):
            raise BadRecord(case_id, f"field requested_rewrite.{key} missing or not an object")
        targets[key] = text(t, "str", f"requested_rewrite.{key}.str").strip()
    return Record(
        case_id=case_id,
        relation_id=text(rw, "relation_id", "requested_rewrite.relation_id").strip(),
        prompt=prompt,
        subject=text(rw, "subject", "requested_rewrite.subject").strip(),
        target_true=targets["target_true"],
        target_false=targets["target_new"],
    )


def download_counterfact(url: str = OFFICIAL_URL, sha256: str = OFFICIAL_SHA256, dest: Path | None = None) -> Path:
    """The official file in the user cache, downloaded once and checked against its sha256."""
    from assocmem.io import atomic_write
    from assocmem.models.llm import cache_root
    from assocmem.provenance import sha256_file

    dest = dest or cache_root() / "counterfact.json"
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    try:
        with atomic_write(dest) as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
            got = sha256_file(tmp)
            if got != sha256:
                raise ConfigError(f"downloaded CounterFact from {url} has sha256 {got}, expected {sha256}; "
                                  "pass `counterfact` PATH to a checked local copy")
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(f"could not download CounterFact from {url} ({reason}); offline? "
                          "pass `counterfact` PATH to a local copy of counterfact.json") from None
    return dest


def select_records(
    records: Sequence[Record],
    relations: Iterable[str] | None = None,
    limit: int | None = None,
    per_relation: int | None = None,
    seed: int = 0,
    spread: int | None = None,
) -> list[Record]:
    """A deterministic selection, in case_id order.

    relations: keep only these relation ids (an id absent from the data → ConfigError, did you mean).
    per_relation: a random sample of at most this many records of each relation (stratified; the
    sample of one relation depends only on `seed` and that relation's records).
    spread: about this many records in all, spread evenly over the relations: each relation's sample
    is cut to ceil(spread / #relations), then records are taken round-robin across the relations
    (all of a smaller relation) until `spread` are chosen.
    limit: then keep the first `limit` records in case_id order.
    """
    by_relation: dict[str, list[Record]] = defaultdict(list)
    for rec in records:
        by_relation[rec.relation_id].append(rec)
    if relations:
        wanted = list(dict.fromkeys(relations))
        for rel in wanted:
            if rel not in by_relation:
                close = did_you_mean(rel, sorted(by_relation))
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(f"relations: relation {rel!r} has no records in this CounterFact file{hint}",
                                  field="relations")
        by_relation = {rel: by_relation[rel] for rel in wanted}
    if spread is not None:
        quota = math.ceil(spread / max(len(by_relation), 1))
        per_relation = quota if per_relation is None else min(per_relation, quota)
    picked: dict[str, list[Record]] = {}
    for rel in sorted(by_relation):
        group = sorted(by_relation[rel], key=lambda r: r.case_id)
        if per_relation is not None and len(group) > per_relation:
            rng = random.Random(f"{seed}:{rel}")  # string seeds hash stably across runs
            group = sorted(rng.sample(group, per_relation), key=lambda r: r.case_id)
        picked[rel] = group
    if spread is None:
        chosen = [r for group in picked.values() for r in group]
    else:
        chosen, depth = [], 0
        while len(chosen) < spread and any(depth < len(g) for g in picked.values()):
            chosen += [g[depth] for g in picked.values() if depth < len(g)]
            depth += 1
        chosen = chosen[:spread]
    chosen.sort(key=lambda r: r.case_id)
    return chosen[:limit] if limit is not None else chosen


@dataclass(frozen=True)
class CounterFactSelection:
    """Which CounterFact file, and which of its records (select_records)."""

    counterfact: str | None = option(None, "Local CounterFact JSON (official layout); default: "
                                           "../shared/data/counterfact_reconstructed.json beside the checkout if "
                                           "present, else $ASSOCMEM_COUNTERFACT if set, else the official file, "
                                           "downloaded once (offline: pass the path).")
    relations: tuple[str, ...] | None = option(None, "Only these relation ids, e.g. --relations P190 P103.")
    per_relation: int | None = option(None, "Stratified sample: at most this many records per relation.")
    records: int | None = option(None, "About this many records, spread evenly over the relations (round-robin).")
    limit: int | None = option(None, "Then the first LIMIT records (case_id order).")
    seed: int = option(0, "Seed of the per-relation sample.")
    skip_bad: bool = option(False, "Skip and count bad records (no template, targets that cannot be told apart...) "
                                   "instead of stopping.")

    def __post_init__(self) -> None:
        from assocmem.config import as_tuple, check_int_range

        if self.relations is not None:
            object.__setattr__(self, "relations", as_tuple("relations", self.relations))
        for name in ("per_relation", "records", "limit"):
            if getattr(self, name) is not None:
                check_int_range(name, getattr(self, name), 1)
        check_int_range("seed", self.seed, 0)
        if self.counterfact is not None and not Path(self.counterfact).expanduser().is_file():
            raise ConfigError(f"counterfact={self.counterfact!r} is invalid: no such file", field="counterfact")

    @property
    def path(self) -> Path:
        """The file this selection reads (`counterfact_path`: found, or downloaded once)."""
        return counterfact_path(self.counterfact)

    def load(self) -> tuple[LoadResult, list[Record]]:
        """(the loaded file, the selected records)."""
        loaded = load_counterfact(self.counterfact, skip_bad=self.skip_bad)
        return loaded, select_records(loaded.records, self.relations, self.limit, self.per_relation, self.seed,
                                      self.records)
