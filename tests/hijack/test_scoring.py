import pytest
import torch

from assocmem.errors import ConfigError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assocmem.models.packing import PackingStats
from assocmem.hijack.scoring import (collect, collect_ranks, encode_pairs, plan_requests, score_plan, score_targets,
                                    score_with_ranks, special_prefix)

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


def _manual_rank(lm, prompt: str, target: str, tol: float = 1e-4) -> tuple[int, int]:
    """Bounds on the rank of the target's first token after `prompt`, from one plain forward's logits:
    1 + the logits above it by more than `tol`, and 1 + those above it by more than -`tol` (a packed
    forward's logits differ from a plain one's in the last digits, so a near-tie may order either way)."""
    tok = lm.tokenizer
    ctx = tok(prompt, add_special_tokens=False)["input_ids"]
    first = tok(prompt + " " + target, add_special_tokens=False)["input_ids"][len(ctx)]
    with torch.no_grad():
        logits = lm.model(torch.tensor([special_prefix(tok) + ctx])).logits[0, -1].double()   # (V,)
    return int((logits > logits[first] + tol).sum()) + 1, int((logits > logits[first] - tol).sum()) + 1


def test_the_rank_is_one_plus_the_logits_above_the_first_token(tiny_lms):
    """By hand: the model's own argmax gets rank 1, and every rank is the plain forward's count."""
    lm = tiny_lms["llama"]
    tok = lm.tokenizer
    ids = special_prefix(tok) + tok(PROMPTS[0], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids])).logits[0, -1]
    top = tok.decode([int(logits.argmax())]).strip()
    assert encode_pairs(tok, [PROMPTS[0]], [" " + top])[0][1][0] == int(logits.argmax())   # " top" is that token
    scores = score_with_ranks(lm, PROMPTS[:1] * 2, [top, "Paris"], ["Tokyo", "Guam"])
    assert scores.rank_true[0] == 1 and scores.rank_false[0] > 1
    for j, target in enumerate(("Paris", "Guam")):
        lo, hi = _manual_rank(lm, PROMPTS[0], target)
        got = int((scores.rank_true, scores.rank_false)[j][1])
        assert lo <= got <= hi and 1 < got


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3"])
@pytest.mark.parametrize("mode", ["first-token", "full-target"])
def test_batched_equals_one_by_one_and_a_plain_forward(tiny_lms, arch, mode):
    lm = tiny_lms[arch]
    batched = score_targets(lm, PROMPTS, TRUE, FALSE, mode=mode, batch_tokens=48)
    for i, (p, t, f) in enumerate(zip(PROMPTS, TRUE, FALSE)):
        one_t, one_f = score_targets(lm, [p], [t], [f], mode=mode, batch_tokens=1)
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
    with pytest.raises(ConfigError, match="^mode="):
        score_targets(tiny_lms["llama"], ["Moscow is"], ["Berlin"], ["Rome"], mode="last-token")


WORDS = ("The Eiffel Tower is located in the city of Paris Do not think of Guam twin Moscow Berlin mother tongue "
         "French English Spanish Tokyo Toyota piano jazz bishop speaks language born official capital").split()


def _sentence(draw_words) -> str:
    return " ".join(draw_words) + "."


@st.composite
def _study(draw):
    """One (record, scheme): a distractor sentence, a prompt, N, two targets (some multi-token)."""
    words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6)
    sentence = _sentence(draw(words))
    prompt = " ".join(draw(words))
    true = " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)))
    false = " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)))
    return sentence, prompt, draw(st.integers(0, 5)), true, false


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(studies=st.lists(_study(), min_size=1, max_size=3), mode=st.sampled_from(["first-token", "full-target"]),
       row_tokens=st.sampled_from([1, 24, 64, 512]), batch_tokens=st.sampled_from([1, 80, 4096]))
def test_packed_shared_prefix_equals_each_prompt_alone(tiny_lms, arch, studies, mode, row_tokens, batch_tokens):
    """The engine's exactness bar: |Δ logp| ≤ 1e-5 against a plain forward of every prompt alone
    (random sentence and prompt lengths, N, packing, both modes; gemma3's sliding window is 16 tokens,
    so longer prompts exercise it)."""
    lm = tiny_lms[arch]
    prompts, trues, falses, groups, shared = [], [], [], [], []
    for g, (sentence, prompt, N, true, false) in enumerate(studies):
        for n in range(N + 1):
            prompts.append(" ".join([sentence] * n + [prompt]))
            shared.append(" ".join([sentence] * n))
            trues.append(true)
            falses.append(false)
            groups.append(g)
    plan = plan_requests(lm.tokenizer, prompts, trues, falses, mode, groups, shared)
    stats = PackingStats()
    results = score_plan(lm, plan, batch_tokens=batch_tokens, row_tokens=row_tokens, stats=stats)
    got, ranks = collect(plan, results), collect_ranks(plan, results)
    assert stats.tokens_fed <= stats.tokens_one_by_one
    for i, (p, t, f) in enumerate(zip(prompts, trues, falses)):
        ref_t = _manual(lm, p, t, first_only=mode == "first-token")
        ref_f = _manual(lm, p, f, first_only=mode == "first-token")
        assert abs(got[0][i] - ref_t) <= 1e-5 and abs(got[1][i] - ref_f) <= 1e-5
        for j, target in enumerate((t, f)):   # the first token's rank, in both modes, as the prompt alone gives it
            lo, hi = _manual_rank(lm, p, target)
            assert lo <= int(ranks[j][i]) <= hi


def test_sharing_saves_tokens_and_counts_items_that_cannot_share(tiny_lms):
    lm = tiny_lms["llama"]
    sentence, prompt = "Do not think of Guam.", "The Eiffel Tower is located in the city of"
    prompts = [" ".join([sentence] * n + [prompt]) for n in range(6)]
    shared = [" ".join([sentence] * n) for n in range(6)]
    plan = plan_requests(lm.tokenizer, prompts, ["Paris"] * 6, ["Guam"] * 6, groups=[0] * 6, shared=shared)
    segments, fallback = plan.segments()
    assert len(segments) == 1 and fallback == []
    assert segments[0].length < 0.6 * sum(len(r) for r in plan.requests)
    # a "shared" text that the prompt does not start with: that item is laid out alone, still exact
    wrong = shared[:3] + ["Do not think of Rome."] + shared[4:]
    plan = plan_requests(lm.tokenizer, prompts, ["Paris"] * 6, ["Guam"] * 6, groups=[0] * 6, shared=wrong)
    assert plan.segments()[1] == [3]
    a = collect(plan, score_plan(lm, plan))
    b = score_targets(lm, prompts, ["Paris"] * 6, ["Guam"] * 6)
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)


def test_mean_target_mode_is_the_sum_over_the_token_count(tiny_lms):
    """ROME's rule: the mean per-token log-probability of " target"."""
    lm = tiny_lms["llama"]
    full = score_targets(lm, PROMPTS, TRUE, FALSE, mode="full-target")
    mean = score_targets(lm, PROMPTS, TRUE, FALSE, mode="mean-target")
    for i, (p, t, f) in enumerate(zip(PROMPTS, TRUE, FALSE)):
        for j, target in enumerate((t, f)):
            k = len(encode_pairs(lm.tokenizer, [p], [" " + target])[0][1])
            assert abs(mean[j][i] - full[j][i] / k) < 1e-9
            assert abs(mean[j][i] - _manual(lm, p, target, first_only=False) / k) < 1e-5


def test_the_scorer_never_switches_to_eager_attention(tiny_lms, monkeypatch):
    """Packed rows give no query an empty mask row, so fused SDPA is exact everywhere: the old
    eager-attention work-around for left padding must not come back."""
    lm = tiny_lms["gemma3"]
    monkeypatch.setattr(type(lm.model), "set_attn_implementation",
                        lambda self, name: pytest.fail(f"switched attention to {name}"))
    lm.model.config._attn_implementation = "sdpa"
    score_targets(lm, PROMPTS, TRUE, FALSE, batch_tokens=64, row_tokens=16)


@pytest.mark.parametrize("bad", [0, -3])
def test_a_zero_or_negative_token_budget_is_a_one_line_error(tiny_lms, bad):
    with pytest.raises(ConfigError, match="^batch_tokens="):
        score_targets(tiny_lms["llama"], PROMPTS, TRUE, FALSE, batch_tokens=bad)
    with pytest.raises(ConfigError, match="^row_tokens="):
        score_targets(tiny_lms["llama"], PROMPTS, TRUE, FALSE, row_tokens=bad)


def test_a_plan_is_read_back_from_the_device_once_whatever_its_batches(tiny_lms, monkeypatch):
    """The batches' results stay on the device until all are queued: one read-back per plan, so a GPU
    run is not synchronised per batch (the rank adds nothing the host waits for)."""
    import assocmem.hijack.scoring as scoring

    calls = []
    real = scoring._to_host
    monkeypatch.setattr(scoring, "_to_host", lambda parts: calls.append(len(parts)) or real(parts))
    lm = tiny_lms["llama"]
    plan = plan_requests(lm.tokenizer, PROMPTS, TRUE, FALSE, "full-target")
    one = score_plan(lm, plan, batch_tokens=1, row_tokens=1)
    many = score_plan(lm, plan, batch_tokens=100_000)
    assert calls[0] > 1 and calls[1] == 1 and len(calls) == 2      # several batches, then one
    assert collect_ranks(plan, one)[0].tolist() == collect_ranks(plan, many)[0].tolist()
