"""The `assocmem` command: the top layer, which nothing in the package imports. One module a
command family, each a thin shell over one public library function:

    assocmem lca train ...          (assocmem.cli.lca -> assocmem.lca.train)
    assocmem hijack ...             (assocmem.cli.hijack -> assocmem.hijack.run / diagnose / try_prompt)
    assocmem verify DIR             (assocmem.cli.hijack -> assocmem.hijack.verify)
    assocmem reproduce ...          (assocmem.cli.reproduce -> assocmem.experiments.runner)

Every user-facing error is a ConfigError, printed here on one line (exit status 2).
"""

from __future__ import annotations

import sys

import typer

from assocmem.errors import ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Transformers as associative memories: context hijacking and latent concept association.",
)


def _register() -> None:
    from assocmem.cli import hijack, lca, reproduce

    app.add_typer(lca.app, name="lca", help="Latent concept association: train and analyse one-layer transformers.")
    hijack.register(app)
    reproduce.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    try:
        code = app(args=argv, standalone_mode=False)  # click returns a command's typer.Exit code here
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except typer.Exit as ex:
        return ex.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted: finished work is kept; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as err:  # click usage errors
        if type(err).__name__ == "MissingParameter" and getattr(err, "param", None) is not None:
            print(f"error: {_missing(err.param)}", file=sys.stderr)   # one line, as a ConfigError
            return 2
        if isinstance(err, _usage_error_types()):
            err.show()
            return err.exit_code
        raise
    return code if isinstance(code, int) else 0


def _missing(param) -> str:
    """`--true is required: The true target, e.g. Paris.` for a required option or argument left out."""
    name = param.opts[0] if param.param_type_name == "option" else (param.metavar or param.name).upper()
    help_ = getattr(param, "help", None)
    return f"{name} is required" + (f": {help_}" if help_ else "")


def _usage_error_types() -> tuple[type[Exception], ...]:
    """Click's usage errors; typer >= 0.2x raises those of its own vendored copy of click, which
    are not subclasses of click's."""
    import click

    types: list[type[Exception]] = [click.exceptions.ClickException]
    try:
        from typer._click.exceptions import ClickException
    except ImportError:
        pass
    else:
        types.append(ClickException)
    return tuple(types)


if __name__ == "__main__":
    sys.exit(main())
