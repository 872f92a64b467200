"""Benchmark: `assocmem hijack diagnose` on the bundled Gemma 3 270M, 200 records, n ∈ {0, 1, 3}, on this CPU.

Target: the whole command — model load (from the de-quantised cache), prompts and masks,
one traced forward per prompt, logit lens at every layer over the 262k vocabulary, embedding spectrum,
tables and figures — in ≤ 5 minutes on 2 CPU cores. Baseline in the same run: the same trace one
prompt at a time on the first `--baseline-prompts` prompts, against the batched trace on the same
prompts. The CPU may be shared: the 1-minute load average before and after is recorded with the row.
Writes a row into the "## Hijacking: diagnostics timing" section of RESULTS.md.

    .venv/bin/python benchmarks/bench_diagnose.py [--records 200] [--n 0 1 3] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from pathlib import Path

import torch
from _results import RESULTS, append_row, cpu_name  # benchmarks/ is on sys.path when run as a script

SECTION = "## Hijacking: diagnostics timing"
COUNTERFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact_reconstructed.json"


def write_section(row: str) -> None:
    """Put `row` under SECTION in RESULTS.md (header written once), leaving other sections alone."""
    header = ("| date | machine | threads | load avg before/after | records | prompts | n | model load s "
              "| forward s | lens s | spectrum s | total s | one-at-a-time vs batched (same prompts) | target |\n|"
              + "---|" * 14 + "\n")
    append_row(SECTION, "`.venv/bin/python benchmarks/bench_diagnose.py [--threads K]`: `run_diagnose` on the "
               "bundled Gemma 3 270M (fp32, CPU), scheme not-think, a stratified sample of the reconstructed "
               "CounterFact. total = model load + prompts/masks + forward + logit lens + spectrum + tables/PNGs. "
               "The machine may be shared: the load average says how busy it was.", header, row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--n", type=int, nargs="+", default=[0, 1, 3])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--counterfact", default=str(COUNTERFACT))
    parser.add_argument("--baseline-prompts", type=int, default=24)
    parser.add_argument("--out", default=None, help="keep the outputs here (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from assocmem.hijack import diagnostics as D
    from assocmem.hijack.diagnose import DiagnoseConfig, run_diagnose
    from assocmem.models.llm import load_causal_lm

    load_before = os.getloadavg()[0]
    config = DiagnoseConfig.of(model=args.model, counterfact=args.counterfact, records=args.records,
                            ns=tuple(args.n), device="cpu")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_diagnose."))
    start = time.perf_counter()
    lm = load_causal_lm(config.lm.model, device="cpu", dtype=config.lm.dtype)
    t_load = time.perf_counter() - start
    summary = run_diagnose(config, out, lm=lm)
    total = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    sec = summary["seconds"]

    # Baseline: the same trace one prompt at a time, on the first K prompts of the run.
    from assocmem.hijack.counterfact import load_counterfact, select_records
    from assocmem.hijack.schemes import build_prompt, get_scheme

    records = select_records(load_counterfact(args.counterfact).records, spread=args.records)
    prompts = [build_prompt(r, get_scheme("not-think"), n) for r in records for n in args.n][: args.baseline_prompts]
    t = time.perf_counter()
    batched = D.trace_last_position(lm, prompts, batch_tokens=config.batch_tokens)
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    single = D.trace_last_position(lm, prompts, batch_tokens=1)
    t_single = time.perf_counter() - t
    rel = ((batched.resid - single.resid).norm(dim=-1) / single.resid.norm(dim=-1)).max().item()
    assert rel < 1e-4, f"batched and one-at-a-time residual streams differ: max relative {rel:.2e}"
    verdict = "pass" if total <= 300 else "FAIL"
    print(f"{summary['prompts']} prompts from {summary['records']} records, threads={torch.get_num_threads()}, "
          f"load avg {load_before:.1f} -> {load_after:.1f}")
    print(f"model load {t_load:.1f} s | forward {sec['forward']:.1f} s | lens+tables {sec['lens_and_tables']:.1f} s "
          f"| spectrum {sec['spectrum']:.1f} s | total {total:.1f} s (target <= 300 s: {verdict})")
    print(f"baseline on {len(prompts)} prompts: one at a time {t_single:.1f} s, batched {t_batched:.1f} s "
          f"({t_single / t_batched:.1f}x); max relative difference of the residual streams {rel:.1e}")
    print(f"outputs in {out}")
    if not args.no_write:
        row = (f"| {datetime.date.today()} | {cpu_name()} | {torch.get_num_threads()} | {load_before:.1f} / "
               f"{load_after:.1f} | {summary['records']} | {summary['prompts']} | {' '.join(map(str, args.n))} "
               f"| {t_load:.1f} | {sec['forward']:.1f} | {sec['lens_and_tables']:.1f} | {sec['spectrum']:.1f} "
               f"| {total:.1f} | {t_single:.1f} s vs {t_batched:.1f} s on {len(prompts)} prompts "
               f"({t_single / t_batched:.1f}x) | ≤ 300 s: {verdict} |")
        write_section(row)
        print(f"wrote a row to {RESULTS}")


if __name__ == "__main__":
    main()
