"""Cell tables -> embedding columns, chunk by chunk: bounded memory, resumable, atomic.

:func:`embed_cells` reads a cell table ``chunk_rows`` rows at a time, reads the patch of
each cell around its level-0 ``(x, y)`` at the model's scale (or takes it from a patch array
aligned with the rows), encodes it (:func:`~histolatent.embed.encode.encode_images`) and
writes the chunk, with the input's columns and the new ones, as one Parquet part in a
folder beside the output (``.<name>.parts/``). When every chunk is written the parts are
concatenated into the output (a temporary name, then a rename) and the folder goes.

Memory holds one chunk of rows and patches, whatever the number of cells. A run that
stops (crash, kill, Ctrl-C) leaves the finished parts; the same call again skips every
part that verifies (same job: model weights, patch geometry, options, source files; same
input rows: a hash of the chunk's ``slide_id``, ``x``, ``y`` and, for patch arrays, its
pixels) and redoes the others, so the result is bitwise the one of an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histolatent.embed.columns import columns_from_parts
from histolatent.embed.encode import PRECISIONS, encode_images, weights_hash
from histolatent.embed.runs import patch_geometry, resolve_model
from histolatent.errors import InputError
from histolatent.io.atomic import atomic_path, check_output
from histolatent.io.image import check_mpp
from histolatent.io.tables import (
    arrow_table,
    cell_table_metadata,
    concat_parquet,
    write_arrow_table,
)
from histolatent.nuclei.patches import PatchSpec, extract_patches
from histolatent.progress import progress as progress_meter

__all__ = ["embed_cells", "parts_folder"]

_PART_KEY = b"histolatent_part"
EDGES = ("pad", "reflect")


def parts_folder(out: str | os.PathLike) -> Path:
    """The folder of finished chunks of a job writing ``out`` (``.<name>.parts`` beside it)."""
    out = Path(out)
    return out.with_name(f".{out.name}.parts")


def _file_identity(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _source_identity(source: Any, slide: Any) -> str:
    """What a finished part's slide was: a file (path, size, time), an array's bytes, an open slide."""
    if isinstance(source, (str, os.PathLike)):
        return _file_identity(Path(source))
    if isinstance(source, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(source).tobytes()).hexdigest()[:16] + f"|{slide.mpp}"
    return f"{slide.name}|{slide.dimensions}|{slide.mpp}"


class _Rows:
    """The input table: a DataFrame or a Parquet file, read in chunks of exactly ``size`` rows."""

    def __init__(self, cells: pd.DataFrame | str | os.PathLike) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if isinstance(cells, pd.DataFrame):
            self.name, self.path = "cells", None
            self.table = arrow_table(cells)
            self.columns, self.n = list(self.table.column_names), self.table.num_rows
            self.metadata = dict(cells.attrs.get("histolatent") or {})
            return
        self.path = Path(cells)
        self.name = f"cell table {str(self.path)!r}"
        if not self.path.is_file():
            raise InputError(f"{self.name}: file does not exist")
        try:
            with pq.ParquetFile(self.path) as pf:
                self.columns, self.n = list(pf.schema_arrow.names), pf.metadata.num_rows
        except (pa.ArrowInvalid, OSError) as err:
            raise InputError(f"{self.name}: not a readable Parquet file ({err})") from None
        self.table = None
        self.metadata = cell_table_metadata(self.path)

    def chunks(self, size: int, columns: list[str] | None = None) -> Iterator[Any]:
        """``pyarrow.Table`` chunks of ``size`` rows (the last one shorter), in row order."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.table is not None:
            t = self.table if columns is None else self.table.select(columns)
            for lo in range(0, self.n, size):
                yield t.slice(lo, size)
            return
        with pq.ParquetFile(self.path) as pf:
            buf, n = [], 0
            for batch in pf.iter_batches(batch_size=size, columns=columns):
                buf.append(batch)
                n += batch.num_rows
                while n >= size:  # re-cut: Parquet batches need not align with chunks
                    t = pa.Table.from_batches(buf)
                    yield t.slice(0, size)
                    rest = t.slice(size)
                    buf, n = rest.to_batches(), rest.num_rows
            if n:
                yield pa.Table.from_batches(buf)


def _xy(chunk: Any) -> np.ndarray:
    return np.column_stack([chunk.column("x").to_numpy(), chunk.column("y").to_numpy()]).astype(np.float64)


def _ids(chunk: Any) -> np.ndarray:
    return np.asarray(chunk.column("slide_id").to_pylist(), dtype=object).astype(str)


class CellJob:
    """One cell table, one model, one patch source: validated up front, then run chunk by chunk.

    Used by :func:`embed_cells` and :func:`histolatent.embed.cluster.cluster_cells`; see
    :func:`embed_cells` for the parameters. Every input is checked, and every slide opened,
    in the constructor, before any patch is read; call :meth:`close` (or use ``with``).
    """

    def __init__(self, model: Any, cells: Any, *, slides: Any = None, patches: Any = None,
                 mpp: float | None = None, size_px: int | None = None,
                 slide_mpp: float | Mapping[str, float] | None = None, parts: Sequence[str] | None = None,
                 edge: str = "pad", chunk_rows: int = 4096, batch_size: int = 256, precision: str = "fp32") -> None:
        self.model, self.run = resolve_model(model)
        self.rows = _Rows(cells)
        if edge not in EDGES:
            raise InputError(f"edge: expected one of {list(EDGES)}, got {edge!r}")
        if precision not in PRECISIONS:
            raise InputError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
        if int(chunk_rows) < 1 or int(batch_size) < 1:
            raise InputError(f"chunk_rows and batch_size must be >= 1, got {chunk_rows} and {batch_size}")
        if self.rows.n == 0:
            raise InputError(f"{self.rows.name}: has no rows")
        self.parts = None if parts is None else list(parts)
        self.edge, self.chunk_rows, self.batch_size, self.precision = edge, int(chunk_rows), int(batch_size), precision
        self.patches, self.slides, self._owned = None, {}, []
        self.spec: PatchSpec | None = None
        self.key_columns: list[str] = []
        source: Any
        if patches is not None:
            source = self._use_patches(patches)
        else:
            size, pmpp = patch_geometry(self.model, self.run, mpp=mpp, size_px=size_px)
            self.spec = PatchSpec(size, pmpp)
            try:
                source = self._open_slides(slides, slide_mpp)
            except BaseException:
                self.close()
                raise
        self.job = {"model": getattr(self.model, "registry_name", "") or type(self.model).__name__,
                    "weights": weights_hash(self.model), "parts": self.parts, "rows": self.rows.n,
                    "chunk_rows": self.chunk_rows, "batch_size": self.batch_size, "precision": precision,
                    "edge": edge, "patch": None if self.spec is None else [self.spec.size_px, self.spec.mpp],
                    "source": source}

    # -- patch sources --------------------------------------------------------------------
    def _use_patches(self, patches: Any) -> str:
        if isinstance(patches, (str, os.PathLike)):
            path = Path(patches)
            if not path.is_file():
                raise InputError(f"patches {str(path)!r}: file does not exist")
            self.patches, source = np.load(path, mmap_mode="r"), _file_identity(path)
        else:
            self.patches, source = patches, "array"
        shape = tuple(getattr(self.patches, "shape", ()))
        if len(shape) != 4 or shape[0] != self.rows.n:
            raise InputError(f"patches: expected ({self.rows.n}, H, W, C) aligned with the {self.rows.n} rows of "
                             f"{self.rows.name}, got shape {shape}")
        return source

    def _open_slides(self, slides: Any, slide_mpp: Any) -> Any:
        from histolatent.io.slide import Slide, open_slide

        for c in ("x", "y"):
            if c not in self.rows.columns:
                raise InputError(f"{self.rows.name}: no column {c!r} (needed to read patches around the cells)")
        if slides is None:
            slides = self.rows.metadata.get("source")
            if slides is None:
                raise InputError(f"{self.rows.name}: the table names no source slide; pass the slide (slides=...)")
        by_id = isinstance(slides, Mapping)
        if by_id and "slide_id" not in self.rows.columns:
            raise InputError(f"{self.rows.name}: no column 'slide_id' to look the slides up by")
        self.key_columns = ["slide_id", "x", "y"] if "slide_id" in self.rows.columns else ["x", "y"]
        ids, table_mpp = self._scan(by_id)
        sources = {str(k): v for k, v in slides.items()} if by_id else {None: slides}
        if by_id and (missing := sorted(ids - set(sources))):
            raise InputError(f"slides: no slide given for slide_id(s) {missing[:5]}")
        identity = {}
        for key in (sorted(ids) if by_id else [None]):
            src = sources[key]
            name = f"slide {str(src)!r}" if isinstance(src, (str, os.PathLike)) else "slide"
            if isinstance(src, (str, os.PathLike)) and not Path(src).exists():
                raise InputError(f"{name}: does not exist")
            slide = src if isinstance(src, Slide) else open_slide(src)
            if not isinstance(src, Slide):
                self._owned.append(slide)
            if slide.mpp is None:  # a plain image: the scale of its cells' coordinates
                fallback = slide_mpp.get(key) if isinstance(slide_mpp, Mapping) else slide_mpp
                if fallback is None:
                    found = table_mpp.get(key, set())
                    if len(found) != 1:
                        raise InputError(f"{name} has no mpp and the table gives {sorted(found) or 'none'}; "
                                         "pass slide_mpp")
                    fallback = found.pop()
                if isinstance(src, Slide):
                    raise InputError(f"slide {slide.name!r} has no mpp; open it with open_slide(..., mpp=)")
                slide = open_slide(src, mpp=check_mpp(fallback, name="slide_mpp"))
                self._owned.append(slide)
            self._check_inside(key, slide)
            self.slides[key] = slide
            identity[str(key)] = _source_identity(src, slide)
        return identity

    def _check_inside(self, key: Any, slide: Any) -> None:
        """Every cell centre lies on its slide: one off it would be encoded from a white patch."""
        box = self._bounds.get(key)
        if box is None:
            return
        W, H = slide.dimensions
        x0, x1, y0, y1 = box
        if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
            raise InputError(f"{self.rows.name}: cell centres reach x {x0:g}..{x1:g}, y {y0:g}..{y1:g}, off the slide "
                             f"{slide.name!r} ({W} x {H} px at level 0); is it the slide of these cells?")

    def _scan(self, by_id: bool) -> tuple[set, dict]:
        """One pass over the key columns: finite coordinates, slide ids, mpp per slide."""
        cols = [c for c in ("slide_id", "x", "y", "mpp") if c in self.rows.columns]
        ids: set = set()
        mpps: dict = {}
        self._bounds: dict = {}

        def grow(key: Any, xy: np.ndarray) -> None:
            if len(xy):
                lo, hi = xy.min(axis=0), xy.max(axis=0)
                old = self._bounds.get(key, (np.inf, -np.inf, np.inf, -np.inf))
                self._bounds[key] = (min(old[0], lo[0]), max(old[1], hi[0]), min(old[2], lo[1]), max(old[3], hi[1]))

        for chunk in self.rows.chunks(max(self.chunk_rows, 65536), cols):
            xy = _xy(chunk)
            if not np.isfinite(xy).all():
                raise InputError(f"{self.rows.name}: columns 'x'/'y' contain NaN or inf")
            m = chunk.column("mpp").to_numpy() if "mpp" in cols else np.zeros(0)
            if not by_id:
                mpps.setdefault(None, set()).update(np.unique(m).tolist())
                grow(None, xy)
                continue
            keys = _ids(chunk)
            for k in np.unique(keys).tolist():
                ids.add(k)
                mpps.setdefault(k, set()).update(np.unique(m[keys == k]).tolist() if len(m) else [])
                grow(k, xy[keys == k])
        return ids, mpps

    def _chunk_patches(self, chunk: Any, lo: int) -> np.ndarray:
        """The ``(len(chunk), H, W, C)`` uint8 patches of the rows ``lo:lo + len(chunk)``."""
        if self.patches is not None:
            return np.asarray(self.patches[lo:lo + chunk.num_rows])
        xy = _xy(chunk)
        if None in self.slides:
            return extract_patches(self.slides[None], xy, self.spec, edge=self.edge)[0]
        ids = _ids(chunk)
        out = np.empty((len(xy), self.spec.size_px, self.spec.size_px, 3), np.uint8)
        for sid in np.unique(ids):
            sel = ids == sid
            out[sel] = extract_patches(self.slides[sid], xy[sel], self.spec, edge=self.edge)[0]
        return out

    def _chunk_key(self, chunk: Any, patches: np.ndarray | None) -> str:
        h = hashlib.sha256()
        for c in self.key_columns:
            h.update(json.dumps(chunk.column(c).to_pylist()).encode())
        if patches is not None:
            h.update(np.ascontiguousarray(patches).tobytes())
        return h.hexdigest()[:16]

    # -- running --------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What the job applies: for the output's metadata."""
        out = {"model": self.job["model"], "weights_hash": self.job["weights"], "precision": self.precision}
        if self.run is not None:
            out["run"] = str(self.run)
        if self.spec is not None:
            out.update(patch_px=self.spec.size_px, patch_mpp=self.spec.mpp, edge=self.edge)
        return out

    def write(self, out: str | os.PathLike, dest: str | os.PathLike, *, columns: Callable[[dict], dict],
              tag: str = "embed", metadata: dict[str, Any] | None = None, progress: bool | None = None) -> Path:
        """Encode every chunk into the parts folder of ``out``, then concatenate them into ``dest``.

        ``columns`` turns the encoded parts of a chunk into named column arrays (they
        replace input columns of the same name); ``tag`` names that rule in the job, so
        parts of another rule are not reused. ``dest`` is ``out`` or a temporary name the
        caller renames; the parts folder stays until the caller calls :meth:`finish`.
        """
        import pyarrow as pa

        folder = parts_folder(out)
        folder.mkdir(parents=True, exist_ok=True)
        job_id = hashlib.sha256(json.dumps({**self.job, "columns": tag}, sort_keys=True).encode()).hexdigest()[:16]
        written, skipped = [], 0
        with progress_meter(self.rows.n, f"embed {Path(out).name}", unit="cells", enabled=progress) as bar:
            lo = 0
            for k, chunk in enumerate(self.rows.chunks(self.chunk_rows)):
                part = folder / f"chunk-{k:06d}.parquet"
                patches = self._chunk_patches(chunk, lo) if self.patches is not None else None
                info = {"job": job_id, "chunk": k, "rows": chunk.num_rows, "key": self._chunk_key(chunk, patches)}
                if _part_verifies(part, info):
                    skipped += 1
                else:
                    if patches is None:
                        patches = self._chunk_patches(chunk, lo)
                    enc = encode_images(self.model, patches, parts=self.parts, batch_size=self.batch_size,
                                        precision=self.precision)
                    new = columns(enc)
                    table = chunk.drop_columns([c for c in new if c in chunk.column_names])
                    for name, values in new.items():
                        table = table.append_column(name, pa.array(np.asarray(values)))
                    write_arrow_table(table.replace_schema_metadata({_PART_KEY: json.dumps(info).encode()}), part)
                written.append(part)
                lo += chunk.num_rows
                bar.advance(chunk.num_rows, reused_chunks=skipped)
        meta = {**self.rows.metadata, **(metadata or {})}
        return concat_parquet(written, dest, metadata=meta)

    def finish(self, out: str | os.PathLike) -> None:
        """Remove the parts folder of ``out`` (after the output has been renamed into place)."""
        shutil.rmtree(parts_folder(out), ignore_errors=True)

    def close(self) -> None:
        for slide in self._owned:
            slide.close()
        self._owned.clear()

    def __enter__(self) -> CellJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _part_verifies(path: Path, info: dict[str, Any]) -> bool:
    """Whether ``path`` is a complete part of this job for these rows (footer, row count, job, key)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        return False
    try:
        md = pq.read_metadata(path)
        found = json.loads((md.metadata or {}).get(_PART_KEY, b"{}"))
    except (pa.ArrowInvalid, OSError, ValueError):
        return False
    return found == info and md.num_rows == info["rows"]


def embed_cells(model: Any, cells: pd.DataFrame | str | os.PathLike, out: str | os.PathLike, *,
                slides: Any = None, patches: Any = None, mpp: float | None = None, size_px: int | None = None,
                slide_mpp: float | Mapping[str, float] | None = None, parts: Sequence[str] | None = None,
                edge: str = "pad", chunk_rows: int = 4096, batch_size: int = 256, precision: str = "fp32",
                progress: bool | None = None) -> Path:
    """Write ``cells`` plus the model's embedding columns to ``out`` (Parquet), chunk by chunk.

    Parameters
    ----------
    model : run folder or RepresentationModel
        A finished training run (its ``image_size`` and ``data.mpp`` give the patch
        geometry) or a model.
    cells : pandas.DataFrame or path
        The cell table; a Parquet file is streamed. Its columns are kept, in order, and
        its ``histolatent`` metadata carried over; new columns (``z_00``, ``q_ori_00_0``,
        see :mod:`histolatent.embed.columns`) come after them and replace input columns of
        the same name.
    out : path
        Output Parquet file, written atomically (it may be the input file).
    slides : path, Slide, array or mapping, optional
        Where the patches are read: one slide for every row, or ``slide_id -> slide``.
        Default: the table's ``source`` metadata (tables of ``histolatent nuclei``).
    patches : array or path to .npy, optional
        ``(N, H, W, C)`` patches aligned with the rows, instead of slides (memory-mapped
        from a ``.npy``).
    mpp, size_px : optional
        Patch scale (µm/px) and side (px); default: the run's ``data.mpp`` and the model's
        ``image_size``.
    slide_mpp : float or mapping, optional
        µm per pixel of slides that carry none (plain images); default: the table's
        ``mpp`` column.
    parts : sequence of str, optional
        Encode parts to keep (default: all).
    edge : {"pad", "reflect"}
        Patches that leave the slide: white glass, or the slide mirrored at its border.
    chunk_rows : int
        Rows per chunk: the memory bound (``chunk_rows`` patches) and the unit of resume.
    batch_size, precision
        Of the forward pass (:func:`~histolatent.embed.encode.encode_images`).
    progress : bool, optional
        A bar on a terminal (default: when stderr is one); progress lines go to the log.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    InputError
        A missing file or column, bad coordinates, a slide without a scale, a patch array
        not aligned with the rows, an unknown option: before any patch is read.

    Examples
    --------
    >>> import numpy as np, pandas as pd, tempfile, pathlib
    >>> from histolatent.models import create_model
    >>> model = create_model("autoencoder", in_channels=3, image_size=8, channels=[4], latent_dim=2)
    >>> image = np.full((64, 64, 3), 200, np.uint8)
    >>> cells = pd.DataFrame({"x": [10.0, 40.0, 50.0], "y": [12.0, 30.0, 55.0]})
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "cells.parquet"
    >>> _ = embed_cells(model, cells, out, slides=image, slide_mpp=0.5, mpp=0.5, chunk_rows=2)
    >>> list(pd.read_parquet(out).columns)
    ['x', 'y', 'z_00', 'z_01']
    """
    check_output(out, name="out")
    with CellJob(model, cells, slides=slides, patches=patches, mpp=mpp, size_px=size_px, slide_mpp=slide_mpp,
                 parts=parts, edge=edge, chunk_rows=chunk_rows, batch_size=batch_size, precision=precision) as job:
        with atomic_path(out) as tmp:
            job.write(out, tmp, columns=columns_from_parts, metadata={"embedding": job.describe()},
                      progress=progress)
        job.finish(out)
    return Path(out)
