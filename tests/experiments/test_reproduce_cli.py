"""`assocmem reproduce` through the console entry point."""

from __future__ import annotations

from assocmem.cli import main


def test_unknown_only_id_is_a_one_line_error(tmp_path, capsys):
    code = main(["reproduce", "--only", "fig3", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: --only='fig3' is invalid") and "did you mean" in err and "fig3a" in err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_comma_separated_ids_are_checked_too(tmp_path, capsys):
    code = main(["reproduce", "--only", "fig3a,nope", "--out", str(tmp_path)])
    assert code == 2
    assert "--only='nope'" in capsys.readouterr().err


def test_bad_profile_and_missing_counterfact(tmp_path, capsys):
    assert main(["reproduce", "--profile", "huge", "--only", "c4", "--out", str(tmp_path)]) == 2
    assert "--profile='huge'" in capsys.readouterr().err
    code = main(["reproduce", "--only", "fig1", "--counterfact", str(tmp_path / "none.json"), "--out", str(tmp_path)])
    assert code == 2
    assert "--counterfact=" in capsys.readouterr().err


def test_list(capsys):
    assert main(["reproduce", "--list", "--only", "c2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out] == ["fig3a (c1)", "c2"]
