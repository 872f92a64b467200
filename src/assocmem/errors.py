"""The one error type a user should ever see: a bad setting, named with its value and what is allowed.

The library names a setting by its config field (`max_n=-1 is invalid: ...`, and another setting it points to
in backticks: "use `skip_bad`"); the command line, the one place that knows flags, names them by their flags
(`--max-n=-1 is invalid: ...`, "use --skip-bad": `ConfigError.for_flags`).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input. The CLI prints its message on one line and exits with status 2.

    `field`: the config field (or argument) the message starts with, when it names one."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field

    def for_flags(self, flags: dict[str, str]) -> "ConfigError":
        """This error as the command line shows it (`flags`: field -> flag): the field it starts with, and every
        setting it names in backticks (`skip_bad`), by its flag."""
        import re

        text = str(self)
        if self.field in flags and text.startswith(self.field):
            text = flags[self.field] + text[len(self.field):]
            self.field = flags[self.field]
        self.args = (re.sub(r"`(\w+)`", lambda m: flags.get(m.group(1), m.group(0)), text),)
        return self


def did_you_mean(name: str, choices, n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The choices closest to a mistyped `name` (difflib), best first; [] when none is close."""
    import difflib

    return difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=cutoff)


def bad_option(name: str, value: object, allowed: str) -> ConfigError:
    """Build the project's standard one-line message: `name=value is invalid: allowed ...`."""
    return ConfigError(f"{name}={value!r} is invalid: allowed {allowed}", field=name)
