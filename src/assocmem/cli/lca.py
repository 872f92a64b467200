"""`assocmem lca` sub-commands: a thin shell that parses options, builds the configs and calls
`assocmem.lca.train.train_models`.

    assocmem lca train --m 8 --L 64 --d 128 --omega 0.5 --seeds 0 1 2 --steps 2000 --out runs/m8

writes DIR/summary.json (the resolved config, per-seed final accuracy, Bayes-optimal accuracy and
gap, the loss curve) and DIR/weights.safetensors (W_E, W_Q, W_K, W_V with a leading seed dimension),
both atomically, at the end of the run.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer

from assocmem.config import to_dict
from assocmem.errors import ConfigError, bad_option
from assocmem.io import write_json
from assocmem.lca.model import ModelConfig
from assocmem.lca.task import NEIGHBORHOODS, LCAConfig
from assocmem.lca.train import SCHEDULES, TrainConfig, TrainResult, train_models
from assocmem.runtime import resolve_device

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

_DEFAULT_TRAIN = TrainConfig()
# Config field → command-line option, so that a validation error names what the user typed.
_OPTION_NAMES = {
    "m": "--m", "L": "--L", "omega": "--omega", "beta": "--beta", "neighborhood": "--neighborhood",
    "d": "--d", "d_a": "--d-a", "steps": "--steps", "batch_size": "--batch-size", "lr": "--lr",
    "weight_decay": "--weight-decay", "warmup_steps": "--warmup-steps", "schedule": "--schedule",
    "eval_every": "--eval-every", "eval_samples": "--eval-samples",
}


@app.callback()
def _group() -> None:
    """Latent concept association (paper §4): train one-layer transformers."""


@contextlib.contextmanager
def _as_option_errors() -> Iterator[None]:
    """Re-raise a config's `field=value is invalid` as `--option=value is invalid`."""
    try:
        yield
    except ConfigError as err:
        match = re.match(r"(\w+)=", str(err))
        if match and match.group(1) in _OPTION_NAMES:
            raise ConfigError(_OPTION_NAMES[match.group(1)] + str(err)[len(match.group(1)) :]) from None
        raise


def parse_seeds(values: list[str] | None, extra: list[str] | None) -> list[int]:
    """Seeds from `--seeds 0 1 2`, `--seeds 0,1,2`, `--seeds "0 1 2"` or `--seeds 0 --seeds 1`.

    Click options take one value each, so in `--seeds 0 1 2` the 1 and 2 arrive as positional
    arguments (`extra`); they are accepted only when --seeds was given.
    """
    if values is None:
        if extra:
            raise bad_option("argument", " ".join(extra), "no positional arguments (seeds go after --seeds)")
        return [0]
    raw = " ".join([*values, *(extra or [])])
    tokens = [t for t in re.split(r"[\s,]+", raw) if t]
    if not tokens or not all(t.isdigit() for t in tokens):
        raise bad_option("--seeds", raw, "non-negative integers, e.g. --seeds 0 1 2")
    seeds = [int(t) for t in tokens]
    if len(set(seeds)) != len(seeds):
        raise bad_option("--seeds", raw, "distinct seeds")
    return seeds


@app.command("train", no_args_is_help=False)
def train(
    out: Annotated[Path, typer.Option("--out", help="Run folder for summary.json and weights.safetensors.")],
    m: Annotated[int, typer.Option("--m", help="Number of binary latents (V = 2^m tokens), 1..12.")] = 8,
    L: Annotated[int, typer.Option("--L", help="Context length.")] = 64,
    omega: Annotated[float, typer.Option("--omega", help="Signal share of p(z|z*), in [0, 1].")] = 0.5,
    beta: Annotated[float, typer.Option("--beta", help="Temperature of pi, > 0.")] = 1.0,
    neighborhood: Annotated[str, typer.Option("--neighborhood", help="|".join(NEIGHBORHOODS))] = "all",
    d: Annotated[int, typer.Option("--d", help="Embedding dimension.")] = 128,
    d_a: Annotated[Optional[int], typer.Option("--d-a", help="Attention head size (default d).")] = None,
    freeze_value: Annotated[bool, typer.Option("--freeze-value", help="Fix W_V to the identity.")] = False,
    freeze_embedding: Annotated[
        bool, typer.Option("--freeze-embedding", help="Keep W_E at its Gaussian init.")
    ] = False,
    seeds: Annotated[
        Optional[list[str]], typer.Option("--seeds", help="Seeds, e.g. --seeds 0 1 2 (one model each).")
    ] = None,
    more_seeds: Annotated[Optional[list[str]], typer.Argument(hidden=True)] = None,
    steps: Annotated[int, typer.Option("--steps")] = _DEFAULT_TRAIN.steps,
    batch_size: Annotated[int, typer.Option("--batch-size")] = _DEFAULT_TRAIN.batch_size,
    lr: Annotated[float, typer.Option("--lr", help="Peak AdamW learning rate.")] = _DEFAULT_TRAIN.lr,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = _DEFAULT_TRAIN.weight_decay,
    warmup_steps: Annotated[int, typer.Option("--warmup-steps")] = _DEFAULT_TRAIN.warmup_steps,
    schedule: Annotated[str, typer.Option("--schedule", help="|".join(SCHEDULES))] = _DEFAULT_TRAIN.schedule,
    eval_every: Annotated[int, typer.Option("--eval-every")] = _DEFAULT_TRAIN.eval_every,
    eval_samples: Annotated[int, typer.Option("--eval-samples")] = _DEFAULT_TRAIN.eval_samples,
    device: Annotated[str, typer.Option("--device", help="auto|cpu|cuda|cuda:N")] = "auto",
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train one model per seed on one LCA setting, all at once, and write the run folder."""
    seed_list = parse_seeds(seeds, more_seeds)
    with _as_option_errors():
        task = LCAConfig(m=m, L=L, omega=omega, beta=beta, neighborhood=neighborhood)
        model_cfg = ModelConfig(d=d, d_a=d_a, freeze_value=freeze_value, freeze_embedding=freeze_embedding)
        train_cfg = TrainConfig(
            steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
            schedule=schedule, eval_every=eval_every, eval_samples=eval_samples,
        )
    check_new_folder(out)
    dev = resolve_device(device)
    start = time.perf_counter()
    result = train_models(task, model_cfg, train_cfg, seed_list, device=dev, progress=progress)
    elapsed = time.perf_counter() - start
    config = {
        "task": to_dict(task),
        "model": {**to_dict(model_cfg), "d_a": model_cfg.head_size, "init_std": model_cfg.std},
        "train": to_dict(train_cfg),
        "seeds": seed_list,
        "device": str(dev),
    }
    save_weights(result, config, out / "weights.safetensors")
    write_json(out / "summary.json", summarise(result, config, elapsed))
    typer.echo(format_table(result))
    typer.echo(f"wrote {out / 'summary.json'} and {out / 'weights.safetensors'}")


def check_new_folder(out: Path) -> None:
    """--out must be a new or empty folder: a run never overwrites another's summary and weights."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        held = ", ".join(sorted(p.name for p in out.iterdir())[:3]) if out.is_dir() else "a file"
        raise ConfigError(f"--out={str(out)!r} is invalid: allowed a new or empty folder (it holds {held}); "
                          "use a new --out, or delete it to train again")


def summarise(result: TrainResult, config: dict, elapsed_s: float) -> dict:
    """The JSON summary of a run: config, per-seed results, their mean, and the loss curve."""
    seeds = [s.seed for s in result.specs]
    curve = result.history.assign(seed=[seeds[e] for e in result.history["model"]])
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "config": config,
        "seeds": seeds,
        "final_accuracy": result.final_accuracy,
        "bayes_optimal_accuracy": result.bayes_optimal_accuracy,
        "gap_to_bayes": result.gap_to_bayes,
        "mean": {
            "final_accuracy": mean(result.final_accuracy),
            "bayes_optimal_accuracy": mean(result.bayes_optimal_accuracy),
            "gap_to_bayes": mean(result.gap_to_bayes),
        },
        "loss_curve": curve[["step", "seed", "loss", "accuracy"]].to_dict(orient="records"),
        "weights": "weights.safetensors",
        "elapsed_s": elapsed_s,
    }


def save_weights(result: TrainResult, config: dict, path: Path) -> Path:
    """W_E (E, d, V), W_Q, W_K, W_V in the one weights format (lca.weights), the config beside."""
    from assocmem.lca import weights

    entries = [weights.entry_of(s, a, b) for s, a, b in zip(result.specs, result.final_accuracy,
                                                           result.bayes_optimal_accuracy)]
    return weights.write(path, result.module.weights(), entries, config=config)


def format_table(result: TrainResult) -> str:
    lines = [f"{'seed':>6} {'accuracy':>9} {'bayes-opt':>9} {'gap':>7}"]
    for spec, acc, bayes, gap in zip(
        result.specs, result.final_accuracy, result.bayes_optimal_accuracy, result.gap_to_bayes
    ):
        lines.append(f"{spec.seed:>6} {acc:>9.4f} {bayes:>9.4f} {gap:>7.4f}")
    if len(result.specs) > 1:
        n = len(result.specs)
        lines.append(
            f"{'mean':>6} {sum(result.final_accuracy) / n:>9.4f} "
            f"{sum(result.bayes_optimal_accuracy) / n:>9.4f} {sum(result.gap_to_bayes) / n:>7.4f}"
        )
    return "\n".join(lines)
