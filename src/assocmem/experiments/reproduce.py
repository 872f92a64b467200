"""`reproduce`: run the selected experiments (runner), then write the report (report) from the folders.

    summary = reproduce("quick", only=["fig3a"], device="cpu", out_dir="runs/quick")
    summary.report   # runs/quick/report.md
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from assocmem.config import option
from assocmem.errors import ConfigError
from assocmem.experiments.registry import Registry
from assocmem.experiments.runner import Outcome, run_experiments


@dataclass
class ReproduceSummary:
    outcomes: list[Outcome]
    report: Path
    wall_s: float

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


@dataclass(frozen=True)
class ReproduceOptions:
    """`assocmem reproduce`: which experiments, where, on which models and data."""

    profile: str = option("quick", "quick (the whole report in minutes on 2 CPU cores) | full (our protocol at the "
                                   "paper's sizes, one GPU) | paper (the synthetic figures at the authors' own protocol "
                                   "and grid, one GPU).")
    only: tuple[str, ...] | None = option(None, "Experiment ids or aliases, e.g. --only fig3a c2 (requirements are "
                                                "added); default: all.")
    device: str = option("auto", "auto | cpu | cuda | cuda:N.")
    out: str | None = option(None, "Output folder (default results/<profile>).")
    models: tuple[str, ...] | None = option(None, "Causal LMs for the hijacking experiments, e.g. --models gemma3-270m "
                                                  "smollm2-135m gpt2: bundled names, hub ids, local folders or GGUF files "
                                                  "(default: both bundled models). The hijacking experiments score in "
                                                  "float32 on every device, so CPU and GPU rows agree.")
    counterfact: str | None = option(None, "CounterFact JSON (default: ../shared/data/counterfact_reconstructed.json "
                                           "beside the checkout if present, else $ASSOCMEM_COUNTERFACT if set, else "
                                           "the official file, downloaded once).")

    def __post_init__(self) -> None:
        from assocmem.experiments.registry import PROFILES
        from assocmem.runtime import check_device

        if self.profile not in PROFILES:
            raise ConfigError(f"profile={self.profile!r} is invalid: allowed one of {', '.join(PROFILES)}",
                              field="profile")
        check_device(self.device)


def reproduce(
    profile: str = "quick",
    only: Iterable[str] | None = None,
    device: str | torch.device = "auto",
    out_dir: str | Path = "results/quick",
    llms: tuple[str, ...] | None = None,
    counterfact: str | Path | None = None,
    display: Any | None = None,
    registry: Registry | None = None,
    command: str | None = None,
) -> ReproduceSummary:
    """`assocmem reproduce`: run the selected experiments (cached ones are reused), write report.md."""
    from assocmem.experiments.registry import DEFAULT_MODELS, PROFILES, default_registry
    from assocmem.experiments.report import write_report
    from assocmem.runtime import resolve_device

    if profile not in PROFILES:
        raise ConfigError(f"profile={profile!r} is invalid: allowed one of {', '.join(PROFILES)}", field="profile")
    registry = registry or default_registry()
    selected = registry.select(only, profile)
    for exp in selected:  # an experiment the profile does not run fails now, before anything trains
        exp.settings(profile)
    dev = resolve_device(device)
    if any(exp.uses_llm for exp in selected):
        from assocmem.hijack.counterfact import find_counterfact

        counterfact = find_counterfact(counterfact)
    started = time.perf_counter()
    llms = tuple(dict.fromkeys(llms or DEFAULT_MODELS[profile]))
    if any(exp.uses_llm for exp in selected):
        from assocmem.models.llm import resolve_model

        for spec in llms:  # an unknown or missing model fails now, not after the synthetic experiments
            resolve_model(spec)
    outcomes = run_experiments(selected, profile, out_dir, dev, llms, counterfact, display)
    wall_s = time.perf_counter() - started
    report = write_report(out_dir, registry, profile, outcomes, command, wall_s)
    return ReproduceSummary(outcomes, report, wall_s)
