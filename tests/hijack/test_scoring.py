import pytest
import torch

from assocmem.errors import ConfigError
from assocmem.hijack.scoring import encode_pairs, plan_requests, score_targets, special_prefix

PROMPTS = [
    "The Eiffel Tower is located in the city of",
    "Do not think of Guam. Do not think of Guam. Do not think of Guam. The Eiffel Tower is in",
    "Moscow is",
    "The twin city of Moscow is not Berlin. The mother tongue of Danielle Darrieux is",
    "The Eiffel Tower is located in the city of",   # a duplicate: scored once, returned twice
]
TRUE = ["Paris", "Paris", "Berlin", "French", "Paris"]
FALSE = ["Guam", "Zyxwvut Qoph", "Rome", "Quenya", "Guam"]   # some multi-token targets


def _manual(lm, prompt: str, target: str, first_only: bool) -> float:
    """Unbatched reference: one plain forward over prefix+prompt+target, full logits, log_softmax."""
    tok = lm.tokenizer
    ctx = tok(prompt, add_special_tokens=False)["input_ids"]
    whole = tok(prompt + " " + target, add_special_tokens=False)["input_ids"]
    cont = whole[len(ctx):][:1] if first_only else whole[len(ctx):]
    ids = torch.tensor([special_prefix(tok) + ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(ids).logits[0].double(), -1)   # (T, V)
    T = ids.shape[1]
    return sum(logp[T - len(cont) - 1 + k, t].item() for k, t in enumerate(cont))


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3"])
@pytest.mark.parametrize("mode", ["first-token", "full-target"])
def test_batched_equals_one_by_one_and_a_plain_forward(tiny_lms, arch, mode):
    lm = tiny_lms[arch]
    batched = score_targets(lm, PROMPTS, TRUE, FALSE, mode=mode, batch_size=3)
    for i, (p, t, f) in enumerate(zip(PROMPTS, TRUE, FALSE)):
        one_t, one_f = score_targets(lm, [p], [t], [f], mode=mode, batch_size=1)
        assert abs(batched[0][i] - one_t[0]) < 1e-4 and abs(batched[1][i] - one_f[0]) < 1e-4
        ref_t = _manual(lm, p, t, first_only=mode == "first-token")
        ref_f = _manual(lm, p, f, first_only=mode == "first-token")
        assert abs(batched[0][i] - ref_t) < 1e-4 and abs(batched[1][i] - ref_f) < 1e-4
    assert torch.equal(batched[0][0], batched[0][4])


def test_full_target_is_the_sum_over_tokens_and_starts_with_first_token(tiny_lms):
    lm = tiny_lms["llama"]
    first = score_targets(lm, PROMPTS, TRUE, FALSE, mode="first-token")
    full = score_targets(lm, PROMPTS, TRUE, FALSE, mode="full-target")
    n_tokens = [len(encode_pairs(lm.tokenizer, [p], [" " + f])[0][1]) for p, f in zip(PROMPTS, FALSE)]
    assert max(n_tokens) > 1
    for i, k in enumerate(n_tokens):
        if k == 1:
            assert abs(first[1][i] - full[1][i]) < 1e-6
        else:
            assert full[1][i] < first[1][i]    # adds more negative log-probs


def test_bos_per_tokenizer(tiny_lms):
    assert special_prefix(tiny_lms["gpt2"].tokenizer) == []
    bos = tiny_lms["llama"].tokenizer.bos_token_id
    assert special_prefix(tiny_lms["llama"].tokenizer) == [bos]
    plan = plan_requests(tiny_lms["gemma3"].tokenizer, ["Moscow is"], ["Berlin"], ["Rome"])
    assert plan.requests[0][0] == tiny_lms["gemma3"].tokenizer.bos_token_id
    assert plan.requests[0].count(bos) == 1
    plan = plan_requests(tiny_lms["gpt2"].tokenizer, ["Moscow is"], ["Berlin"], ["Rome"])
    assert plan.requests[0] == tuple(tiny_lms["gpt2"].tokenizer("Moscow is")["input_ids"])


def test_first_token_mode_scores_both_targets_from_one_forward(tiny_lms):
    plan = plan_requests(tiny_lms["llama"].tokenizer, PROMPTS, TRUE, FALSE, mode="first-token")
    assert len(plan.requests) == 4                         # 5 prompts, one duplicate
    assert all(len(g) == 2 for g in plan.gathers)
    plan = plan_requests(tiny_lms["llama"].tokenizer, PROMPTS, TRUE, FALSE, mode="full-target")
    # one forward per distinct (prompt, target) input; single-token targets feed just the prompt,
    # so both targets of prompts 0 and 2 (one token each here) share theirs
    assert len(plan.requests) == 6


def test_encode_pair_moves_trailing_space_into_the_continuation(tiny_lms):
    tok = tiny_lms["gpt2"].tokenizer
    assert encode_pairs(tok, ["Moscow is "], ["Berlin"]) == encode_pairs(tok, ["Moscow is"], [" Berlin"])


def test_empty_target_is_an_error(tiny_lms):
    with pytest.raises(ConfigError, match="empty"):
        score_targets(tiny_lms["llama"], ["Moscow is"], ["  "], ["Rome"])
    with pytest.raises(ConfigError, match="--mode"):
        score_targets(tiny_lms["llama"], ["Moscow is"], ["Berlin"], ["Rome"], mode="last-token")


def test_padded_batches_off_the_cpu_use_eager_attention():
    from assocmem.hijack.scoring import needs_eager_attention

    uneven, even = [(1, 2, 3), (1, 2)], [(1, 2), (3, 4)]
    assert not needs_eager_attention(torch.device("cpu"), uneven)
    assert needs_eager_attention(torch.device("cuda:0"), uneven) and needs_eager_attention("meta", uneven)
    assert not needs_eager_attention(torch.device("cuda:1"), even)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_eager_attention_switches_back_and_scores_the_same(tiny_lms, arch):
    from assocmem.models.llm import eager_attention

    lm = tiny_lms[arch]
    previous = lm.model.config._attn_implementation
    lm.model.set_attn_implementation("sdpa")
    try:
        fused = score_targets(lm, PROMPTS, TRUE, FALSE, batch_size=5)
        with eager_attention(lm.model):
            assert lm.model.config._attn_implementation == "eager"
            eager = score_targets(lm, PROMPTS, TRUE, FALSE, batch_size=5)
        assert lm.model.config._attn_implementation == "sdpa"
        assert torch.allclose(fused[0], eager[0], atol=1e-5) and torch.allclose(fused[1], eager[1], atol=1e-5)
    finally:
        lm.model.set_attn_implementation(previous)
