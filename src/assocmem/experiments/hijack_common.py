"""What the hijacking experiments share: the models of the run (loaded one at a time, a few kept),
one `run_hijack` per model into `<work_dir>/<model>/`, the rows of every model with a `model`
column, and the provenance (data file and models) that the report's header shows.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from assocmem.experiments.registry import LLM_DTYPE, Context
from assocmem.hijack.counterfact import CounterFactSelection
from assocmem.hijack.scoring import ScoringConfig
from assocmem.models.spec import ModelSpec
from assocmem.models.llm import LoadedLM

# Keep loaded models while their parameters add up to at most this many (both bundled models fit);
# a larger model evicts the others, so a list of 7B models never holds two at once.
KEEP_PARAMETERS = 1_500_000_000


@dataclass(frozen=True)
class HijackStudy:
    """One run of the hijacking benchmark per model: HijackConfig's own parts (the CounterFact file
    and model come from the run's context; records a scheme cannot use are skipped and counted)."""

    schemes: tuple[str, ...]
    max_n: int  # n = 0..max_n prepended sentences
    data: CounterFactSelection = field(default_factory=lambda: CounterFactSelection(skip_bad=True))
    scoring: ScoringConfig = field(default_factory=ScoringConfig)


def load_lm(ctx: Context, spec: str):
    """The causal LM `spec`, loaded once per process (small ones kept, a large one evicts the rest)."""
    cache: dict = ctx.shared.setdefault("lms", {})
    if spec not in cache:
        from assocmem.models.llm import load_causal_lm

        ctx.progress(0.0, f"loading {spec}")
        lm = load_causal_lm(spec, device=str(ctx.device), dtype=LLM_DTYPE)
        size = parameters(lm)
        while cache and sum(parameters(m) for m in cache.values()) + size > KEEP_PARAMETERS:
            cache.pop(next(iter(cache)))
            gc.collect()
            if ctx.device.type == "cuda":
                import torch

                torch.cuda.empty_cache()
        cache[spec] = lm
    return cache[spec]


def parameters(lm: LoadedLM) -> int:
    return sum(p.numel() for p in lm.model.parameters())


def each_model(ctx: Context, start: float = 0.0, end: float = 1.0) -> Iterator[tuple[str, object]]:
    """(spec, loaded model) for every model of the run, reporting progress between them."""
    for i, spec in enumerate(ctx.llms):
        ctx.progress(start + (end - start) * i / len(ctx.llms), spec)
        yield spec, load_lm(ctx, spec)


def run_study(s: HijackStudy, ctx: Context) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Score `s` with every model; (rows of all models with a `model` column, {model: summary})."""
    from assocmem.hijack.run import HijackConfig, run_hijack

    frames, summaries = [], {}
    for spec, lm in each_model(ctx, 0.05, 0.95):
        config = HijackConfig(lm=ModelSpec(spec, device=str(ctx.device), dtype=LLM_DTYPE),
                              data=replace(s.data, counterfact=str(ctx.counterfact) if ctx.counterfact else None),
                              scoring=s.scoring, schemes=s.schemes, max_n=s.max_n)
        result = run_hijack(config, ctx.work_dir / lm.name, progress=False, lm=lm, plot=False)
        summaries[lm.name] = result.summary
        frames.append(result.rows.assign(model=lm.name))
    return pd.concat(frames, ignore_index=True), summaries


def model_rows(folder: Path, models: list[str]) -> pd.DataFrame:
    """The rows a finished experiment scored, every model's, with a `model` column."""
    from assocmem.hijack.run import HijackResult

    return pd.concat([HijackResult.load(Path(folder) / m).rows.assign(model=m) for m in models], ignore_index=True)


def sample_rows(ctx: Context, schemes: tuple[str, ...]) -> pd.DataFrame:
    """The rows of hijack-sample (a finished input of the calling experiment) under `schemes`, every model's."""
    from assocmem.io import read_json

    models = read_json(ctx.inputs["hijack-sample"] / "result.json")["data"]["models"]
    rows = model_rows(ctx.inputs["hijack-sample"], models)
    return rows[rows["scheme"].isin(schemes)]


def provenance(summaries: dict[str, dict], lms: dict[str, object] | None = None) -> dict:
    """What the report's header says about the data and the models (from the run summaries)."""
    first = next(iter(summaries.values()))
    models = []
    for name, summary in summaries.items():
        fp = summary.get("fingerprints", {}).get("model", {})
        models.append({"name": name, "spec": fp.get("spec"), "source": fp.get("package") or fp.get("spec"),
                       "kind": fp.get("kind"), "dtype": summary.get("placement", {}).get("dtype"),
                       "parameters": summary.get("parameters"),
                       "weights": fp.get("commit") or fp.get("sha256")})
    return {"counterfact": first.get("fingerprints", {}).get("counterfact", {}), "models": models}


def skipped_note(summaries: dict[str, dict]) -> str:
    """Records left out, per model and reason (bad records under --skip-bad)."""
    parts = []
    for name, summary in summaries.items():
        by = summary["skipped"].get("by_reason", {})
        parts.append(f"{name}: {summary['skipped']['count']}" + (f" ({', '.join(f'{k} {v}' for k, v in sorted(by.items()))})"
                                                                  if by else ""))
    return "skipped records (a scheme cannot be built, or targets cannot be told apart): " + "; ".join(parts)
