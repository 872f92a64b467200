"""The registry of named experiments behind `assocmem reproduce`.

One `Experiment` per paper figure (or figure family): an id, a title, where it is in the paper, typed
settings for each profile, the function that computes it, the function that draws it, and the claims
it tests. The family modules (`lca_value`, `lca_embedding`, ...) each register a handful of entries
at import time; `default_registry()` imports them once, in paper order.

Lookups fail with a "did you mean" hint, as lm-evaluation-harness's task registry does:

    >>> default_registry().get("fig3")
    ConfigError: only='fig3' is invalid: allowed one of fig1, fig2a, ... (did you mean fig3a?)
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from assocmem.errors import ConfigError, did_you_mean

# quick: the whole report in minutes on 2 CPU cores; full: our protocol at paper-like sizes on one GPU; paper: the
# synthetic figures at the authors' own protocol and grid (their released code), on one GPU.
PROFILES: tuple[str, ...] = ("quick", "full", "paper")
PROFILE_FIELDS: dict[str, str] = {"quick": "quick", "full": "full", "paper": "authors"}  # Experiment's settings field
# The causal LMs the hijacking experiments run on unless --models says otherwise: both bundled models,
# a base model and an instruction-tuned one (as the paper's Gemma-2B / Gemma-2B-IT pair).
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {"quick": ("gemma3-270m", "smollm2-135m"),
                                              "full": ("gemma3-270m", "smollm2-135m"),
                                              "paper": ("gemma3-270m", "smollm2-135m")}
# The hijacking experiments score in float32 on every device, so CPU and GPU rows agree decision for
# decision (bf16 vs float32 agreement is measured in benchmarks/RESULTS.md).
LLM_DTYPE = "float32"

# Family modules, in the order their experiments appear in the report (paper order).
FAMILY_MODULES: tuple[str, ...] = (
    "assocmem.experiments.hijack_figures",
    "assocmem.experiments.hijack_known",
    "assocmem.experiments.hijack_mechanism",
    "assocmem.experiments.theory",
    "assocmem.experiments.theory_structure",
    "assocmem.experiments.lca_value",
    "assocmem.experiments.lca_embedding",
    "assocmem.experiments.lca_attention",
    "assocmem.experiments.lca_context",
    "assocmem.experiments.lca_paper",
    "assocmem.experiments.lca_paper_shapes",
)


@dataclass(frozen=True)
class ClaimResult:
    """One claim of the paper judged on our numbers, by a criterion stated before the run."""

    claim: str  # claim id (see experiments.claims.CLAIMS)
    supported: bool
    criterion: str  # the test, in words, e.g. "mean(trained - frozen) > 2 SE over seeds"
    numbers: str  # our numbers that decided it
    note: str = ""  # optional: why a failure may be a setting rather than a finding


@dataclass
class Result:
    """What an experiment's `run` returns; stored as result.json in its folder.

    rows: the report's table, one dict per (setting, quantity) with keys `setting`, `quantity`,
      `ours` (float or str), optionally `err` (spread over seeds), `bayes` (Bayes-optimal accuracy of
      that setting, for accuracy rows) and anything else worth a column.
    data: whatever `plot` needs (JSON-ready).
    tables: name -> list of row dicts, also written as <name>.csv.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    claims: list[ClaimResult] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # sentences for the report (e.g. sample used)


@dataclass
class Context:
    """What an experiment may use besides its settings."""

    device: torch.device
    work_dir: Path  # the experiment's (partial) folder: write extra files here
    llms: tuple[str, ...] = ("gemma3-270m",)  # causal LM specs for the hijacking experiments
    counterfact: Path | None = None  # CounterFact file; None lets the loader use its default
    inputs: dict[str, Path] = field(default_factory=dict)  # id -> finished folder of a required experiment
    progress: Callable[[float, str], None] = lambda fraction, text="": None  # fraction in [0, 1]
    shared: dict[str, Any] = field(default_factory=dict)  # per-process cache (a loaded LLM, ...)


S = TypeVar("S")  # an experiment's settings dataclass


@dataclass(frozen=True)
class Experiment(Generic[S]):
    """One declarative entry: everything `reproduce` needs to run, cache, draw and report it."""

    id: str  # e.g. "fig3a"
    title: str
    paper: str  # where the paper shows it, e.g. "Fig. 3(a), Fig. C.1, §6.1"
    quick: S | None  # settings dataclass for the quick profile (minutes for everything on 2 CPU cores); None: not in it
    full: S | None  # the same dataclass for the full profile (paper-like sizes, one GPU); None: not in it
    run: Callable[[S, Context], Result]
    plot: Callable[[Result, Path], list[Path]]  # draws PNGs into the folder, returns their paths
    claims: tuple[str, ...] = ()  # ids of the claims it tests
    aliases: tuple[str, ...] = ()  # other names, e.g. the appendix figure ("c1" for fig3a)
    requires: tuple[str, ...] = ()  # experiments whose folders it reads (trained weights)
    uses_llm: bool = False
    version: int = 1  # bump when the analysis changes, to invalidate old caches
    # Derives from a finished result (its result.json as a dict) why a claim of it failed, in numbers;
    # the report shows it beside a "NOT supported" verdict. Read at report time, so cached results get it.
    explain: Callable[[dict[str, Any]], str] | None = None
    # claim id -> how the quick profile's settings differ from the full one's in a way that can change that
    # claim's verdict (e.g. a smaller m); the report prints it beside the verdict of a quick-profile result.
    quick_differs: dict[str, str] = field(default_factory=dict)
    authors: S | None = None  # settings for the paper profile (the authors' protocol and grid); None: not in it
    protocol: str = "ours"  # whose training protocol its numbers come from: "ours" or "paper" (lca.protocols)
    # claim id -> how its criterion was revised after a first result, and what the earlier criterion was; the
    # report prints it beside the verdict (read at report time, so cached results get it)
    criterion_history: dict[str, str] = field(default_factory=dict)

    def in_profile(self, profile: str) -> bool:
        """Whether the profile runs this experiment (it has settings for it)."""
        return getattr(self, PROFILE_FIELDS[profile]) is not None

    def settings(self, profile: str) -> S:
        if profile not in PROFILES:
            raise ConfigError(f"profile={profile!r} is invalid: allowed one of {', '.join(PROFILES)}", field="profile")
        chosen = getattr(self, PROFILE_FIELDS[profile])
        if chosen is None:
            raise ConfigError(f"only={self.id!r} is invalid with `profile`={profile}: allowed the experiments "
                              f"of that profile (this one is in {', '.join(p for p in PROFILES if self.in_profile(p))})",
                              field="only")
        if not dataclasses.is_dataclass(chosen):
            raise TypeError(f"experiment {self.id}: {profile} settings must be a dataclass instance")
        return chosen


class Registry:
    """Named experiments in registration order, looked up by id or alias."""

    def __init__(self, experiments: Iterable[Experiment] = ()) -> None:
        self._by_id: dict[str, Experiment] = {}
        self._alias: dict[str, str] = {}
        for exp in experiments:
            self.add(exp)

    def add(self, exp: Experiment) -> Experiment:
        for name in (exp.id, *exp.aliases):
            if name in self._by_id or name in self._alias:
                raise ValueError(f"experiment name {name!r} is registered twice")
        self._by_id[exp.id] = exp
        self._alias.update({alias: exp.id for alias in exp.aliases})
        return exp

    def ids(self) -> list[str]:
        return list(self._by_id)

    def __iter__(self):
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, name: str) -> Experiment:
        if name in self._by_id:
            return self._by_id[name]
        if name in self._alias:
            return self._by_id[self._alias[name]]
        names = [*self._by_id, *self._alias]
        close = did_you_mean(name, names, cutoff=0.5)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ConfigError(f"only={name!r} is invalid: allowed one of {', '.join(self._by_id)}{hint}", field="only")

    def select(self, names: Iterable[str] | None, profile: str | None = None) -> list[Experiment]:
        """The named experiments plus everything they require, in registration order.

        None or an empty list selects all (of `profile`, when given: those it has settings for)."""
        names = list(names or [])
        if not names:
            return [exp for exp in self if profile is None or exp.in_profile(profile)]
        wanted: set[str] = set()
        stack = [self.get(n).id for n in names]
        while stack:
            exp_id = stack.pop()
            if exp_id not in wanted:
                wanted.add(exp_id)
                stack.extend(self.get(r).id for r in self._by_id[exp_id].requires)
        return [exp for exp in self if exp.id in wanted]


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The registry of the paper's experiments (imports the family modules once)."""
    global _DEFAULT
    if _DEFAULT is None:
        registry = Registry()
        for module_name in FAMILY_MODULES:
            module = importlib.import_module(module_name)
            for exp in module.EXPERIMENTS:
                registry.add(exp)
        _DEFAULT = registry
    return _DEFAULT
