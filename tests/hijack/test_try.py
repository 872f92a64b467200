"""`assocmem hijack try`: Fig. 1 for one typed fact, on tiny random models."""

from __future__ import annotations

import math

import pytest
import torch

from assocmem.cli import main
from assocmem.hijack.try_prompt import try_prompt
from assocmem.hijack.scoring import score_targets
from assocmem.models.llm import tiny_random_lm

FACT = "The Eiffel Tower is located in the city of"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny model saved like any local Hugging Face folder: `--model PATH` loads it."""
    lm = tiny_random_lm("llama")
    path = tmp_path_factory.mktemp("models") / "tiny-llama"
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


def test_try_prints_every_n_with_top_tokens_and_both_targets(capsys, monkeypatch, saved_model):
    monkeypatch.setenv("COLUMNS", "400")  # one table line per row: no wrapping
    code = main(["hijack", "try", FACT, "--true", "Paris", "--false", "Chicago", "--max-n", "3",
                 "--model", str(saved_model), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "P(Paris)" in out and "P(Chicago)" in out
    # before the table: whether the model knows the fact at n = 0 (this random model does not)
    assert out.index("At n = 0 the model ranks the first token of 'Paris'") < out.index(FACT)
    assert "it does not know this fact" in out
    first_lines = [line for line in out.splitlines() if FACT in line]
    assert len(first_lines) == 4
    from assocmem.hijack.try_prompt import format_probability as _p
    from assocmem.models.llm import load_causal_lm

    rows = try_prompt(load_causal_lm(str(saved_model), device="cpu"), FACT, "Paris", "Chicago", max_n=3)
    for n, line in enumerate(first_lines):
        cells = [c.strip() for c in line.split("│")]
        assert cells[1] == str(n) and cells[2] == "Do not think of Chicago. " * n + FACT
        assert (cells[4], cells[5]) == (_p(rows[n].p_true), _p(rows[n].p_false))   # the model's own numbers
        assert cells[3] == f"{rows[n].top[0][0]!r} {_p(rows[n].top[0][1])}"        # its most likely next token
    assert out.count("\n") >= 4 * 5  # five top tokens per n


def test_try_numbers_match_the_model_and_the_scorer():
    lm = tiny_random_lm("gpt2")
    rows = try_prompt(lm, FACT, "Paris", "Chicago", scheme="not-think", max_n=2, top_k=5)
    assert [r.n for r in rows] == [0, 1, 2]
    assert rows[2].prompt == "Do not think of Chicago. Do not think of Chicago. " + FACT
    for r in rows:
        ids = torch.tensor([lm.tokenizer(r.prompt)["input_ids"]])
        with torch.no_grad():
            probs = torch.softmax(lm.model(ids).logits[0, -1], dim=-1)
        top = probs.topk(5)
        assert [p for _, p in r.top] == pytest.approx(top.values.tolist(), abs=1e-5)
        assert [t for t, _ in r.top] == [lm.tokenizer.decode([int(i)]) for i in top.indices]
        lp_true, lp_false = score_targets(lm, [r.prompt], ["Paris"], ["Chicago"], mode="first-token")
        assert r.p_true == pytest.approx(math.exp(lp_true[0]), rel=1e-5)
        assert r.p_false == pytest.approx(math.exp(lp_false[0]), rel=1e-5)
        # the rank is 1 + the next tokens more likely than the target's first token (by hand from the probabilities)
        for rank, target in ((r.rank_true, " Paris"), (r.rank_false, " Chicago")):
            first = lm.tokenizer(r.prompt + target)["input_ids"][ids.shape[1]]
            assert rank == 1 + int((probs > probs[first]).sum())


def test_try_says_whether_the_model_knows_the_fact_at_n_0():
    from assocmem.hijack.try_prompt import knowledge_line

    lm = tiny_random_lm("gpt2")
    prompt = "The Eiffel Tower is located in"      # this random model's top-1 next token here is " Guam"
    ids = torch.tensor([lm.tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        top = lm.tokenizer.decode([int(lm.model(ids).logits[0, -1].argmax())]).strip()
    assert top == "Guam"
    known = try_prompt(lm, prompt, top, "Chicago", max_n=1)
    assert known[0].rank_true == 1
    assert "ranks the first token of" in knowledge_line(known, top) and "1st" in knowledge_line(known, top)
    assert "it knows this fact" in knowledge_line(known, top)
    unknown = try_prompt(lm, prompt, "Paris", "Chicago", max_n=1)
    assert unknown[0].rank_true > 1
    line = knowledge_line(unknown, "Paris")
    assert "it does not know this fact" in line and f" {unknown[0].rank_true}" in line


def test_try_relation_scheme_uses_the_subject_and_full_target_mode():
    lm = tiny_random_lm("gemma3")
    rows = try_prompt(lm, "The twin city of Moscow is", "Berlin", "Tokyo", scheme="relation", max_n=1,
                      subject="Moscow", relation_id="P190", mode="full-target")
    assert rows[1].prompt == "The twin city of Moscow is not Tokyo. The twin city of Moscow is"
    lp_true, lp_false = score_targets(lm, [r.prompt for r in rows], ["Berlin"] * 2, ["Tokyo"] * 2, mode="full-target")
    assert [r.p_true for r in rows] == pytest.approx(lp_true.exp().tolist(), rel=1e-6)
    assert [r.p_false for r in rows] == pytest.approx(lp_false.exp().tolist(), rel=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--scheme", "relation", "--relation", "P190"], "--subject"),
    (["--subject", "Louvre"], "--subject='Louvre'"),
    (["--scheme", "not-thnk"], "did you mean not-think"),
    (["--max-n", "-1"], "--max-n=-1"),
    (["--scheme", "not-think-mismatched"], "another CounterFact record's target"),
])
def test_try_bad_input_is_a_one_line_error(capsys, argv, message):
    code = main(["hijack", "try", FACT, "--true", "Paris", "--false", "Chicago", "--model", "tiny-random-gpt2",
                 "--device", "cpu", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["--scheme", "relation", "--subject", "Eiffel Tower"], "--scheme='relation' needs --relation: a CounterFact relation "
                                                            "id with a template, e.g. --relation P190; allowed: P101,"),
    (["--scheme", "reverse-relation", "--subject", "Eiffel Tower", "--relation", "P9"], "(--relation='P9' has none)"),
    (["--scheme", "associated", "--false", "Zzyzx"], "--scheme='associated' cannot be built for this fact: no "
                                                     "associated word for target_false 'Zzyzx'"),
])
def test_try_checks_the_fact_before_it_loads_the_model(capsys, monkeypatch, argv, message):
    from assocmem.models.spec import ModelSpec

    def no_load(self, device=None):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(ModelSpec, "load", no_load)
    code = main(["hijack", "try", FACT, "--true", "Paris", "--false", "Chicago", *argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert message in err and "--skip-bad" not in err


@pytest.mark.parametrize("argv, message", [
    ([FACT, "--false", "Chicago"], "error: --true is required: The true target, e.g. Paris."),
    ([FACT, "--true", "Paris"], "error: --false is required: The false target, e.g. Chicago."),
    (["--true", "Paris", "--false", "Chicago"], "error: TEXT is required: The fact's prompt"),
])
def test_try_names_a_missing_required_input_in_one_line(capsys, argv, message):
    assert main(["hijack", "try", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1


def test_try_help_marks_the_targets_required(capsys):
    import typer

    from assocmem.cli import app

    command = typer.main.get_command(app).commands["hijack"].commands["try"]
    required = {p.opts[0] for p in command.params if p.param_type_name == "option" and p.required}
    assert required == {"--true", "--false"}
