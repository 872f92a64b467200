"""Batched hijacking scorer vs a one-prompt-at-a-time loop: same prompts, same model, same run.

    python benchmarks/bench_hijack_batched.py                       # bundled Gemma 3 270M, CPU
    python benchmarks/bench_hijack_batched.py --device cuda --random-init --prompts 2040 --batch-size 128

Prompts: `--per-relation` records of each CounterFact relation × schemes not-think, relation, reverse
× n = 1, 2 (all distinct, so deduplication gives the batched scorer nothing here).

    loop       for every prompt and each of its two targets: one unpadded forward (batch 1) over
               BOS + prompt + " " + target, full logits, log_softmax, read the first target token
               (the plain way to write it; ROME's evaluation code scores one (prompt, target) per row)
    batch-1    assocmem's scorer with batch_size=1: one forward per prompt for both targets,
               logits only at the last position (what remains when batching alone is removed)
    batched    assocmem's scorer: length-sorted, left-padded batches of --batch-size

Decisions (P(false) > P(true), P(true) > P(false)) of the loop and the batched scorer are compared
record by record. --random-init times a randomly initialised model of the Gemma 3 270M architecture
(no weights needed; decisions are then meaningless but still compared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from assocmem.hijack.counterfact import load_counterfact, select_records
from assocmem.hijack.schemes import build_prompt, get_scheme
from assocmem.hijack.scoring import encode_pairs, score_targets, special_prefix
from assocmem.models.llm import LoadedLM, cache_root, load_causal_lm

DEFAULT_CF = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact_reconstructed.json")
# Gemma 3 270M (gemma3_text) shapes, for --random-init when no cached config is at hand.
GEMMA3_270M = dict(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                   num_attention_heads=4, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
                   sliding_window=512, max_position_embeddings=32768, rope_theta=1_000_000.0)


def build_prompts(counterfact: str, per_relation: int, seed: int):
    records = select_records(load_counterfact(counterfact).records, per_relation=per_relation, seed=seed)
    items = [(rec, build_prompt(rec, get_scheme(s), n)) for rec in records
             for s in ("not-think", "relation", "reverse") for n in (1, 2)]
    return [p for _, p in items], [r.target_true for r, _ in items], [r.target_false for r, _ in items]


def random_gemma(device: str, dtype: torch.dtype, tokenizer_dir: str | None) -> LoadedLM:
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    cached = cache_root() / "models" / "gemma3-270m"
    source = tokenizer_dir or (str(cached) if (cached / "tokenizer.json").is_file() else None)
    if source is None:
        raise SystemExit("--random-init needs the Gemma tokenizer: pass --tokenizer DIR (a folder with "
                         "tokenizer.json), or load gemma3-270m once to cache it")
    tokenizer = AutoTokenizer.from_pretrained(source)
    with_config = [d for d in (source, str(cached)) if (Path(d) / "config.json").is_file()]
    config = (Gemma3TextConfig.from_pretrained(with_config[0]) if with_config
              else Gemma3TextConfig(**GEMMA3_270M))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Gemma3ForCausalLM(config)
    model.to(device=device, dtype=dtype).eval()
    return LoadedLM(model, tokenizer, "gemma3-270m-random-init")


@torch.inference_mode()
def naive_loop(lm: LoadedLM, prompts, targets_true, targets_false):
    """One forward per (prompt, target), batch 1, full logits: the baseline."""
    prefix = special_prefix(lm.tokenizer)
    out = torch.empty(len(prompts), 2, dtype=torch.float64)
    for i, prompt in enumerate(prompts):
        firsts = []
        for j, target in enumerate((targets_true[i], targets_false[i])):
            ctx, cont = encode_pairs(lm.tokenizer, [prompt], [" " + target])[0]
            firsts.append(cont[0])
            if j == 1 and firsts[0] == firsts[1]:   # same first token: an exact tie by definition
                out[i, 1] = out[i, 0]
                continue
            ids = torch.tensor([prefix + ctx + cont], device=lm.device)
            logp = torch.log_softmax(lm.model(ids).logits[0].float(), dim=-1)   # (T, V)
            out[i, j] = logp[len(prefix) + len(ctx) - 1, cont[0]].item()
    return out[:, 0], out[:, 1]


def timed(fn):
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--counterfact", default=DEFAULT_CF)
    ap.add_argument("--per-relation", type=int, default=1, help="records per relation (× 6 prompts each)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--random-init", action="store_true", help="random Gemma 3 270M architecture")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder for --random-init (its config.json, if any, gives the shapes)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--skip-loop", action="store_true", help="time only the batched scorer")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repetitions of every method")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from assocmem.runtime import resolve_dtype

    if args.random_init:
        lm = random_gemma(args.device, resolve_dtype(args.dtype), args.tokenizer)
    else:
        lm = load_causal_lm(args.model, device=args.device, dtype=args.dtype)
    prompts, tt, tf = build_prompts(args.counterfact, args.per_relation, args.seed)
    n_tokens = sum(len(c) + len(special_prefix(lm.tokenizer)) for c, _ in encode_pairs(lm.tokenizer, prompts, [" x"] * len(prompts)))
    print(f"{lm.name} on {lm.device}, {len(prompts)} prompts, {n_tokens} prompt tokens, threads {torch.get_num_threads()}")
    score_targets(lm, prompts[:4], tt[:4], tf[:4], batch_size=4)          # warm-up

    # The machine is shared: every method runs --repeats times, interleaved, and each is reported by
    # its fastest run (the least disturbed) and its median.
    methods = {"batched": lambda: score_targets(lm, prompts, tt, tf, batch_size=args.batch_size)}
    if not args.skip_loop:
        methods["batch1"] = lambda: score_targets(lm, prompts, tt, tf, batch_size=1)
        methods["loop"] = lambda: naive_loop(lm, prompts, tt, tf)
    times = {name: [] for name in methods}
    outputs = {}
    load = [os.getloadavg()[0]]
    for rep in range(args.repeats):
        for name, fn in methods.items():
            outputs[name], dt = timed(fn)
            times[name].append(dt)
            print(f"  repeat {rep}: {name} {dt:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
            load.append(os.getloadavg()[0])
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"model": lm.name, "device": str(lm.device), "dtype": args.dtype, "prompts": len(prompts),
           "prompt_tokens": n_tokens, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
           "repeats": args.repeats, "times_s": times, "load_avg_1min": load,
           "batched_prompts_per_s": len(prompts) / best["batched"]}
    print(f"batched (batch {args.batch_size}): best {best['batched']:.1f} s, {len(prompts) / best['batched']:.1f} prompts/s")
    if not args.skip_loop:
        (bt, bf), (ot, of), (lt, lf) = outputs["batched"], outputs["batch1"], outputs["loop"]
        same = ((bf > bt) == (lf > lt)) & ((bt > bf) == (lt > lf))
        res.update({
            "speedup_vs_loop_best": best["loop"] / best["batched"], "speedup_vs_loop_median": med["loop"] / med["batched"],
            "speedup_vs_batch1_best": best["batch1"] / best["batched"],
            "speedup_vs_batch1_median": med["batch1"] / med["batched"],
            "same_decisions_share": same.double().mean().item(),
            "max_abs_logp_diff": max((bt - lt).abs().max().item(), (bf - lf).abs().max().item()),
            "batch1_max_abs_logp_diff": max((bt - ot).abs().max().item(), (bf - of).abs().max().item()),
        })
        print(f"loop (2 forwards/prompt, batch 1, full logits): best {best['loop']:.1f} s → batched is "
              f"{res['speedup_vs_loop_best']:.1f}× faster (medians: {res['speedup_vs_loop_median']:.1f}×)")
        print(f"batch-1 scorer: best {best['batch1']:.1f} s → batching alone gives {res['speedup_vs_batch1_best']:.1f}× "
              f"(medians: {res['speedup_vs_batch1_median']:.1f}×)")
        print(f"same decisions: {res['same_decisions_share']:.4f} of {len(prompts)}; max |Δ logp| "
              f"{res['max_abs_logp_diff']:.2e}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
