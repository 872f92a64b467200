"""What the package writes speaks of the project and the paper only: no internal words (an issue number, the
project description called "the seed", a working session, research notes) in its code, messages or data."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "assocmem"
INTERNAL = re.compile(r"\bissues? ?#?\d+|\bthe issue's\b|\b(?:the|our) seed(?:'s| text| defines)|\bseed text\b|"
                      r"\bsessions?\b|\bresearch notes\b", re.IGNORECASE)


def test_no_internal_words_in_the_package_or_its_data():
    found = [f"{path.relative_to(PACKAGE)}:{n}: {m.group(0)}"
             for path in sorted(PACKAGE.rglob("*")) if path.suffix in (".py", ".json", ".md")
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             for m in INTERNAL.finditer(line)]
    assert not found, found


def test_the_pattern_catches_what_it_is_for():
    for text in ("(before issue 16: n = 0)", "extension (issue 7)", "ES as the seed defines it",
                 "as described in our seed text", "the issue's setting", "see the research notes"):
        assert INTERNAL.search(text), text
    for text in ("seed of the sample", "--seeds 0 1 2", "a seed's generator", "issues with the tokenizer"):
        assert not INTERNAL.search(text), text
