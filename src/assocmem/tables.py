"""Long tables: one row per setting × quantity, the labels as columns (`arm`, `beta`, `d`, `scheme`, `n`,
...), and the one way to query them. Claims, figures and explanations select rows by their columns'
values, never by parsing a display label.

    where(table, quantity="accuracy", d=16, arm=("trained W_E", "frozen W_E"))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def where(table: pd.DataFrame | Sequence[dict], **match: Any) -> pd.DataFrame:
    """The rows (in table order) whose column c equals match[c]: in it, for a list, tuple or set; missing, for
    None. `table` may be a DataFrame or a list of row dicts (read as objects, so every value keeps its type)."""
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table), dtype=object)
    keep = np.ones(len(frame), dtype=bool)
    for column, value in match.items():
        col = frame[column]
        if value is None:
            keep &= col.isna().to_numpy()
        elif isinstance(value, (list, tuple, set, frozenset)):
            keep &= col.isin(list(value)).to_numpy()
        else:
            keep &= (col == value).to_numpy()
    return frame[keep]


def values(table: pd.DataFrame | Sequence[dict], column: str = "value", **match: Any) -> list:
    """The `column` of the rows `where` selects, as plain Python values in table order."""
    return where(table, **match)[column].tolist()
