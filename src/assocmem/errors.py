"""The one error type a user should ever see: a bad option, named with its value and what is allowed."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input. The CLI prints its message on one line and exits with status 2."""


def bad_option(name: str, value: object, allowed: str) -> ConfigError:
    """Build the project's standard one-line message: `--name=value is invalid: allowed ...`."""
    return ConfigError(f"{name}={value!r} is invalid: allowed {allowed}")
