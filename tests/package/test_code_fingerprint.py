"""The code fingerprint is the code's, not the interpreter's: the same source gives the same hash under every
Python version here (a run made on a GPU machine's Python 3.12 is reused, and verified, on a 3.11 CPU)."""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assocmem.provenance import code_fingerprint, package_fingerprint

SRC = Path(__file__).resolve().parents[2] / "src"


def _other_pythons() -> list[str]:
    found = {shutil.which(f"python3.{minor}") for minor in range(10, 15)}
    found |= set(glob.glob(str(Path.home() / ".pyenv" / "versions" / "3.1[0-4]*" / "bin" / "python3")))
    mine = Path(sys.executable).resolve()
    return sorted(p for p in found if p and "/shims/" not in p and Path(p).resolve() != mine)


def test_comments_docstrings_and_layout_do_not_count_but_code_does(tmp_path, monkeypatch):
    module = tmp_path / "fp_probe.py"
    monkeypatch.syspath_prepend(str(tmp_path))

    def fingerprint(source: str) -> str:
        module.write_text(source)
        sys.modules.pop("fp_probe", None)
        import fp_probe

        return code_fingerprint(fp_probe.f)

    base = fingerprint('def f(x):\n    """Doc."""\n    return f"{x:.3f}" + "!"\n')
    assert fingerprint('def f(x):  # a comment\n    """Another doc."""\n\n    return (f"{x:.3f}"\n            + "!")\n') == base
    assert fingerprint('def f(x):\n    return f"{x:.4f}" + "!"\n') != base


@pytest.mark.parametrize("python", _other_pythons() or [None])
def test_the_package_fingerprint_is_the_same_under_every_python(python):
    if python is None:
        pytest.skip("no other Python 3.10+ on this machine")
    out = subprocess.run([python, "-c", "from assocmem.provenance import package_fingerprint as p; print(p())"],
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    if out.returncode:
        pytest.skip(f"{python} cannot import the package's provenance module: {out.stderr.strip()[-200:]}")
    assert out.stdout.strip() == package_fingerprint()
