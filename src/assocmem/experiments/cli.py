"""`assocmem reproduce`: a thin shell over `assocmem.experiments.runner.reproduce`.

    assocmem reproduce --profile quick --out results/quick
    assocmem reproduce --only fig3a --only c4 --device cuda --profile full --out results/full
    assocmem reproduce --list
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
import typer.core

from assocmem.experiments.registry import PROFILES
from assocmem.hijack.cli import join_multi_values, split_list


class ReproduceCommand(typer.core.TyperCommand):
    """`--models a b`, `--models a,b` and `--models a --models b` alike (as `assocmem hijack` takes lists)."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, join_multi_values(args, ("--models", "--model", "--only")))


def register(app: typer.Typer) -> None:
    """Add the `reproduce` command to the root app."""
    app.command("reproduce", cls=ReproduceCommand,
                help="Regenerate the paper's figures and tables; writes OUT/report.md.")(reproduce_command)


def reproduce_command(
    profile: str = typer.Option("quick", help=f"one of {', '.join(PROFILES)}: quick ≤ 20 min on 2 CPU cores, "
                                              "full = paper-like sizes for one GPU"),
    only: Optional[list[str]] = typer.Option(None, "--only", help="experiment id or alias; repeat or comma-separate "
                                                                   "(requirements are added)"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
    out: Optional[Path] = typer.Option(None, help="output folder (default results/<profile>)"),
    models: Optional[list[str]] = typer.Option(None, "--models", "--model",
                                               help="causal LMs for the hijacking experiments, e.g. --models "
                                                    "gemma3-270m smollm2-135m gpt2: bundled names, Hugging Face ids, "
                                                    "local folders or GGUF files (default: both bundled models)"),
    counterfact: Optional[Path] = typer.Option(None, help="CounterFact JSON (default: ../shared/data/"
                                                            "counterfact_reconstructed.json if present, "
                                                            "else the loader's download)"),
    list_: bool = typer.Option(False, "--list", help="list the experiments and exit"),
) -> None:
    from assocmem.experiments.registry import default_registry
    from assocmem.experiments.runner import reproduce

    registry = default_registry()
    only_ids = [name.strip() for item in only or [] for name in item.split(",") if name.strip()]
    if list_:
        for exp in registry.select(only_ids):
            aliases = f" ({', '.join(exp.aliases)})" if exp.aliases else ""
            print(f"{exp.id}{aliases}\t{exp.paper}\t{exp.title}")
        return
    registry.select(only_ids)  # fail fast on an unknown id, before any display starts
    out_dir = out or Path("results") / profile
    command = "assocmem " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["reproduce"] else None
    with _RichDisplay() as display:
        llms = split_list(models)
        summary = reproduce(profile, only_ids, device, out_dir, llms, counterfact, display, registry, command)
    print(f"report: {summary.report} ({summary.wall_s / 60:.1f} min)")
    if summary.failed:
        for o in summary.failed:
            print(f"failed: {o.id}: {o.error}", file=sys.stderr)
        raise typer.Exit(1)


class _RichDisplay:
    """Progress bars: one over the experiments, one inside the current experiment; a line per result."""

    def __enter__(self) -> "_RichDisplay":
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                 TimeElapsedColumn(), transient=False)
        self.progress.__enter__()
        self.overall = self.progress.add_task("experiments", total=1)
        self.current = self.progress.add_task("", total=1.0, visible=False)
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, exp, index: int, total: int) -> None:
        self.exp_id, self.index, self.total = exp.id, index, total
        self.progress.update(self.overall, total=total, completed=index, description=f"experiments ({index}/{total})")
        self.progress.reset(self.current, total=1.0, description=f"  {exp.id}", visible=True)

    def update(self, fraction: float, text: str = "") -> None:
        desc = f"  {self.exp_id}" + (f": {text}" if text else "")
        self.progress.update(self.current, completed=min(max(fraction, 0.0), 1.0), description=desc)

    def say(self, line: str) -> None:
        self.progress.console.print(f"warning: {line}")

    def finish(self, outcome) -> None:
        self.progress.update(self.overall, advance=1, description=f"experiments ({self.index + 1}/{self.total})")
        self.progress.update(self.current, visible=False)
        detail = f"{outcome.wall_s:.1f} s" if outcome.status != "failed" else outcome.error
        self.progress.console.print(f"{outcome.id:>16}  {outcome.status:<7} {detail}")
