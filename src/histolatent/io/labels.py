"""Slide label tables: one row per slide, ``slide_id,label`` (+ any other columns), CSV or Parquet.

Slide-level learning (NIC §3) pairs each slide's grid (``<slide_id>.zarr``) with a label:
0/1 for classification (tumour present), a number for regression (proliferation score).
:func:`read_slide_labels` reads and checks a table at the boundary, so that a bad row is an
error naming the file and the row, not a NaN loss a thousand steps later.

Example
-------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.csv"
>>> _ = path.write_text("slide_id,label\\nA,1\\nB,0\\n")
>>> read_slide_labels(path, task="binary")["label"].tolist()
[1.0, 0.0]
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from histolatent.errors import InputError

__all__ = ["LABEL_COLUMNS", "TASKS", "check_labels", "read_slide_labels"]

#: Columns every label table has.
LABEL_COLUMNS = ("slide_id", "label")
#: What a label can be: 0/1 classes, or numbers.
TASKS = ("binary", "regression")


def read_slide_labels(path: str | os.PathLike, *, task: str | None = None) -> pd.DataFrame:
    """Read a label table (``.csv`` / ``.tsv`` / ``.parquet``) and check it.

    Returns a DataFrame with ``slide_id`` as str and ``label`` as float64 (other columns as
    they are). Errors (:class:`~histolatent.errors.InputError`) name the file: it does not
    exist or cannot be read, a column is missing, a slide id is empty or repeated, a label
    is not a finite number, or (``task="binary"``) not 0 or 1.
    """
    path = Path(path)
    name = f"labels {str(path)!r}"
    if not path.is_file():
        raise InputError(f"{name}: file does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv"):
            table = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype={"slide_id": str})
        else:
            raise InputError(f"{name}: expected a .csv, .tsv or .parquet file")
    except InputError:
        raise
    except Exception as err:  # pandas and pyarrow raise many kinds on a damaged file
        raise InputError(f"{name}: not a readable table ({type(err).__name__}: {err})") from None
    return check_labels(table, task=task, name=name)


def check_labels(table: pd.DataFrame, *, task: str | None = None, name: str = "labels") -> pd.DataFrame:
    """A checked copy of a label table (see :func:`read_slide_labels`); ``name`` goes into errors."""
    if task is not None and task not in TASKS:
        raise InputError(f"task: expected one of {TASKS}, got {task!r}")
    missing = [c for c in LABEL_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{name}: missing column(s) {missing}; a label table has {list(LABEL_COLUMNS)}")
    out = table.reset_index(drop=True).copy()
    ids = out["slide_id"]
    empty = ids.isna() | (ids.astype(str).str.strip() == "")
    if empty.any():
        raise InputError(f"{name}: empty slide_id in row(s) {np.flatnonzero(empty).tolist()[:10]}")
    out["slide_id"] = ids.astype(str)
    dup = sorted(out.loc[out["slide_id"].duplicated(), "slide_id"].unique().tolist())
    if dup:
        raise InputError(f"{name}: slide id(s) {dup[:10]} appear more than once")
    try:
        values = pd.to_numeric(out["label"], errors="raise").astype(np.float64)
    except (TypeError, ValueError):
        bad = [v for v in out["label"] if not _is_number(v)][:5]
        raise InputError(f"{name}: 'label' must be numbers, got e.g. {bad}") from None
    if not np.isfinite(values).all():
        rows = out.loc[~np.isfinite(values), "slide_id"].tolist()[:10]
        raise InputError(f"{name}: missing or non-finite label for slide(s) {rows}")
    if task == "binary" and not np.isin(values, (0.0, 1.0)).all():
        rows = out.loc[~np.isin(values, (0.0, 1.0)), "slide_id"].tolist()[:10]
        raise InputError(f"{name}: task 'binary' needs labels 0 or 1; slide(s) {rows} have others "
                         f"(use task 'regression' for scores)")
    out["label"] = values
    return out


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True
