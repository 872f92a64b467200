"""Benchmark: the `mechanism` experiment's work for one model (`run_mechanism` with a profile's settings).

What it times, per stage: block level (read-position knockout per block / window / all blocks with its
random-token control, the every-prompt-token sanity check, patching resid / attn / MLP at the read),
heads (per-head knockout, control and patching in the carrying blocks), and the defence (one forward
per scale tried, the heads' blocks removed and nothing, over the mechanism's records and the defence's
extra ones), for both schemes (not-think, associated). Reported beside them: interventions, tokens the
extension forwards fed, and what re-running every intervened prompt whole would have fed. The CPU may
be shared: the 1-minute load average before and after is recorded.

    .venv/bin/python benchmarks/bench_mechanism.py [--profile quick|full] [--model smollm2-135m]
        [--records N] [--threads 2] [--device cpu] [--no-write]

Target: the quick profile's settings ≤ 60 s per bundled model on an idle 2-core CPU (the quick profile's
whole budget is 10 min).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from _results import append_row, cpu_name  # benchmarks/ is on sys.path when run as a script

SECTION = "## Hijacking: mechanism (knockout, patching, heads, defence) timing"
COUNTERFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact_reconstructed.json"
TARGET_S = 60.0


def write_section(row: str) -> None:
    header = ("| date | machine | device | threads | load avg before/after | model | profile | records (+ defence) "
              "| interventions | extension tokens (token × blocks / blocks) | whole-prompt re-run tokens "
              "| blocks s | heads s | defence s | total s | target |\n|" + "---|" * 16 + "\n")
    append_row(SECTION, "`.venv/bin/python benchmarks/bench_mechanism.py [--profile quick|full] [--model M]`: "
               "`run_mechanism` (fp32) with the `mechanism` experiment's settings for that profile, schemes not-think "
               "and associated, on a stratified sample of the reconstructed CounterFact. Extension tokens count each "
               "recomputed token once per block it runs through, divided by the number of blocks; the re-run column "
               "is what feeding every intervened prompt whole through every block would cost. The machine is shared "
               "with other engineers: the load average says how busy it was.", header, row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=("quick", "full"), default="quick")
    parser.add_argument("--records", type=int, default=None, help="override the profile's records per scheme")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--counterfact", default=str(COUNTERFACT))
    parser.add_argument("--out", default=None, help="keep the outputs here (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from assocmem.experiments.hijack_mechanism import EXPERIMENTS
    from assocmem.hijack.mechanism_config import MechanismConfig
    from assocmem.hijack.mechanism_report import run_mechanism
    from assocmem.models.llm import load_causal_lm
    from assocmem.models.spec import ModelSpec

    study = EXPERIMENTS[0].settings(args.profile)
    selection = dataclasses.replace(study.selection, counterfact=args.counterfact,
                                    records=args.records or study.selection.records)
    config = MechanismConfig(lm=ModelSpec(args.model, device=args.device, dtype="float32"), selection=selection,
                             ns=study.ns, schemes=study.schemes, window=study.window, stride=study.stride,
                             prompt_layer_sets=study.prompt_layer_sets, components=study.components,
                             head_blocks=study.head_blocks, defence=study.defence, min_shift=study.min_shift)
    load_before = os.getloadavg()[0]
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_mechanism."))
    start = time.perf_counter()
    lm = load_causal_lm(config.lm.model, device=args.device, dtype="float32")
    result = run_mechanism(config, out, lm=lm)
    summary = result.summary
    total = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    stats = pd.DataFrame(summary["stats"])
    L = summary["layers"]
    iv = result.interventions
    lengths = result.records.set_index(["scheme", "case_id", "n"])["length"]
    rerun = int(lengths.loc[list(zip(iv["scheme"], iv["case_id"], iv["n"]))].sum())
    ext = stats["extension_token_blocks"].sum() / L
    fed = ext + stats["plain_tokens"].sum()
    seconds = stats.groupby("stage")["seconds"].sum()
    defence_s = sum(s.get("defence", {}).get("seconds", 0.0) for s in summary["per_scheme"].values())
    per_scheme = summary["per_scheme"]
    records = " / ".join(f"{v['records']} (+{v.get('defence_records', v['records']) - v['records']})"
                         for v in per_scheme.values())
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_name()
    passed = "pass" if total <= TARGET_S else "FAIL"
    row = (f"| {datetime.date.today()} | {device} | {args.device} | {torch.get_num_threads()} | {load_before:.1f} / "
           f"{load_after:.1f} | {lm.name} | {args.profile} | {records} | {summary['interventions']} | {ext:.0f} | "
           f"{rerun} ({rerun / max(fed, 1):.0f}x) | {seconds.get('blocks', 0):.1f} | {seconds.get('heads', 0):.1f} | "
           f"{defence_s:.1f} | {total:.1f} | quick ≤ {TARGET_S:.0f} s: "
           f"{passed if args.profile == 'quick' else '—'} |")
    print(row)
    print(f"outputs in {out}")
    if not args.no_write:
        write_section(row)


if __name__ == "__main__":
    main()
