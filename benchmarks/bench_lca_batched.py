"""Training E models at once vs a Python loop over the same E models one at a time.

Both arms call `assocmem.lca.train.train_models` with the same seeds, steps and sizes in this one
process; the loop arm passes one seed per call. Only the final evaluation runs (eval_every = steps,
no Bayes ceiling), so the times are training. Both arms produce the same models, and the script
checks that they do. A two-step warm-up of each arm runs first, so one-time costs (CUDA context,
kernel selection, lazy imports) are counted in neither.

    .venv/bin/python benchmarks/bench_lca_batched.py --device cpu --steps 60
    .venv/bin/python benchmarks/bench_lca_batched.py --device cuda --steps 300 --m 8 --L 64 --d 128

Appends a row to benchmarks/RESULTS.md under "## LCA: batched training vs a loop" and, with --out,
writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import resource
import sys
import time
from pathlib import Path

import torch
from _results import append_row, cpu_name  # benchmarks/ is on sys.path when run as a script

from assocmem.io import write_json
from assocmem.lca.model import ModelConfig
from assocmem.lca.task import LCAConfig
from assocmem.lca.train import TrainConfig, TrainedModels, train_models
from assocmem.runtime import resolve_device

SECTION = "## LCA: batched training vs a loop"
HEADER = (
    "| date | machine | device | torch threads | E | steps | m, L, d, batch | batched s | loop s | speed-up "
    "| peak mem batched | peak mem loop | max weight diff |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mib(device: torch.device) -> float:
    """GPU: peak allocated since the last reset. CPU: the process's peak RSS so far (monotone, so
    the second arm's figure is an upper bound on its own peak)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def timed(fn, device: torch.device) -> tuple[float, object, float]:
    _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return time.perf_counter() - start, result, _peak_mib(device)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {os.cpu_count()} cores"


def record(row: str) -> None:
    """Append `row` to this benchmark's section of RESULTS.md (other sections are left as they are)."""
    append_row(
        SECTION,
        "`.venv/bin/python benchmarks/bench_lca_batched.py`: E models trained as one batch vs a "
        "loop of E single-model runs, same seeds and steps, one process; times are wall clock, the last column "
        "is the largest difference between a batched model's weights and the same model trained alone. "
        "Batching removes per-step overhead (Python, kernel launches, sampling calls), not arithmetic: on a "
        "GPU the loop is launch-bound and the speed-up is large; on a CPU it shrinks as the models grow and "
        "the matrix products dominate. Peak memory: CUDA max allocated per arm, or the process's peak RSS "
        "so far on CPU (so the loop's figure is an upper bound).",
        HEADER,
        row,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--E", type=int, default=32)
    parser.add_argument("--m", type=int, default=6)
    parser.add_argument("--L", type=int, default=32)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON here")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    task = LCAConfig(m=args.m, L=args.L, omega=0.5)
    model = ModelConfig(d=args.d)
    cfg = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, warmup_steps=min(10, args.steps),
        eval_every=args.steps, eval_samples=256, bayes=False,
    )
    seeds = list(range(args.E))

    def batched(c: TrainConfig = cfg) -> TrainedModels:
        return train_models(task, model, c, seeds, device=device)

    def loop(c: TrainConfig = cfg) -> list[TrainedModels]:
        return [train_models(task, model, c, [s], device=device) for s in seeds]

    warm = dataclasses.replace(cfg, steps=2, warmup_steps=0, eval_every=2)
    batched(warm), loop(warm)
    t_batched, res_batched, mem_batched = timed(batched, device)
    t_loop, res_loop, mem_loop = timed(loop, device)
    diff = max(
        (res_batched.weights[k][e] - r.weights[k][0]).abs().max().item()
        for e, r in enumerate(res_loop) for k in ("W_E", "W_Q", "W_K", "W_V")
    )
    same_acc = all(a == r.final_accuracy[0] for a, r in zip(res_batched.final_accuracy, res_loop))
    numbers = {
        "date": datetime.date.today().isoformat(), "machine": machine(device), "device": str(device),
        "torch_threads": torch.get_num_threads(), "E": args.E, "steps": args.steps, "m": args.m, "L": args.L,
        "d": args.d, "batch_size": args.batch_size, "batched_s": t_batched, "loop_s": t_loop,
        "speedup": t_loop / t_batched, "peak_mib_batched": mem_batched, "peak_mib_loop": mem_loop,
        "memory_kind": "cuda max allocated" if device.type == "cuda" else "process peak RSS",
        "max_weight_diff": diff, "same_final_accuracy": same_acc,
        "mean_final_accuracy": sum(res_batched.final_accuracy) / args.E,
    }
    print(
        f"E={args.E} steps={args.steps} m={args.m} L={args.L} d={args.d} B={args.batch_size} on {device}: "
        f"batched {t_batched:.2f} s, loop {t_loop:.2f} s, speed-up {numbers['speedup']:.1f}x; "
        f"peak {mem_batched:.0f} / {mem_loop:.0f} MiB ({numbers['memory_kind']}); "
        f"max |weight diff| {diff:.1e}, same accuracies: {same_acc}"
    )
    if args.out:
        write_json(args.out, numbers)
    if not args.no_record:
        record(format_row(numbers))
    return 0


def format_row(n: dict) -> str:
    """One RESULTS.md row from the numbers `main` writes as JSON."""
    return (
        f"| {n['date']} | {n['machine']} | {n['device']} | {n['torch_threads']} | {n['E']} | {n['steps']} "
        f"| {n['m']}, {n['L']}, {n['d']}, {n['batch_size']} | {n['batched_s']:.2f} | {n['loop_s']:.2f} "
        f"| {n['speedup']:.1f}x | {n['peak_mib_batched']:.0f} MiB | {n['peak_mib_loop']:.0f} MiB "
        f"| {n['max_weight_diff']:.1e} |"
    )


if __name__ == "__main__":
    sys.exit(main())
