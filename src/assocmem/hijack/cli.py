"""`assocmem hijack`: a thin shell over `assocmem.hijack.run.run_hijack`.

    assocmem hijack --schemes not-think relation --max-n 10 --relations P190 --out runs/p190
    assocmem hijack --model gpt2 --schemes reverse --per-relation 5 --counterfact cf.json --out runs/r
    torchrun --nproc-per-node 4 -m assocmem.cli hijack ... --out runs/all     (each rank scores a share)

The group's callback is the benchmark itself (invoke_without_command=True); when a sub-command
(`assocmem hijack try ...`, `assocmem hijack diagnose ...`) is named, the callback does nothing.
Multi-value options take space- or comma-separated lists: `--schemes not-think relation`,
`--schemes not-think,relation` and `--schemes not-think --schemes relation` are the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from typer.core import TyperGroup

from assocmem.errors import ConfigError

MULTI_OPTIONS = ("--schemes", "--relations")


class HijackGroup(TyperGroup):
    """Joins `--schemes a b c` into `--schemes a,b,c` before click parses (click options take one value)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_multi_values(args, MULTI_OPTIONS, stop=set(self.commands)))


def join_multi_values(args: list[str], options: tuple[str, ...], stop: set[str] = frozenset()) -> list[str]:
    """['--schemes', 'a', 'b', '--max-n', '3'] → ['--schemes', 'a,b', '--max-n', '3'].

    Values run until the next token starting with "-" or naming a sub-command; everything from the
    first sub-command name on is left to that sub-command.
    """
    out, i = [], 0
    while i < len(args):
        tok = args[i]
        if tok in stop:
            return out + args[i:]
        if tok in options:
            values = []
            i += 1
            while i < len(args) and not args[i].startswith("-") and args[i] not in stop:
                values.append(args[i])
                i += 1
            out += [tok, ",".join(values)] if values else [tok]
            continue
        out.append(tok)
        i += 1
    return out


def split_list(values: list[str] | None) -> tuple[str, ...] | None:
    """Flatten repeated / comma- / space-separated option values; None if none were given."""
    if not values:
        return None
    items = [t for v in values for t in re.split(r"[,\s]+", v) if t]
    return tuple(dict.fromkeys(items)) or None


app = typer.Typer(cls=HijackGroup, add_completion=False, pretty_exceptions_enable=False)


@app.callback(invoke_without_command=True)
def hijack(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="gemma3-270m (bundled), smollm2-135m, a hub id, a local dir or a .gguf file.")] = "gemma3-270m",
    schemes: Annotated[Optional[list[str]], typer.Option("--schemes", help="Schemes, e.g. --schemes not-think relation reverse (see --list-schemes).")] = None,
    max_n: Annotated[int, typer.Option("--max-n", help="Prepend n = 0..max-n sentences.")] = 10,
    relations: Annotated[Optional[list[str]], typer.Option("--relations", help="Only these relation ids, e.g. --relations P190 P103.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Then the first LIMIT records (case_id order).")] = None,
    per_relation: Annotated[Optional[int], typer.Option("--per-relation", help="Stratified sample: at most this many records per relation.")] = None,
    mode: Annotated[str, typer.Option(help="first-token | full-target (sum of the target's token log-probs) | mean-target (ROME's rule: mean per-token log-prob).")] = "first-token",
    batch_tokens: Annotated[Optional[int], typer.Option("--batch-tokens", help="Tokens (not prompts) per forward: packed rows x row length. Default 2048 on CPU, 65536 on GPU.")] = None,
    row_tokens: Annotated[int, typer.Option("--row-tokens", help="Length of a packed row (a record's prompts for every n share one segment; a longer segment gets a row of its own).")] = 512,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (float32 on CPU; on GPU the checkpoint's own, bfloat16 for the bundled models) | float32 | bfloat16 | float16.")] = "auto",
    device_map: Annotated[Optional[str], typer.Option("--device-map", help="e.g. auto: spread a large model over GPUs.")] = None,
    max_memory: Annotated[Optional[str], typer.Option("--max-memory", help='With --device-map: cap per device, e.g. "0=20GiB,1=20GiB,cpu=64GiB".')] = None,
    counterfact: Annotated[Optional[Path], typer.Option(help="Local CounterFact JSON (official layout); default: download the official file.")] = None,
    template: Annotated[Optional[str], typer.Option(help='Your own sentence, e.g. "{subject} is not related to {target_false}." (scheme "template").')] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip and count bad records instead of stopping.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the per-relation sample.")] = 0,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Records per resumable chunk.")] = 256,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Allow a hub model's own code.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (re-running the same command resumes).")] = None,
    list_schemes: Annotated[bool, typer.Option("--list-schemes", help="List the schemes and exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Context hijacking of a causal LM on CounterFact (paper §3, Fig. 2): shares vs n per scheme."""
    if ctx.invoked_subcommand is not None:
        return
    if list_schemes:
        from assocmem.hijack.schemes import SCHEMES

        for s in SCHEMES.values():
            typer.echo(f"{s.name:20s} {s.description}")
        typer.echo(f"{'template':20s} your --template sentence")
        return
    if out is None:
        raise ConfigError("--out is required: the run folder (e.g. --out runs/hijack)")
    from assocmem.hijack.run import HijackConfig, run_hijack

    config = HijackConfig(
        model=model, schemes=split_list(schemes) or (() if template else ("not-think", "relation")),
        max_n=max_n, relations=split_list(relations), limit=limit, per_relation=per_relation, mode=mode,
        batch_tokens=batch_tokens, row_tokens=row_tokens, device=device, dtype=dtype, device_map=device_map, max_memory=max_memory,
        counterfact=str(counterfact) if counterfact else None, template=template, skip_bad=skip_bad,
        seed=seed, chunk_size=chunk_size, trust_remote_code=trust_remote_code,
    )
    summary = run_hijack(config, out, progress=not quiet)
    _print_summary(summary, out)


def _print_summary(summary: dict, out: Path) -> None:
    lines = [f"{summary['model']} ({summary['mode']}), {summary['records']} records, "
             f"{summary['skipped']['count']} skipped"]
    for scheme, d in summary["directions"].items():
        h, t = d["hijacked"], d["true_preferred"]
        lines.append(f"  {scheme:20s} n={d['n_from']}→{d['n_to']}: hijacked_share {h['from']:.3f}→{h['to']:.3f} "
                     f"({h['moves']}), true_preferred_share {t['from']:.3f}→{t['to']:.3f} ({t['moves']})")
    lines.append(f"wrote {out}/rows.parquet, summary.json, rates.png")
    typer.echo("\n".join(lines))


def _register_subcommands() -> None:
    from assocmem.hijack.diagnose_cli import register
    from assocmem.hijack.mechanism_cli import register as register_mechanism

    register(app)
    register_mechanism(app)


_register_subcommands()
