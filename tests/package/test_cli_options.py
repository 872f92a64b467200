"""The CLI is generated from the configs: every config field has a flag, every flag a field (or is
one of the few declared extras), and a bad value's error names the flag."""

from __future__ import annotations

import pytest
import typer

from assocmem.cli import app, main
from assocmem.cli.options import config_leaves
from assocmem.experiments.reproduce import ReproduceOptions
from assocmem.hijack.diagnose import DiagnoseConfig
from assocmem.hijack.mechanism import MechanismConfig
from assocmem.hijack.run import HijackConfig
from assocmem.hijack.try_prompt import TryConfig
from assocmem.hijack.verify import VerifyConfig

COMMANDS = {  # command path -> (config, flags that are no config field)
    ("hijack",): (HijackConfig, {"--out", "--list-schemes", "--quiet", "--help"}),
    ("hijack", "diagnose"): (DiagnoseConfig, {"--out", "--help"}),
    ("hijack", "try"): (TryConfig, {"--help"}),
    ("hijack", "mechanism"): (MechanismConfig, {"--out", "--help"}),
    ("verify",): (VerifyConfig, {"--help"}),
    ("reproduce",): (ReproduceOptions, {"--list", "--help"}),
}


def _command(path):
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_field_has_a_flag_and_every_flag_a_field(path):
    config, extras = COMMANDS[path]
    cmd = _command(path)
    flags = {opt for p in cmd.params if p.param_type_name == "option" for opt in (*p.opts, *p.secondary_opts)}
    arguments = {p.name for p in cmd.params if p.param_type_name == "argument"}
    leaves = config_leaves(config)
    fields = {flag for leaf in leaves if not leaf.argument for flag in leaf.flag.split("/")}
    assert fields <= flags, f"fields without a flag: {fields - flags}"
    assert flags - fields <= extras, f"flags without a field: {flags - fields - extras}"
    assert {leaf.name for leaf in leaves if leaf.argument} <= arguments
    names = [leaf.name for leaf in leaves]
    assert len(names) == len(set(names)), "two leaves share a name"


@pytest.mark.parametrize("argv, flag", [
    (["hijack", "--max-n", "-1", "--out", "x"], "--max-n=-1"),
    (["hijack", "--batch-tokens", "0", "--out", "x"], "--batch-tokens=0"),
    (["hijack", "--mode", "last", "--out", "x"], "--mode='last'"),
    (["hijack", "--dtype", "fp8", "--out", "x"], "--dtype='fp8'"),
    (["hijack", "--per-relation", "0", "--out", "x"], "--per-relation=0"),
    (["hijack", "diagnose", "--n", "0", "x"], "--n"),
    (["hijack", "try", "Moscow is", "--true", "Berlin", "--false", "Rome", "--top-k", "0"], "--top-k=0"),
    (["verify", "somewhere", "--sample", "0"], "--sample=0"),
    (["reproduce", "--profile", "huge"], "--profile='huge'"),
])
def test_a_bad_value_is_a_one_line_error_naming_the_flag(argv, flag, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert flag in err and len(err.splitlines()) == 1
