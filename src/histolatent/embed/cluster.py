"""Unsupervised nucleus classes from a trained InfoGAN (paper 4 §4.2, Fig. 7B).

The class of a nucleus is ``argmax_c q(c | x)`` of the InfoGAN's Q head
(``encode(x)["c"]``). :func:`classify_images` gives it for patches in memory;
:func:`cluster_cells` for every nucleus of a cell table, read around each cell at the scale
the model was trained at, written as a new table (the input's columns plus ``q_c_00`` …,
``cluster``, ``cluster_prob``, ``classification``) and a QuPath GeoJSON whose classification
is the cluster, both or neither.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histolatent.embed.cells import CellJob
from histolatent.embed.encode import encode_images
from histolatent.errors import InputError
from histolatent.io.atomic import atomic_paths, check_output
from histolatent.io.tables import REQUIRED_COLUMNS

__all__ = ["classify_images", "cluster_cells", "cluster_columns"]


def _n_classes(model: Any) -> int:
    k = getattr(getattr(model, "config", None), "n_classes", None)
    if k is None:
        raise InputError(f"model: a {type(model).__name__!r} has no categorical code (n_classes); "
                         "clustering needs an InfoGAN")
    return int(k)


def classify_images(model: Any, images: Any, *, batch_size: int = 256,
                    precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """Unsupervised class of each image: ``argmax_c q(c | x)`` ``(N,)`` int64 and ``q(c | x)`` ``(N, K)`` float32.

    ``images``: ``(N, H, W, C)`` uint8 (or anything the image-input policy accepts) or a
    float ``(N, C, H, W)`` tensor in [0, 1], at the model's ``image_size``.

    Examples
    --------
    >>> import numpy as np
    >>> from histolatent.models import create_model
    >>> gan = create_model("infogan", arch="dcgan", image_size=16, g_channels=4, d_channels=4, q_hidden=8)
    >>> cls, q = classify_images(gan, np.zeros((4, 16, 16, 3), np.uint8))
    >>> cls.shape, q.shape, bool(np.allclose(q.sum(1), 1, atol=1e-5))
    ((4,), (4, 3), True)
    """
    k = _n_classes(model)
    if len(images) == 0:
        return np.zeros(0, np.int64), np.zeros((0, k), np.float32)
    q = encode_images(model, images, parts=["c"], batch_size=batch_size, precision=precision)["c"]
    return q.argmax(1).astype(np.int64), q


def cluster_columns(q: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The columns of a clustered cell table from ``q(c | x)`` ``(n, K)``.

    ``q_c_00`` … (the probabilities), ``cluster`` (argmax, int64), ``cluster_prob`` (its
    probability) and ``classification`` (its name from ``names``).

    >>> cols = cluster_columns(np.array([[0.2, 0.8], [0.9, 0.1]]), ["a", "b"])
    >>> cols["cluster"].tolist(), cols["classification"].tolist()
    ([1, 0], ['b', 'a'])
    """
    q = np.asarray(q)
    cls = q.argmax(1).astype(np.int64)
    out = {f"q_c_{j:02d}": q[:, j] for j in range(q.shape[1])}
    out["cluster"] = cls
    out["cluster_prob"] = q[np.arange(len(q)), cls]
    out["classification"] = np.asarray(list(names), dtype=object)[cls]
    return out


def _default_out(cells: Any, out: Any) -> Path:
    if out is not None:
        return Path(out)
    if isinstance(cells, pd.DataFrame):
        raise InputError("out: a cell table given as a DataFrame needs an output path")
    cells = Path(cells)
    return cells.with_name(f"{cells.stem}-clusters.parquet")


def cluster_cells(model: Any, cells: pd.DataFrame | str | os.PathLike, out: str | os.PathLike | None = None, *,
                  slides: Any = None, slide_mpp: float | Mapping[str, float] | None = None,
                  patch_mpp: float | None = None, names: Sequence[str] | None = None,
                  geojson: str | os.PathLike | None = None, edge: str = "reflect", chunk_rows: int = 4096,
                  batch_size: int = 256, precision: str = "fp32",
                  progress: bool | None = None) -> tuple[Path, Path]:
    """Classify every nucleus of a cell table with an InfoGAN's ``q(c | x)``; write a table and a GeoJSON.

    Parameters
    ----------
    model : run folder or InfoGAN
        A trained InfoGAN (``histolatent train configs/infogan-nuclei.yaml``).
    cells : path or pandas.DataFrame
        A cell table (:mod:`histolatent.io.tables`), e.g. from ``histolatent nuclei``; it
        is never modified.
    out : path, optional
        The clustered table (default: ``<cells>-clusters.parquet`` beside the input). It
        keeps every input column (morphometrics …) and adds ``q_c_00`` …, ``cluster``,
        ``cluster_prob`` and ``classification`` (replacing columns of those names).
    slides, slide_mpp
        Where the patches are read, as in :func:`~histolatent.embed.cells.embed_cells`
        (default: the table's ``source`` slide, whose scale is the table's ``mpp``).
    patch_mpp : float, optional
        µm/px of the patches (default: the run's ``data.mpp``).
    names : sequence of str, optional
        One name per cluster (default ``"cluster 0"`` …).
    geojson : path, optional
        QuPath GeoJSON (default: ``out`` with the suffix ``.geojson``); polygons when the
        table has them, else points.
    edge, chunk_rows, batch_size, precision, progress
        As in :func:`~histolatent.embed.cells.embed_cells`; patches that leave the slide
        are mirrored (``"reflect"``) by default.

    Returns
    -------
    (Path, Path)
        The table and the GeoJSON, written together: a failure leaves both old files.

    Examples
    --------
    >>> import numpy as np, pandas as pd, tempfile, pathlib
    >>> from histolatent.models import create_model
    >>> from histolatent.io.tables import with_physical_coordinates
    >>> gan = create_model("infogan", arch="dcgan", image_size=16, g_channels=4, d_channels=4, q_hidden=8)
    >>> cells = with_physical_coordinates(pd.DataFrame({"x": [8.0, 30.0], "y": [9.0, 20.0]}), slide_id="a", mpp=0.5)
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "clusters.parquet"
    >>> table, gj = cluster_cells(gan, cells, out, slides=np.full((40, 40, 3), 220, np.uint8), patch_mpp=0.5,
    ...                           names=["a", "b", "c"])
    >>> sorted(set(pd.read_parquet(table)["classification"]) - {"a", "b", "c"}), gj.suffix
    ([], '.geojson')
    """
    from histolatent.io.geojson_export import geojson_from_cells
    from histolatent.io.tables import read_cell_table

    dest = _default_out(cells, out)
    gj = Path(geojson) if geojson is not None else dest.with_suffix(".geojson")
    if gj == dest:
        raise InputError(f"geojson: {str(gj)!r} is the table's own path")
    check_output(dest, name="out")
    check_output(gj, name="geojson")
    with CellJob(model, cells, slides=slides, mpp=patch_mpp, slide_mpp=slide_mpp, parts=["c"], edge=edge,
                 chunk_rows=chunk_rows, batch_size=batch_size, precision=precision) as job:
        missing = [c for c in REQUIRED_COLUMNS if c not in job.rows.columns]
        if missing:
            raise InputError(f"{job.rows.name}: not a cell table (missing columns {missing})")
        k = _n_classes(job.model)
        labels = [str(s) for s in names] if names is not None else [f"cluster {j}" for j in range(k)]
        if len(labels) != k:
            raise InputError(f"names: expected {k} names (the model has {k} classes), got {len(labels)}")
        meta = {"embedding": job.describe(), "cluster_names": labels, "patch_mpp": job.spec.mpp}
        if job.run is not None:
            meta["cluster_run"] = str(job.run)
        with atomic_paths(dest, gj) as (tmp_table, tmp_gj):
            job.write(dest, tmp_table, columns=lambda enc: cluster_columns(enc["c"], labels),
                      tag=json.dumps(["cluster", labels]), metadata=meta, progress=progress)
            cols = [c for c in ("x", "y", "polygon", "classification", "cluster_prob", "area_um2")
                    if c in job.rows.columns or c in ("classification", "cluster_prob")]
            result = read_cell_table(tmp_table, columns=cols)
            fc = geojson_from_cells(result, geometry="polygon" if "polygon" in cols else "points",
                                    classification="classification",
                                    measurements=[c for c in ("cluster_prob", "area_um2") if c in cols])
            tmp_gj.write_text(json.dumps(fc, separators=(",", ":"), allow_nan=False), encoding="utf-8")
        job.finish(dest)
    return dest, gj
