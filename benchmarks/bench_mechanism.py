"""Benchmark: `assocmem hijack mechanism` on the bundled Gemma 3 270M, 200 records × n ∈ {1, 3}, on this CPU.

Target (issue 18): the whole analysis — attention knockout from the read position (each block, windows
of 4 blocks with stride 2, all blocks) and from every prompt token (windows, all blocks), each with its
random-token control, and activation patching of the residual stream, the attention output and the
MLP output at the read position in every block — for 200 not-think records at n = 1 and 3, in ≤ 5 min
on this CPU. Reported beside it: the interventions run, the tokens the extension forwards fed, and
what re-running every intervened prompt whole would have fed (the baseline the extension avoids), by
count, not by time. The CPU may be shared: the 1-minute load average before and after is recorded.

    .venv/bin/python benchmarks/bench_mechanism.py [--records 200] [--threads 2] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from _results import append_row, cpu_name  # benchmarks/ is on sys.path when run as a script

SECTION = "## Hijacking: mechanism (knockout + patching) timing"
COUNTERFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact_reconstructed.json"


def write_section(row: str) -> None:
    header = ("| date | machine | threads | load avg before/after | model | records | interventions | plain tokens "
              "| extension tokens (token × blocks / blocks) | whole-prompt re-run tokens | load s | analysis s "
              "| total s | target |\n|" + "---|" * 14 + "\n")
    append_row(SECTION, "`.venv/bin/python benchmarks/bench_mechanism.py [--threads K]`: `run_mechanism` (fp32, "
               "CPU), scheme not-think, n ∈ {1, 3}, a stratified sample of the reconstructed CounterFact, default "
               "settings (knockout read: each block + windows of 4, stride 2 + all; knockout prompt: windows + all; "
               "each with its control; patching resid / attn / MLP in every block). Extension tokens count each "
               "recomputed token once per block it runs through, divided by the number of blocks; the re-run "
               "column is what feeding every intervened prompt whole through every block would cost. The machine "
               "is shared with other engineers: the load average says how busy it was.", header, row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--counterfact", default=str(COUNTERFACT))
    parser.add_argument("--out", default=None, help="keep the outputs here (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from assocmem.hijack.mechanism import MechanismConfig
    from assocmem.hijack.mechanism_report import run_mechanism
    from assocmem.models.llm import load_causal_lm

    load_before = os.getloadavg()[0]
    config = MechanismConfig.of(model=args.model, counterfact=args.counterfact, records=args.records,
                                ns=tuple(args.n), device="cpu", dtype="float32")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_mechanism."))
    start = time.perf_counter()
    lm = load_causal_lm(config.lm.model, device="cpu", dtype=config.lm.dtype)
    t_load = time.perf_counter() - start
    summary = run_mechanism(config, out, lm=lm)
    total = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    stats, L = summary["stats"], summary["layers"]
    iv = pd.read_parquet(out / "interventions.parquet")
    lengths = pd.read_parquet(out / "records.parquet").set_index(["case_id", "n"])["length"]
    rerun = int(lengths.loc[list(zip(iv["case_id"], iv["n"]))].sum())
    ext = stats["extension_token_blocks"] / L
    row = (f"| {datetime.date.today()} | {cpu_name()} | {torch.get_num_threads()} | {load_before:.1f} / "
           f"{load_after:.1f} | {lm.name} | {summary['records']} | {stats['interventions']} | {stats['plain_tokens']} "
           f"| {ext:.0f} | {rerun} ({rerun / max(ext + stats['plain_tokens'], 1):.0f}x) | {t_load:.1f} "
           f"| {summary['seconds']['analysis']:.1f} | {total:.1f} | ≤ 300 s: {'pass' if total <= 300 else 'FAIL'} |")
    print(row)
    print(f"outputs in {out}")
    if not args.no_write:
        write_section(row)


if __name__ == "__main__":
    main()
