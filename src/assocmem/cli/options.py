"""Command-line options generated from the config dataclasses, so that a setting is declared once.

Every leaf field of a config (nested configs flattened; see `config.leaves`) becomes one option:
`--field-name` (or the field's own `flag`), its help text from the field, its default from the
config's default instance. List fields take space-, comma- or repeat-separated values
(`--schemes a b`, `--schemes a,b`, `--schemes a --schemes b`). The command builds the config with
`config.from_flat`, so every value is checked once, by the config, with the flag in the message.

    register_config_command(app, "diagnose", DiagnoseConfig, run, extra=[out_param])
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import click
import typer
from typer.core import TyperCommand, TyperGroup

from assocmem.config import from_flat, leaves
from assocmem.errors import ConfigError


def join_multi_values(args: list[str], options: Sequence[str], stop: set[str] = frozenset()) -> list[str]:
    """['--schemes', 'a', 'b', '--max-n', '3'] → ['--schemes', 'a,b', '--max-n', '3'].

    Values run until the next token starting with "-" (a negative number counts as a value) or
    naming a sub-command; everything from the first sub-command name on is left to it.
    """
    out, i = [], 0
    while i < len(args):
        tok = args[i]
        if tok in stop:
            return out + args[i:]
        if tok in options:
            values = []
            i += 1
            while i < len(args) and not _is_flag(args[i]) and args[i] not in stop:
                values.append(args[i])
                i += 1
            out += [tok, ",".join(values)] if values else [tok]
            continue
        out.append(tok)
        i += 1
    return out


def _is_flag(token: str) -> bool:
    return token.startswith("-") and not re.fullmatch(r"-\d+(\.\d*)?", token)


def split_list(values: Sequence[str] | None) -> tuple[str, ...] | None:
    """Flatten repeated / comma- / space-separated option values; None if none were given."""
    if not values:
        return None
    items = [t for v in values for t in re.split(r"[,\s]+", str(v)) if t]
    return tuple(dict.fromkeys(items)) or None


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One option of a generated command."""

    name: str            # the config's leaf field name (the function parameter)
    flag: str            # e.g. --per-relation
    default: Any
    help: str
    is_list: bool
    annotation: Any
    argument: bool = False
    required: bool = False


def _is_list(kind: Any) -> bool:
    """tuple[...] / list[...], optional or not."""
    if typing.get_origin(kind) in (tuple, list):
        return True
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return any(typing.get_origin(a) in (tuple, list) for a in typing.get_args(kind))
    return False


def _annotation(kind: Any) -> Any:
    """The type typer sees: lists as Optional[list[str]], optionals as Optional[X]."""
    if _is_list(kind):
        return Optional[list[str]]
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return Optional[inner]
    return kind


def _default(cls: type, path: tuple[str, ...]) -> Any:
    """The default of the leaf at `path`: from each level's field default (a nested config's default
    instance gives its own leaves' defaults, e.g. diagnose's records = 200)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == path[0])
    if f.default_factory is dataclasses.MISSING:
        return None if f.default is dataclasses.MISSING else f.default
    try:
        value = f.default_factory()
    except ConfigError:   # e.g. the bundled model is not installed: the nested class's own field defaults
        return _default(typing.get_type_hints(cls)[f.name], path[1:])
    for name in path[1:]:
        value = getattr(value, name)
    return value


@functools.cache
def config_leaves(cls: type) -> list[Leaf]:
    """The options of config class `cls`, with their defaults (nested configs' own defaults too)."""
    out = []
    for path, f, kind in leaves(cls):
        value = _default(cls, path)
        flag = f.metadata.get("flag") or "--" + path[-1].replace("_", "-")
        out.append(Leaf(path[-1], flag, value, f.metadata.get("help", ""), _is_list(kind), _annotation(kind),
                        bool(f.metadata.get("argument")), bool(f.metadata.get("required"))))
    return out


def _parameter(leaf: Leaf) -> inspect.Parameter:
    if leaf.argument:
        default = typer.Argument(... if leaf.default is None else leaf.default, help=leaf.help)
        return inspect.Parameter(leaf.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=leaf.annotation)
    shown = None
    if leaf.is_list and leaf.default:
        shown = " ".join(map(str, leaf.default))
    kwargs = {"help": leaf.help}
    if shown:
        kwargs["show_default"] = shown
    default = ... if leaf.required else None if leaf.is_list else leaf.default
    option = typer.Option(default, leaf.flag, **kwargs)
    return inspect.Parameter(leaf.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=leaf.annotation)


def list_flags(*configs: type) -> tuple[str, ...]:
    return tuple(leaf.flag for cls in configs for leaf in config_leaves(cls) if leaf.is_list)


class ListCommand(TyperCommand):
    """A command whose list options take space-separated values (see join_multi_values)."""

    list_options: tuple[str, ...] = ()

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_multi_values(args, self.list_options))


class ListGroup(TyperGroup):
    """A group (with a callback of its own) whose list options take space-separated values."""

    list_options: tuple[str, ...] = ()

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_multi_values(args, self.list_options, stop=set(self.commands)))


def build(cls: type, values: dict[str, Any], given: set[str] | None = None) -> Any:
    """The config from the parsed option values (a list option left empty keeps the default).

    A config built in layers (`LAYERED`, e.g. a preset under the options given: `LCATrainConfig.of`) gets only
    the options in `given` (typed on the command line), through its `of`."""
    by_name = {leaf.name: leaf for leaf in config_leaves(cls)}
    layered = getattr(cls, "LAYERED", False) and given is not None
    leaf_values = {}
    for name, value in values.items():
        leaf = by_name[name]
        if layered and name not in given:
            continue
        if leaf.is_list:
            value = split_list(value)
            if value is None:
                continue
        leaf_values[name] = value
    return cls.of(**leaf_values) if layered else from_flat(cls, leaf_values, strict=True)


def flags_of(cls: type, extra: Sequence[inspect.Parameter] = ()) -> dict[str, str]:
    """{field or parameter name: its flag} of a generated command: how a library error naming a field is
    shown on the command line (errors.ConfigError.for_flags)."""
    out = {leaf.name: leaf.flag for leaf in config_leaves(cls)}
    for p in extra:
        decls = [d for d in getattr(p.default, "param_decls", ()) or () if d.startswith("--")]
        if decls:
            out[p.name] = decls[0].split("/")[0]
    return out


def config_function(cls: type, handler: Callable[..., None], extra: Sequence[inspect.Parameter] = (),
                    doc: str | None = None) -> Callable[..., None]:
    """A function typer can register: its parameters are `cls`'s options plus `extra`; it builds
    the config and calls handler(config, **extra values)."""
    leaves_ = config_leaves(cls)
    names = {leaf.name for leaf in leaves_}
    extra_names = [p.name for p in extra]
    clash = names & set(extra_names)
    if clash:
        raise ValueError(f"{cls.__name__}: extra parameters {sorted(clash)} are also config fields")

    flags = flags_of(cls, extra)
    has_ctx = any(p.annotation is typer.Context for p in extra)

    def command(**kwargs):
        ctx = kwargs.pop("_ctx", None) or kwargs.get("ctx")
        if ctx is not None and getattr(ctx, "invoked_subcommand", None):
            return None
        given = None if ctx is None else {n for n in names if _typed(ctx, n)}
        try:
            config = build(cls, {k: v for k, v in kwargs.items() if k in names}, given)
            return handler(config, **{k: v for k, v in kwargs.items() if k in extra_names})
        except ConfigError as err:
            raise err.for_flags(flags) from None

    context = [] if has_ctx else [inspect.Parameter("_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)]
    params = [*context, *extra, *[_parameter(leaf) for leaf in leaves_]]
    command.__signature__ = inspect.Signature(params)
    command.__doc__ = doc or handler.__doc__
    command.__name__ = handler.__name__
    return command


def _typed(ctx, name: str) -> bool:
    """Whether the option `name` was given on the command line (not its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def extra_option(name: str, annotation: Any, default: Any, *flags: str, help: str = "", **kw) -> inspect.Parameter:
    """A parameter of a command that is no config field (--out, --quiet, ...)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=typer.Option(default, *flags, help=help, **kw))


def extra_argument(name: str, annotation: Any, help: str = "") -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=typer.Argument(..., help=help))


OUT = extra_option("out", Optional[Path], None, "--out", help="Run folder (re-running the same command resumes).")
