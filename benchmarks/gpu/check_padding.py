"""GPU vs CPU log-probabilities of the hijacking scorer on left-padded batches, with fused SDPA and with
the eager-attention rule (`scoring.needs_eager_attention`). Produced the table "left padding and fused
attention on CUDA" of benchmarks/RESULTS.md:

    python3 benchmarks/gpu/check_padding.py --tokenizer DIR --counterfact FILE   # on a CUDA machine

DIR: a folder with the Gemma 3 tokenizer and config.json (the model is randomly initialised from it,
seed 0; its CPU copy is the reference). Prompts: fig1's four Eiffel Tower prompts (n = 0..3), then
3 records per relation × not-think, relation × n = 0, 2, ..., 10.
"""

from __future__ import annotations

import argparse
import contextlib
import copy

import torch

import assocmem.hijack.scoring as S
from assocmem.hijack.counterfact import load_counterfact, select_records
from assocmem.hijack.schemes import build_prompt, get_scheme
from assocmem.models.llm import LoadedLM


def score(lm, prompts, tt, ff, batch_size: int, fixed: bool):
    """score_targets; with fixed=False the eager-attention rule is switched off (fused SDPA throughout)."""
    rule = S.eager_attention
    if not fixed:
        S.eager_attention = lambda model: contextlib.nullcontext()
    try:
        return S.score_targets(lm, prompts, tt, ff, batch_size=batch_size)
    finally:
        S.eager_attention = rule


def main() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--counterfact", required=True)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    args = ap.parse_args()
    tok, cfg = AutoTokenizer.from_pretrained(args.tokenizer), AutoConfig.from_pretrained(args.tokenizer)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()
    cpu = LoadedLM(copy.deepcopy(model), tok, "cpu")
    gpu = LoadedLM(model.to("cuda"), tok, "gpu")

    sentence, text = "The Eiffel Tower is not in {target_false}.", "The Eiffel Tower is in the city of"
    fig1 = [" ".join([sentence.format(target_false="Chicago")] * n + [text]) for n in range(4)]
    records = select_records(load_counterfact(args.counterfact).records, per_relation=3, seed=0)
    items = [(r, build_prompt(r, get_scheme(s), n)) for r in records for s in ("not-think", "relation")
             for n in range(0, 11, 2)]
    sets = {"fig1": (fig1, ["Paris"] * 4, ["Chicago"] * 4),
            "counterfact": ([p for _, p in items], [r.target_true for r, _ in items],
                            [r.target_false for r, _ in items])}
    for name, (prompts, tt, ff) in sets.items():
        ref_t, ref_f = score(cpu, prompts, tt, ff, 64, fixed=True)
        for batch_size in args.batch_sizes:
            for fixed in (False, True):
                t, f = score(gpu, prompts, tt, ff, batch_size, fixed)
                diff = max((t - ref_t).abs().max().item(), (f - ref_f).abs().max().item())
                same = (((f > t) == (ref_f > ref_t)) & ((t > f) == (ref_t > ref_f))).double().mean().item()
                print(f"{name} n={len(prompts)} batch={batch_size} {'with the rule' if fixed else 'fused SDPA'}: "
                      f"max|dlogp| {diff:.2e}, same decisions {same:.4f}", flush=True)


if __name__ == "__main__":
    main()
