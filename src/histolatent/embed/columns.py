"""Embedding columns of a table: the one naming rule, both ways (DESIGN "Tables").

A part of shape ``(n, M)`` becomes the columns ``part_00 .. part_{M-1}``; an orientation
part of shape ``(n, M, N)`` (``q_ori``, SO(2,N) vectors) becomes ``part_00_0 ..
part_{M-1}_{N-1}``; a part of shape ``(n,)`` is the column ``part``. The index is
zero-padded to at least two digits so that columns sort in index order.

:mod:`histolatent.embed` writes columns with :func:`columns_from_parts`; readers
(:mod:`histolatent.downstream`) get a part back with :func:`part_columns` /
:func:`part_array`.

Example
-------
>>> import numpy as np
>>> cols = columns_from_parts({"z": np.zeros((2, 3)), "q_ori": np.zeros((2, 1, 2))})
>>> list(cols)
['z_00', 'z_01', 'z_02', 'q_ori_00_0', 'q_ori_00_1']
>>> part_array(table_from_parts({"z": np.arange(6.0).reshape(2, 3)}), "z").tolist()
[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

__all__ = ["columns_from_parts", "is_orientation_part", "part_array", "part_columns", "table_from_parts"]

_IDX = re.compile(r"^(?P<part>.+?)_(?P<i>\d+)(?:_(?P<j>\d+))?$")


def columns_from_parts(parts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{"z_iso": (n, M), "q_ori": (n, M, N), ...}`` -> ``{"z_iso_00": (n,), ..., "q_ori_00_0": (n,), ...}``."""
    out: dict[str, np.ndarray] = {}
    n = None
    for name, arr in parts.items():
        a = np.asarray(arr)
        if n is None:
            n = a.shape[0]
        if a.shape[0] != n:
            raise ValueError(f"part {name!r} has {a.shape[0]} rows, expected {n}")
        if a.ndim == 1:
            out[name] = a
        elif a.ndim == 2:
            w = max(2, len(str(a.shape[1] - 1)))
            out.update({f"{name}_{i:0{w}d}": a[:, i] for i in range(a.shape[1])})
        elif a.ndim == 3:
            w = max(2, len(str(a.shape[1] - 1)))
            out.update({f"{name}_{i:0{w}d}_{j}": a[:, i, j] for i in range(a.shape[1]) for j in range(a.shape[2])})
        else:
            raise ValueError(f"part {name!r} has shape {a.shape}; expected (n,), (n, M) or (n, M, N)")
    return out


def table_from_parts(parts: Mapping[str, np.ndarray], base: pd.DataFrame | None = None) -> pd.DataFrame:
    """A new DataFrame: ``base``'s columns (not modified) followed by the embedding columns."""
    cols = pd.DataFrame(columns_from_parts(parts))
    if base is None:
        return cols
    if len(base) != len(cols):
        raise ValueError(f"base table has {len(base)} rows but the parts have {len(cols)}")
    return pd.concat([base.reset_index(drop=True), cols], axis=1)


def part_columns(columns: Iterable[str], part: str) -> list[str]:
    """The columns of ``part`` in index order (``part_00, part_01, ...`` or ``part_00_0, ...``)."""
    found = []
    for c in columns:
        m = _IDX.match(str(c))
        if m and m["part"] == part:
            found.append((int(m["i"]), -1 if m["j"] is None else int(m["j"]), str(c)))
    if not found:
        cols = list(columns)
        if part in cols:
            return [part]
        raise KeyError(f"no columns for part {part!r} (expected {part}_00, {part}_00_0 or {part})")
    kinds = {j < 0 for _, j, _ in found}
    if len(kinds) > 1:
        raise ValueError(f"part {part!r} mixes (M,) and (M, N) column names")
    return [c for _, _, c in sorted(found)]


def part_array(table: pd.DataFrame, part: str) -> np.ndarray:
    """The array of ``part``: ``(n,)``, ``(n, M)`` or ``(n, M, N)`` for orientation parts."""
    cols = part_columns(table.columns, part)
    x = table[cols].to_numpy(dtype=np.float64)
    if cols == [part]:
        return x[:, 0]
    m = _IDX.match(cols[-1])
    if m["j"] is not None:
        n_i, n_j = int(m["i"]) + 1, int(m["j"]) + 1
        if n_i * n_j != len(cols):
            raise ValueError(f"part {part!r}: {len(cols)} columns do not form an (M, N) grid")
        return x.reshape(len(table), n_i, n_j)
    return x


def is_orientation_part(table: pd.DataFrame, part: str) -> bool:
    """Whether ``part`` is stored as ``(M, N)`` orientation columns."""
    cols = part_columns(table.columns, part)
    m = _IDX.match(cols[0])
    return bool(m and m["j"] is not None)
