"""Exactness of the packed engine on a real model: a run's rows against each prompt fed alone, or
against another run's rows (e.g. GPU vs CPU).

    python benchmarks/check_engine_exact.py --rows runs/quick/hijack-sample/rows.parquet          # vs alone
    python benchmarks/check_engine_exact.py --rows gpu/rows.parquet --against cpu/rows.parquet    # two runs

"Alone": for every (case_id, scheme, n) of the rows, the prompt is rebuilt as `assocmem hijack` builds
it, fed with no padding and no mask (batch 1, the model's own attention), and both targets' first-token
log-probabilities are read from the full logits. Prints the number of same decisions and max |Δ logp|,
and writes them as JSON with --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch

from assocmem.hijack.counterfact import load_counterfact
from assocmem.hijack.schemes import build_prompt, get_scheme
from assocmem.hijack.scoring import encode_pairs, special_prefix
from assocmem.models.llm import load_causal_lm

DEFAULT_CF = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact_reconstructed.json")


@torch.inference_mode()
def alone(lm, rows: pd.DataFrame, counterfact: str) -> pd.DataFrame:
    records = {r.case_id: r for r in load_counterfact(counterfact).records}
    prefix = special_prefix(lm.tokenizer)
    out = []
    for row in rows.itertuples():
        rec = records[row.case_id]
        prompt = build_prompt(rec, get_scheme(row.scheme), int(row.n))
        pairs = encode_pairs(lm.tokenizer, [prompt] * 2, [" " + rec.target_true, " " + rec.target_false])
        ids = torch.tensor([prefix + pairs[0][0]], device=lm.device)       # the same context for both targets
        logp = torch.log_softmax(lm.model(ids).logits[0, -1].float(), -1)
        out.append([float(logp[cont[0]]) for _, cont in pairs])
    return rows.assign(logp_true=[v[0] for v in out], logp_false=[v[1] for v in out])


def compare(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    key = ["case_id", "scheme", "n"]
    m = a.merge(b, on=key, suffixes=("", "_ref"))
    dec = lambda t, f: (f > t).astype(int) - (t > f).astype(int)  # noqa: E731  (1 hijacked, -1 true, 0 tie)
    same = dec(m.logp_true, m.logp_false) == dec(m.logp_true_ref, m.logp_false_ref)
    diff = pd.concat([(m.logp_true - m.logp_true_ref).abs(), (m.logp_false - m.logp_false_ref).abs()])
    return {"rows": int(len(m)), "same_decisions": int(same.sum()), "max_abs_dlogp": float(diff.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", required=True)
    ap.add_argument("--against", default=None, help="another rows.parquet (else: each prompt fed alone)")
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--counterfact", default=DEFAULT_CF)
    ap.add_argument("--limit", type=int, default=None, help="first LIMIT rows only (alone mode)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = pd.read_parquet(args.rows)
    if args.against:
        result = compare(rows, pd.read_parquet(args.against))
        result["against"] = args.against
    else:
        rows = rows.head(args.limit) if args.limit else rows
        lm = load_causal_lm(args.model, device=args.device, dtype=args.dtype)
        result = compare(rows, alone(lm, rows[["case_id", "scheme", "n"]].copy(), args.counterfact))
        result["against"] = f"each prompt alone ({lm.name}, {args.device}, {args.dtype})"
    result["rows_file"] = args.rows
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
