import json
from pathlib import Path

import pytest

from assocmem.cli import main
from assocmem.config import flat_dict_of
from assocmem.cli.hijack import app as hijack_app
from assocmem.cli.options import join_multi_values, split_list

FIXTURE = str(Path(__file__).resolve().parent.parent / "fixtures" / "counterfact_small.json")
BASE = ["hijack", "--model", "tiny-random-gpt2", "--counterfact", FIXTURE, "--max-n", "1", "--device", "cpu",
        "--quiet", "--relations", "P190", "P103"]


def test_join_and_split_multi_values():
    assert join_multi_values(["--schemes", "a", "b", "--max-n", "3"], ("--schemes",)) == ["--schemes", "a,b", "--max-n", "3"]
    assert join_multi_values(["--schemes", "a", "try", "x"], ("--schemes",), stop={"try"}) == ["--schemes", "a", "try", "x"]
    assert split_list(["a,b", "c d", "a"]) == ("a", "b", "c", "d")
    assert split_list(None) is None


@pytest.mark.parametrize("form", [          # (comma and quoted forms: test_join_and_split_multi_values)
    ["--schemes", "not-think", "relation"],
    ["--schemes", "not-think", "--schemes", "relation"],
])
def test_schemes_accepts_space_comma_and_repeated_forms(tmp_path, form, capsys):
    out = tmp_path / "run"
    assert main(BASE + form + ["--out", str(out)]) == 0
    config = flat_dict_of(json.loads((out / "config.json").read_text()))
    assert config["schemes"] == ["not-think", "relation"] and config["relations"] == ["P190", "P103"]
    assert "hijacked_share" in capsys.readouterr().out


@pytest.mark.parametrize("extra, match", [
    (["--schemes", "not-thnk"], "did you mean not-think"),
    (["--max-n", "-2"], "--max-n=-2"),
    (["--mode", "all"], "--mode"),
    (["--relations", "P19O"], "P19O"),
    (["--template", "{subjct} is fine"], "did you mean {subject}"),
    (["--max-memory", "0=20GiB"], "--max-memory needs --device-map"),
    (["--device-map", "auto", "--max-memory", "0=lots"], "--max-memory='0=lots' is invalid"),
    (["--schemes", "template"], '--schemes: "template" needs --template'),          # the library says `template`
    (["--schemes", "associated"], "(use --skip-bad to skip such records)"),          # the library says `skip_bad`
])
def test_user_errors_are_one_line(tmp_path, capsys, extra, match):
    assert main(BASE[:-3] + extra + ["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and "\n" not in err


def test_missing_file_unknown_model_and_missing_out(tmp_path, capsys):
    assert main(["hijack", "--counterfact", str(tmp_path / "none.json"), "--out", str(tmp_path / "o"),
                 "--model", "tiny-random-gpt2"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(BASE + ["--out", str(tmp_path / "o2")][:0] + ["--model", "not a model!", "--out", str(tmp_path / "o3")]) == 2
    assert "--model='not a model!' is invalid" in capsys.readouterr().err
    assert main(["hijack", "--model", "./no/such/dir", "--counterfact", FIXTURE, "--out", str(tmp_path / "o4")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["hijack", "--counterfact", FIXTURE]) == 2
    assert "--out is required" in capsys.readouterr().err


def test_a_sub_command_does_not_run_the_benchmark(tmp_path, capsys):
    ran = []

    @hijack_app.command("probe-subcommand")
    def _probe(word: str) -> None:
        ran.append(word)

    try:
        out = tmp_path / "never"
        assert main(["hijack", "--out", str(out), "probe-subcommand", "hello"]) == 0
        assert ran == ["hello"] and not out.exists()
    finally:
        hijack_app.registered_commands[:] = [c for c in hijack_app.registered_commands if c.name != "probe-subcommand"]


def test_list_schemes(capsys):
    assert main(["hijack", "--list-schemes"]) == 0
    text = capsys.readouterr().out
    assert "not-think" in text and "associated-reverse" in text and "template" in text
