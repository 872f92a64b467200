"""The hijacking benchmark: CounterFact records × schemes × n = 0..max_n, scored by one causal LM.

    result = run_hijack(HijackConfig.of(schemes=("not-think", "relation"), max_n=5, per_relation=5), "runs/h")
    result.rows, result.rates, result.summary          # a HijackResult; HijackResult.load("runs/h") reads it back
    result = score_hijack(lm, config)                   # the same rows in memory: no folder, no chunks

Run folder (ROME `evaluate.py` style: parameters, per-chunk outputs that make resume free):

    config.json           the resolved HijackConfig and the fingerprints of what the rows are computed from
                          (data, model, code: provenance.py), written once the run's input is checked
    chunks/chunk-00000.parquet ...   rows of `chunk_size` records each, written atomically when done;
                          a re-run with the same config skips them (an interrupted run loses at most
                          the two chunks in flight: one on the device, one being written)
    rows.parquet          all rows: case_id, relation_id, subject, target_true, target_false,
                          target_mismatched (the mismatched controls' target), scheme, n, mode,
                          logp_true, logp_false, hijacked, true_preferred, rank_true, rank_false (rank of
                          each target's first token among the next tokens, 1 = top-1, in every mode),
                          known, known_p50 (the record's n = 0 status under metrics.KNOWN_RULES "top1"
                          and "p50"), [logp_true:<m>, logp_false:<m>, hijacked:<m> per extra mode m],
                          prompt (the exact string scored, before " " + target)
    summary.json          shares with 95% CIs per scheme × n and per relation × scheme × n, each
                          scheme's direction, skipped records with reasons
    rates.png             share vs n per scheme (Fig. 2 style)
    timing.json           where this invocation's time went (checks, loading, the first forward, the scoring
                          loop against the engine's own share of it, writing); `RunTiming`
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from assocmem.config import (Composed, as_tuple, check_int_range, flat_dict, flat_dict_of, option,
                             read_config, rebuild, to_dict)
from assocmem.errors import ConfigError
from assocmem.hijack import distributed as D
from assocmem.hijack.counterfact import BadRecord, CounterFactSelection, Record
from assocmem.hijack.controls import load_selection, with_mismatched_targets
from assocmem.hijack.metrics import KNOWN_RULES, decide, directions, known, rates
from assocmem.hijack.schemes import Scheme, get_scheme, prompt_parts, scheme_names, sentence
from assocmem.hijack.scoring import (Batching, QueuedPlan, ScoringConfig, collect, collect_ranks, encode_pairs,
                                     plan_requests, queue_plan)
from assocmem.io import read_json, write_json, write_parquet
from assocmem.models.packing import PackingStats
from assocmem.models.spec import ModelSpec
from assocmem.models.llm import LoadedLM

# Fields that may change between a run and its resumption (they do not change what is computed). The CounterFact
# path may be spelt another way, or found without --counterfact: the file is compared by its sha256 (fingerprints).
_RESUMABLE = ("batch_tokens", "row_tokens", "device", "device_map", "max_memory", "counterfact",
              "batch_size")  # batch_size: older folders


@dataclass(frozen=True)
class HijackConfig(Composed):
    """Everything `assocmem hijack` runs: a model, a CounterFact selection, a scoring rule, the schemes
    and n; composed of the configs those concepts own, each checked once at construction."""

    lm: ModelSpec = option(factory=ModelSpec)
    data: CounterFactSelection = option(factory=CounterFactSelection)
    scoring: ScoringConfig = option(factory=ScoringConfig)
    batching: Batching = option(factory=Batching)
    schemes: tuple[str, ...] = option(("not-think", "relation"), "Schemes, e.g. --schemes not-think relation reverse "
                                                                 "(see --list-schemes).")
    max_n: int = option(10, "Prepend n = 0..max-n sentences.")
    template: str | None = option(None, 'Your own sentence, e.g. "{subject} is not related to {target_false}." '
                                        '(scheme "template").')
    chunk_size: int = option(256, "Records per resumable chunk.")

    def __post_init__(self):
        schemes = as_tuple("schemes", self.schemes)
        if self.template and "template" not in schemes:
            schemes += ("template",)
        object.__setattr__(self, "schemes", scheme_names(schemes, self.template))
        check_int_range("max_n", self.max_n, 0)
        check_int_range("chunk_size", self.chunk_size, 1)

    @property
    def scheme_objects(self) -> list[Scheme]:
        return [get_scheme(name, self.template) for name in self.schemes]


def config_from_dict(raw: dict, **overrides) -> HijackConfig:
    """A HijackConfig from a run folder's config.json, nested (this version) or flat (older folders);
    fields it does not know (an older folder's batch_size, the fingerprints) are left out. `overrides`
    replace leaves, e.g. device="cpu" to check a GPU run here."""
    return rebuild(HijackConfig, raw, **overrides)


@dataclass
class WorkItem:
    record: Record
    scheme: str
    n: int
    prompt: str = field(repr=False)
    shared: str = field(default="", repr=False)  # the prompt's n distractor sentences (shared with larger n)


def work_items(pairs, max_n: int) -> list[WorkItem]:
    """Every (record, scheme) pair at n = 0..max_n, in that order."""
    items = []
    for rec, scheme in pairs:
        for n in range(max_n + 1):
            shared, prompt = prompt_parts(rec, scheme, n)
            items.append(WorkItem(rec, scheme.name, n, prompt, shared))
    return items


def _chunk_items(records: list[Record], pairs, config: HijackConfig) -> list[list[WorkItem]]:
    """The work items of `pairs` (`work_items`) per chunk of `config.chunk_size` consecutive records (a chunk
    whose records have no valid pair is empty)."""
    chunk_of = {r.case_id: i // config.chunk_size for i, r in enumerate(records)}
    out: list[list[WorkItem]] = [[] for _ in range((len(records) + config.chunk_size - 1) // config.chunk_size)]
    for item in work_items(pairs, config.max_n):
        out[chunk_of[item.record.case_id]].append(item)
    return out


def plan_items(tokenizer, items: list[WorkItem], mode: str):
    """The scoring plan of `items`: one packing group per (record, scheme), sharing its distractors."""
    return plan_requests(tokenizer, [it.prompt for it in items], [it.record.target_true for it in items],
                         [it.record.target_false for it in items], mode,
                         groups=[(it.record.case_id, it.scheme) for it in items], shared=[it.shared for it in items])


def run_hijack(config: HijackConfig, out_dir: str | Path, progress: bool = True, lm: LoadedLM | None = None,
               plot: bool = True) -> HijackResult:
    """Score every (record, scheme, n) of `config` into the run folder `out_dir`, resuming from finished
    chunks; returns the run's HijackResult.

    `lm` (a LoadedLM, or what `models.llm.as_lm` takes) skips loading `config.lm`: it must be the model
    `config.lm` names (loaded from that spec, in its dtype if one is set), else the run is refused; a model
    built in memory (no spec) is fingerprinted by its weights. `plot=False` skips rates.png. A run whose every
    chunk is finished returns its result without loading the model (its rows read from the folder when asked).
    Under torchrun every rank calls this with the same arguments; each scores a share of every chunk, rank 0
    writes the files, and every rank returns the summary (the rows on rank 0).
    """
    from assocmem.models.llm import as_lm

    ctx = D.init_from_env(use_cuda=_wants_cuda(config))
    try:
        summary, rows = _run(config, Path(out_dir), progress and ctx.is_main, None if lm is None else as_lm(lm), ctx,
                             plot)
        return HijackResult(rows if ctx.is_main else None, summary, config, Path(out_dir) if ctx.is_main else None)
    finally:
        D.shutdown(ctx)


@dataclass
class RunTiming:
    """Seconds of one `run_hijack` invocation, written as timing.json. The scoring loop runs from the first
    forward to the last chunk written; `engine_s` is the part of it the host spends in the engine (laying
    out and queuing a chunk's forwards, then waiting to read its results back), so `engine_s / loop_s` is
    the loop's rate as a share of the engine's own rate in the same run: what remains is the host's other
    work (plans, rows, files)."""

    process_to_run_s: float | None = None     # interpreter start to run_hijack (imports), None off Linux
    checks_s: float = 0.0                     # fingerprints of data, model and code, the folder's state
    load_s: float = 0.0                       # the model's weights onto the device
    targets_s: float = 0.0                    # CounterFact, target checks, work items, finished chunks
    first_plan_s: float = 0.0                 # waiting for the first chunk's plan
    process_to_first_forward_s: float | None = None
    loop_s: float = 0.0
    engine_s: float = 0.0
    finish_s: float = 0.0                     # rows.parquet, summary.json, rates.png
    prompts_scored: int = 0
    chunks_scored: int = 0
    chunks_resumed: int = 0

    def as_dict(self) -> dict:
        out = asdict(self)
        if self.loop_s > 0:
            out |= {"loop_prompts_per_s": self.prompts_scored / self.loop_s,
                    "engine_prompts_per_s": self.prompts_scored / self.engine_s if self.engine_s else None,
                    "loop_share_of_engine_rate": self.engine_s / self.loop_s}
        return out


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc), None where that cannot be read."""
    import os

    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])   # field 22, starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _run(config: HijackConfig, out: Path, progress: bool, lm: LoadedLM, ctx: D.DistContext,
         plot: bool) -> tuple[dict, pd.DataFrame | None]:
    timing, age, mark = RunTiming(), process_age(), time.perf_counter()
    timing.process_to_run_s, t0 = age, mark

    def lap() -> float:
        nonlocal mark
        now, before = time.perf_counter(), mark
        mark = now
        return now - before

    error, prints = (_check_out_dir(config, out, lm) if ctx.is_main else (None, None))
    error, prints = D.broadcast_object(ctx, (error, prints))
    if error:
        raise ConfigError(error, field="out" if error.startswith("out=") else None)
    finished = _finished_summary(config, out, progress, plot) if ctx.is_main else None
    finished = D.broadcast_object(ctx, finished)
    if finished is not None:
        return finished, None

    timing.checks_s = lap()
    records, skipped = selected_records(config)
    timing.targets_s = lap()
    if lm is None:
        lm = config.lm.load(device=D.device_for_rank(config.lm.device, ctx))
        timing.load_s = lap()
    if ctx.is_main:
        error = _check_loaded(out, prints, lm)
    error = D.broadcast_object(ctx, error if ctx.is_main else None)
    if error:
        raise ConfigError(error, field="out" if error.startswith("out=") else None)
    records = check_targets(lm.tokenizer, records, config.scoring.mode, config.data.skip_bad, skipped)
    pairs = _valid_pairs(records, config.scheme_objects, config.data.skip_bad, skipped)
    if ctx.is_main:  # every check passed: only now does the folder get its config
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {**to_dict(config), "fingerprints": prints})

    chunk_dir = out / "chunks"
    items_by_chunk = _chunk_items(records, pairs, config)
    n_chunks = len(items_by_chunk)
    recomputed: list[str] = []
    if ctx.is_main:
        pending = [c for c in range(n_chunks) if not _chunk_ok(chunk_dir, c, len(items_by_chunk[c]), recomputed)]
    else:
        pending = None
    pending = D.broadcast_object(ctx, pending)
    timing.chunks_resumed = n_chunks - len(pending)
    # A chunk whose records have no valid pair (e.g. one scheme, its records skipped) is finished at once:
    # there is nothing to tokenise or score, and an empty plan is not something the planner takes.
    for c in [c for c in pending if not items_by_chunk[c]]:
        if ctx.is_main:
            write_json(_chunk_path(chunk_dir, c).with_suffix(".engine.json"), PackingStats().as_dict())
            write_parquet(_chunk_path(chunk_dir, c), _empty_rows())
        pending.remove(c)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        done = sorted(set(range(n_chunks)) - set(pending))
        if done:
            print(f"resuming {out}: {len(done)} of {n_chunks} chunks ({sum(len(items_by_chunk[c]) for c in done)} "
                  f"prompts) finished earlier; scoring the other {len(pending)}", file=sys.stderr)
        bar = tqdm(total=sum(len(items_by_chunk[c]) for c in pending), desc=f"hijack {lm.name}", unit="prompt")
    timing.targets_s += lap()

    def write(c: int, queued, counter) -> None:
        """Read chunk c's results back, make its rows and write its files."""
        rows, stats = _finish_chunk(items_by_chunk[c], *queued, config, ctx, timing)
        _kill_point("scored")
        if ctx.is_main:  # the stats first: the parquet marks the chunk as done
            write_json(_chunk_path(chunk_dir, c).with_suffix(".engine.json"), stats.as_dict())
            _kill_point("stats-written")
            write_parquet(_chunk_path(chunk_dir, c), rows)
            _kill_point("written")
        if counter is not None:
            counter.finish()
        timing.chunks_scored += 1
        timing.prompts_scored += len(items_by_chunk[c])

    # Chunk c's forwards are queued before chunk c - 1 is read back and written, so the device works
    # through c while the host makes c - 1's rows and files and lays out c + 1 (an interruption loses at
    # most the two chunks in flight).
    previous = None
    for c, plan in _chunk_plans(lm.tokenizer, items_by_chunk, pending, config.scoring.planning_mode,
                                _plan_in_background(lm)):
        if previous is None:
            timing.first_plan_s = lap()
            timing.process_to_first_forward_s = None if age is None else age + (mark - t0)
        counter = _PromptCounter(bar, len(items_by_chunk[c]), len(plan.requests) // ctx.world_size) if bar else None
        queued = _queue_chunk(lm, plan, config, ctx, counter, timing)
        if previous is not None:
            write(*previous)
        previous = (c, queued, counter)
    if previous is not None:
        write(*previous)
    if bar is not None:
        bar.close()
    timing.loop_s = lap() if timing.chunks_scored else 0.0

    summary, rows = None, None
    if ctx.is_main:
        frames = [pd.read_parquet(_chunk_path(chunk_dir, c)) for c in range(n_chunks) if items_by_chunk[c]]
        rows = pd.concat(frames, ignore_index=True) if frames else _empty_rows()
        write_parquet(out / "rows.parquet", rows)
        summary = summarise(rows, config, lm.name, len(records), skipped)
        summary["counterfact"] = prints["counterfact"]["path"]
        summary |= _model_facts(lm, ctx.world_size)
        summary["engine"] = _engine_stats(chunk_dir, n_chunks)
        summary["fingerprints"] = prints
        summary["recomputed_chunks"] = recomputed
        write_json(out / "summary.json", summary)
        if plot and len(rows):
            _plot(summary, out)
        timing.finish_s = lap()
        write_json(out / "timing.json", timing.as_dict())
    return D.broadcast_object(ctx, summary), rows


class HijackResult:
    """What a hijacking run gives: `rows` (long: one row per record × scheme × n, the columns of the module
    docstring), its `summary` (summary.json's content) and its `config` (read back from a folder: the raw dict
    where it names a file or model missing here); `rates` and `per_relation` are the
    summary's share tables as DataFrames. A result of `run_hijack` or `load` keeps its `folder` and reads its
    rows from it only when asked (a finished run returns without reading them)."""

    def __init__(self, rows: pd.DataFrame | None, summary: dict, config: HijackConfig, folder: Path | None = None):
        self._rows, self.summary, self.config, self.folder = rows, summary, config, folder

    @property
    def rows(self) -> pd.DataFrame | None:
        if self._rows is None and self.folder is not None:
            self._rows = pd.read_parquet(self.folder / "rows.parquet")
        return self._rows

    @property
    def rates(self) -> pd.DataFrame:
        """Per scheme × n: records, both shares with their 95% Wilson intervals (metrics.rates)."""
        return pd.DataFrame(self.summary["rates"])

    @property
    def per_relation(self) -> pd.DataFrame:
        return pd.DataFrame(self.summary["per_relation"])

    @property
    def model(self) -> str:
        return self.summary["model"]

    def __repr__(self) -> str:
        where = f", folder={str(self.folder)!r}" if self.folder else ""
        config = self.summary["config"]
        return (f"HijackResult(model={self.model!r}, records={self.summary['records']}, schemes={config['schemes']}, "
                f"max_n={config['max_n']}{where})")

    def save(self, folder: str | Path) -> Path:
        """rows.parquet, summary.json and config.json (with the run's fingerprints, where it has them)."""
        folder = Path(folder)
        write_parquet(folder / "rows.parquet", self.rows)
        write_json(folder / "summary.json", self.summary)
        prints = self.summary.get("fingerprints")
        write_json(folder / "config.json", {**to_dict(self.config), **({"fingerprints": prints} if prints else {})})
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "HijackResult":
        """A finished run folder (`assocmem hijack --out`, a hijacking experiment's per-model folder, `save`)."""
        folder = Path(folder)
        missing = [n for n in ("config.json", "summary.json", "rows.parquet") if not (folder / n).is_file()]
        if missing:
            raise ConfigError(f"folder={str(folder)!r} is invalid: allowed a finished hijacking run folder (it has no "
                              f"{', '.join(missing)})", field="folder")
        return cls(None, read_json(folder / "summary.json"),
                   read_config(HijackConfig, read_json(folder / "config.json")), folder)


def selected_records(config: HijackConfig, records: Sequence[Record] | None = None) -> tuple[list[Record], list[dict]]:
    """(the records `config` scores, those its file left out as skipped entries): `config.data`'s selection, or
    `records` as given; each with its mismatched controls' target, chosen from the whole file (`load_selection`)
    or from `records`."""
    if records is not None:
        records = list(records)
        return with_mismatched_targets(records, records), []
    loaded, chosen = load_selection(config.data)
    skipped = [{"case_id": c, "scheme": None, "reason": r, "kind": k} for c, r, k in _kinds(loaded.skipped)]
    return chosen, skipped


def score_hijack(lm: LoadedLM, config: HijackConfig, records: Sequence[Record] | None = None,
                 progress: bool = False) -> HijackResult:
    """The rows and summary of `config` (its schemes, n, scoring and batching; its model spec is not read) scored
    by `lm` in memory: no folder, no chunk files, no resume; the rows are those `run_hijack` writes, in its order.
    `records`: your own CounterFact records (hijack.counterfact.Record) instead of `config.data`'s selection."""
    from assocmem.models.llm import as_lm

    lm = as_lm(lm)
    given = records is not None
    records, skipped = selected_records(config, records)
    records = check_targets(lm.tokenizer, records, config.scoring.mode, config.data.skip_bad, skipped)
    pairs = _valid_pairs(records, config.scheme_objects, config.data.skip_bad, skipped)
    by_chunk = [items for items in _chunk_items(records, pairs, config) if items]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(map(len, by_chunk)), desc=f"hijack {lm.name}", unit="prompt")
    frames, stats = [], PackingStats()
    for items in by_chunk:
        plan = plan_items(lm.tokenizer, items, config.scoring.planning_mode)
        counter = _PromptCounter(bar, len(items), len(plan.requests)) if bar else None
        rows, chunk_stats = _score_chunk(lm, items, plan, config, D.DistContext(), counter)
        frames.append(rows)
        stats.add(chunk_stats)
        if counter is not None:
            counter.finish()
    if bar is not None:
        bar.close()
    rows = pd.concat(frames, ignore_index=True) if frames else _empty_rows()
    summary = summarise(rows, config, lm.name, len(records), skipped)
    summary["counterfact"] = "records given" if given else str(config.data.path)
    summary |= _model_facts(lm, 1)
    summary["engine"] = stats.as_dict()
    return HijackResult(rows, summary, config)


def _model_facts(lm: LoadedLM, processes: int) -> dict:
    """Where the model ran and its size, for the summary."""
    return {"placement": {"processes": processes, "model_devices": model_devices(lm.model),
                          "dtype": str(lm.dtype).removeprefix("torch.")},
            "parameters": sum(p.numel() for p in lm.model.parameters())}


def _plot(summary: dict, out: Path) -> None:
    from assocmem.hijack.plots import plot_rates

    plot_rates(pd.DataFrame(summary["rates"]), out / "rates.png",
               title=f"{summary['model']}, {summary['mode']}, {summary['records']} records")


class _PromptCounter:
    """Advances the run's progress bar, whose total is a fixed count of prompts, while one chunk is scored.

    The scorer reports requests (one request can serve several prompts: the n = 0 prompt of every scheme
    of a record is one request); they count here as their share of the chunk's prompts, and the chunk's
    end completes its count, so the bar ends exactly at its total."""

    def __init__(self, bar, prompts: int, requests: int):
        self.bar, self.prompts, self.requests = bar, prompts, max(requests, 1)
        self.seen = self.shown = 0

    def update(self, requests: int) -> None:
        self.seen += requests
        self._show(min(self.prompts, self.prompts * self.seen // self.requests))

    def finish(self) -> None:
        self._show(self.prompts)

    def _show(self, count: int) -> None:
        if count > self.shown:
            self.bar.update(count - self.shown)
            self.shown = count


_KILL_COUNTS: dict[str, int] = {}


def _kill_point(stage: str) -> None:
    """A test hook for interruption at a known moment: with $ASSOCMEM_TEST_KILL_AT="<stage>:<k>" the
    process SIGKILLs itself the k-th time it reaches `stage` ("scored": a chunk scored, nothing of it
    written; "stats-written": its packing counts written, its rows not; "written": the chunk done).
    A test that killed the run from outside after a delay raced the run on a fast machine."""
    import os

    wanted = os.environ.get("ASSOCMEM_TEST_KILL_AT")
    if not wanted or wanted.rpartition(":")[0] != stage:
        return
    _KILL_COUNTS[stage] = _KILL_COUNTS.get(stage, 0) + 1
    if _KILL_COUNTS[stage] == int(wanted.rpartition(":")[2]):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _kinds(skipped: list[tuple]) -> list[tuple]:
    """(case_id, reason, kind) from load_counterfact's (case_id, reason[, kind]) entries."""
    return [(s[0], s[1], s[2] if len(s) > 2 else "malformed") for s in skipped]


def model_devices(model) -> list[str]:
    """Devices holding the model's weights: several when --device-map split it (accelerate's hf_device_map)."""
    placed = getattr(model, "hf_device_map", None)
    if placed:
        return sorted({f"cuda:{d}" if isinstance(d, int) else str(d) for d in placed.values()})
    return sorted({str(p.device) for p in model.parameters()})


def _engine_stats(chunk_dir: Path, n_chunks: int) -> dict:
    """The packing counts of every chunk (scored now or in an earlier, resumed invocation), summed."""
    total = PackingStats()
    for c in range(n_chunks):
        path = _chunk_path(chunk_dir, c).with_suffix(".engine.json")
        if path.is_file():
            d = read_json(path)
            total.add(PackingStats(**{k: d[k] for k in PackingStats.__dataclass_fields__}))
    return total.as_dict()


def _plan_in_background(lm) -> int:
    """How many worker processes plan chunks ahead of the forwards: none with the model on the CPU (the
    forward has every core already, and planning beside it only contends: measured, no gain); on a GPU
    all but two of the host's cores, at most 8. Tokenising is most of a GPU run's CPU time (stubbed
    forward, one core: about 4,700 prompts/s, while one H200 scores the bundled Gemma at 8,237 prompts/s
    in float32), so one planner would keep the GPU waiting."""
    import os

    if lm.device.type == "cpu":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 2))


_PLANNER: dict = {}


def _start_planner(tokenizer_file: str) -> None:
    """A planning process's initializer: its own copy of the tokenizer (unpickled from a file, not sent
    through the pipe that starts the process: the parent would block on each worker's imports, 4 s each
    on the GPU machine), single-threaded (the processes are the parallelism; each tokenizer's own thread
    pool would only oversubscribe the cores)."""
    import os
    import pickle

    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    with open(tokenizer_file, "rb") as f:
        _PLANNER["tokenizer"] = pickle.load(f)


def _pickled(obj, path: Path) -> str:
    import pickle

    path.write_bytes(pickle.dumps(obj))
    return str(path)


def _plan_in_worker(items: list[WorkItem], mode: str):
    return plan_items(_PLANNER["tokenizer"], items, mode)


def _chunk_plans(tokenizer, items_by_chunk: list[list[WorkItem]], pending: list[int], mode: str, workers: int):
    """(chunk, plan) for each pending chunk, in order. With `workers` > 0, the plans of the next `workers`
    chunks are made in that many worker processes (each with its own copy of the tokenizer) while the caller
    scores this one, so the GPU does not wait for tokenising; planning is deterministic, so the plans are
    those made inline."""
    if not workers or len(pending) < 2:
        for c in pending:
            yield c, plan_items(tokenizer, items_by_chunk[c], mode)
        return
    import multiprocessing as mp
    import tempfile
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent holds a CUDA context and the tokenizers' threads.
    with tempfile.TemporaryDirectory(prefix="assocmem-planner-") as tmp, ProcessPoolExecutor(
            max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_start_planner,
            initargs=(_pickled(tokenizer, Path(tmp) / "tokenizer.pkl"),)) as pool:
        coming = {}
        for i, c in enumerate(pending):
            for ahead in pending[max(i, 1):i + workers + 1]:
                if ahead not in coming:
                    coming[ahead] = pool.submit(_plan_in_worker, items_by_chunk[ahead], mode)
            # The first chunk is planned here while the workers start (a spawned worker imports transformers
            # and unpickles the tokenizer first: seconds before the first forward could begin).
            yield c, (plan_items(tokenizer, items_by_chunk[c], mode) if i == 0 else coming.pop(c).result())


def _score_chunk(lm: LoadedLM, items: list[WorkItem], plan, config: HijackConfig, ctx: D.DistContext,
                 bar=None) -> tuple[pd.DataFrame | None, PackingStats]:
    """Score one chunk (this rank's share) from its plan; on rank 0 return its rows and every rank's
    packing counts summed, elsewhere (None, this rank's counts). The run folder does the two halves
    (`_queue_chunk`, `_finish_chunk`) a chunk apart."""
    return _finish_chunk(items, *_queue_chunk(lm, plan, config, ctx, bar), config, ctx)


def _queue_chunk(lm: LoadedLM, plan, config: HijackConfig, ctx: D.DistContext, bar=None,
                 timing: RunTiming | None = None) -> tuple[QueuedPlan, PackingStats]:
    """This rank's forwards of a chunk, queued on the device, and their packing counts."""
    stats = PackingStats()
    start = time.perf_counter()
    queued = queue_plan(lm, plan, batch_tokens=config.batching.batch_tokens, row_tokens=config.batching.row_tokens,
                        shard=ctx.shard, bar=bar, stats=stats)
    if timing is not None:
        timing.engine_s += time.perf_counter() - start
    return queued, stats


def _finish_chunk(items: list[WorkItem], queued: QueuedPlan, stats: PackingStats, config: HijackConfig,
                  ctx: D.DistContext, timing: RunTiming | None = None) -> tuple[pd.DataFrame | None, PackingStats]:
    """A queued chunk read back (the host waits for the device here) and, on rank 0, made into rows."""
    plan = queued.plan
    start = time.perf_counter()
    mine = queued.result()
    if timing is not None:
        timing.engine_s += time.perf_counter() - start
    parts = D.gather_objects(ctx, (mine, stats))
    if not ctx.is_main:
        return None, stats
    results = {k: v for part, _ in parts for k, v in part.items()}
    stats = PackingStats()
    for _, s in parts:
        stats.add(s)
    logp_true, logp_false = collect(plan, results, config.scoring.mode)
    hijacked, true_preferred = decide(logp_true, logp_false)
    extra = {}
    for m in config.scoring.extra_modes:
        t, f = collect(plan, results, m)
        extra.update({f"logp_true:{m}": t.numpy(), f"logp_false:{m}": f.numpy(), f"hijacked:{m}": (f > t).numpy()})
    rank_true, rank_false = collect_ranks(plan, results)
    first_true, _ = collect(plan, results, "first-token")   # the p50 rule reads the first token in every mode
    rows = pd.DataFrame({
        "case_id": pd.Series([it.record.case_id for it in items], dtype="int64"),
        "relation_id": [it.record.relation_id for it in items],
        "subject": [it.record.subject for it in items],
        "target_true": [it.record.target_true for it in items],
        "target_false": [it.record.target_false for it in items],
        "target_mismatched": [it.record.target_mismatched for it in items],
        "scheme": [it.scheme for it in items],
        "n": pd.Series([it.n for it in items], dtype="int64"),
        "mode": config.scoring.mode,
        "logp_true": logp_true.numpy(),
        "logp_false": logp_false.numpy(),
        "hijacked": hijacked.numpy(),
        "true_preferred": true_preferred.numpy(),
        "rank_true": rank_true.numpy(),
        "rank_false": rank_false.numpy(),
        **extra,
        "prompt": [it.prompt for it in items],      # the exact string scored (before the target)
    })
    return with_known(rows, first_true.numpy()), stats


def with_known(rows: pd.DataFrame, first_logp_true) -> pd.DataFrame:
    """`rows` (every n of each record, n = 0 included) with the record's n = 0 status under both known-fact
    rules (metrics.KNOWN_RULES) as columns `known` ("top1", the headline) and `known_p50`; `first_logp_true`
    is each row's first-token log P(true). The n = 0 prompt is the record's own, whatever the scheme."""
    at0 = rows.assign(first=first_logp_true)[rows["n"] == 0].drop_duplicates("case_id").set_index("case_id")
    status = pd.DataFrame({"known": known(at0["rank_true"], at0["first"], "top1"),
                           "known_p50": known(at0["rank_true"], at0["first"], "p50")}, index=at0.index)
    out = rows.join(status, on="case_id")
    columns = list(rows.columns)
    at = columns.index("rank_false") + 1
    return out[columns[:at] + ["known", "known_p50"] + columns[at:]]


def summarise(rows: pd.DataFrame, config: HijackConfig, model_name: str, n_records: int,
              skipped: list[dict]) -> dict:
    """The summary.json content from the merged rows."""
    table = rates(rows, by=("scheme", "n")) if len(rows) else pd.DataFrame()
    per_relation = rates(rows, by=("relation_id", "scheme", "n")) if len(rows) else pd.DataFrame()
    by_scheme: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for s in skipped:
        key = s["scheme"] or "(all schemes)"
        by_scheme[key] = by_scheme.get(key, 0) + 1
        by_reason[s.get("kind", "malformed")] = by_reason.get(s.get("kind", "malformed"), 0) + 1
    return {
        "model": model_name,
        "mode": config.scoring.mode,
        "counterfact": config.data.counterfact or "official (downloaded)",
        "records": n_records,
        "records_per_scheme": {s: int(rows.loc[(rows["scheme"] == s) & (rows["n"] == 0)].shape[0])
                               for s in config.schemes} if len(rows) else {},
        "max_n": config.max_n,
        "shares": {"hijacked_share": "P(target_false) > P(target_true): the efficacy score (ES)",
                   "true_preferred_share": "P(target_true) > P(target_false)"},
        "known_records": _known_counts(rows),
        "schemes": {s.name: {"description": s.description, "mentions": s.mentions, "expected": s.expected,
                             "control_of": s.control_of} for s in config.scheme_objects},
        "directions": directions(table) if len(table) else {},
        "rates": table.to_dict(orient="records"),
        "per_relation": per_relation.to_dict(orient="records"),
        "skipped": {"count": len(skipped), "by_scheme": by_scheme, "by_reason": by_reason, "items": skipped},
        "config": to_dict(config),
    }


def _known_counts(rows: pd.DataFrame) -> dict:
    """Records known at n = 0 under each rule of metrics.KNOWN_RULES, of the records scored."""
    at0 = rows[rows["n"] == 0].drop_duplicates("case_id") if len(rows) else rows
    return {"records": int(len(at0)), "top1": int(at0["known"].sum()) if len(at0) else 0,
            "p50": int(at0["known_p50"].sum()) if len(at0) else 0, "rules": KNOWN_RULES}


def check_targets(tokenizer, records: list[Record], mode: str, skip_bad: bool, skipped: list[dict]) -> list[Record]:
    """Records whose two targets can be told apart by the scorer; the others are bad records.

    Bad: a target that tokenizes to nothing after its prompt; targets that are equal (the same
    string after the strip, or the same tokens after " "); in first-token mode, targets whose first
    tokens agree (the comparison would be a tie by construction, not a measurement).
    """
    if not records:
        return records
    conts = [" " + r.target_true for r in records] + [" " + r.target_false for r in records]
    pairs = encode_pairs(tokenizer, [r.filled_prompt for r in records] * 2, conts)
    good = []
    for i, rec in enumerate(records):
        true_ids, false_ids = pairs[i][1], pairs[len(records) + i][1]
        bad = None
        empty = [w for w, ids in (("target_true", true_ids), ("target_false", false_ids)) if not ids]
        if empty:
            bad = BadRecord(rec.case_id, f"{empty[0]} {getattr(rec, empty[0])!r} tokenizes to nothing", "empty-target")
        elif rec.target_true == rec.target_false or true_ids == false_ids:
            bad = BadRecord(rec.case_id, f"target_true {rec.target_true!r} and target_false {rec.target_false!r} "
                                         "are the same", "equal-targets")
        elif mode == "first-token" and true_ids[0] == false_ids[0]:
            token = tokenizer.decode([true_ids[0]])
            bad = BadRecord(rec.case_id, f"in first-token mode target_true {rec.target_true!r} and target_false "
                                         f"{rec.target_false!r} share their first token {token!r} (a tie by "
                                         "construction; use `mode` full-target or mean-target)", "shared-first-token")
        if bad is None:
            good.append(rec)
            continue
        if not skip_bad:
            raise bad
        skipped.append({"case_id": rec.case_id, "scheme": None, "reason": bad.reason, "kind": bad.kind})
    return good


def _valid_pairs(records: list[Record], schemes: list[Scheme], skip_bad: bool, skipped: list[dict]):
    """(record, scheme) pairs whose sentence can be built (a relation template, an association...)."""
    pairs = []
    for scheme in schemes:
        for rec in records:
            try:
                sentence(rec, scheme)
            except BadRecord as bad:
                if not skip_bad:
                    raise
                skipped.append({"case_id": rec.case_id, "scheme": scheme.name, "reason": bad.reason, "kind": bad.kind})
                continue
            pairs.append((rec, scheme))
    return pairs


def _check_out_dir(config: HijackConfig, out: Path, lm: LoadedLM) -> tuple[str | None, dict | None]:
    """The fingerprints of this run (data, model, code), and an error line if `out` holds a run of another
    config or computed from other data, model or code (nothing is written here)."""
    from assocmem.provenance import fingerprints, what_changed

    prints = fingerprints(config.data.path, config.lm.model, rows_code())
    if lm is not None:
        error, prints["model"] = _given_model(config, lm, prints["model"])
        if error:
            return error, prints
    path = out / "config.json"
    started = any((out / "chunks").glob("chunk-*.parquet"))   # before any chunk, a new config just replaces
    if started and not path.is_file():
        return (f"out={str(out)!r} holds scored chunks but no config.json, so they cannot be checked; use a new "
                "`out`, or delete the folder to start over"), prints
    if path.is_file() and started:
        try:
            old = read_json(path)
        except (OSError, ValueError) as err:
            return (f"out={str(out)!r}: its config.json is unreadable ({type(err).__name__}), so its chunks cannot "
                    "be checked; use a new `out`, or delete the folder to start over"), prints
        old_prints = old.pop("fingerprints", None)
        if not old_prints:
            return (f"out={str(out)!r} holds a run that recorded no fingerprints (an older assocmem): its rows "
                    "cannot be checked against this data, model and code; use a new `out`"), prints
        old = _computed(flat_dict_of(old))
        new = _computed(flat_dict(config))
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            return (f"out={str(out)!r} holds a run with a different config ({', '.join(diff)}); "
                    "use a new `out` or the same options to resume"), prints
        changed = what_changed(old_prints, prints)
        if changed:
            return (f"out={str(out)!r} holds a run computed from a different {'; '.join(changed)}: "
                    "resuming would mix rows of both; use a new `out`, or restore what changed"), prints
        for key in ("commit", "tokenizer"):   # known once loaded: checked then (_check_loaded)
            if key in old_prints["model"]:
                prints["model"][key] = old_prints["model"][key]
    return None, prints


def _computed(leaves: dict) -> dict:
    """The leaves of a config that change what a run computes (all but `_RESUMABLE`)."""
    return {k: v for k, v in leaves.items() if k not in _RESUMABLE}


def rows_code() -> str:
    """The code fingerprint of what computes a run's rows (records, prompts, scoring, decisions)."""
    from assocmem.provenance import code_fingerprint

    return code_fingerprint(HijackConfig, work_items, plan_items, check_targets, _valid_pairs, _queue_chunk,
                            _finish_chunk, _empty_rows)


def _given_model(config: HijackConfig, lm: LoadedLM, recorded: dict) -> tuple[str | None, dict]:
    """(error line or None, the model's fingerprint) of a model given to `run_hijack`: `config.lm`'s when
    the model was loaded from that spec; its weights' hash when it was built in memory; refused when it
    was loaded from another spec or in another dtype than the config sets."""
    from assocmem.models.llm import resolve_model
    from assocmem.provenance import weights_fingerprint
    from assocmem.runtime import resolve_dtype

    if config.lm.dtype != "auto" and lm.dtype != resolve_dtype(config.lm.dtype):
        return (f"the model given to run_hijack is in {str(lm.dtype).removeprefix('torch.')}, its config says "
                f"dtype={config.lm.dtype}: load it with the config's own spec (config.lm.load())"), recorded
    spec = getattr(lm, "spec", None)
    if spec is None:
        return None, {"spec": config.lm.model, "kind": "in-memory", "name": lm.name,
                      "sha256": weights_fingerprint(lm.model)}
    given, named = resolve_model(spec), resolve_model(config.lm.model)
    if (given.kind, given.location) != (named.kind, named.location):
        return (f"the model given to run_hijack was loaded from {spec!r}, its config names model="
                f"{config.lm.model!r}: the run folder would record the wrong model; set model={spec!r} "
                "in the config, or load the config's model (config.lm.load())"), recorded
    return None, recorded


def _finished_summary(config: HijackConfig, out: Path, progress: bool, plot: bool) -> dict | None:
    """The summary of a run in `out` that is already finished with this config (its config.json checked by
    `_check_out_dir`; summary.json, rows.parquet and every chunk readable, the row counts agreeing), or None.

    Then nothing is scored and no model is loaded; a damaged file sends the run down the usual path, which
    re-computes what is damaged."""
    import pyarrow.parquet as pq

    try:
        summary = read_json(out / "summary.json")
        config_now = _computed(flat_dict(config))
        config_then = _computed(flat_dict_of(summary["config"]))
        recorded = read_json(out / "config.json").get("fingerprints")
        rows = pq.read_metadata(out / "rows.parquet").num_rows
        chunks = sorted((out / "chunks").glob("chunk-*.parquet"))
        in_chunks = 0
        for path in chunks:
            in_chunks += pq.read_metadata(path).num_rows
            stats = read_json(path.with_suffix(".engine.json"))
            if not set(PackingStats.__dataclass_fields__) <= set(stats):
                return None
        expected = sum(summary["records_per_scheme"].values()) * (config.max_n + 1)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if config_now != config_then or summary.get("fingerprints") != recorded or not rows == in_chunks == expected:
        return None
    if progress:
        print(f"{out}: finished earlier ({len(chunks)} chunks, {rows} rows); nothing to score, the model is not "
              "loaded", file=sys.stderr)
    if plot and rows and not (out / "rates.png").is_file():
        _plot(summary, out)
    return summary


def _check_loaded(out: Path, prints: dict, lm: LoadedLM) -> str | None:
    """What is known once the model is loaded: a hub model's revision and the tokenizer. Record them,
    or refuse a resume on another one."""
    from assocmem.provenance import hub_commit, tokenizer_fingerprint

    now = {"tokenizer": tokenizer_fingerprint(lm)}
    if prints["model"]["kind"] == "hub":
        now["commit"] = hub_commit(lm)
    for key, value in now.items():
        recorded = prints["model"].get(key)
        if recorded and value and recorded != value:
            return (f"out={str(out)!r} holds a run of {prints['model']['spec']} with {key} {recorded[:12]}, "
                    f"now {value[:12]}: the same weights would score other tokens; use a new `out`"
                    + (", or pin the model to that commit" if key == "commit" else ""))
        prints["model"][key] = value
    return None


def _chunk_ok(chunk_dir: Path, c: int, expected_rows: int, recomputed: list[str]) -> bool:
    """A finished, readable chunk with the rows it should hold; a damaged one is removed (to be
    re-computed), named in `recomputed` and announced on stderr."""
    path = _chunk_path(chunk_dir, c)
    if not path.is_file():
        return False
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        missing = set(_empty_rows().columns) - set(table.column_names)
        problem = (f"columns {sorted(missing)} missing" if missing else
                   f"{table.num_rows} rows, expected {expected_rows}" if table.num_rows != expected_rows else None)
        stats = read_json(path.with_suffix(".engine.json"))
        if problem is None and not set(PackingStats.__dataclass_fields__) <= set(stats):
            problem = "its packing counts are incomplete"
    except (OSError, ValueError, KeyError) as err:
        problem = f"unreadable ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    if problem is None:
        return True
    import sys

    print(f"warning: {path} is damaged ({problem}); re-computing it", file=sys.stderr)
    recomputed.append(f"{path.name}: {problem}")
    path.unlink(missing_ok=True)
    return False


def _wants_cuda(config: HijackConfig) -> bool:
    import torch

    return config.lm.device.startswith("cuda") or (config.lm.device == "auto" and torch.cuda.is_available())


def _chunk_path(chunk_dir: Path, c: int) -> Path:
    return chunk_dir / f"chunk-{c:05d}.parquet"


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
        ("case_id", "int64"), ("relation_id", "str"), ("subject", "str"), ("target_true", "str"),
        ("target_false", "str"), ("target_mismatched", "str"), ("scheme", "str"), ("n", "int64"), ("mode", "str"),
        ("logp_true", "float64"), ("logp_false", "float64"), ("hijacked", "bool"), ("true_preferred", "bool"),
        ("rank_true", "int64"), ("rank_false", "int64"), ("known", "bool"), ("known_p50", "bool"),
        ("prompt", "str"))})

