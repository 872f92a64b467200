"""Write a randomly initialised model of a benchmark shape as a local checkpoint folder, for timing the
whole `assocmem hijack` command (loading, fingerprinting, planning, scoring, writing) on models of the
paper's sizes where no weights can be downloaded:

    python benchmarks/random_checkpoint.py --arch gemma3-2.6b --tokenizer DIR --dtype bfloat16 --out /tmp/m26
    assocmem hijack --model /tmp/m26 ...

The shapes are bench_hijack_engine.py's (`ARCHS`); the weights are seed 0's, so two folders of one
shape are the same model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hijack_engine import ARCHS, random_model  # noqa: E402

from assocmem.runtime import resolve_dtype  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), required=True)
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the bundled Gemma's)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--device", default="cpu", help="where to initialise (cuda is faster for billions of weights)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    start = time.perf_counter()
    lm = random_model(args.arch, args.device, resolve_dtype(args.dtype), args.tokenizer)
    lm.model.config.dtype = args.dtype            # `--dtype auto` then loads it as saved
    lm.model.save_pretrained(args.out)
    lm.tokenizer.save_pretrained(args.out)
    n = sum(p.numel() for p in lm.model.parameters())
    print(f"{args.arch}: {n / 1e9:.2f} B parameters, {args.dtype}, written to {args.out} in "
          f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
