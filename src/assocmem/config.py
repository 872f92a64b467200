"""Helpers for typed, validated, serialisable configs (dataclasses).

Every config in the package is a frozen dataclass that validates in `__post_init__` using the
checks below, so a bad value fails at construction with a message naming the field, its value and
what is allowed. `to_dict`/`save_config` write the resolved config beside results.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from assocmem.errors import bad_option


def check_int_range(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    """Raise ConfigError unless `value` is an int in [lo, hi] (either bound may be None)."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    ok = ok and (lo is None or value >= lo) and (hi is None or value <= hi)
    if not ok:
        lo_s = "-inf" if lo is None else str(lo)
        hi_s = "inf" if hi is None else str(hi)
        raise bad_option(name, value, f"an integer in [{lo_s}, {hi_s}]")


def check_float_range(
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Raise ConfigError unless `value` is a real number within the (half-)open/closed range."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    ok = v == v  # not NaN
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        left = "(" if lo_open or lo is None else "["
        right = ")" if hi_open or hi is None else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise bad_option(name, value, f"a number in {left}{lo_s}, {hi_s}{right}")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    """Raise ConfigError unless `value` is one of `choices`."""
    choices = list(choices)
    if value not in choices:
        raise bad_option(name, value, "one of " + ", ".join(map(str, choices)))


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) dataclass config."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def save_config(config: Any, path: str | Path) -> Path:
    """Write the resolved config as JSON (atomically) and return the path."""
    from assocmem.io import write_json

    return write_json(path, to_dict(config))
