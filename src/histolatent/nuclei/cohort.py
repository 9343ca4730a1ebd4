"""Nuclei over a cohort of slides / ROIs on Dask: one task per slide, resumable.

:func:`run_cohort` finds the nuclei of every slide or image of a folder (or list), each in
its own Dask task, and writes per slide ``<out>/<slide_id>.parquet`` (the cell table) and,
optionally, ``<out>/<slide_id>.geojson`` (QuPath). Both are written atomically, the
GeoJSON first, so a cell table on disk means the slide is finished: a second run skips it
(``overwrite=False``), and a slide whose task died half-way is simply done again. A
``summary.csv`` (status, counts, MNA, SDNA per input slide, skipped ones included) is
rewritten at the end.

By default the tasks run on a ``LocalCluster`` (one thread per worker process); pass
``scheduler="tcp://host:8786"`` to use an existing cluster (every worker must see the input
and output paths).
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

from histolatent.errors import InputError
from histolatent.io.atomic import write_text_atomic
from histolatent.nuclei.pipeline import cells_from_slide, default_slide_id, slide_summary
from histolatent.progress import progress as track

#: File suffixes treated as slides or ROI images when a folder is given.
INPUT_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide",
                  ".png", ".jpg", ".jpeg", ".bmp")


def list_inputs(inputs: str | os.PathLike | list) -> list[Path]:
    """Slide / image files of a folder (sorted, not recursive), or a list of files, checked."""
    if isinstance(inputs, (str, os.PathLike)):
        p = Path(inputs)
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in INPUT_SUFFIXES)
            if not files:
                raise InputError(f"inputs {str(p)!r}: the folder holds no slide or image files ({INPUT_SUFFIXES})")
            return files
        if not p.exists():
            raise InputError(f"inputs {str(p)!r}: no such file or folder")
        return [p]
    files = [Path(q) for q in inputs]
    missing = [str(q) for q in files if not q.is_file()]
    if missing:
        raise InputError(f"inputs: files do not exist: {missing[:5]}")
    if not files:
        raise InputError("inputs: the list is empty")
    return files


def process_slide(path: str | os.PathLike, out_dir: str | os.PathLike, *, method: str = "watershed",
                  model: Any = None, slide_mpp: float | None = None, mpp: float | None = None,
                  geojson: bool = True, overwrite: bool = False, slide_id: str | None = None,
                  options: dict[str, Any] | None = None) -> dict[str, Any]:
    """One cohort task: the cell table (and GeoJSON) of one slide; never raises.

    Returns
    -------
    dict
        ``slide_id``, ``status`` ("done", "skipped" or "failed"), ``n_nuclei``, ``mna_um2``,
        ``sdna_um2``, ``seconds``, ``error``.
    """
    from histolatent.io.tables import read_cell_table, write_cell_table

    out_dir = Path(out_dir)
    sid = slide_id or default_slide_id(path)
    table_path = out_dir / f"{sid}.parquet"
    t0 = time.perf_counter()
    row: dict[str, Any] = {"slide_id": sid, "path": str(path), "status": "done", "n_nuclei": 0,
                           "mna_um2": float("nan"), "sdna_um2": float("nan"), "seconds": 0.0, "error": ""}
    try:
        if table_path.is_file() and not overwrite:
            row.update(slide_summary(read_cell_table(table_path, columns=[
                c for c in ("area_um2", "x") if c in _columns(table_path)])))
            row["status"] = "skipped"
            return row
        net = _cached_model(model) if method == "unet" else None
        cells = cells_from_slide(path, method=method, model=net, mpp=mpp, slide_mpp=slide_mpp, slide_id=sid,
                                 **(options or {}))
        if geojson and "polygon" in cells.columns:
            from histolatent.io.geojson_export import write_geojson

            write_geojson(cells, out_dir / f"{sid}.geojson")
        write_cell_table(cells, table_path, metadata={"source": str(path), "method": method,
                                                      "options": options or {}})
        row.update(slide_summary(cells))
    except Exception as err:  # one failed slide must not stop the cohort
        row.update(status="failed", error=f"{type(err).__name__}: {err}",
                   traceback=traceback.format_exc(limit=4))
    row["seconds"] = time.perf_counter() - t0
    return row


def _columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(str(path)).names)


_MODEL_CACHE: dict[str, Any] = {}


def _cached_model(model: Any) -> Any:
    """Load a U-Net run folder once per worker process."""
    if isinstance(model, (str, os.PathLike)):
        key = str(Path(model).resolve())
        if key not in _MODEL_CACHE:
            from histolatent.nuclei.unet import load_unet

            _MODEL_CACHE[key] = load_unet(key)
        return _MODEL_CACHE[key]
    return model


def run_cohort(inputs: str | os.PathLike | list, out_dir: str | os.PathLike, *, method: str = "watershed",
               model: Any = None, slide_mpp: float | None = None, mpp: float | None = None, geojson: bool = True,
               overwrite: bool = False, scheduler: str | None = None, n_workers: int | None = None,
               processes: bool = True, progress: bool = True, **options: Any) -> pd.DataFrame:
    """Nuclei of every slide of a cohort, one Dask task per slide (see the module docstring).

    Parameters
    ----------
    inputs : folder, file or list of files
        Slides (any OpenSlide / TIFF format) and ROI images (PNG/JPEG; need ``slide_mpp``
        unless they carry an mpp).
    out_dir : path
        Output folder (created).
    method, model, mpp
        See :func:`histolatent.nuclei.pipeline.cells_from_slide`; for ``"unet"`` pass the
        run folder so that each worker loads the model once.
    slide_mpp : float, optional
        µm per pixel of inputs that carry none.
    geojson : bool
        Also write QuPath GeoJSON outlines.
    overwrite : bool
        Redo slides that already have a cell table.
    scheduler : str, optional
        Address of a running Dask scheduler; default a new ``LocalCluster``.
    n_workers : int, optional
        Workers of the local cluster (default: min(number of slides, CPU cores)).
    processes : bool
        Local workers as processes (True) or threads.
    **options
        Passed to :func:`~histolatent.nuclei.pipeline.cells_from_slide` (``tile_px`` …) and
        on to the detector / segmenter.

    Returns
    -------
    pandas.DataFrame
        One row per input slide (see :func:`process_slide`), also written to
        ``out_dir/summary.csv``.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    files = list_inputs(inputs)
    ids = [default_slide_id(f) for f in files]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"inputs: several files share the slide id(s) {dup}; rename them")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if method == "unet" and isinstance(model, (str, os.PathLike)) and not Path(model).is_dir():
        raise InputError(f"model {str(model)!r}: not a run folder")
    kw = {"method": method, "model": str(model) if isinstance(model, (str, os.PathLike)) else model,
          "slide_mpp": slide_mpp, "mpp": mpp, "geojson": geojson, "overwrite": overwrite, "options": options}
    if scheduler:
        cluster = None
        client = Client(scheduler)
    else:
        workers = int(n_workers or min(len(files), os.cpu_count() or 1))
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=processes,
                               dashboard_address=None)
        client = Client(cluster)
    rows = []
    try:
        futures = [client.submit(process_slide, str(f), str(out_dir), slide_id=i, key=f"nuclei-{i}-{time.time_ns()}",
                                 pure=False, **kw) for f, i in zip(files, ids, strict=True)]
        with track(len(futures), "slides", unit="slides", enabled=None if progress else False) as bar:
            for fut in as_completed(futures):
                rows.append(fut.result())
                bar.advance(1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    summary = pd.DataFrame(rows).sort_values("slide_id").reset_index(drop=True)
    write_text_atomic(out_dir / "summary.csv", summary.drop(columns=[c for c in ("traceback",) if c in summary])
                      .to_csv(index=False))
    return summary


def cohort_tables(out_dir: str | os.PathLike) -> pd.DataFrame:
    """All cell tables of a cohort output folder, concatenated (polygons dropped)."""
    from histolatent.io.tables import read_cell_table

    parts = []
    for p in sorted(Path(out_dir).glob("*.parquet")):
        t = read_cell_table(p)
        parts.append(t.drop(columns=[c for c in ("polygon",) if c in t.columns]))
    if not parts:
        raise InputError(f"cohort {str(out_dir)!r}: no cell tables (*.parquet) found")
    return pd.concat(parts, ignore_index=True)
