"""Hijacking schemes: declarative entries that say which sentence to prepend n times.

    >>> rec = Record(0, "P190", "{} is a twin city of", "Kharkiv", "Cincinnati", "Baghdad")
    >>> build_prompt(rec, get_scheme("relation"), 2)
    'The twin city of Kharkiv is not Baghdad. The twin city of Kharkiv is not Baghdad. Kharkiv is a twin city of'

A scheme's sentence is either one template for every record (`sentence`) or the record's relation
template (`relation_form`, from data/relation_templates.json). Placeholders a template may use:

    {subject} {target_false} {target_true}   the record's fields
    {prompt}                                 the record's prompt with its subject filled in
    {assoc_false} {assoc_true}               a word associated with that target (data/associations.json)
    {target_mismatched}                      another record's target of the same relation (hijack.controls)

`reverse` vs `reverse-relation` are two entries on purpose: `reverse` repeats the record's own prompt
completed with the truth ("Kharkiv is a twin city of Cincinnati."), so it works for every record and
is the strongest "state the fact" context (the prompt itself, answered); `reverse-relation` states
the truth in the relation template's words ("The twin city of Kharkiv is Cincinnati."), the exact
positive twin of `relation`, so the two differ only in "not" and which target is named.

Controls (`control_of` names the scheme each controls; hijack.controls says how they are built): a
hijacking scheme's ES may rise because the false target is primed, or because any extra sentence
disturbs recall. `not-think-mismatched` and `relation-mismatched` are `not-think` and `relation` naming
another record's target of the same relation; `neutral` is a sentence of the not-think sentence's
length (six tokens for a one-token target) naming no target. `neutral` controls `not-think` only: a
relation sentence is about twice as long and names the subject, so a neutral sentence is no like-for-like
control for it. No control sentence contains either of its record's targets (whole word, any case).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from assocmem.errors import ConfigError, did_you_mean
from assocmem.hijack.controls import mentions_word, names_target
from assocmem.hijack.counterfact import BadRecord, Record

PLACEHOLDERS = ("subject", "target_false", "target_true", "prompt", "assoc_false", "assoc_true", "target_mismatched")
_DATA = Path(__file__).resolve().parent.parent / "data"
EXPECTED = ("hijack", "recall")  # hijack: raises hijacked_share; recall: raises true_preferred_share


@dataclass(frozen=True)
class Scheme:
    name: str
    description: str
    sentence: str | None = None          # one template for every record, or
    relation_form: str | None = None     # "negative" | "positive": the relation's template, filled with `mentions`
    mentions: str | None = "target_false"  # target_false | target_true | target_mismatched | both | None: which target the sentence names
    expected: str | None = None          # hijack | recall | None (direction not assumed; measure it)
    control_of: str | None = None        # the hijacking scheme this one controls (same records, paired)

    @property
    def names_mismatched(self) -> bool:
        """Whether its sentence names another record's target (`Record.target_mismatched`, hijack.controls)."""
        return self.mentions == "target_mismatched" or "{target_mismatched}" in (self.sentence or "")


SCHEMES: dict[str, Scheme] = {}


def register_scheme(scheme: Scheme) -> Scheme:
    if (scheme.sentence is None) == (scheme.relation_form is None):
        raise ValueError(f"scheme {scheme.name}: give exactly one of sentence / relation_form")
    if scheme.sentence is not None:
        _check_template(scheme.sentence, "template")
    SCHEMES[scheme.name] = scheme
    return scheme




def get_scheme(name: str, template: str | None = None) -> Scheme:
    """The registered scheme `name`; `template` (the user's `--template`) defines scheme "template"."""
    if name == "template":
        if not template:
            raise ConfigError('schemes: "template" needs `template`, your sentence: "...{subject}...{target_false}..."',
                              field="schemes")
        return template_scheme(template)
    if name not in SCHEMES:
        names = sorted(SCHEMES) + ["template"]
        close = did_you_mean(name, names)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"schemes: unknown scheme {name!r}; {hint}allowed: {', '.join(names)}", field="schemes")
    return SCHEMES[name]


def scheme_names(values, template: str | None = None, name: str = "schemes") -> tuple[str, ...]:
    """The schemes a config names: at least one, none twice, each registered (or "template", with `template`)."""
    from assocmem.config import as_tuple

    names = as_tuple(name, values)
    if not names:
        raise ConfigError(f"{name} is invalid: give at least one scheme", field=name)
    if len(set(names)) != len(names):
        raise ConfigError(f"{name}={list(names)!r} names a scheme twice", field=name)
    for scheme in names:
        get_scheme(scheme, template)  # unknown name / bad template -> ConfigError
    return names


def template_scheme(template: str) -> Scheme:
    """A scheme from a user template, checked: only known {placeholders}, balanced braces."""
    fields = _check_template(template, "template")
    names_false = {"target_false", "assoc_false"} & fields
    names_true = {"target_true", "assoc_true"} & fields
    mentions = "both" if names_false and names_true else "target_false" if names_false else \
        "target_true" if names_true else "target_mismatched" if "target_mismatched" in fields else None
    return Scheme("template", f"user template: {template}", sentence=template, mentions=mentions)


def _check_template(template: str, option: str) -> set[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ConfigError(f"{option}={template!r} is invalid: {err} (write a literal brace as {{{{ or }}}})") from None
    fields = set()
    for _, field, spec, conv in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conv:
            close = did_you_mean(field, PLACEHOLDERS, n=1)
            hint = f" (did you mean {{{close[0]}}}?)" if close else ""
            raise ConfigError(f"{option}={template!r} is invalid: unknown placeholder {{{field}}}{hint}; "
                              f"allowed: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        fields.add(field)
    return fields


@cache
def relation_templates() -> dict[str, dict[str, str]]:
    """relation_id → {"label", "positive", "negative"} (templates use {subject} and {target})."""
    raw = json.loads((_DATA / "relation_templates.json").read_text(encoding="utf-8"))
    return {k: v for k, v in raw.items() if not k.startswith("_")}


@cache
def associations() -> dict:
    """The parsed data/associations.json: {"relations": {...}, "language"|"country"|"city": {word: {associate, source}}}."""
    return json.loads((_DATA / "associations.json").read_text(encoding="utf-8"))


def associate(word: str) -> str | None:
    """A word associated with `word` (language → country, country → city, city → country), or None."""
    table = associations()
    for kind in ("language", "country", "city"):
        if word in table[kind]:
            return table[kind][word]["associate"]
    return None


def sentence(record: Record, scheme: Scheme) -> str:
    """The scheme's sentence for `record`; BadRecord when the record cannot have one."""
    if scheme.relation_form is not None:
        forms = relation_templates().get(record.relation_id)
        if forms is None:
            raise BadRecord(record.case_id, f"relation {record.relation_id} has no template for scheme {scheme.name!r}",
                            "no-template")
        target = (record.target_true if scheme.mentions == "target_true" else _mismatched(record, scheme)
                  if scheme.mentions == "target_mismatched" else record.target_false)
        return _checked(forms[scheme.relation_form].format(subject=record.subject, target=target), record, scheme)
    values = {"subject": record.subject, "target_false": record.target_false, "target_true": record.target_true,
              "prompt": record.filled_prompt}
    fields = {f for _, f, _, _ in string.Formatter().parse(scheme.sentence) if f}
    if "target_mismatched" in fields:
        values["target_mismatched"] = _mismatched(record, scheme)
    for side in ("false", "true"):
        if f"assoc_{side}" in fields:
            target = getattr(record, f"target_{side}")
            word = associate(target)
            if word is None:
                raise BadRecord(record.case_id, f"no associated word for target_{side} {target!r} "
                                f"(relation {record.relation_id}; see data/associations.json)", "no-association")
            for other in (record.target_false, record.target_true):
                if mentions_word(word, other):
                    raise BadRecord(record.case_id, f"associated word {word!r} for target_{side} names "
                                    f"a target ({other!r}) itself", "association-names-target")
            values[f"assoc_{side}"] = word
    return _checked(scheme.sentence.format(**values), record, scheme)


def _mismatched(record: Record, scheme: Scheme) -> str:
    if record.target_mismatched is None:
        raise BadRecord(record.case_id, f"no other target of relation {record.relation_id} can stand in for its "
                        f"targets in scheme {scheme.name!r} (hijack.controls)", "no-mismatched-target")
    return record.target_mismatched


def _checked(text: str, record: Record, scheme: Scheme) -> str:
    """A control's sentence, refused where it contains either of the record's targets (e.g. a subject
    that holds the true target's name, in a relation sentence)."""
    if scheme.control_of is not None and names_target(text, record):
        raise BadRecord(record.case_id, f"the control sentence {text!r} of scheme {scheme.name!r} names a target",
                        "control-names-target")
    return text


def prompt_parts(record: Record, scheme: Scheme, n: int) -> tuple[str, str]:
    """(the n distractor sentences, the whole prompt): the first is what the prompts for larger n
    repeat, so the scorer can feed it once for every n (hijack.scoring)."""
    if not isinstance(n, int) or n < 0:
        raise ConfigError(f"n={n!r} is invalid: allowed an integer >= 0")
    if n == 0:
        return "", record.filled_prompt
    distractors = " ".join([sentence(record, scheme)] * n)
    return distractors, distractors + " " + record.filled_prompt


def build_prompt(record: Record, scheme: Scheme, n: int) -> str:
    """n copies of the scheme's sentence, then the record's prompt, joined by single spaces."""
    return prompt_parts(record, scheme, n)[1]


NEUTRAL_SENTENCE = "This is a plain sentence."

# Built-in entries: the paper's schemes, its appendix variants, and the controls.
for _s in (
    Scheme("not-think", "Do not think of {target_false}. (paper's scheme 1, Fig. 2a)",
           sentence="Do not think of {target_false}.", expected="hijack"),
    Scheme("relation", "The relation's negative sentence with target_false, e.g. 'The twin city of "
           "{subject} is not {target_false}.' (paper's scheme 2, Fig. 2b)",
           relation_form="negative", expected="hijack"),
    Scheme("reverse", "The record's own prompt completed with the truth: '{prompt} {target_true}.' "
           "(reverse hijacking)", sentence="{prompt} {target_true}.", mentions="target_true", expected="recall"),
    Scheme("reverse-not-think", "Do not think of {target_true}. (paper appendix)",
           sentence="Do not think of {target_true}.", mentions="target_true"),
    Scheme("reverse-relation", "The relation's positive sentence with target_true, e.g. 'The twin city of "
           "{subject} is {target_true}.' (paper appendix)", relation_form="positive", mentions="target_true"),
    Scheme("associated", "Do not think of {assoc_false}: a word associated with target_false, never the "
           "target itself (paper appendix, P1412)", sentence="Do not think of {assoc_false}."),
    Scheme("associated-reverse", "Do not think of {assoc_true}: a word associated with target_true",
           sentence="Do not think of {assoc_true}.", mentions="target_true"),
    Scheme("not-think-mismatched", "Control of not-think: 'Do not think of {target_mismatched}.', another record's "
           "target of the same relation", sentence="Do not think of {target_mismatched}.",
           mentions="target_mismatched", control_of="not-think"),
    Scheme("relation-mismatched", "Control of relation: the relation's negative sentence naming another record's "
           "target of the same relation", relation_form="negative", mentions="target_mismatched",
           control_of="relation"),
    Scheme("neutral", f"Control of not-think: '{NEUTRAL_SENTENCE}', as long, naming no target",
           sentence=NEUTRAL_SENTENCE, mentions=None, control_of="not-think"),
):
    register_scheme(_s)
