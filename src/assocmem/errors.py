"""The one error type a user should ever see: a bad option, named with its value and what is allowed."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input. The CLI prints its message on one line and exits with status 2."""


def did_you_mean(name: str, choices, n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The choices closest to a mistyped `name` (difflib), best first; [] when none is close."""
    import difflib

    return difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=cutoff)


def bad_option(name: str, value: object, allowed: str) -> ConfigError:
    """Build the project's standard one-line message: `--name=value is invalid: allowed ...`."""
    return ConfigError(f"{name}={value!r} is invalid: allowed {allowed}")
