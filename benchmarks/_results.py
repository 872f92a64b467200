"""Shared by the benchmark scripts: the machine's CPU name and appending a row to one section of
RESULTS.md without touching the other sections (several benchmarks write to the same file)."""

from __future__ import annotations

import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def append_row(section: str, intro: str, header: str, row: str, results: Path = RESULTS) -> None:
    """Put `row` after the last table line of `section` (a '## ...' line) of RESULTS.md, so notes
    written under a table stay below it; a missing section is created with `intro` and the table
    `header` (which ends with its separator line)."""
    text = results.read_text() if results.exists() else "# Benchmarks\n"
    if section not in text:
        text = text.rstrip("\n") + f"\n\n{section}\n\n{intro}\n\n{header.rstrip(chr(10))}\n"
    start = text.index(section)
    following = text.find("\n## ", start + len(section))
    end = len(text) if following == -1 else following
    lines = text[start:end].rstrip("\n").split("\n")
    table_lines = [i for i, line in enumerate(lines) if line.startswith("|")]
    at = table_lines[-1] + 1 if table_lines else len(lines)
    body = "\n".join(lines[:at] + [row] + lines[at:]) + "\n"
    rest = text[end:].lstrip("\n")
    results.write_text(text[:start] + body + ("\n" + rest if rest else ""))
