"""Run selected experiments with caching and resume.

Layout of an output folder:

    DIR/<id>/result.json      settings, their hash, wall time, device, table rows, claim verdicts, data
    DIR/<id>/*.png, *.csv     figures and tables (plus whatever the experiment writes, e.g. weights)
    DIR/.partial/<id>-<hash>/ an experiment in progress; kept if interrupted, so that experiments that
                              resume inside (the hijacking runs) pick up where they stopped
    DIR/report.md             written after every run, from every finished folder

An experiment is cached when DIR/<id>/result.json carries the hash of its resolved settings, of its code
(`experiment_code`: its own functions and the library modules they use), of the LLM and CounterFact file
for the hijacking ones, and of the experiments it reads: a re-run skips it, a changed setting or a changed
line of its computation re-runs only that experiment and those that read its output. A finished
folder replaces the old one by two renames, so a reader never sees half an experiment.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from assocmem.config import to_dict
from assocmem.errors import ConfigError
from assocmem.experiments.registry import Context, Experiment, Result
from assocmem.io import read_json, write_csv, write_json

RESULT_FILE = "result.json"


@dataclass
class Outcome:
    id: str
    status: str  # "ran" | "cached" | "failed"
    folder: Path
    wall_s: float  # the experiment's own compute time (from its result.json when cached)
    error: str = ""


def settings_hash(exp: Experiment, profile: str, llms: tuple[str, ...], counterfact: Path | None,
                  required: dict[str, str]) -> str:
    """A short hash of everything an experiment's numbers depend on (not the device)."""
    key: dict[str, Any] = {"id": exp.id, "version": exp.version, "settings": to_dict(exp.settings(profile)),
                           "code": experiment_code(exp), "requires": dict(sorted(required.items()))}
    if exp.uses_llm:
        key["llm"] = [_model_identity(m) for m in llms]
        key["counterfact"] = _file_identity(counterfact)
    blob = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def experiment_code(exp: Experiment) -> str:
    """The fingerprint of the code that computes and draws `exp`: its run and plot functions, its settings
    class and what they reach in the experiments' modules, and every library module they use, whole."""
    from assocmem.provenance import code_fingerprint

    settings = {type(s) for s in (exp.quick, exp.full, exp.authors) if s is not None}   # a profile may have none
    return code_fingerprint(exp.run, exp.plot, *settings, fine=(__package__,))


def _file_identity(path: Path | None) -> str:
    """The CounterFact file by its content (sha256), as run folders record it."""
    from assocmem.provenance import sha256_file

    if path is None:
        return "loader-default"
    return sha256_file(path) if Path(path).is_file() else f"missing:{path}"


def _model_identity(llm: str) -> str:
    """The model spec plus, where known without loading it, its weights' hash."""
    from assocmem.provenance import model_fingerprint

    fp = model_fingerprint(llm)
    return f"{llm}@{fp['sha256']}" if "sha256" in fp else llm


def cached_hash(folder: Path) -> str | None:
    """The settings hash stored in a finished folder, or None."""
    try:
        return read_json(folder / RESULT_FILE)["hash"]
    except (OSError, KeyError, ValueError, TypeError):
        return None


def folder_damage(folder: Path) -> str | None:
    """Why a finished folder cannot be trusted (a file that does not read back), or None.

    Every table, JSON and weights file in it is opened: parquet metadata, JSON parsed, safetensors
    header; what fails is named, and the experiment is re-computed."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            if path.suffix == ".parquet":
                import pyarrow.parquet as pq

                pq.read_metadata(path)
            elif path.suffix == ".json":
                read_json(path)
            elif path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as fh:
                    fh.keys()
            elif path.suffix == ".csv":
                path.read_text()
        except Exception as err:  # noqa: BLE001  (any failure to read back is damage)
            return f"{path.relative_to(folder)} unreadable ({type(err).__name__})"
    return None


def run_experiments(
    experiments: Iterable[Experiment],
    profile: str,
    out_dir: str | Path,
    device: torch.device,
    llms: tuple[str, ...] = ("gemma3-270m",),
    counterfact: Path | None = None,
    display: Any | None = None,
) -> list[Outcome]:
    """Run (or reuse) each experiment in order; returns one outcome per experiment.

    `experiments` must list requirements before the experiments that read them (Registry.select
    does). `display` is an optional object with `start(exp, index, total)`, `update(fraction, text)`
    and `finish(outcome)` (the CLI passes a rich progress display).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    experiments = list(experiments)
    hashes: dict[str, str] = {}
    outcomes: dict[str, Outcome] = {}
    shared: dict[str, Any] = {}
    try:
        for index, exp in enumerate(experiments):
            missing = [r for r in exp.requires if r not in outcomes]
            if missing:
                raise ValueError(f"experiment {exp.id} requires {missing}, which must be selected before it")
            required = {r: hashes[r] for r in exp.requires}
            digest = settings_hash(exp, profile, llms, counterfact, required)
            hashes[exp.id] = digest
            folder = out_dir / exp.id
            if display is not None:
                display.start(exp, index, len(experiments))
            failed_inputs = [r for r in exp.requires if outcomes[r].status == "failed"]
            if failed_inputs:
                outcome = Outcome(exp.id, "failed", folder, 0.0, f"requires {', '.join(failed_inputs)}, which failed")
            elif cached_hash(folder) == digest and not (damage := folder_damage(folder)):
                outcome = Outcome(exp.id, "cached", folder, float(read_json(folder / RESULT_FILE)["wall_s"]))
            else:
                if cached_hash(folder) == digest:
                    _say(display, f"{exp.id}: the cached folder is damaged ({damage}); re-computing it")
                ctx = Context(device=device, work_dir=out_dir / ".partial" / f"{exp.id}-{digest}", llms=tuple(llms),
                              counterfact=counterfact, inputs={r: out_dir / r for r in exp.requires}, shared=shared,
                              progress=display.update if display is not None else Context.progress)
                outcome = _run_one(exp, profile, digest, ctx, folder)
            outcomes[exp.id] = outcome
            if display is not None:
                display.finish(outcome)
    finally:
        _remove_if_empty(out_dir / ".partial")  # kept only while it holds work to resume
    return [outcomes[exp.id] for exp in experiments]


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # absent, or not empty
        pass


def _say(display: Any | None, line: str) -> None:
    """A line for the user: through the display when there is one, else on stderr."""
    if display is not None and hasattr(display, "say"):
        display.say(line)
    else:
        import sys

        print(f"warning: {line}", file=sys.stderr)


def _run_one(exp: Experiment, profile: str, digest: str, ctx: Context, folder: Path) -> Outcome:
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    settings = exp.settings(profile)
    started = time.perf_counter()
    try:
        result = exp.run(settings, ctx)
        figures = exp.plot(result, ctx.work_dir)
    except (ConfigError, KeyboardInterrupt):
        raise
    except Exception as err:  # keep going with the other experiments; the report shows the failure
        (ctx.work_dir / "error.txt").write_text(traceback.format_exc())
        line = f"{type(err).__name__}: {err}".splitlines()[0]
        return Outcome(exp.id, "failed", ctx.work_dir, time.perf_counter() - started, line)
    wall_s = time.perf_counter() - started
    _write_tables(result, ctx.work_dir)
    write_json(ctx.work_dir / RESULT_FILE, {
        "id": exp.id, "title": exp.title, "paper": exp.paper, "profile": profile, "hash": digest,
        "code": experiment_code(exp),
        "settings": to_dict(settings), "wall_s": wall_s, "device": _device_name(ctx.device),
        "llm": list(ctx.llms) if exp.uses_llm else None,
        "counterfact": str(ctx.counterfact) if exp.uses_llm and ctx.counterfact else None,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "python": platform.python_version(),
        "figures": [str(Path(f).resolve().relative_to(ctx.work_dir.resolve())) for f in figures],
        "rows": result.rows, "claims": [asdict(c) for c in result.claims], "notes": result.notes,
        "tables": sorted(result.tables), "data": result.data,
    })
    _swap_into_place(ctx.work_dir, folder)
    for stale in ctx.work_dir.parent.glob(f"{exp.id}-*"):  # partial runs of older settings
        shutil.rmtree(stale, ignore_errors=True)
    return Outcome(exp.id, "ran", folder, wall_s)


def _write_tables(result: Result, folder: Path) -> None:
    import pandas as pd

    for name, rows in result.tables.items():
        write_csv(folder / f"{name}.csv", pd.DataFrame(rows))


def _swap_into_place(partial: Path, folder: Path) -> None:
    """Replace `folder` by `partial` with two renames (the old folder is removed afterwards)."""
    old = None
    if folder.exists():
        old = partial.parent / f"{folder.name}.old-{uuid.uuid4().hex[:8]}"
        folder.replace(old)
    partial.replace(folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def load_result(folder: Path) -> dict[str, Any] | None:
    """An experiment folder's result.json, or None where the experiment has not finished there (no result.json,
    or an unreadable one); a folder that does not exist is a ConfigError, not an unfinished experiment."""
    if not Path(folder).is_dir():
        raise ConfigError(f"folder={str(folder)!r} is invalid: allowed an experiment folder (no such folder)",
                          field="folder")
    try:
        return read_json(Path(folder) / RESULT_FILE)
    except (OSError, ValueError):
        return None
