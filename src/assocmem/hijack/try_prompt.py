"""`assocmem hijack try`: the paper's Fig. 1 for any fact a user types.

    rows = try_prompt(lm, "The Eiffel Tower is in the city of", "Paris", "Chicago", max_n=3)
    print(knowledge_line(rows, "Paris"))   # does the model know the fact with no distractor?

The paper's claim is about facts a model knows being given up: before the hijack, `knowledge_line`
says whether the typed fact is one (the true target's first token is the model's top-1 next token at
n = 0, the headline rule of the benchmark, `hijack.metrics.KNOWN_RULES`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from assocmem.config import Composed, check_choice, check_int_range, option
from assocmem.errors import ConfigError
from assocmem.hijack import diagnostics as D
from assocmem.models.spec import ModelSpec
from assocmem.models.llm import LoadedLM


@dataclass(frozen=True)
class TryConfig(Composed):
    """`assocmem hijack try`: one typed fact, a scheme, n = 0..max_n."""

    text: str = option(None, 'The fact\'s prompt, e.g. "The Eiffel Tower is in the city of".', flag="TEXT",
                       argument=True)
    target_true: str = option(None, "The true target, e.g. Paris.", flag="--true", required=True)
    target_false: str = option(None, "The false target, e.g. Chicago.", flag="--false", required=True)
    lm: ModelSpec = option(factory=ModelSpec)
    scheme: str = option("not-think", "Hijack scheme (assocmem hijack --list-schemes).")
    max_n: int = option(5, "Largest number of prepended sentences.")
    subject: str | None = option(None, "The prompt's subject (schemes that name it need it).")
    relation_id: str = option("user", "CounterFact relation id, e.g. P190 (the relation schemes need one with a "
                                      "template).", flag="--relation")
    template: str | None = option(None, 'Sentence of scheme "template".')
    mode: str = option("first-token", "first-token | full-target | mean-target probabilities.")
    top_k: int = option(5, "How many next tokens to show.")

    def __post_init__(self) -> None:
        from assocmem.hijack.schemes import get_scheme
        from assocmem.hijack.scoring import MODES

        for name in ("text", "target_true", "target_false"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ConfigError(f"{name} is required: a non-empty text", field=name)
        check_int_range("max_n", self.max_n, 0)
        check_int_range("top_k", self.top_k, 1)
        check_choice("mode", self.mode, MODES)
        check_fact(self.text, self.target_true, self.target_false, self.scheme, self.subject, self.relation_id,
                   self.template)

    def run(self, lm: LoadedLM) -> list["TryRow"]:
        return try_prompt(lm, self.text, self.target_true, self.target_false, scheme=self.scheme, max_n=self.max_n,
                          top_k=self.top_k, mode=self.mode, subject=self.subject, relation_id=self.relation_id,
                          template=self.template)


@dataclass
class TryRow:
    """One n of `try_prompt`: the prompt, the top next tokens and both targets' probabilities."""

    n: int
    prompt: str
    top: list[tuple[str, float]]   # (decoded token, probability), most likely first
    p_true: float
    p_false: float
    rank_true: int                 # rank of the true target's first token among the next tokens (1 = top-1)
    rank_false: int                # the same for the false target


def check_fact(text: str, target_true: str, target_false: str, scheme: str, subject: str | None, relation_id: str,
               template: str | None) -> None:
    """Can `scheme`'s sentence be built for this typed fact? A one-line ConfigError naming the flag that
    fixes it, before any model is loaded."""
    from assocmem.hijack.counterfact import BadRecord
    from assocmem.hijack.schemes import get_scheme, relation_templates, sentence

    entry = get_scheme(scheme, template)
    if entry.mentions == "target_mismatched":
        raise ConfigError(f"scheme={scheme!r} names another CounterFact record's target, which a typed fact has "
                          f"not: use {entry.control_of or 'not-think'} with that target as `target_false`",
                          field="scheme")
    names_subject = entry.relation_form is not None or "{subject}" in (entry.sentence or "")
    if names_subject and subject is None:
        raise ConfigError(f"scheme={scheme!r} names the subject: pass `subject` (a phrase of the prompt)",
                          field="scheme")
    if entry.relation_form is not None and relation_id not in relation_templates():
        known = sorted(relation_templates())
        given = "" if relation_id == "user" else f" (`relation_id`={relation_id!r} has none)"
        raise ConfigError(f"scheme={scheme!r} needs `relation_id`: a CounterFact relation id with a template{given}, "
                          f"e.g. `relation_id` P190; allowed: {', '.join(known)}", field="scheme")
    try:
        sentence(user_record(text, target_true, target_false, subject, relation_id), entry)
    except BadRecord as bad:
        raise ConfigError(f"scheme={scheme!r} cannot be built for this fact: {bad.reason}", field="scheme") from None


def user_record(text: str, target_true: str, target_false: str, subject: str | None = None,
                relation_id: str = "user"):
    """A CounterFact Record for a typed fact; the subject (if given) must occur in the text."""
    from assocmem.hijack.counterfact import Record

    if subject is not None and subject not in text:
        raise ConfigError(f"subject={subject!r} is invalid: allowed a phrase that occurs in the prompt {text!r}",
                          field="subject")
    subject = subject or text
    template = text.replace(subject, "{}", 1)
    return Record(case_id=-1, relation_id=relation_id, prompt=template, subject=subject,
                  target_true=target_true.strip(), target_false=target_false.strip())


def try_prompt(lm: LoadedLM, text: str, target_true: str, target_false: str, scheme: str = "not-think", max_n: int = 5,
               top_k: int = 5, mode: str = "first-token", subject: str | None = None,
               relation_id: str = "user", template: str | None = None) -> list[TryRow]:
    """For n = 0..max_n: the hijacked prompt, its top-k next tokens, and P(target_true), P(target_false)
    (first token, or the whole target with mode="full-target") — the paper's Fig. 1 for one fact."""
    from assocmem.hijack.schemes import get_scheme, prompt_parts
    from assocmem.hijack.scoring import collect, collect_ranks, plan_requests, score_plan
    from assocmem.models.llm import as_lm

    check_int_range("max_n", max_n, 0)
    check_int_range("top_k", top_k, 1)
    check_fact(text, target_true, target_false, scheme, subject, relation_id, template)
    entry = get_scheme(scheme, template)
    record = user_record(text, target_true, target_false, subject, relation_id)
    lm = as_lm(lm)
    shared, prompts = zip(*[prompt_parts(record, entry, n) for n in range(max_n + 1)])
    # One tokenisation serves both reads: the targets' scores and the top next tokens at the prompt's end.
    plan = plan_requests(lm.tokenizer, prompts, [record.target_true] * len(prompts),
                         [record.target_false] * len(prompts), mode, groups=[0] * len(prompts), shared=shared)
    results = score_plan(lm, plan)
    (logp_true, logp_false), (rank_true, rank_false) = collect(plan, results), collect_ranks(plan, results)
    trace = D.trace_last_position(lm, None, attention=False, groups=[0] * len(prompts),
                                  encoded=[plan.prompt_ids(i) for i in range(len(prompts))])
    logp = D.final_logprobs(lm, trace.resid)  # (prompt, d_vocab)
    top = logp.exp().topk(top_k, dim=-1)
    rows = []
    for n, prompt in enumerate(prompts):
        tokens = [lm.tokenizer.decode([int(t)]) for t in top.indices[n]]
        rows.append(TryRow(n=n, prompt=prompt, top=list(zip(tokens, top.values[n].tolist())),
                           p_true=math.exp(float(logp_true[n])), p_false=math.exp(float(logp_false[n])),
                           rank_true=int(rank_true[n]), rank_false=int(rank_false[n])))
    return rows


def knowledge_line(rows: list[TryRow], target_true: str) -> str:
    """Whether the model knows the fact with no distractor (n = 0), in words: the rank of the true target's
    first token, and the benchmark's headline rule (top-1) applied to it."""
    from assocmem.hijack.metrics import KNOWN_RULES

    at0 = rows[0]
    rank = f"{at0.rank_true}{_ordinal(at0.rank_true)}"
    if at0.rank_true == 1:
        verdict = "it knows this fact"
    else:
        verdict = "it does not know this fact, so what follows moves a fact it did not recall"
    return (f"At n = 0 the model ranks the first token of {target_true!r} {rank} among its next tokens: {verdict} "
            f"(rule: {KNOWN_RULES['top1']}).")


def _ordinal(k: int) -> str:
    return "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")


def format_probability(p: float) -> str:
    """0.1234, or 1.2e-05 below 0.001: how `try` shows a probability."""
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"
