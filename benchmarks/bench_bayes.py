"""Benchmark: the Bayes-optimal ceiling on 20,000 contexts at m = 8, L = 128 on this CPU.

Times the ceiling (`bayes.expected_accuracy_on`: count matrix x log table + tie-aware argmax) apart
from sampling, cold (first call: builds and caches the (V, V) log tables) and warm (median of
repeats), against a baseline in the same run: the literal formula Σ_l log p(t_l | y) as a gather of
the (V, V) table over every position, summed (chunked so that it fits in memory). Both must agree.
The target is < 2 s. Writes the row into the "## LCA: Bayes-optimal ceiling" section of RESULTS.md.

    .venv/bin/python benchmarks/bench_bayes.py [--n 20000] [--m 8] [--L 128] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import torch
from _results import RESULTS, append_row, cpu_name  # benchmarks/ is on sys.path when run as a script

from assocmem.lca import bayes
from assocmem.lca.task import LCAConfig, context_table, pi_table, sample_batch

SECTION = "## LCA: Bayes-optimal ceiling"


def gather_baseline(config: LCAConfig, x: torch.Tensor, y: torch.Tensor) -> float:
    """The formula read literally: per position, gather log p(t_l | ·) for all V targets, then sum."""
    log_p_t = context_table(config).log().T  # (V, V) [z, z*]
    log_pi_t = pi_table(config).log().T
    correct = []
    for chunk_x, chunk_y in zip(x.split(1024), y.split(1024)):
        ll = log_p_t[chunk_x[:, :-1]].sum(dim=1) + log_pi_t[chunk_x[:, -1]]  # (b, L-1, V) → (b, V)
        correct.append(bayes.expected_correct(ll, chunk_y))
    return float(torch.cat(correct).mean())


def timed(fn, repeats: int = 1) -> tuple[float, list[float]]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, times


def write_section(row: str) -> None:
    """Put `row` under SECTION in RESULTS.md (table header written once), leaving other sections alone."""
    header = ("| date | machine | torch threads | n | m | L | sampling s | ceiling cold s | ceiling warm s "
              "| gather baseline s | speed-up | Bayes acc. | target |\n|" + "---|" * 13 + "\n")
    append_row(SECTION, "`.venv/bin/python benchmarks/bench_bayes.py`: ceiling = `bayes.expected_accuracy_on` "
               "on fresh samples; warm = median of 5.", header, row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--m", type=int, default=8)
    parser.add_argument("--L", type=int, default=128)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    config = LCAConfig(m=args.m, L=args.L, omega=0.5, beta=1.0, neighborhood="all")
    gen = torch.Generator().manual_seed(0)
    (x, y), sample_t = timed(lambda: sample_batch(config, args.n, gen))
    acc, cold_t = timed(lambda: bayes.expected_accuracy_on(config, x, y))
    _, warm_t = timed(lambda: bayes.expected_accuracy_on(config, x, y), repeats=5)
    base_acc, base_t = timed(lambda: gather_baseline(config, x, y))
    assert abs(acc - base_acc) < 1e-12, (acc, base_acc)
    warm = statistics.median(warm_t)
    verdict = "pass" if max(cold_t[0], warm) < 2.0 else "FAIL"
    print(f"m={args.m} L={args.L} n={args.n}  threads={torch.get_num_threads()}")
    print(f"sampling {sample_t[0]:.3f} s | ceiling cold {cold_t[0]:.3f} s, warm {warm:.3f} s "
          f"(min {min(warm_t):.3f}) | gather baseline {base_t[0]:.3f} s ({base_t[0] / warm:.1f}x slower)")
    print(f"Bayes-optimal accuracy {acc:.4f} (target < 2 s: {verdict})")
    if not args.no_write:
        machine = cpu_name()
        row = (f"| {datetime.date.today()} | {machine} | {torch.get_num_threads()} | {args.n} | {args.m} | {args.L} "
               f"| {sample_t[0]:.3f} | {cold_t[0]:.3f} | {warm:.3f} | {base_t[0]:.3f} | {base_t[0] / warm:.1f}x "
               f"| {acc:.4f} | < 2 s: {verdict} |")
        write_section(row)
        print(f"wrote a row to {RESULTS}")


if __name__ == "__main__":
    main()
