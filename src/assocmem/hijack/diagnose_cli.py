"""`assocmem hijack diagnose` and `assocmem hijack try` (placeholder until written)."""

import typer


def register(app: typer.Typer) -> None:
    pass
