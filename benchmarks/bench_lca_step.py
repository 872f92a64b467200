"""One LCA training step, old path vs new, in one run: time per optimizer step of E models of one shape.

Arms (each in its own subprocess, the same shape, seeds and steps):

* old: the trainer of `--baseline-ref` (a git ref checked out into a temporary worktree) or of
  `--baseline-src` (a copied `src` folder, e.g. `git archive <ref> src | tar -x -C .gpu/lca-old`, for a
  machine whose .git is stale): its own sampler and an eager step;
* eager: this checkout's step, run eagerly (`capture=False`);
* graph: this checkout's step captured as a CUDA graph and replayed (CUDA only).

Per-step time is (T(long) − T(short)) / (long − short) for two runs of `--steps` and `--steps`/10 steps, so
model building, graph capture and the final evaluation cancel out. Also reported: the largest weight
difference between the eager and the graph runs of the same seeds (the same numbers, up to the order of
atomic additions on a GPU); the old arm draws its samples by the older algorithm, so its weights differ.

    .venv/bin/python benchmarks/bench_lca_step.py --device cuda --m 8 --L 256 --d 128 --E 10
    .venv/bin/python benchmarks/bench_lca_step.py --device cpu --threads 1 --m 6 --L 128 --d 64 --E 8 --steps 60 --no-record

On a shared CPU read the CPU time per step (printed beside the wall time): other processes stretch the wall time.

Appends a row to benchmarks/RESULTS.md under "## LCA: one training step, old vs new path".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SECTION = "## LCA: one training step, old vs new path"
HEADER = ("| date | device | m, L, d, E, batch | old ms/step | new eager ms/step | new graph ms/step | old/graph "
          "| eager vs graph max weight diff | command |\n|---|---|---|---|---|---|---|---|---|")


def worker(args) -> dict:
    """Time `train_models` of the checkout on sys.path at two step counts (called in a subprocess)."""
    import inspect

    import torch

    from assocmem.lca.model import ModelConfig
    from assocmem.lca.task import LCAConfig
    from assocmem.lca.train import TrainConfig, train_models
    from assocmem.runtime import resolve_device

    device = resolve_device(args.device)
    if args.tf32:     # TensorFloat-32 matmuls: the trainer's own precision is full float32
        torch.set_float32_matmul_precision("high")
    if args.threads:
        torch.set_num_threads(args.threads)
    extra = {"capture": args.arm == "graph"} if "capture" in inspect.signature(train_models).parameters else {}

    def run(steps: int):
        cfg = TrainConfig(steps=steps, batch_size=args.batch_size, lr=0.01, warmup_steps=0, schedule="constant",
                          eval_every=steps, eval_samples=64, bayes=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, cpu = time.perf_counter(), time.process_time()
        result = train_models(LCAConfig(m=args.m, L=args.L), ModelConfig(d=args.d), cfg, list(range(args.E)),
                              device=device, **extra)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, time.process_time() - cpu, result

    run(4)  # one-time costs (CUDA context, kernel selection, lazy imports) in neither timed run
    short, long = max(1, args.steps // 10), args.steps
    t_short, c_short, _ = run(short)
    t_long, c_long, result = run(long)
    out = {"arm": args.arm, "code": str(Path(inspect.getfile(train_models)).parent.parent),
           "ms_per_step": (t_long - t_short) / (long - short) * 1e3, "t_short": t_short, "t_long": t_long,
           "cpu_ms_per_step": (c_long - c_short) / (long - short) * 1e3}
    if args.weights_out:
        weights = result.module.weights() if hasattr(result, "module") else result.weights  # older checkouts
        torch.save({k: v.cpu() for k, v in weights.items()}, args.weights_out)
    return out


def run_arm(src: Path, arm: str, args, weights_out: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, __file__, "--worker", "--arm", arm, "--device", args.device, "--steps", str(args.steps),
           "--m", str(args.m), "--L", str(args.L), "--d", str(args.d), "--E", str(args.E),
           "--batch-size", str(args.batch_size)] + (["--weights-out", str(weights_out)] if weights_out else []) \
        + (["--threads", str(args.threads)] if args.threads else []) + (["--tf32"] if args.tf32 else [])
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--m", type=int, default=8)
    ap.add_argument("--L", type=int, default=256)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--E", type=int, default=10, help="models trained together")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (a shared CPU: 1, and read CPU time)")
    ap.add_argument("--baseline-ref", default="5af4dd5", help="git ref of the old code")
    ap.add_argument("--baseline-src", type=Path, default=None, help="the old code's src folder (instead of a ref)")
    ap.add_argument("--arms", nargs="+", default=["old", "eager", "graph"], choices=["old", "eager", "graph"])
    ap.add_argument("--tf32", action="store_true", help="every arm with TensorFloat-32 matmuls (not the trainer's own "
                                                          "float32): what the tensor cores would buy")
    ap.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON here")
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--arm", default="eager", help=argparse.SUPPRESS)
    ap.add_argument("--weights-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    arms = {}
    with tempfile.TemporaryDirectory() as tmp:
        old_src = args.baseline_src
        if old_src is None and "old" in args.arms:
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", f"{tmp}/old", args.baseline_ref],
                           check=True)
            old_src = Path(tmp) / "old" / "src"
        try:
            if "old" in args.arms:
                arms["old"] = run_arm(old_src, "old", args)
            if "eager" in args.arms:
                arms["eager"] = run_arm(REPO / "src", "eager", args, Path(tmp) / "eager.pt")
            if "graph" in args.arms and args.device.startswith("cuda"):
                arms["graph"] = run_arm(REPO / "src", "graph", args, Path(tmp) / "graph.pt")
        finally:
            if args.baseline_src is None and "old" in args.arms:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", f"{tmp}/old"], check=True)
        diff = None
        if "graph" in arms and "eager" in arms:
            import torch

            a, b = torch.load(Path(tmp) / "eager.pt"), torch.load(Path(tmp) / "graph.pt")
            diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    res = {"date": datetime.date.today().isoformat(), "device": args.device, "shape": [args.m, args.L, args.d, args.E,
           args.batch_size], "tf32": args.tf32, "arms": arms, "eager_vs_graph_max_weight_diff": diff}
    line = ", ".join(f"{k} {v['ms_per_step']:.2f} ms/step ({v['cpu_ms_per_step']:.2f} ms CPU)" for k, v in arms.items())
    print(f"m={args.m} L={args.L} d={args.d} E={args.E} B={args.batch_size} on {args.device}: {line}"
          + (f"; eager vs graph max |weight diff| {diff:.1e}" if diff is not None else ""))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))
    if not args.no_record:
        sys.path.insert(0, str(HERE))
        from _results import append_row

        ms = {k: v["ms_per_step"] for k, v in arms.items()}
        command = "`python benchmarks/bench_lca_step.py " + " ".join((argv if argv is not None else sys.argv[1:])) + "`"
        row = (f"| {res['date']} | {_device_name(args.device)} | {args.m}, {args.L}, {args.d}, {args.E}, "
               f"{args.batch_size}{' (TF32)' if args.tf32 else ''} | "
               + " | ".join(f"{ms[a]:.2f}" if a in ms else "—" for a in ("old", "eager", "graph")) + " | "
               + (f"{ms['old'] / ms['graph']:.1f}×" if {"old", "graph"} <= ms.keys() else "—")
               + f" | {'—' if diff is None else f'{diff:.1e}'} | {command} |")
        append_row(SECTION, "Time per optimizer step of E models of one shape (sampling, forward, backward, AdamW), "
                   "old trainer vs this one, eager and captured as a CUDA graph; (T(steps) − T(steps/10)) / (0.9 "
                   "steps), so building, capture and evaluation cancel. Same shapes and seeds in every arm.",
                   HEADER, row)
    return 0


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    sys.path.insert(0, str(HERE))
    from _results import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores"


if __name__ == "__main__":
    sys.exit(main())
