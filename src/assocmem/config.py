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
from typing import Any, get_type_hints

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


def as_tuple(name: str, values: Any, item: type = str, allowed: str | None = None) -> tuple:
    """A list-valued setting as a tuple of `item`s: a sequence item by item, one value (e.g. a str) as a tuple
    of one. A value `item` cannot read (a bool or a fraction for int) is a ConfigError naming the setting. The
    one list parser of the configs (the command line first splits "a,b c" into items: cli.options.split_list)."""
    seq = (values,) if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) else tuple(values)
    kinds = {int: "integers, e.g. 0 1 3", float: "numbers, e.g. 0 0.5"}
    try:
        if item in (int, float) and any(isinstance(v, bool) for v in seq):
            raise ValueError
        if item is int and any(isinstance(v, float) and not v.is_integer() for v in seq):
            raise ValueError
        return tuple(item(v) for v in seq)
    except (TypeError, ValueError):
        raise bad_option(name, " ".join(map(str, seq)), allowed or kinds.get(item, "a list of values")) from None


def int_tuple(name: str, values: Any, lo: int | None = None, hi: int | None = None) -> tuple[int, ...]:
    """A non-empty list-valued setting of integers, each in [lo, hi] (`as_tuple`, then `check_int_range`)."""
    out = as_tuple(name, values, int)
    if not out:
        raise bad_option(name, (), "at least one integer" + (f" >= {lo}" if lo is not None else ""))
    for value in out:
        check_int_range(name, value, lo, hi)
    return out


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    """Raise ConfigError unless `value` is one of `choices`."""
    choices = list(choices)
    if value not in choices:
        raise bad_option(name, value, "one of " + ", ".join(map(str, choices)))


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) dataclass config, or of a config a run folder kept as its raw
    dict (`read_config`: one that cannot be rebuilt here), so such a config is written back as it was read."""
    return json.loads(json.dumps(config if isinstance(config, dict) else dataclasses.asdict(config), default=str))


def save_config(config: Any, path: str | Path) -> Path:
    """Write the resolved config as JSON (atomically) and return the path."""
    from assocmem.io import write_json

    return write_json(path, to_dict(config))


def option(default: Any = dataclasses.MISSING, help: str = "", flag: str | None = None, factory: Any = None,
           argument: bool = False, required: bool = False) -> Any:
    """A config field that is also a command-line option: its help text (and flag, default
    --field-name; or a positional `argument`; `required` for an option the command cannot run without)
    live beside it, so the CLI is generated from the dataclass (assocmem.cli.options)."""
    meta = {"help": help, **({"flag": flag} if flag else {}), **({"argument": True} if argument else {}),
            **({"required": True} if required else {})}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def leaves(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dataclasses.Field, Any]]:
    """(path, field, type) of every non-dataclass field of `cls`, nested dataclass fields flattened."""
    hints = get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            out += leaves(kind, prefix + (f.name,))
        else:
            out.append((prefix + (f.name,), f, kind))
    return out


def flat_dict(config: Any) -> dict[str, Any]:
    """The leaves of a (nested) config as {field name: value}; leaf names are unique in a config."""
    out: dict[str, Any] = {}
    for key, value in to_dict(config).items():
        if isinstance(value, dict) and dataclasses.is_dataclass(getattr(config, key, None)):
            out.update(flat_dict(getattr(config, key)))
        else:
            out[key] = value
    return out


def from_flat(cls: type, values: dict[str, Any], strict: bool = False) -> Any:
    """Build `cls` (nesting included) from {leaf name: value}; missing leaves keep their defaults,
    unknown names are ignored (e.g. an older run folder's fields) unless `strict`; lists become tuples."""
    if strict:
        names = [path[-1] for path, _, _ in leaves(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            from assocmem.errors import ConfigError, did_you_mean

            close = did_you_mean(unknown[0], names)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise ConfigError(f"{unknown[0]}={values[unknown[0]]!r} is invalid: {cls.__name__} has no setting "
                              f"{', '.join(unknown)}{hint}", field=unknown[0])
    hints = get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            if isinstance(values.get(f.name), dict):          # a nested dict, as config.json writes it
                kwargs[f.name] = from_flat(kind, values[f.name])
            else:
                kwargs[f.name] = from_flat(kind, values)
        elif f.name in values:
            v = values[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)


def flat_dict_of(raw: dict) -> dict:
    """{leaf: value} of a config.json dict, nested or flat (older folders); its "fingerprints" left out."""
    out = {}
    for key, value in raw.items():
        if key == "fingerprints":
            continue
        out.update(flat_dict_of(value) if isinstance(value, dict) else {key: value})
    return out


def rebuild(cls: type, raw: dict, **overrides: Any) -> Any:
    """`cls` from a run folder's config.json, nested or flat (older folders), `overrides` replacing leaves;
    fields `cls` does not know (fingerprints, an older folder's options) are left out."""
    return from_flat(cls, {**flat_dict_of(raw), **overrides})


def read_config(cls: type, raw: dict, **overrides: Any) -> Any:
    """`rebuild`, or the raw dict where the config cannot be rebuilt here (it names a CounterFact file or model
    this machine lacks)."""
    from assocmem.errors import ConfigError

    try:
        return rebuild(cls, raw, **overrides)
    except ConfigError:
        return raw


class Composed:
    """For a config composed of other configs: build or change it by leaf names, as the CLI does.

        HijackConfig.of(model="gpt2", schemes=("relation",), per_relation=5)
        config.but(batch_tokens=1024)
    """

    @classmethod
    def of(cls, **leaf_values: Any):
        return from_flat(cls, leaf_values, strict=True)

    def but(self, **leaf_values: Any):
        return from_flat(type(self), {**flat_dict(self), **leaf_values}, strict=True)
