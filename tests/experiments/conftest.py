"""A tiny registry of fake experiments that count their runs (no training, no LLM)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from assocmem.experiments.registry import ClaimResult, Context, Experiment, Registry, Result
from assocmem.plotting import new_figure, save_figure


@dataclass(frozen=True)
class Knob:
    value: int = 1


CALLS: list[str] = []


def _run(exp_id: str, supported: bool):
    def run(settings: Knob, ctx: Context) -> Result:
        CALLS.append(exp_id)
        upstream = {k: (v / "result.json").is_file() for k, v in ctx.inputs.items()}
        assert all(upstream.values()), upstream
        return Result(rows=[{"setting": f"value={settings.value}", "quantity": "accuracy", "ours": 0.5, "err": 0.1,
                             "bayes": 0.75}],
                      claims=[ClaimResult("value-matters", supported, "a stated criterion", f"x = {settings.value}")])
    return run


def _plot(result: Result, folder: Path) -> list[Path]:
    fig, axes = new_figure()
    axes[0][0].plot([0, 1], [0, 1])
    return [save_figure(fig, folder / "line.png")]


def _explain(result: dict) -> str:
    return f"explained by ours = {result['rows'][0]['ours']}"


def _boom(settings: Knob, ctx: Context) -> Result:
    CALLS.append("boom")
    raise RuntimeError("this experiment always fails")


def make_registry(a: int = 1, b: int = 1, with_failure: bool = False) -> Registry:
    exps = [
        Experiment("alpha", "First", "Fig. 0", Knob(a), Knob(a * 10), _run("alpha", True), _plot,
                   claims=("value-matters",), aliases=("a1",), explain=_explain),
        Experiment("beta", "Second, reads alpha", "Fig. 00", Knob(b), Knob(b), _run("beta", False), _plot,
                   claims=("value-matters",), requires=("alpha",), explain=_explain),
        Experiment("gamma", "Independent", "Fig. 000", Knob(1), Knob(1), _run("gamma", True), _plot),
    ]
    if with_failure:
        exps.append(Experiment("delta", "Fails", "—", Knob(1), Knob(1), _boom, _plot))
    return Registry(exps)


@pytest.fixture
def calls():
    CALLS.clear()
    return CALLS


@pytest.fixture
def make():
    """The fake-registry factory: make(a=1, b=1, with_failure=False)."""
    return make_registry
