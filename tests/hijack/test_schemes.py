import json
import re
import string
from pathlib import Path

import pytest

from assocmem.errors import ConfigError
from assocmem.hijack.counterfact import BadRecord, Record, load_counterfact
from assocmem.hijack.schemes import (SCHEMES, associate, associations, build_prompt, get_scheme,
                                     relation_templates, sentence, template_scheme)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RECONSTRUCTED = Path(__file__).resolve().parents[3] / "shared" / "data" / "counterfact_reconstructed.json"
REC = Record(7, "P190", "{} is a twin city of", "Kharkiv", "Cincinnati", "Baghdad")
LANG = Record(0, "P103", "The mother tongue of {} is", "Danielle Darrieux", "French", "English")


def _relations_in_data() -> set[str]:
    path = RECONSTRUCTED if RECONSTRUCTED.is_file() else FIXTURES / "counterfact_small.json"
    return {r["requested_rewrite"]["relation_id"] for r in json.loads(path.read_text())}


def test_every_relation_in_the_data_has_both_forms():
    templates = relation_templates()
    missing = _relations_in_data() - set(templates)
    assert not missing
    assert len(templates) == 34
    for rel, forms in templates.items():
        for form in ("positive", "negative"):
            fields = {f for _, f, _, _ in string.Formatter().parse(forms[form]) if f}
            assert fields == {"subject", "target"}, (rel, form)
            assert forms[form].endswith(".")
        assert " not " in forms["negative"] and " not " not in forms["positive"]


def test_build_prompt_repeats_the_sentence_then_the_prompt():
    assert build_prompt(REC, get_scheme("not-think"), 0) == "Kharkiv is a twin city of"
    assert build_prompt(REC, get_scheme("not-think"), 2) == \
        "Do not think of Baghdad. Do not think of Baghdad. Kharkiv is a twin city of"
    assert build_prompt(REC, get_scheme("relation"), 1) == \
        "The twin city of Kharkiv is not Baghdad. Kharkiv is a twin city of"
    assert build_prompt(REC, get_scheme("reverse"), 1) == \
        "Kharkiv is a twin city of Cincinnati. Kharkiv is a twin city of"
    assert build_prompt(REC, get_scheme("reverse-relation"), 1) == \
        "The twin city of Kharkiv is Cincinnati. Kharkiv is a twin city of"
    assert build_prompt(REC, get_scheme("reverse-not-think"), 1).startswith("Do not think of Cincinnati. ")
    with pytest.raises(ConfigError, match="n=-1"):
        build_prompt(REC, get_scheme("relation"), -1)


def test_registry_entries_are_declarative_and_directions_not_assumed_for_appendix():
    assert {"not-think", "relation", "reverse", "reverse-not-think", "reverse-relation", "associated",
            "associated-reverse"} <= set(SCHEMES)
    assert SCHEMES["not-think"].expected == SCHEMES["relation"].expected == "hijack"
    assert SCHEMES["reverse"].expected == "recall"
    assert all(SCHEMES[s].expected is None for s in ("reverse-not-think", "reverse-relation", "associated"))
    assert SCHEMES["reverse"].mentions == "target_true" and SCHEMES["not-think"].mentions == "target_false"


def test_unknown_scheme_suggests():
    with pytest.raises(ConfigError, match="did you mean not-think"):
        get_scheme("not-thnk")


def test_user_template_placeholders_are_checked():
    s = get_scheme("template", "{subject} has nothing to do with {target_false}.")
    assert s.mentions == "target_false"
    assert build_prompt(REC, s, 1) == "Kharkiv has nothing to do with Baghdad. Kharkiv is a twin city of"
    assert template_scheme("I like {target_true}.").mentions == "target_true"
    with pytest.raises(ConfigError, match=r"did you mean \{target_false\}"):
        template_scheme("Not {target_flase}.")
    with pytest.raises(ConfigError, match="unknown placeholder"):
        template_scheme("Not {}.")
    with pytest.raises(ConfigError, match="invalid"):
        template_scheme("Not {subject.")
    with pytest.raises(ConfigError, match="needs `template`"):        # --template on the command line
        get_scheme("template")


def test_associated_uses_a_related_word():
    assert build_prompt(LANG, get_scheme("associated"), 1) == \
        "Do not think of England. The mother tongue of Danielle Darrieux is"
    assert sentence(LANG, get_scheme("associated-reverse")) == "Do not think of France."
    genre = Record(3, "P136", "{} plays", "Miles Davis", "jazz", "opera")
    with pytest.raises(BadRecord, match="no associated word for target_false 'opera'"):
        sentence(genre, get_scheme("associated"))


def test_associations_cover_the_required_relations_with_sources():
    table = associations()
    assert {"P1412", "P103", "P37", "P17", "P27", "P495"} <= set(table["relations"])
    for kind in ("language", "country", "city"):
        for word, entry in table[kind].items():
            assert entry["associate"] and entry["source"], word
            assert not re.search(rf"\b{re.escape(word)}\b", entry["associate"], re.I), word
    assert associate("French") == "France"


@pytest.mark.skipif(not RECONSTRUCTED.is_file(), reason="reconstructed CounterFact absent")
def test_no_associated_sentence_names_target_false():
    records = load_counterfact(RECONSTRUCTED).records
    covered = set(associations()["relations"])
    built = 0
    for rec in records:
        if rec.relation_id not in covered:
            continue
        for name in ("associated", "associated-reverse"):
            try:
                text = sentence(rec, get_scheme(name))
            except BadRecord:
                continue
            built += 1
            assert not re.search(rf"(?<!\w){re.escape(rec.target_false)}(?!\w)", text, re.I), (rec, text)
            if name == "associated":  # and the hijack sentence does not name the true target either
                assert not re.search(rf"(?<!\w){re.escape(rec.target_true)}(?!\w)", text, re.I), (rec, text)
    assert built > 8000  # most records of the covered relations have associations
