"""Control distractors: no control sentence contains its record's targets, over the whole CounterFact file."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pytest

from assocmem.hijack.controls import (load_selection, mentions_word, mismatched_target, relation_pools,
                                     with_mismatched_targets)
from assocmem.hijack.counterfact import BadRecord, Record, load_counterfact
from assocmem.hijack.schemes import SCHEMES, build_prompt, get_scheme, sentence

# CI copies shared/ beside its clone, as here: ../shared/data/ from the checkout's root.
RECONSTRUCTED = Path(__file__).resolve().parents[3] / "shared" / "data" / "counterfact_reconstructed.json"

CONTROLS = [s for s in SCHEMES.values() if s.control_of is not None]


def _contains(text: str, target: str) -> bool:
    """"Contains", written independently of the library: the target's words, lower-cased, appear in a row
    among the text's words (looser than a regex on the whole phrase: "AC/DC" counts in "ac dc")."""
    words, phrase = re.findall(r"\w+", text.casefold()), re.findall(r"\w+", target.casefold())
    return any(words[i:i + len(phrase)] == phrase for i in range(len(words) - len(phrase) + 1))


def test_every_control_names_the_scheme_it_controls():
    assert {s.name: s.control_of for s in CONTROLS} == {
        "not-think-mismatched": "not-think", "relation-mismatched": "relation", "neutral": "not-think"}
    for s in CONTROLS:
        assert s.control_of in SCHEMES and SCHEMES[s.control_of].expected == "hijack" and s.expected is None


def test_contain_is_whole_word_and_case_insensitive():
    assert mentions_word("do not think of PARIS.", "Paris") and mentions_word("New Paris is", "Paris")
    assert not mentions_word("Parisian food", "Paris") and not mentions_word("Comparison", "Paris")
    assert mentions_word("the New York City", "new york") and not mentions_word("York", "New York")


def test_a_mismatched_control_is_the_hijacking_sentence_with_another_target():
    rec = Record(7, "P190", "{} is a twin city of", "Kharkiv", "Cincinnati", "Baghdad", "Lyon")
    assert build_prompt(rec, get_scheme("not-think-mismatched"), 1) == "Do not think of Lyon. Kharkiv is a twin city of"
    assert sentence(rec, get_scheme("relation-mismatched")) == \
        sentence(rec, get_scheme("relation")).replace("Baghdad", "Lyon")
    assert "Baghdad" not in sentence(rec, get_scheme("neutral"))


def test_the_mismatched_target_skips_look_alikes_and_is_fixed_by_the_case_id():
    rec = Record(3, "P1", "{} is in", "S", "New York", "Paris")
    pool = ["New Delhi", "new york", "Paris Hilton", "Rome"]   # same first word, the target itself, contains one
    assert mismatched_target(rec, pool) == "Rome"
    assert mismatched_target(rec, pool[:3]) is None
    records = [Record(i, "P1", "{} is in", "S", t, f) for i, (t, f) in
               enumerate([("Rome", "Oslo"), ("Oslo", "Lima"), ("Lima", "Kyiv"), ("Kyiv", "Rome"), ("Bern", "Riga")])]
    chosen = [r.target_mismatched for r in with_mismatched_targets(records, records)]
    assert chosen == [r.target_mismatched for r in with_mismatched_targets(records, records)]
    assert len(set(chosen)) > 1                     # spread over the pool, not one target for all
    # a record's choice depends on the file, not on the sample it is in
    assert with_mismatched_targets(records[2:3], records)[0].target_mismatched == chosen[2]


def test_a_control_that_would_name_a_target_is_refused_for_that_record():
    rec = Record(1, "P176", "{} is produced by", "Apple A5", "Apple", "Google", "Honda")
    with pytest.raises(BadRecord) as err:
        sentence(rec, get_scheme("relation-mismatched"))
    assert err.value.kind == "control-names-target"
    with pytest.raises(BadRecord) as err:
        sentence(Record(1, "P176", "{} is produced by", "X", "Apple", "Google"), get_scheme("not-think-mismatched"))
    assert err.value.kind == "no-mismatched-target"


@pytest.mark.skipif(not RECONSTRUCTED.is_file(), reason="the whole CounterFact file is not beside the checkout")
def test_no_control_sentence_contains_either_target_over_the_whole_file():
    """Every record × control of the whole file: the sentence is built and contains neither target, or the
    record is refused for that control; refusals are rare and only where the subject itself names a target."""
    file_records = load_counterfact(RECONSTRUCTED, skip_bad=True).records
    records = with_mismatched_targets(file_records, file_records)
    pools = relation_pools(file_records)
    refused: Counter = Counter()
    for rec in records:
        assert rec.target_mismatched in pools[rec.relation_id]
        assert rec.target_mismatched.casefold() not in (rec.target_true.casefold(), rec.target_false.casefold())
        for scheme in CONTROLS:
            try:
                text = sentence(rec, scheme)
            except BadRecord as bad:
                assert bad.kind == "control-names-target" and scheme.relation_form is not None
                assert _contains(rec.subject, rec.target_true) or _contains(rec.subject, rec.target_false)
                refused[scheme.name] += 1
                continue
            assert not _contains(text, rec.target_true) and not _contains(text, rec.target_false), (rec, text)
    assert len(records) > 20_000
    assert refused["not-think-mismatched"] == refused["neutral"] == 0
    assert refused["relation-mismatched"] < 0.1 * len(records)


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "counterfact_small.json"


def test_a_selection_carries_its_mismatched_targets_so_diagnose_and_mechanism_build_the_controls():
    """A selection read through `load_selection` carries its records' mismatched targets, chosen from the whole
    file (as `hijack` run chooses them): diagnose and mechanism build the mismatched controls too."""
    import torch

    from assocmem.hijack.counterfact import CounterFactSelection
    from assocmem.hijack.diagnose import DiagnoseConfig, run_diagnose
    from assocmem.hijack.mechanism import scheme_records
    from assocmem.hijack.mechanism_config import MechanismConfig
    from assocmem.hijack.mechanism_report import run_mechanism
    from assocmem.models.llm import tiny_random_lm

    selection = CounterFactSelection(counterfact=str(FIXTURE), records=4, skip_bad=True)
    loaded, chosen = load_selection(selection)
    bare = [dataclasses.replace(r, target_mismatched=None) for r in chosen]
    assert chosen == with_mismatched_targets(bare, loaded.records)
    assert all(r.target_mismatched is not None for r in chosen)
    usable, _ = scheme_records(selection, "not-think-mismatched")
    assert len(usable) == 4 and all(r.target_mismatched for r in usable)
    torch.set_num_threads(1)
    lm = tiny_random_lm("gemma3", seed=0)
    diag = run_diagnose(DiagnoseConfig.of(counterfact=str(FIXTURE), records=4, skip_bad=True, ns=(0, 1),
                                          schemes=("not-think-mismatched",)), lm=lm)
    assert diag.summary["records"] == 4 and diag.summary["skipped"] == 0
    mech = run_mechanism(MechanismConfig.of(counterfact=str(FIXTURE), records=3, skip_bad=True, ns=(1,),
                                            schemes=("not-think-mismatched",), components=("attn",), heads=False,
                                            defend=False, min_shift=0.0), lm=lm)
    assert mech.summary["records"] == {"not-think-mismatched": 3}
