"""What a hijack run costs besides the model: planning (tokenising), collecting, summarising.

On a GPU the model's forwards of the bundled models are fast (8,237 prompts/s for the Gemma in
float32 on one H200, RESULTS.md) while the full profile's `hijack-sample` ran at ~1,200 prompts/s:
the run waited on the CPU. This benchmark runs `run_hijack` end to end on the real tokenizer and the
real CounterFact records with the model's forward replaced by a stub, so it measures exactly the
part that is not the model, for the code of this checkout ("new") and of `--baseline-ref` ("old", a
git ref checked out into a temporary worktree and run in a subprocess in the same invocation).

--gpu-us-per-token emulates the GPU: the stub sleeps that long per fed token (sleeping releases the
GIL, as waiting on CUDA does), so the wall time shows whether planning overlaps the forwards. 9.4 µs
is the bundled Gemma's float32 rate on one H200 (196,612 tokens in 1.84 s). The new code plans ahead
as it does with a model on a GPU (with the model on the CPU it plans inline). The stub's numbers are
random, so only times are compared.

    .venv/bin/python benchmarks/bench_hijack_overhead.py --per-relation 8 --record
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCHEMES = ("not-think", "relation", "reverse", "reverse-not-think", "reverse-relation", "associated", "associated-reverse")


def worker(args) -> dict:
    """One timed run of the checkout on sys.path (called in a subprocess)."""
    import torch

    import assocmem.hijack.scoring as scoring
    from assocmem.hijack.counterfact import CounterFactSelection
    from assocmem.hijack.run import HijackConfig, run_hijack
    from assocmem.hijack.scoring import ScoringConfig
    from assocmem.models.packed_forward import Forwarded
    from assocmem.models.spec import ModelSpec

    fed = [0]

    def stub_forward(lm, rows, read_r, read_c, **kw):
        tokens = int(rows.input_ids.size)
        fed[0] += tokens
        time.sleep(tokens * args.gpu_us_per_token * 1e-6)
        return Forwarded(hidden=torch.zeros(len(read_r), 1), resid=None, attention=None, captured=None, cache=None)

    def stub_logprobs(lm, hidden, read_index, tokens, chunk=512):
        return -torch.rand(len(tokens), dtype=torch.float64)

    def stub_scores(lm, hidden, read_index, tokens, ranked=None, chunk=512):   # the engine that also ranks
        return -torch.rand(len(tokens), dtype=torch.float64), torch.randint(1, 100, (len(tokens),))

    scoring.forward_rows = stub_forward
    if hasattr(scoring, "token_scores"):
        scoring.token_scores = stub_scores
    else:
        scoring.token_logprobs = stub_logprobs
    import assocmem.hijack.run as run_mod

    if hasattr(run_mod, "_plan_in_background"):   # plan ahead as on a GPU (a CPU run plans inline)
        workers = args.planners if args.planners is not None else max(1, min(8, (os.cpu_count() or 2) - 2))
        run_mod._plan_in_background = lambda lm: workers   # an older checkout reads it as a bool
    config = HijackConfig(lm=ModelSpec(model=args.model, device="cpu"),
                          data=CounterFactSelection(counterfact=args.counterfact, per_relation=args.per_relation, skip_bad=True),
                          scoring=ScoringConfig(extra_modes=("mean-target",)), schemes=SCHEMES, max_n=args.max_n,
                          chunk_size=args.chunk_size)
    lm = config.lm.load(device="cpu")
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = run_hijack(config, out, progress=False, lm=lm, plot=False)
        wall = time.perf_counter() - start
    items = sum(int(s["records"]) for s in summary["rates"] if s["n"] == 0) * (args.max_n + 1)
    import assocmem

    return {"code": str(Path(assocmem.__file__).parent), "wall_s": wall, "items": items, "tokens_fed": fed[0],
            "emulated_gpu_s": fed[0] * args.gpu_us_per_token * 1e-6}


def run_tree(src: Path, args, passthrough: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, __file__, "--worker", *passthrough], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--counterfact", default=str(REPO.parent / "shared" / "data" / "counterfact_reconstructed.json"))
    ap.add_argument("--per-relation", type=int, default=8)
    ap.add_argument("--max-n", type=int, default=10)
    ap.add_argument("--chunk-size", type=int, default=64, help="records per chunk (the run's default is 256)")
    ap.add_argument("--gpu-us-per-token", type=float, default=0.0)
    ap.add_argument("--baseline-ref", default="ef3f849", help="git ref of the old code")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--planners", type=int, default=None,
                    help="planning processes of the new code (default: as on a GPU host with this machine's cores)")
    ap.add_argument("--record", action="store_true", help="append rows to benchmarks/RESULTS.md")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    passthrough = [a for a in sys.argv[1:] if a != "--record"]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", tmp, args.baseline_ref], check=True)
        try:
            trees = {"old": Path(tmp) / "src", "new": REPO / "src"}
            runs = {k: [] for k in trees}
            for _ in range(args.repeats):              # interleaved, best of the repeats
                for name, src in trees.items():
                    runs[name].append(run_tree(src, args, passthrough))
                    if not runs[name][-1]["code"].startswith(str(src)):
                        raise SystemExit(f"the {name} run imported {runs[name][-1]['code']}, not {src}")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", tmp], check=True)
    best = {k: min(v, key=lambda r: r["wall_s"]) for k, v in runs.items()}
    res = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(["python", "benchmarks/bench_hijack_overhead.py", *sys.argv[1:]]),
           "baseline_ref": args.baseline_ref, "gpu_us_per_token": args.gpu_us_per_token,
           **{f"{k}_{f}": v[f] for k, v in best.items() for f in ("wall_s", "items", "tokens_fed", "emulated_gpu_s")},
           "speedup": best["old"]["wall_s"] / best["new"]["wall_s"]}
    print(json.dumps(res, indent=1))
    if args.record:
        sys.path.insert(0, str(HERE))
        from _results import append_row, cpu_name

        row = (f"| {res['date']} | {cpu_name()} | {args.model} | {best['new']['items']} | {args.gpu_us_per_token:g} µs "
               f"| {best['old']['wall_s']:.1f} s | {best['new']['wall_s']:.1f} s | {res['speedup']:.2f}× "
               f"| {best['new']['emulated_gpu_s']:.1f} s | {args.baseline_ref} |")
        append_row("## Hijacking: what a run costs besides the model (stubbed forward)",
                   "`benchmarks/bench_hijack_overhead.py`: `run_hijack` end to end (7 schemes, n = 0..10, ROME's mean "
                   "rule beside first-token) on the real tokenizer and records with the forward stubbed; old = "
                   "`--baseline-ref` in a worktree, new = this checkout, same run, best of the repeats; emulated GPU = the "
                   "stub's sleep per fed token, so wall − emulated GPU is what the GPU would wait for.",
                   "| date | CPU | tokenizer of | items | emulated GPU per token | old wall | new wall | old/new "
                   "| emulated GPU time | baseline |\n|---|---|---|---|---|---|---|---|---|---|", row)


if __name__ == "__main__":
    main()
