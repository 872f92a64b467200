"""Hijacking throughput on 1 vs K GPUs: the same `run_hijack` call, one process per GPU.

    torchrun --nproc-per-node 1 benchmarks/bench_hijack_multigpu.py --tokenizer DIR --counterfact F --out one.json
    torchrun --nproc-per-node 2 benchmarks/bench_hijack_multigpu.py --tokenizer DIR --counterfact F --out two.json
    python benchmarks/bench_hijack_multigpu.py --record one.json two.json      # scaling row -> RESULTS.md

The model is randomly initialised (no ~2B weights can be carried to the GPU machine): the Gemma 3
text architecture at Gemma-2-2B-like sizes (hidden 2304, 26 layers, 8 heads of 256, 262k vocabulary,
~2.6B parameters), bf16, built directly on each process's GPU with the same seed, so every rank holds
the same weights and decisions can be compared between runs. Timing starts after a warm-up run and a
barrier, and ends when rank 0 has merged and written every row (what a user waits for).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

# Gemma-2-2B-like sizes in the Gemma 3 text architecture (the tokenizer's 262,144-entry vocabulary).
GEMMA3_2B = dict(vocab_size=262144, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                 num_attention_heads=8, num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
                 sliding_window=512, max_position_embeddings=32768, rope_theta=1_000_000.0)


# For a smoke test of this script on CPU (gloo): the same architecture, tiny.
GEMMA3_TINY = {**GEMMA3_2B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "query_pre_attn_scalar": 32}


def random_model(tokenizer_dir: str, device: torch.device, dtype: torch.dtype, shapes: dict):
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    from assocmem.models.llm import LoadedLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Gemma3TextConfig(**shapes)
    torch.manual_seed(0)
    with torch.device(device):
        model = Gemma3ForCausalLM(config).to(dtype)
    model.eval()
    size = sum(p.numel() for p in model.parameters()) / 1e9
    return LoadedLM(model, tokenizer, f"gemma3-{size:.1f}b-random-init")


def run(args) -> None:
    from assocmem.hijack import distributed as D
    from assocmem.hijack.run import HijackConfig, run_hijack

    cuda = torch.cuda.is_available() and not args.tiny
    ctx = D.init_from_env(use_cuda=cuda)
    device = torch.device(f"cuda:{ctx.local_rank}" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    lm = random_model(args.tokenizer, device, getattr(torch, args.dtype), GEMMA3_TINY if args.tiny else GEMMA3_2B)
    params = sum(p.numel() for p in lm.model.parameters())
    base = dict(model=lm.name, schemes=tuple(args.schemes), max_n=args.max_n, per_relation=args.per_relation,
                batch_tokens=args.batch_tokens, dtype=args.dtype, counterfact=args.counterfact, skip_bad=True,
                chunk_size=args.chunk_size)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = D.broadcast_object(ctx, tmp)   # rank 0 writes; every rank must name the same folder
        run_hijack(HijackConfig.of(**{**base, "per_relation": 1, "max_n": 1}), Path(tmp) / "warmup", progress=False,
                   lm=lm, plot=False)
    D.barrier(ctx)
    sync()
    start = time.perf_counter()
    summary = run_hijack(HijackConfig.of(**base), args.rows, progress=False, lm=lm, plot=False)
    sync()
    wall = time.perf_counter() - start
    prompts = sum(summary["records_per_scheme"].values()) * (args.max_n + 1)
    if ctx.is_main:
        res = {"model": lm.name, "parameters": params, "dtype": args.dtype, "processes": ctx.world_size,
               "gpu": torch.cuda.get_device_name(device) if cuda else "cpu", "records": summary["records"], "prompts": prompts,
               "batch_tokens": args.batch_tokens, "wall_s": wall, "prompts_per_s": prompts / wall,
               "rows": str(args.rows), "date": date.today().isoformat()}
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps(res))
    D.shutdown(ctx)


def record(one_path: str, many_path: str) -> None:
    import pandas as pd

    from _results import append_row

    one, many = (json.loads(Path(p).read_text()) for p in (one_path, many_path))
    a = pd.read_parquet(Path(one["rows"]) / "rows.parquet")
    b = pd.read_parquet(Path(many["rows"]) / "rows.parquet")
    merged = a.merge(b, on=["case_id", "scheme", "n"], suffixes=("_1", "_k"))
    same = ((merged.hijacked_1 == merged.hijacked_k) & (merged.true_preferred_1 == merged.true_preferred_k)).mean()
    k = many["processes"]
    speedup = many["prompts_per_s"] / one["prompts_per_s"]
    append_row(
        "## Hijacking: 1 vs K GPUs",
        "`benchmarks/bench_hijack_multigpu.py` under `torchrun --nproc-per-node K`: one process per GPU, each scores "
        "a strided share of every chunk, rank 0 merges and writes. Randomly initialised model (Gemma 3 text "
        "architecture, ~2.6B parameters, bf16); timing after a warm-up, until rank 0 has written every row.",
        "| date | GPU | model | prompts | 1 GPU prompts/s | K | K GPUs prompts/s | speed-up | efficiency | same decisions |\n"
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {many['date']} | {many['gpu']} | {one['model']} ({one['parameters'] / 1e9:.2f}B, {one['dtype']}) | "
        f"{one['prompts']} | {one['prompts_per_s']:.0f} | {k} | {many['prompts_per_s']:.0f} | {speedup:.2f}× | "
        f"{speedup / k:.0%} | {same:.4f} of {len(merged)} |",
    )
    print(f"1 GPU {one['prompts_per_s']:.0f} prompts/s, {k} GPUs {many['prompts_per_s']:.0f} prompts/s: "
          f"{speedup:.2f}× ({speedup / k:.0%} efficiency); same decisions {same:.4f} of {len(merged)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", help="folder with the Gemma 3 tokenizer (tokenizer.json)")
    ap.add_argument("--counterfact")
    ap.add_argument("--per-relation", type=int, default=10)
    ap.add_argument("--max-n", type=int, default=5)
    ap.add_argument("--schemes", nargs="+", default=["not-think", "relation", "reverse"])
    ap.add_argument("--batch-tokens", type=int, default=None, help="tokens per packed forward (default: by device)")
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--rows", type=Path, default=None, help="run folder for the rows (default: beside --out)")
    ap.add_argument("--out", default="multigpu.json")
    ap.add_argument("--tiny", action="store_true", help="tiny model on CPU/gloo: a smoke test of this script")
    ap.add_argument("--record", nargs=2, metavar=("ONE_GPU_JSON", "K_GPU_JSON"),
                    help="write the scaling row of two finished runs to RESULTS.md")
    args = ap.parse_args()
    if args.record:
        record(*args.record)
        return
    if not args.tokenizer or not args.counterfact:
        ap.error("--tokenizer and --counterfact are required for a run")
    if args.rows is None:
        args.rows = Path(args.out).parent / (Path(args.out).stem + "-rows")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run(args)


if __name__ == "__main__":
    main()
