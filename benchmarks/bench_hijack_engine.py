"""The shared-prefix packed engine vs the old left-padded engine vs a plain right-padded HF forward.

    python benchmarks/bench_hijack_engine.py                                   # bundled Gemma, CPU, fp32
    python benchmarks/bench_hijack_engine.py --device cuda --arch gemma3-2.6b --dtype bfloat16 \\
        --per-relation 20 --methods new plain old

Work: `--per-relation` CounterFact records of every relation × `--schemes` × n = 0..`--max-n`, built
and planned exactly as `assocmem hijack` does (one packing group per record × scheme). Every method
scores the same requests of that plan in first-token mode:

    new     assocmem's engine (`hijack.scoring.score_plan`): shared-prefix segments in packed rows,
            batches of --batch-tokens tokens, SDPA with a dense 4D mask (or --backend flex_attention)
    old     the engine before it (benchmarks/baselines.py): one left-padded row per prompt, batches of
            --batch-size prompts, eager attention for padded batches on CUDA
    plain   a plain right-padded batched forward with the model's SDPA (baselines.py)

Reported: prompts/s per method (best of --repeats, interleaved), the ratios new/plain and new/old,
tokens fed, same decisions and max |Δ logp| between methods, and the full study (21,919 records ×
2 schemes × n = 0..10 = 482,218 prompts) projected from the new engine's rate. --arch picks a
randomly initialised model (no weights needed): `gemma3-270m`, `gemma3-2.6b` (hidden 2304, 26 layers,
8 heads, 4 KV heads, head_dim 256, vocab 262,144) or `llama2-6.9b` (LLaMA-2-7B's body, the
--tokenizer's vocabulary).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_row, cpu_name  # noqa: E402
from baselines import old_engine, plain_forward  # noqa: E402

from assocmem.hijack.counterfact import load_counterfact, select_records  # noqa: E402
from assocmem.hijack.run import _valid_pairs, plan_items, work_items  # noqa: E402
from assocmem.hijack.schemes import get_scheme  # noqa: E402
from assocmem.hijack.scoring import collect, score_plan  # noqa: E402
from assocmem.models.llm import LoadedLM, cache_root, load_causal_lm  # noqa: E402
from assocmem.models.packing import PackingStats  # noqa: E402
from assocmem.runtime import resolve_dtype  # noqa: E402

DEFAULT_CF = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact_reconstructed.json")
FULL_STUDY = 21_919 * 2 * 11
ARCHS = {
    "gemma3-270m": dict(hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
                        num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256, sliding_window=512),
    "gemma3-2.6b": dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                        num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, sliding_window=4096),
    # LLaMA-2-7B's body (the paper's largest model); its vocabulary is the tokenizer's (no LLaMA tokenizer offline)
    "llama2-6.9b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                        num_key_value_heads=32),
}


def random_model(arch: str, device: str, dtype: torch.dtype, tokenizer_dir: str | None) -> LoadedLM:
    """A randomly initialised text model of `arch`'s shape (seed 0) with the tokenizer of `tokenizer_dir`
    (default: the bundled Gemma's); a Gemma 3 shape keeps Gemma's 262,144-token vocabulary, the LLaMA
    shape takes the tokenizer's size."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    source = tokenizer_dir or str(cache_root() / "models" / "gemma3-270m")
    if not (Path(source) / "tokenizer.json").is_file():
        raise SystemExit("--arch needs a tokenizer: pass --tokenizer DIR, or load gemma3-270m once")
    tokenizer = AutoTokenizer.from_pretrained(source)
    if arch.startswith("gemma3"):
        config = Gemma3TextConfig(vocab_size=262144, max_position_embeddings=32768, rope_theta=1_000_000.0,
                                  **ARCHS[arch])
        cls = Gemma3ForCausalLM
    else:
        config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, **ARCHS[arch])
        cls = LlamaForCausalLM
    with torch.random.fork_rng(devices=[]), torch.device(device):   # initialised on the device: fast, no host copy
        torch.manual_seed(0)
        model = cls(config).to(dtype=dtype)
    model.eval()
    return LoadedLM(model, tokenizer, f"{arch}-random-init")


def build_plan(lm, counterfact: str, per_relation: int, schemes: list[str], max_n: int, seed: int):
    records = select_records(load_counterfact(counterfact).records, per_relation=per_relation, seed=seed)
    pairs = _valid_pairs(records, [get_scheme(s) for s in schemes], True, [])
    items = work_items(pairs, max_n)
    return plan_items(lm.tokenizer, items, "first-token"), len(items)


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--arch", choices=sorted(ARCHS), default=None, help="a random-init model of this shape instead")
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--counterfact", default=DEFAULT_CF)
    ap.add_argument("--per-relation", type=int, default=2)
    ap.add_argument("--schemes", nargs="+", default=["not-think", "relation"])
    ap.add_argument("--max-n", type=int, default=10)
    ap.add_argument("--methods", nargs="+", default=["new", "old"], choices=["new", "old", "plain"])
    ap.add_argument("--batch-tokens", type=int, default=None, help="new engine: tokens per forward")
    ap.add_argument("--row-tokens", type=int, default=512)
    ap.add_argument("--backend", default=None, help="new engine: sdpa (default) | flex_attention | eager")
    ap.add_argument("--batch-size", type=int, default=32, help="old / plain: prompts per forward")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    ap.add_argument("--record", action="store_true", help="append a row to benchmarks/RESULTS.md")
    args = ap.parse_args()
    if args.arch:
        lm = random_model(args.arch, args.device, resolve_dtype(args.dtype), args.tokenizer)
    else:
        lm = load_causal_lm(args.model, device=args.device, dtype=args.dtype)
    if args.backend:
        lm.model.set_attn_implementation(args.backend)
    plan, n_items = build_plan(lm, args.counterfact, args.per_relation, args.schemes, args.max_n, args.seed)
    stats = PackingStats()
    score_plan(lm, plan, batch_tokens=args.batch_tokens, row_tokens=args.row_tokens, stats=stats)  # warm-up
    sync()
    methods = {
        "new": lambda: score_plan(lm, plan, batch_tokens=args.batch_tokens, row_tokens=args.row_tokens),
        "old": lambda: old_engine(lm, plan, batch_size=args.batch_size),
        "plain": lambda: plain_forward(lm, plan, batch_size=args.batch_size),
    }
    times: dict[str, list[float]] = {m: [] for m in args.methods}
    outputs = {}
    for rep in range(args.repeats):
        for m in args.methods:
            sync()
            t = time.perf_counter()
            outputs[m] = methods[m]()
            sync()
            times[m].append(time.perf_counter() - t)
            print(f"  repeat {rep}: {m} {times[m][-1]:.2f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    best = {m: min(v) for m, v in times.items()}
    rate = {m: n_items / best[m] for m in best}
    res = {"model": lm.name, "device": str(lm.device), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
           "dtype": args.dtype, "items": n_items, "requests": len(plan.requests), "packing": stats.as_dict(),
           "batch_tokens": args.batch_tokens, "row_tokens": args.row_tokens, "batch_size": args.batch_size,
           "backend": lm.model.config._attn_implementation, "times_s": times,
           "median_s": {m: statistics.median(v) for m, v in times.items()}, "prompts_per_s": rate,
           "date": str(date.today()), "command": "python " + " ".join(sys.argv)}
    if "new" in rate:
        res["full_study_projected_s"] = FULL_STUDY / rate["new"]
        for m in ("old", "plain"):
            if m in rate:
                res[f"new_over_{m}"] = rate["new"] / rate[m]
    base = collect(plan, outputs[args.methods[0]])
    for m in args.methods[1:]:
        other = collect(plan, outputs[m])
        same = ((base[1] > base[0]) == (other[1] > other[0])) & ((base[0] > base[1]) == (other[0] > other[1]))
        res[f"same_decisions_{args.methods[0]}_vs_{m}"] = f"{int(same.sum())}/{len(same)}"
        res[f"max_abs_dlogp_{args.methods[0]}_vs_{m}"] = max((base[0] - other[0]).abs().max().item(),
                                                              (base[1] - other[1]).abs().max().item())
    print(json.dumps({k: v for k, v in res.items() if k not in ("times_s",)}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    if args.record:
        where = res["gpu"] or f"{cpu_name()} ({torch.get_num_threads()} threads)"
        cells = [res["date"], where, lm.name, args.dtype, str(n_items), f"{stats.as_dict()['token_saving']:.2f}×"]
        cells += [f"{rate[m]:.0f}" if m in rate else "—" for m in ("new", "old", "plain")]
        cells += [f"{res[k]:.2f}×" if k in res else "—" for k in ("new_over_old", "new_over_plain")]
        cells += [f"{res['full_study_projected_s']:.0f} s" if "full_study_projected_s" in res else "—",
                  "; ".join(f"{k.removeprefix('same_decisions_')}: {v}" for k, v in res.items() if k.startswith("same_"))]
        append_row("## Hijacking: shared-prefix packed engine",
                   "`benchmarks/bench_hijack_engine.py` (command in each row's JSON); prompts/s = (record, scheme, n) "
                   "items per second, best of the interleaved repeats; token saving = prompt tokens fed one by one / "
                   "tokens the packed engine feeds; projection = 482,218 prompts (21,919 records × 2 schemes × "
                   "n = 0..10) at the new engine's rate.",
                   "| date | device | model | dtype | prompts | token saving | new /s | old /s | plain /s | new/old "
                   "| new/plain | full study projected | decisions |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|",
                   "| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
