"""assocmem from Python: the four calls of the README's "From Python" section, on a model already in memory.

    python examples/quickstart.py                               # Gemma 3 270M (bundled), CPU, about half a minute
    python examples/quickstart.py --model smollm2-135m --counterfact path/to/counterfact.json

Any Hugging Face causal LM with its tokenizer goes in the same way (`model, tokenizer=tok`); a name or a path
does too (`assocmem.score_prompts("gpt2", ...)`). The tests run this file (tests/package/test_quickstart.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import assocmem

CHECKOUT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m", help="a bundled model, a hub id or a local folder")
    parser.add_argument("--counterfact", default=None, help="CounterFact JSON (default: the one every command finds)")
    args = parser.parse_args(argv)
    lm = assocmem.load_model(args.model, device="cpu")
    model, tok = lm.model, lm.tokenizer            # a Hugging Face model and its tokenizer, as a notebook holds them
    data = {"counterfact": args.counterfact} if args.counterfact else {}

    # (a) your own prompts -> a DataFrame of both targets' probabilities and ranks
    prompts = ["The Eiffel Tower is in the city of", "Do not think of Rome. The Eiffel Tower is in the city of"]
    scores = assocmem.score_prompts(model, prompts, true="Paris", false="Rome", tokenizer=tok)
    print(scores[["prompt", "p_true", "p_false", "rank_true", "hijacked"]].to_string(), "\n")

    # (b) 10 CounterFact records x 2 schemes x n = 0..3, in memory -> rows (DataFrame) and rates
    result = assocmem.evaluate_hijacking(model, tokenizer=tok, records=10, schemes=("not-think", "relation"),
                                         max_n=3, **data)
    print(result.rows.pivot_table(index="n", columns="scheme", values="hijacked"), "\n")   # ES per scheme and n

    # (c) 4 one-layer transformers on the LCA task -> W_V and the accuracies beside the Bayes ceiling
    models = assocmem.train_lca(m=5, L=32, d=32, seeds=4, steps=300, device="cpu")
    print(models.W_V.shape, "\n", models.table[["seed", "final_accuracy", "bayes_optimal_accuracy"]].to_string(), "\n")

    # (d) a finished run: the committed quick profile's hijacking sample for Gemma 3 270M
    run = assocmem.load_run(CHECKOUT / "results" / "quick" / "hijack-sample" / "gemma3-270m")
    print(run.rates.query("scheme == 'not-think'")[["n", "records", "hijacked_share", "hijacked_lo", "hijacked_hi"]])
    return {"scores": scores, "result": result, "models": models, "run": run}


if __name__ == "__main__":
    main()
