"""Cell tables: one Parquet row per nucleus, carried from detection to embeddings and back to a viewer.

Required columns
----------------
``slide_id`` (str)
    The slide or image the nucleus belongs to.
``x``, ``y`` (float64)
    Centroid in **level-0 pixels**, pixel-centre convention (pixel ``(i, j)`` of level 0
    is at ``x = j, y = i``).
``mpp`` (float64)
    Microns per level-0 pixel of the slide (the scale of ``x`` and ``y``).
``x_um``, ``y_um`` (float64)
    The same centroid in µm from the slide's level-0 origin (``x * mpp``).

Common optional columns: ``roi_id`` (str), ``cell_id`` (int64, unique within a slide),
``method``, detection ``score`` and ``radius_um``, the morphometrics of
:mod:`histolatent.nuclei.morphometrics` (``area_um2`` …), ``classification`` (str),
embedding columns named by part (``z_iso_00`` …), and ``polygon``: the closed outline as a
flat ``[x0, y0, x1, y1, …]`` float64 list in level-0 pixels (same convention as ``x, y``).

Table-level metadata (method, parameters, versions) is stored in the Parquet schema
metadata under the key ``histolatent`` and comes back in ``DataFrame.attrs["histolatent"]``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histolatent.errors import InputError
from histolatent.io.atomic import atomic_path

#: Columns every cell table has.
REQUIRED_COLUMNS = ("slide_id", "x", "y", "mpp", "x_um", "y_um")

_META_KEY = b"histolatent"


def with_physical_coordinates(cells: pd.DataFrame, *, slide_id: str | None = None,
                              mpp: float | None = None) -> pd.DataFrame:
    """A copy of ``cells`` with ``slide_id``, ``mpp``, ``x_um`` and ``y_um`` filled in.

    ``x``/``y`` must already be level-0 pixels; ``slide_id`` and ``mpp`` are used where the
    table lacks those columns.
    """
    out = cells.copy()
    if "slide_id" not in out.columns:
        if slide_id is None:
            raise InputError("cells: no 'slide_id' column and no slide_id given")
        out.insert(0, "slide_id", str(slide_id))
    if "mpp" not in out.columns:
        if mpp is None:
            raise InputError("cells: no 'mpp' column and no mpp given")
        out["mpp"] = float(mpp)
    out["x_um"] = out["x"].astype(np.float64) * out["mpp"].astype(np.float64)
    out["y_um"] = out["y"].astype(np.float64) * out["mpp"].astype(np.float64)
    return out


def validate_cell_table(cells: pd.DataFrame, *, name: str = "cells") -> None:
    """Raise :class:`InputError` naming ``name`` and the problem if ``cells`` is not a cell table."""
    if not isinstance(cells, pd.DataFrame):
        raise InputError(f"{name}: expected a pandas DataFrame, got {type(cells).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in cells.columns]
    if missing:
        raise InputError(f"{name}: missing required columns {missing} (a cell table has {list(REQUIRED_COLUMNS)})")
    for c in ("x", "y", "mpp", "x_um", "y_um"):
        if not pd.api.types.is_numeric_dtype(cells[c]):
            raise InputError(f"{name}: column '{c}' must be numeric, got {cells[c].dtype}")
    if len(cells) and not np.isfinite(cells[["x", "y"]].to_numpy(dtype=np.float64)).all():
        raise InputError(f"{name}: columns 'x'/'y' contain NaN or inf")
    if len(cells) and (cells["mpp"].to_numpy(dtype=np.float64) <= 0).any():
        raise InputError(f"{name}: column 'mpp' must be positive")
    if "polygon" in cells.columns:
        for i, p in enumerate(cells["polygon"]):
            if p is None:
                continue
            a = np.asarray(p, dtype=np.float64)
            if a.ndim != 1 or a.size % 2 or (a.size and a.size < 8):
                raise InputError(f"{name}: row {i}: 'polygon' must be a flat [x0, y0, x1, y1, ...] list of "
                                 f">= 4 vertices, got {a.size} numbers")


def arrow_table(cells: pd.DataFrame, metadata: dict[str, Any] | None = None):
    """``cells`` as a ``pyarrow.Table`` with the cell-table column types and ``metadata``.

    ``polygon`` becomes a list of float64, the label columns (``slide_id``, ``roi_id``,
    ``classification``, ``method``) strings; ``metadata`` goes to the schema under the key
    ``histolatent``. ``cells`` need not have the required columns.
    """
    import pyarrow as pa

    df = cells.reset_index(drop=True)
    arrays, fields = [], []
    for c in df.columns:
        col = df[c]
        if c == "polygon":
            vals = [None if p is None else np.asarray(p, dtype=np.float64) for p in col]
            arr = pa.array(vals, type=pa.list_(pa.float64()))
        elif c in ("slide_id", "roi_id", "classification", "method"):
            arr = pa.array(col.astype(str).tolist() if col.notna().all() else
                           [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in col],
                           type=pa.string())
        else:
            arr = pa.array(col)
        arrays.append(arr)
        fields.append(pa.field(str(c), arr.type))
    meta = {_META_KEY: json.dumps(metadata or {}, default=_json_default).encode()}
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def write_cell_table(cells: pd.DataFrame, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                     compression: str = "zstd") -> Path:
    """Write a cell table to Parquet atomically (a crash leaves the old file or the new one).

    Parameters
    ----------
    cells : pandas.DataFrame
        A cell table (see the module docstring); never modified.
    path : path-like
        Output ``.parquet`` file.
    metadata : dict, optional
        JSON-serialisable table metadata (method, parameters, source); merged over
        ``cells.attrs.get("histolatent")``.

    Returns
    -------
    Path
    """
    import pyarrow.parquet as pq

    validate_cell_table(cells)
    meta = dict(cells.attrs.get("histolatent", {}) or {})
    meta.update(metadata or {})
    meta.setdefault("kind", "cells")
    table = arrow_table(cells, meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp), compression=compression)
    return Path(path)


def read_cell_table(path: str | os.PathLike, *, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a cell table written by :func:`write_cell_table` (or any Parquet with the required columns).

    Returns
    -------
    pandas.DataFrame
        ``polygon`` comes back as float64 numpy arrays; the metadata is in
        ``df.attrs["histolatent"]``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise InputError(f"cell table {str(path)!r}: file does not exist")
    try:
        table = pq.read_table(str(path), columns=columns)
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(f"cell table {str(path)!r}: not a readable Parquet file ({err})") from None
    df = table.to_pandas()
    if "polygon" in df.columns:
        df["polygon"] = [None if p is None else np.asarray(p, dtype=np.float64) for p in df["polygon"]]
    raw = (table.schema.metadata or {}).get(_META_KEY)
    df.attrs["histolatent"] = json.loads(raw.decode()) if raw else {}
    if columns is None:
        validate_cell_table(df, name=f"cell table {str(path)!r}")
    return df


def cell_table_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``histolatent`` metadata of a cell table, without reading its rows."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise InputError(f"cell table {str(path)!r}: file does not exist")
    raw = (pq.read_schema(str(path)).metadata or {}).get(_META_KEY)
    return json.loads(raw.decode()) if raw else {}


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a DataFrame atomically as Parquet (``.parquet``) or CSV (``.csv``), by the suffix of ``path``.

    >>> import tempfile
    >>> out = write_table(pd.DataFrame({"slide_id": ["a"], "prediction": [0.5]}),
    ...                   Path(tempfile.mkdtemp()) / "p.csv")
    >>> out.read_text().splitlines()
    ['slide_id,prediction', 'a,0.5']
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise InputError(f"{str(path)!r}: expected a .parquet or .csv output file")
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)
    return path


def write_arrow_table(table: Any, path: str | os.PathLike, *, compression: str = "zstd") -> Path:
    """Write a ``pyarrow.Table`` (schema metadata included) to Parquet atomically; returns the path."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp), compression=compression)
    return Path(path)


def concat_parquet(parts: list[str | os.PathLike], path: str | os.PathLike, *,
                   metadata: dict[str, Any] | None = None, compression: str = "zstd") -> Path:
    """Concatenate Parquet files of one schema into ``path``, one part in memory at a time.

    Each part becomes a row group (or several) of the output, in the order given; the
    output's schema metadata is ``metadata`` under the key ``histolatent`` (the parts'
    own metadata is dropped). Written atomically.

    Raises
    ------
    InputError
        No parts, a part that cannot be read, or parts whose columns differ.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not parts:
        raise InputError(f"{path}: no Parquet parts to concatenate")
    meta = {_META_KEY: json.dumps(metadata or {}, default=_json_default).encode()}
    schema = None
    with atomic_path(path) as tmp:
        writer = None
        try:
            for part in parts:
                try:
                    table = pq.read_table(str(part))
                except (pa.ArrowInvalid, OSError) as err:
                    raise InputError(f"Parquet part {str(part)!r}: not readable ({err})") from None
                if schema is None:
                    schema = table.schema.with_metadata(meta)
                    writer = pq.ParquetWriter(str(tmp), schema, compression=compression)
                elif not table.schema.equals(schema, check_metadata=False):
                    raise InputError(f"Parquet part {str(part)!r}: its columns differ from those of {str(parts[0])!r}")
                writer.write_table(table.replace_schema_metadata(meta))
        finally:
            if writer is not None:
                writer.close()
    return Path(path)
