"""The known-fact rules and the flip, against hand computations."""

import numpy as np
import torch
import pytest

from assocmem.errors import ConfigError
from assocmem.hijack.metrics import flipped, known


def test_top1_is_rank_one_and_p50_is_a_probability_above_half():
    rank = np.array([1, 2, 1, 5])
    logp = np.log([0.9, 0.6, 0.3, 0.01])
    assert known(rank, logp, "top1").tolist() == [True, False, True, False]
    assert known(rank, logp, "p50").tolist() == [True, True, False, False]


def test_a_flip_needs_a_known_fact_and_the_false_target_on_top():
    assert flipped([True, True, False], [1, 2, 1]).tolist() == [True, False, False]


def test_an_unknown_rule_is_a_one_line_error():
    with pytest.raises(ConfigError, match="rule"):
        known([1], [0.0], "top5")


WORDS = ("The Eiffel Tower is located in the city of Paris Do not think of Guam twin Moscow Berlin mother tongue "
         "French English Spanish Tokyo Toyota piano jazz bishop speaks language born official capital").split()


def _top1(lm, prompt: str) -> tuple[int, torch.Tensor]:
    """The model's top-1 next token after `prompt` and the logits, from one plain forward."""
    from assocmem.hijack.scoring import special_prefix

    ids = special_prefix(lm.tokenizer) + lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids])).logits[0, -1].double()
    return int(logits.argmax()), logits


def _as_target(lm, prompt: str, token: int) -> str | None:
    """A target string whose first token after `prompt` is `token`, or None."""
    from assocmem.hijack.controls import mentions_word
    from assocmem.hijack.schemes import NEUTRAL_SENTENCE
    from assocmem.hijack.scoring import encode_pairs

    word = lm.tokenizer.decode([token]).strip()
    ok = word.isalpha() and encode_pairs(lm.tokenizer, [prompt], [" " + word])[0][1][:1] == [token]
    return word if ok and not mentions_word(NEUTRAL_SENTENCE, word) else None


def _facts(lm) -> list[dict]:
    """CounterFact records built around the model: known ones (the true target is the top-1 answer of the
    prompt alone) whose false target is the top-1 answer after the neutral sentence (a flip there), and
    unknown ones."""
    from assocmem.hijack.schemes import NEUTRAL_SENTENCE

    facts, known = [], 0
    windows = [(i, j) for i in range(len(WORDS)) for j in range(i + 2, min(i + 7, len(WORDS)))]
    for i, j in windows:
        subject, rest = WORDS[i], " ".join(WORDS[i + 1:j])
        prompt = f"{subject} {rest}"
        t0, logits = _top1(lm, prompt)
        t1, _ = _top1(lm, f"{NEUTRAL_SENTENCE} {prompt}")
        true, false = _as_target(lm, prompt, t0), _as_target(lm, prompt, t1)
        seventh = _as_target(lm, prompt, int(logits.argsort()[-7]))
        if true and false and t0 != t1:
            facts.append((prompt, subject, rest, true, false))
            known += 1
        elif seventh and len(facts) - known < 4:            # the 7th most likely: not known
            facts.append((prompt, subject, rest, seventh, "Tokyo"))
        if known >= 3 and len(facts) - known >= 4:
            break
    return [{"case_id": k, "requested_rewrite": {"prompt": "{} " + rest, "relation_id": "P1", "subject": subject,
                                                  "target_true": {"str": true}, "target_new": {"str": false}}}
            for k, (prompt, subject, rest, true, false) in enumerate(facts)]


def test_known_and_flip_of_a_run_on_a_tiny_model_equal_a_hand_computation(tmp_path):
    """rows.parquet's n = 0 status (`known`), its ranks and the flip rate, against plain forwards by hand."""
    import json

    import pandas as pd

    from assocmem.experiments.hijack_stats import flip_rates
    from assocmem.hijack.run import HijackConfig, run_hijack
    from assocmem.hijack.scoring import encode_pairs
    from assocmem.models.llm import tiny_random_lm

    lm = tiny_random_lm("gpt2")
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(_facts(lm)))
    config = HijackConfig.of(model="tiny-random-gpt2", schemes=("not-think", "neutral"), max_n=1, counterfact=str(path),
                             skip_bad=True, device="cpu")
    run_hijack(config, tmp_path / "run", progress=False, plot=False)
    rows = pd.read_parquet(tmp_path / "run" / "rows.parquet")
    hand_known, hand_flip = {}, []
    for row in rows.itertuples():
        top, logits = _top1(lm, row.prompt)
        firsts = [encode_pairs(lm.tokenizer, [row.prompt], [" " + t])[0][1][0] for t in (row.target_true, row.target_false)]
        for rank, first in zip((row.rank_true, row.rank_false), firsts):
            assert rank == 1 + int((logits > logits[first]).sum())
        if row.n == 0:
            hand_known[row.case_id] = top == firsts[0]
        hand_flip.append((row.case_id, top == firsts[1]))
    assert rows["known"].tolist() == [hand_known[c] for c in rows["case_id"]]
    flips = [hand_known[c] and top_is_false for c, top_is_false in hand_flip]
    assert flipped(rows["known"], rows["rank_false"]).tolist() == flips
    assert 0 < sum(hand_known.values()) < len(hand_known) and any(flips)
    table = flip_rates(rows.assign(model="m"))
    got = table[(table["scheme"] == "neutral") & (table["n"] == 1) & (table["subset"] == "known (top-1)")].iloc[0]
    at = (rows["scheme"] == "neutral") & (rows["n"] == 1) & rows["known"]
    assert got["records"] == at.sum() == sum(hand_known.values())
    assert got["flipped"] == sum(f for f, a in zip(flips, at) if a) > 0
    assert got["flip_share"] == pytest.approx(got["flipped"] / got["records"])
