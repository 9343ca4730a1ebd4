"""Compress a cohort of slides to grids on Dask: one task per slide, resumable, failures recorded.

:func:`compress_cohort` writes ``<out>/<slide_id>.zarr`` for every slide
(:func:`~histolatent.embed.grid.compress_slide`; the store and its manifest appear together,
by a rename) and ``<out>/summary.csv`` + ``summary.txt``: one row per slide with its status
(done, skipped, failed), tiles, grid shape, checksum, seconds per stage and error.

A slide is skipped only when its store's manifest verifies
(:func:`~histolatent.embed.grid.verify_grid`): the checksum of the arrays on disk and the
options (scale, tile size, stride, dihedral, precision, encoder weights hash) are those
asked for. Anything else, a store without a manifest, a damaged one or one made with other
weights, is done again and replaced once the new store is complete. A corrupt or
unreadable slide becomes a failed row and the other slides finish. The tasks run on
:func:`histolatent.io.cohort.run_tasks` (a ``LocalCluster`` by default; a task whose worker
dies is redone on another worker by Dask).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from histolatent.embed.encode import PRECISIONS
from histolatent.embed.grid import compress_slide, read_manifest, resolve_encoder, verify_grid
from histolatent.errors import InputError
from histolatent.io.cohort import list_inputs, run_tasks, write_summary
from histolatent.io.image import check_mpp
from histolatent.nuclei.pipeline import default_slide_id

__all__ = ["SUMMARY_COLUMNS", "compress_cohort", "compress_task"]

#: Columns of the printed cohort table (the CSV has every field).
SUMMARY_COLUMNS = ("slide_id", "status", "tiles", "shape", "seconds", "read_s", "decode_s", "transform_s",
                   "forward_s", "write_s", "error")

_ENCODERS: dict[str, Any] = {}


def _encoder(spec: Any) -> Any:
    """A path is loaded once per worker process; objects are used as they come."""
    if isinstance(spec, (str, os.PathLike)):
        key = str(Path(spec).resolve())
        if key not in _ENCODERS:
            _ENCODERS[key] = resolve_encoder(key)[0]
        return _ENCODERS[key]
    return spec


def _clean_leftovers(store: Path) -> None:
    """Temporary folders of an earlier attempt at this store whose writer died (one writer per store)."""
    for p in store.parent.glob(f".{store.name}.*.tmp"):
        shutil.rmtree(p, ignore_errors=True)


def compress_task(path: str, out_dir: str, *, slide_id: str, encoder: Any, options: dict[str, Any],
                  expect: dict[str, Any], overwrite: bool = False, torch_threads: int | None = None,
                  figure: Callable[[Path, Path], Any] | None = None) -> dict[str, Any]:
    """One cohort task: the grid of one slide (or a skip when a verified one exists); never raises."""
    t0 = time.perf_counter()
    store = Path(out_dir) / f"{slide_id}.zarr"
    row: dict[str, Any] = {"slide_id": slide_id, "path": str(path), "status": "done", "store": str(store),
                           "error": ""}
    try:
        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        reason = verify_grid(store, expect)
        if reason is None and not overwrite:
            row["status"] = "skipped"
        else:
            if store.exists():
                row["redone_because"] = "overwrite" if reason is None else reason
            _clean_leftovers(store)
            compress_slide(path, _encoder(encoder), store, overwrite=True, progress=False, **options)
            if figure is not None:
                try:
                    figure(store, Path(out_dir) / f"{slide_id}.png")
                except Exception as err:  # a figure must not cost the grid
                    row["figure_error"] = f"{type(err).__name__}: {err}"
        man = read_manifest(store) or {}
        stages = man.get("stage_seconds", {})
        row.update(tiles=man.get("n_tissue_tiles"), shape="x".join(str(s) for s in man.get("shape", [])),
                   checksum=man.get("checksum"), weights_hash=man.get("weights_hash"),
                   **{f"{k}_s": stages.get(k) for k in ("tissue", "read", "decode", "transform", "forward", "write")})
    except Exception as err:  # one failed slide must not stop the cohort
        import traceback

        row.update(status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=4))
    row["seconds"] = time.perf_counter() - t0
    return row


def compress_cohort(slides: str | os.PathLike | Sequence, encoder: Any, out_dir: str | os.PathLike, *,
                    mpp: float = 0.5, tile_px: int = 128, stride_px: int | None = None, dihedral: bool = False,
                    precision: str = "fp32", batch_size: int = 64, min_tissue: float = 0.5,
                    slide_mpp: float | None = None, device: str | None = None, overwrite: bool = False,
                    scheduler: str | None = None, workers: int | None = None, processes: bool = True,
                    torch_threads: int | None = None, figure: Callable[[Path, Path], Any] | None = None,
                    progress: bool | None = None) -> pd.DataFrame:
    """Compress every slide of a cohort to a grid, one Dask task per slide (see the module docstring).

    Parameters
    ----------
    slides : folder, file or list of files/folders
        The slides (any format :func:`~histolatent.io.slide.open_slide` reads).
    encoder : run folder, TorchScript file, model or module
        See :func:`~histolatent.embed.grid.resolve_encoder`. Checked here before any work; a
        path is loaded once by each worker.
    out_dir : path
        Output folder (created): ``<slide_id>.zarr`` per slide, ``summary.csv`` / ``.txt``.
    mpp, tile_px, stride_px, dihedral, precision, batch_size, min_tissue, slide_mpp, device
        As :func:`~histolatent.embed.grid.compress_slide`.
    overwrite : bool
        Redo slides whose grid verifies.
    scheduler : str, optional
        None: a new ``LocalCluster``; ``"inline"``: this process, no Dask; or the address
        of a running scheduler.
    workers : int, optional
        Workers of the local cluster (default: min(slides, CPU cores)).
    processes : bool
        Local workers as processes (True) or threads.
    torch_threads : int, optional
        Torch threads per task (default on a local cluster: CPU cores / workers).
    figure : callable, optional
        ``figure(store, png_path)`` after each slide is written (e.g.
        :func:`histolatent.viz.nic.write_grid_figure`).
    progress : bool, optional
        A bar on a terminal; log lines always.

    Returns
    -------
    pandas.DataFrame
        One row per slide, also in ``out_dir/summary.csv`` and ``summary.txt``.
    """
    files = list_inputs(slides)
    ids = [default_slide_id(f) for f in files]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"slides: several files share the slide id(s) {dup}; rename them")
    mpp = check_mpp(mpp, name="mpp")
    slide_mpp = check_mpp(slide_mpp, name="slide_mpp", optional=True)
    if precision not in PRECISIONS:
        raise InputError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    tile_px = int(tile_px)
    stride = tile_px if stride_px is None else int(stride_px)
    if tile_px < 1 or stride < 1 or int(batch_size) < 1:
        raise InputError(f"tile_px, stride_px and batch_size must be >= 1, got {tile_px}, {stride}, {batch_size}")
    if workers is not None and int(workers) < 1:
        raise InputError(f"workers: expected >= 1, got {workers}")
    model, part, name, digest = resolve_encoder(encoder)  # a bad encoder fails here, before any slide
    spec = str(Path(encoder).resolve()) if isinstance(encoder, (str, os.PathLike)) else encoder
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = dict(mpp=mpp, tile_px=tile_px, stride_px=stride, dihedral=bool(dihedral), precision=precision,
                   batch_size=int(batch_size), min_tissue=float(min_tissue), slide_mpp=slide_mpp, device=device)
    expect = dict(mpp=mpp, tile_px=tile_px, stride_px=stride, dihedral=bool(dihedral), precision=precision,
                  min_tissue=float(min_tissue), part=part, encoder=name, weights_hash=digest)
    if torch_threads is None and scheduler is None:
        n = int(workers or min(len(files), os.cpu_count() or 1))
        torch_threads = max(1, (os.cpu_count() or 1) // max(1, n))
    tasks = [(i, dict(path=str(f), out_dir=str(out_dir), slide_id=i, encoder=spec, options=options, expect=expect,
                      overwrite=overwrite, torch_threads=torch_threads, figure=figure))
             for f, i in zip(files, ids, strict=True)]
    rows = run_tasks(compress_task, tasks, scheduler=scheduler, n_workers=workers, processes=processes,
                     progress=progress, label="slides")
    return write_summary(rows, out_dir, table_columns=SUMMARY_COLUMNS)
