"""Run folders: one atomic writer, so an interrupted run never leaves a half-written file that a
resumed run would trust, plus small readers.

Every file the package writes goes through `atomic_write`: the bytes go to a temporary file in the
same folder, which then replaces the target in one rename; files are left readable by everyone
(0o644), as run folders are meant to be shared.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces `path`, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented JSON to `path` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_parquet(path: str | Path, df) -> Path:
    """A DataFrame as parquet, atomically; zstd folds away repeated text (the prompts' sentences)."""
    with atomic_write(path) as tmp:
        df.to_parquet(tmp, index=False, compression="zstd")
    return Path(path)


def write_csv(path: str | Path, df) -> Path:
    with atomic_write(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def write_tables(folder: str | Path, tables: dict[str, Any], csv: Any = ()) -> None:
    """Each DataFrame of `tables` as <name>.parquet in `folder`, and as <name>.csv too for the names in `csv`."""
    for name, frame in tables.items():
        write_parquet(Path(folder) / f"{name}.parquet", frame)
        if name in csv:
            write_csv(Path(folder) / f"{name}.csv", frame)


def read_tables(folder: str | Path, names: Any) -> dict[str, Any]:
    """{name: DataFrame} of the <name>.parquet files of `folder` (an empty DataFrame where one is missing)."""
    import pandas as pd

    return {name: pd.read_parquet(Path(folder) / f"{name}.parquet") if (Path(folder) / f"{name}.parquet").is_file()
            else pd.DataFrame() for name in names}


def read_json(path: str | Path) -> Any:
    with open(path) as fh:
        return json.load(fh)


def _json_default(obj: Any) -> Any:
    # numpy / torch scalars and arrays, Paths
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
