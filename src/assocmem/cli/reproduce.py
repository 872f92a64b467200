"""`assocmem reproduce`: a thin shell over `assocmem.experiments.runner.reproduce`.

    assocmem reproduce --profile quick --out runs/quick
    assocmem reproduce --only fig3a c4 --device cuda --profile full --out results/full
    assocmem reproduce --models gemma3-270m gpt2 --only fig2a
    assocmem reproduce --list
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from assocmem.cli.options import ListCommand, config_function, extra_option, list_flags
from assocmem.experiments.reproduce import ReproduceOptions


def reproduce(options: ReproduceOptions, list_: bool = False) -> None:
    """Regenerate the paper's figures and tables; writes OUT/report.md."""
    from assocmem.experiments.registry import default_registry
    from assocmem.experiments.reproduce import reproduce as run

    registry = default_registry()
    only_ids = list(options.only or ())
    if list_:
        for exp in registry.select(only_ids, options.profile):
            aliases = f" ({', '.join(exp.aliases)})" if exp.aliases else ""
            print(f"{exp.id}{aliases}\t{exp.paper}\t{exp.title}")
        return
    for exp in registry.select(only_ids, options.profile):  # fail fast on an unknown id, before any display starts
        exp.settings(options.profile)
    out_dir = Path(options.out) if options.out else Path("results") / options.profile
    command = "assocmem " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["reproduce"] else None
    with _RichDisplay() as display:
        summary = run(options.profile, only_ids, options.device, out_dir, options.models, options.counterfact, display,
                      registry, command)
    print(f"report: {summary.report} ({summary.wall_s / 60:.1f} min)")
    if summary.failed:
        for o in summary.failed:
            print(f"failed: {o.id}: {o.error}", file=sys.stderr)
        raise typer.Exit(1)


class ReproduceCommand(ListCommand):
    list_options = list_flags(ReproduceOptions)


def register(app: typer.Typer) -> None:
    """Add the `reproduce` command to the root app."""
    fn = config_function(ReproduceOptions, reproduce,
                         extra=[extra_option("list_", bool, False, "--list", help="List the experiments and exit.")])
    app.command("reproduce", cls=ReproduceCommand)(fn)


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
