import hashlib
import json
from pathlib import Path

import pytest

from assocmem.errors import ConfigError
from assocmem.hijack.counterfact import (BadRecord, Record, download_counterfact, load_counterfact,
                                         select_records)

COUNTERFACT_SMALL = Path(__file__).resolve().parent.parent / "fixtures" / "counterfact_small.json"


def _write(tmp_path, data, name="cf.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _raw():
    return json.loads(COUNTERFACT_SMALL.read_text())


def test_loads_fixture_with_and_without_optional_fields():
    raw = _raw()
    assert any("paraphrase_prompts" in r for r in raw) and any("paraphrase_prompts" not in r for r in raw)
    res = load_counterfact(COUNTERFACT_SMALL)
    assert len(res.records) == 24 and res.skipped == []
    rec = next(r for r in res.records if r.case_id == 1308)
    assert rec == Record(1308, "P103", rec.prompt, rec.subject, "French", "Russian")
    assert "{}" in rec.prompt and rec.subject in rec.filled_prompt and "{}" not in rec.filled_prompt


def test_official_layout_record_with_every_field(tmp_path):
    official = [{
        "case_id": 0, "pararel_idx": 2796,
        "requested_rewrite": {"prompt": "The mother tongue of {} is", "relation_id": "P103",
                              "target_new": {"str": "English", "id": "Q1860"},
                              "target_true": {"str": "French", "id": "Q150"}, "subject": "Danielle Darrieux"},
        "paraphrase_prompts": ["Shayna does this. Danielle Darrieux's mother tongue is"],
        "neighborhood_prompts": ["The mother tongue of Léon Blum is"],
        "attribute_prompts": ["J. R. R. Tolkien is a native speaker of"],
        "generation_prompts": ["Danielle Darrieux's mother tongue is"],
    }]
    (rec,) = load_counterfact(_write(tmp_path, official)).records
    assert rec.filled_prompt == "The mother tongue of Danielle Darrieux is"
    assert (rec.target_true, rec.target_false, rec.relation_id) == ("French", "English", "P103")


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r["requested_rewrite"].update(prompt="The mother tongue is"), "requested_rewrite.prompt"),
    (lambda r: r["requested_rewrite"].pop("target_new"), "requested_rewrite.target_new"),
    (lambda r: r["requested_rewrite"]["target_true"].update(str="  "), "requested_rewrite.target_true.str"),
    (lambda r: r["requested_rewrite"].pop("subject"), "requested_rewrite.subject"),
    (lambda r: r.pop("requested_rewrite"), "requested_rewrite"),
])
def test_malformed_record_names_case_id_and_field(tmp_path, mutate, field):
    raw = _raw()
    mutate(raw[3])
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as err:
        load_counterfact(path)
    msg = str(err.value)
    assert f"case_id={raw[3]['case_id']}" in msg and field in msg and "\n" not in msg
    res = load_counterfact(path, skip_bad=True)
    assert len(res.records) == 23 and res.skipped[0][0] == raw[3]["case_id"]


def test_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_counterfact(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_counterfact(bad)
    with pytest.raises(ConfigError, match="JSON list"):
        load_counterfact(_write(tmp_path, {"case_id": 1}))
    raw = _raw()
    raw[1]["case_id"] = raw[0]["case_id"]
    with pytest.raises(BadRecord, match="duplicate case_id"):
        load_counterfact(_write(tmp_path, raw))


def test_select_records_is_stratified_and_deterministic():
    records = load_counterfact(COUNTERFACT_SMALL).records
    a = select_records(records, per_relation=2, seed=1)
    assert a == select_records(records, per_relation=2, seed=1)
    assert len(a) == 16 and [r.case_id for r in a] == sorted(r.case_id for r in a)
    assert {r.relation_id for r in a} == {r.relation_id for r in records}
    assert select_records(records, per_relation=2, seed=2) != a
    only = select_records(records, relations=["P190", "P103"], limit=4)
    assert len(only) == 4 and {r.relation_id for r in only} <= {"P190", "P103"}
    with pytest.raises(ConfigError, match="did you mean P190"):
        select_records(records, relations=["P191"])


def test_download_checks_sha_and_caches(tmp_path):
    src = COUNTERFACT_SMALL
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "counterfact.json"
    got = download_counterfact(src.resolve().as_uri(), sha, dest)
    assert got == dest and dest.read_bytes() == src.read_bytes()
    assert download_counterfact("file:///nonexistent/never-read", sha, dest) == dest  # cached: no fetch
    with pytest.raises(ConfigError, match="sha256"):
        download_counterfact(src.resolve().as_uri(), "0" * 64, tmp_path / "other.json")


def test_offline_download_names_the_option(tmp_path):
    with pytest.raises(ConfigError) as err:
        download_counterfact("http://127.0.0.1:9/counterfact.json", "0" * 64, tmp_path / "cf.json")
    assert "pass `counterfact` PATH" in str(err.value) and "\n" not in str(err.value)   # --counterfact on the CLI
    assert not (tmp_path / "cf.json").exists()


def test_one_lookup_for_every_command_in_its_order(tmp_path, monkeypatch):
    """--counterfact, then shared/data/... beside the checkout or the working directory, then
    $ASSOCMEM_COUNTERFACT, then the download."""
    from assocmem.hijack import counterfact as C

    shared = tmp_path / "shared-copy" / "cf.json"
    shared.parent.mkdir()
    shared.write_text("[]")
    env_file = _write(tmp_path, [], "env.json")
    given = _write(tmp_path, [], "given.json")
    monkeypatch.setattr(C, "SHARED_COPY", Path("shared-copy") / "cf.json")   # looked for beside the cwd's parent
    monkeypatch.chdir(tmp_path / "shared-copy")
    monkeypatch.setenv(C.ENV_VAR, str(env_file))
    monkeypatch.setattr(C, "download_counterfact", lambda: tmp_path / "downloaded.json")
    assert C.counterfact_path(given) == given.resolve()
    assert C.counterfact_path() == shared.resolve()
    monkeypatch.setattr(C, "SHARED_COPY", Path("nowhere") / "cf.json")
    assert C.counterfact_path() == env_file.resolve()
    monkeypatch.setenv(C.ENV_VAR, str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match=r"^\$ASSOCMEM_COUNTERFACT='.*missing.json' is invalid: no such file"):
        C.counterfact_path()
    monkeypatch.delenv(C.ENV_VAR)
    assert C.find_counterfact() is None and C.counterfact_path() == tmp_path / "downloaded.json"
    with pytest.raises(ConfigError, match="^counterfact=.* is invalid: no such file"):
        C.counterfact_path(tmp_path / "missing.json")


RECONSTRUCTED = Path(__file__).resolve().parents[3] / "shared" / "data" / "counterfact_reconstructed.json"


@pytest.mark.skipif(not RECONSTRUCTED.is_file(), reason="no shared/data beside the checkout")
def test_hijack_without_counterfact_reads_the_copy_beside_the_checkout(tmp_path, monkeypatch, capsys):
    """The README's `hijack` examples name no file: they run offline on the copy beside the checkout."""
    from assocmem.cli import main
    from assocmem.hijack import counterfact as C

    def offline(*args, **kwargs):
        raise AssertionError("no download")

    monkeypatch.setattr(C, "download_counterfact", offline)
    monkeypatch.delenv(C.ENV_VAR, raising=False)
    assert main(["hijack", "--model", "tiny-random-gpt2", "--schemes", "not-think", "--max-n", "1", "--relations",
                 "P190", "--per-relation", "2", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["counterfact"] == str(RECONSTRUCTED.resolve()) and summary["records"] == 2
    assert summary["fingerprints"]["counterfact"]["copy"] == "reconstructed"
