"""Cohorts of slides on Dask: one task per slide, failures recorded, a summary at the end.

The generic part of every "a folder of slides -> one output per slide" job (nuclei,
compression): :func:`list_inputs` finds the slides, :func:`run_tasks` runs one task per
slide and :func:`write_summary` writes the cohort's table. A task is a function that writes
its outputs atomically and returns one summary row (a dict); it should catch its own errors
and return them as ``status="failed"`` rows. If it raises anyway, or its worker dies more
often than Dask allows (``distributed.scheduler.allowed-failures``; a dead worker's task is
redone elsewhere until then), the row records the error and the other slides go on. Since
every output is written atomically and a task is idempotent, a slide redone after its worker
died ends as it would have; the dead worker's temporaries are removed by
:func:`write_summary` at the end (and by the next run in the folder).

``scheduler``: None starts a ``LocalCluster`` (one thread per worker), ``"inline"`` runs
the tasks one after the other in this process without Dask, and an address
(``tcp://host:8786``) uses a running cluster (every worker must see the paths).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from histolatent.errors import InputError
from histolatent.io.atomic import remove_stale_temps, write_text_atomic

__all__ = ["INPUT_SUFFIXES", "list_inputs", "run_tasks", "summary_table", "write_summary"]

#: File suffixes treated as slides or ROI images when a folder is given.
INPUT_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide",
                  ".png", ".jpg", ".jpeg", ".bmp")


def list_inputs(inputs: str | os.PathLike | Sequence, *, suffixes: Sequence[str] = INPUT_SUFFIXES) -> list[Path]:
    """Slide / image files of a folder (sorted, not recursive), or a list of files, checked."""
    if isinstance(inputs, (str, os.PathLike)):
        p = Path(inputs)
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in suffixes)
            if not files:
                raise InputError(f"inputs {str(p)!r}: the folder holds no slide or image files ({tuple(suffixes)})")
            return files
        if not p.exists():
            raise InputError(f"inputs {str(p)!r}: no such file or folder")
        return [p]
    files: list[Path] = []
    for q in inputs:
        files.extend(list_inputs(q, suffixes=suffixes) if Path(q).is_dir() else [Path(q)])
    missing = [str(q) for q in files if not q.is_file()]
    if missing:
        raise InputError(f"inputs: files do not exist: {missing[:5]}")
    if not files:
        raise InputError("inputs: the list is empty")
    return files


def run_tasks(fn: Callable[..., dict], tasks: Sequence[tuple[str, dict[str, Any]]], *, scheduler: str | None = None,
              n_workers: int | None = None, processes: bool = True, progress: bool | None = None,
              label: str = "slides", id_field: str = "slide_id") -> list[dict]:
    """``fn(**kwargs)`` for each ``(id, kwargs)`` of ``tasks``, one Dask task each; the rows, in task order.

    Parameters
    ----------
    fn : callable
        Returns one summary row (a dict) per task; must be importable by the workers.
    tasks : sequence of (str, dict)
        A task id (unique; names the row when the task fails) and its keyword arguments.
    scheduler : str, optional
        None (a new ``LocalCluster``), ``"inline"`` or a scheduler address.
    n_workers : int, optional
        Workers of the local cluster (default: min(number of tasks, CPU cores)).
    processes : bool
        Local workers as processes (True) or threads.
    progress : bool, optional
        A bar on a terminal (default: when stderr is one); log lines always
        (:mod:`histolatent.progress`).
    """
    from histolatent.progress import logger
    from histolatent.progress import progress as meter

    ids = [t[0] for t in tasks]
    if len(set(ids)) != len(ids):
        raise InputError(f"tasks: ids must be unique, got duplicates {sorted({i for i in ids if ids.count(i) > 1})}")
    rows: dict[str, dict] = {}

    def failed(tid: str, err: BaseException) -> dict:
        return {id_field: tid, "status": "failed", "error": f"{type(err).__name__}: {err}"}

    def record(tid: str, row: dict, bar: Any) -> None:
        rows[tid] = row
        bar.advance(1)
        if row.get("status") == "failed":
            logger.warning("%s %s failed: %s", label, tid, row.get("error"))

    with meter(len(tasks), label, unit=label, enabled=progress, log_every_s=10.0) as bar:
        if scheduler == "inline":
            for tid, kw in tasks:
                try:
                    row = fn(**kw)
                except Exception as err:  # one failed slide must not stop the cohort
                    row = failed(tid, err)
                record(tid, row, bar)
            return [rows[t] for t in ids]
        from dask.distributed import Client, LocalCluster, as_completed

        cluster = None
        if scheduler:
            client = Client(scheduler)
        else:
            workers = max(1, int(n_workers or min(len(tasks), os.cpu_count() or 1)))
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                                   dashboard_address=None)
            client = Client(cluster)
        try:
            stamp = time.time_ns()
            futures = {client.submit(fn, key=f"{label}-{tid}-{stamp}", pure=False, **kw): tid for tid, kw in tasks}
            for fut in as_completed(futures):
                tid = futures[fut]
                try:
                    row = fut.result()
                except Exception as err:  # the task raised, or its workers kept dying (KilledWorker)
                    row = failed(tid, err)
                record(tid, row, bar)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return [rows[t] for t in ids]


def summary_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A plain-text table of summary rows (for the terminal and ``summary.txt``)."""
    if not rows:
        return "(no slides)\n"
    cols = list(columns or dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        s = "" if v is None else str(v)
        return s if len(s) <= 60 else s[:57] + "..."

    body = [[cell(r.get(c)) for c in cols] for r in rows]
    width = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, width, strict=True))]
    lines.append("  ".join("-" * w for w in width))
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, width, strict=True)) for b in body]
    return "\n".join(lines) + "\n"


def write_summary(rows: Sequence[dict], out_dir: str | os.PathLike, *, name: str = "summary",
                  sort_by: str = "slide_id", table_columns: Sequence[str] | None = None):
    """Write ``<name>.csv`` (every field) and ``<name>.txt`` (a table) atomically; returns the DataFrame.

    Written once every task has finished, so it also removes what writers that died during
    the cohort (a lost worker, whose slide was redone elsewhere) left in ``out_dir``.
    """
    import pandas as pd

    remove_stale_temps(out_dir)
    summary = pd.DataFrame(list(rows))
    if sort_by in summary.columns:
        summary = summary.sort_values(sort_by).reset_index(drop=True)
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / f"{name}.csv", summary.drop(columns=[c for c in ("traceback",) if c in summary])
                      .to_csv(index=False))
    cols = [c for c in (table_columns or summary.columns) if c in summary.columns]
    write_text_atomic(out_dir / f"{name}.txt", summary_table(summary.to_dict("records"), cols))
    return summary
