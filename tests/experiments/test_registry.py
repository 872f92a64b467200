"""The registry of the paper's experiments: lookups, coverage of the paper, reference data."""

from __future__ import annotations

import dataclasses

import pytest

from assocmem.errors import ConfigError
from assocmem.experiments.claims import CLAIMS_BY_ID
from assocmem.experiments.registry import default_registry
from assocmem.experiments.report import load_reference

PAPER_IDS = ["fig1", "fig2a", "fig2b", "fig3a", "c1", "c2", "c3", "c4", "fig3b", "c5", "c6", "fig3c", "c7", "c8",
             "c9", "c10", "c11", "c12", "mixing", "length", "appB-reverse", "appB-associated", "atlas", "diagnostics"]


def test_lookup_by_id_and_alias(make):
    reg = make()
    assert reg.get("alpha").id == "alpha"
    assert reg.get("a1").id == "alpha"


def test_unknown_id_suggests_close_names():
    with pytest.raises(ConfigError) as err:
        default_registry().get("fig3")
    message = str(err.value)
    assert "did you mean" in message and "fig3a" in message and "\n" not in message


def test_select_orders_and_adds_requirements():
    reg = default_registry()
    ids = [e.id for e in reg.select(["length", "c2"])]
    assert ids == ["fig3a", "c2", "length"]
    assert len(reg.select(None)) == len(reg)


@pytest.mark.parametrize("name", PAPER_IDS)
def test_every_paper_figure_is_registered(name):
    assert default_registry().get(name)


def test_entries_are_consistent():
    reg = default_registry()
    reference = load_reference()
    for exp in reg:
        assert set(exp.claims) <= set(CLAIMS_BY_ID), exp.id
        for r in exp.requires:  # requirements come first, so a run in registry order is valid
            assert reg.ids().index(r) < reg.ids().index(exp.id)
        assert exp.id in reference, f"{exp.id} has no entry in paper_reference.json"


def _fields(settings, prefix=""):
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            yield from _fields(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def test_every_setting_is_either_the_papers_or_a_stated_choice():
    reference = load_reference()
    for exp in default_registry():
        entry = reference[exp.id]
        stated = set(entry.get("paper_settings", {})) | set(entry.get("chosen_settings", {}))
        for settings in (s for s in (exp.quick, exp.full, exp.authors) if s is not None):
            for name in _fields(settings):
                assert name in stated, f"{exp.id}: setting {name!r} is neither in paper_settings nor chosen_settings"


def test_profiles_select_their_experiments():
    reg = default_registry()
    paper = [e.id for e in reg.select(None, "paper")]
    assert paper[:4] == ["paper-fig3a", "paper-c4", "paper-c2", "paper-c3"] and len(paper) == 9
    assert all(e.protocol == "paper" and e.authors is not None for e in reg.select(None, "paper"))
    assert not any(e.id.startswith("paper-") for e in reg.select(None, "full"))
    quick = [e.id for e in reg.select(None, "quick")]
    assert "paper-fig3a" in quick and "paper-c4" not in quick and "fig3a" in quick
    assert [e.id for e in reg.select(["paper-c2"], "paper")] == ["paper-c4", "paper-c2"]
    with pytest.raises(ConfigError, match="`profile`=quick"):
        reg.get("paper-c4").settings("quick")


def test_reference_values_never_invent_numbers():
    """Values are null unless the paper states one; every value entry says what is expected."""
    for exp_id, entry in load_reference().items():
        if exp_id.startswith("_"):
            continue
        assert entry["source"] and entry["statement"]
        for value in entry.get("values", []):
            assert "expectation" in value and "quantity" in value
            assert value["value"] is None or isinstance(value["value"], str)


def test_claim_statistics():
    from assocmem.experiments.claims import exceeds, mean_se, spearman

    mean, se = mean_se([1.0, 2.0, 3.0])
    assert mean == 2.0 and abs(se - (1 / 3) ** 0.5) < 1e-12
    assert exceeds([0.5, 0.6, 0.55])[0] and not exceeds([0.5, -0.6, 0.1])[0]
    assert spearman([1, 2, 3, 4], [0.1, 0.2, 0.25, 0.9]) == 1.0


def _setting(settings: dict, key: str):
    for part in key.split("."):
        if not isinstance(settings, dict) or part not in settings:
            return None
        settings = settings[part]
    return settings


def test_a_chosen_settings_text_states_the_value_its_profile_runs():
    """Where the reason for a setting names a profile's value ("quick 3, full 5"), it is the value that profile
    runs (the report prints the run's own value beside each reason too)."""
    import re

    from assocmem.config import to_dict
    from assocmem.experiments.registry import PROFILES

    reference, wrong = load_reference(), []
    for exp in default_registry():
        for key, text in reference[exp.id].get("chosen_settings", {}).items():
            for profile in (p for p in PROFILES if exp.in_profile(p)):
                value = _setting(to_dict(exp.settings(profile)), key)
                stated = re.search(rf"\b{profile} (\d+(?:\.\d+)?)\b", text)
                if stated and isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and float(stated.group(1)) != value:
                    wrong.append(f"{exp.id} {key}: the text says {profile} {stated.group(1)}, {profile} runs {value}")
    assert not wrong, wrong


def test_the_report_prints_each_chosen_setting_with_the_value_it_ran_with():
    from assocmem.experiments.report import _chosen

    settings = {"training": {"seeds": 5, "lrs": [0.01, 0.001]}, "note": None}
    assert _chosen("training.seeds", "not given in our sources", settings) == "training.seeds = 5: not given in our sources"
    assert _chosen("training.lrs", "the best", settings) == "training.lrs = 0.01, 0.001: the best"
    assert _chosen("note", "none", settings) == "note = none: none"
    assert _chosen("(data)", "hijack-sample's", settings) == "(data): hijack-sample's"
