"""Nuclei of files on disk: ``histolatent nuclei detect | segment | patches | evaluate`` as Python calls.

=============================== =============================================================
:func:`detect_nuclei`           LoG centres of a slide / image or a folder -> cell tables
:func:`segment_nuclei`          watershed / U-Net outlines + morphometrics -> cell tables, GeoJSON
:func:`write_nucleus_patches`   nucleus-centred patches of a cell table -> a zarr store
:func:`evaluate_nuclei`         score a finder on held-out SynthPath tiles or annotations
=============================== =============================================================

``detect_nuclei`` and ``segment_nuclei`` write ``<out>/<slide_id>.parquet`` (the cell table)
and, for outlines, ``<out>/<slide_id>.geojson`` (QuPath). One file runs here, tile by tile
(errors raise); a folder, a list, or any input with a ``scheduler`` runs as a Dask cohort
(:func:`~histolatent.nuclei.cohort.run_cohort`: one resumable task per slide, a failed slide
recorded and the rest finished, ``summary.csv`` written). Either way a slide that already has
a cell table is skipped unless ``overwrite``, and the result is one summary row per slide.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from histolatent.errors import InputError

__all__ = ["detect_nuclei", "evaluate_nuclei", "segment_nuclei", "write_nucleus_patches"]


def _find_nuclei(inputs: Any, out: str | os.PathLike, *, method: str, model: Any, slide_mpp: float | None,
                 mpp: float | None, geojson: bool, overwrite: bool, scheduler: str | None, n_workers: int | None,
                 progress: bool | None, options: dict[str, Any]) -> pd.DataFrame:
    from histolatent.io.atomic import check_output
    from histolatent.io.image import check_mpp
    from histolatent.nuclei.cohort import list_inputs, run_cohort
    from histolatent.nuclei.pipeline import METHODS

    if method not in METHODS:
        raise InputError(f"method: expected one of {METHODS}, got {method!r}")
    if method == "unet" and model is None:
        raise InputError("model: method 'unet' needs a U-Net (train one with `histolatent nuclei train`, then "
                         "histolatent.train.load_model(run))")
    slide_mpp = check_mpp(slide_mpp, name="slide_mpp", optional=True)
    mpp = check_mpp(mpp, name="mpp", optional=True)
    files = list_inputs(inputs)
    out = check_output(out, name="out", kind="folder")
    show = sys.stderr.isatty() if progress is None else bool(progress)
    one = len(files) == 1 and isinstance(inputs, (str, os.PathLike)) and not Path(inputs).is_dir()
    if not one or scheduler is not None:
        return run_cohort(files, out, method=method, model=model, slide_mpp=slide_mpp, mpp=mpp, geojson=geojson,
                          overwrite=overwrite, scheduler=scheduler, n_workers=n_workers,
                          progress=show, **options)
    from histolatent.io.tables import read_cell_table, write_cell_table
    from histolatent.nuclei.pipeline import cells_from_slide, default_slide_id, slide_summary

    sid = default_slide_id(files[0])
    table_path = out / f"{sid}.parquet"
    row: dict[str, Any] = {"slide_id": sid, "path": str(files[0]), "status": "done"}
    if table_path.is_file() and not overwrite:
        row.update(slide_summary(read_cell_table(table_path)), status="skipped")
        return pd.DataFrame([row])
    cells = cells_from_slide(files[0], method=method, model=model, mpp=mpp, slide_mpp=slide_mpp, slide_id=sid,
                             progress=show, **options)
    out.mkdir(parents=True, exist_ok=True)  # only now: a bad input leaves no empty output folder
    if geojson and "polygon" in cells.columns:
        from histolatent.io.geojson_export import write_geojson

        write_geojson(cells, out / f"{sid}.geojson")
    write_cell_table(cells, table_path, metadata={"source": str(files[0]), "method": method, "options": options})
    row.update(slide_summary(cells))
    return pd.DataFrame([row])


def detect_nuclei(inputs: Any, out: str | os.PathLike, *, radius_um: tuple[float, float] = (3.0, 7.0),
                  threshold: float = 0.1, slide_mpp: float | None = None, mpp: float | None = None,
                  overwrite: bool = False, scheduler: str | None = None, n_workers: int | None = None,
                  progress: bool | None = None) -> pd.DataFrame:
    """Nucleus centres by LoG blob detection on the haematoxylin channel: cell tables of points.

    Parameters
    ----------
    inputs : path-like or list of path-likes
        A slide / image file, a folder of them, or a list of files.
    out : path-like
        Output folder (created).
    radius_um : (float, float)
        Smallest and largest nuclear radius, µm.
    threshold : float
        LoG response threshold (haematoxylin optical density).
    slide_mpp : float, optional
        µm per pixel of inputs that carry none (PNG / JPEG ROIs).
    mpp : float, optional
        Resolution to work at (default: each slide's own).
    overwrite : bool
        Redo slides that already have a cell table.
    scheduler : str, optional
        Address of a running Dask scheduler (default: a LocalCluster for a cohort).
    n_workers : int, optional
        Workers of the local cluster.
    progress : bool, optional
        Show progress (tiles of one file, or slides of a cohort).

    Returns
    -------
    pandas.DataFrame
        One row per slide: ``slide_id``, ``status`` (done / skipped / failed), ``n_nuclei``,
        ``mna_um2``, ``sdna_um2`` (NaN: points have no area).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from histolatent.io.atomic import write_image_atomic
    >>> from histolatent.nuclei.files import detect_nuclei
    >>> from histolatent.synth import render_tile
    >>> tile = render_tile(160, mpp=0.5, seed=11, tissue="lymphoid")
    >>> folder = Path(tempfile.mkdtemp())
    >>> roi = write_image_atomic(folder / "roi.png", tile.rgb)
    >>> summary = detect_nuclei(roi, folder / "cells", slide_mpp=0.5)
    >>> summary.status.tolist(), bool(0.8 < summary.n_nuclei[0] / len(tile.nuclei) < 1.2)
    (['done'], True)
    """
    from histolatent.nuclei.detect import _radii, check_threshold

    _radii(radius_um, 1)
    return _find_nuclei(inputs, out, method="log", model=None, slide_mpp=slide_mpp, mpp=mpp, geojson=False,
                        overwrite=overwrite, scheduler=scheduler, n_workers=n_workers, progress=progress,
                        options={"radius_um": tuple(radius_um), "threshold": check_threshold(threshold)})


def segment_nuclei(inputs: Any, out: str | os.PathLike, *, method: str = "watershed", model: Any = None,
                   geojson: bool = True, slide_mpp: float | None = None, mpp: float | None = None,
                   overwrite: bool = False, scheduler: str | None = None, n_workers: int | None = None,
                   progress: bool | None = None) -> pd.DataFrame:
    """Nucleus outlines and morphometrics (watershed or U-Net): cell tables and QuPath GeoJSON.

    Parameters
    ----------
    inputs, out, slide_mpp, mpp, overwrite, scheduler, n_workers, progress
        As :func:`detect_nuclei`.
    method : {"watershed", "unet"}
        The segmenter.
    model
        The U-Net for "unet": a model object (a run folder of ``histolatent nuclei train``
        becomes one with :func:`histolatent.train.load_model`; this package never loads one).
    geojson : bool
        Also write ``<slide_id>.geojson`` outlines.

    Returns
    -------
    pandas.DataFrame
        One row per slide (see :func:`detect_nuclei`); MNA / SDNA in µm².

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from histolatent.io.atomic import write_image_atomic
    >>> from histolatent.io.tables import read_cell_table
    >>> from histolatent.nuclei.files import segment_nuclei
    >>> from histolatent.synth import render_tile
    >>> folder = Path(tempfile.mkdtemp())
    >>> roi = write_image_atomic(folder / "roi.png", render_tile(160, mpp=0.5, seed=11, tissue="lymphoid").rgb)
    >>> summary = segment_nuclei(roi, folder / "cells", slide_mpp=0.5)
    >>> sorted(p.name for p in (folder / "cells").iterdir())
    ['roi.geojson', 'roi.parquet']
    >>> cells = read_cell_table(folder / "cells" / "roi.parquet")
    >>> len(cells) == summary.n_nuclei[0] and bool(cells.area_um2.between(6, 500).all())
    True
    """
    if method not in ("watershed", "unet"):
        raise InputError(f"method: expected 'watershed' or 'unet', got {method!r}")
    return _find_nuclei(inputs, out, method=method, model=model, slide_mpp=slide_mpp, mpp=mpp, geojson=geojson,
                        overwrite=overwrite, scheduler=scheduler, n_workers=n_workers, progress=progress, options={})


def write_nucleus_patches(cells: str | os.PathLike | pd.DataFrame, slides: str | os.PathLike,
                          out: str | os.PathLike, *, preset: str = "se2n-vae", size_px: int | None = None,
                          mpp: float | None = None, edge: str = "pad", mask: bool = False,
                          slide_mpp: float | None = None, overwrite: bool = False,
                          progress: bool | None = None) -> Path:
    """Nucleus-centred patches of a cell table, written to a zarr store.

    Parameters
    ----------
    cells : path-like or DataFrame
        A cell table (``slide_id``, ``x``, ``y`` in level-0 px, ...).
    slides : path-like
        The slide file (a table of one slide), or a folder holding ``<slide_id>.*`` files.
    out : path-like
        The zarr store (written to a temporary name and renamed).
    preset : {"se2n-vae", "infogan-40"}
        Patch size and scale: 68 px at 0.25 µm/px or 40 px at 0.5 µm/px.
    size_px, mpp : optional
        Patch side (px) and µm per pixel, overriding the preset.
    edge : {"pad", "reflect", "skip"}
        Patches that reach past the slide's edge.
    mask : bool
        Add the nucleus mask as a 4th channel.
    slide_mpp : float, optional
        µm per pixel of slides that carry none.
    overwrite : bool
        Replace an existing store.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    Path
        The store; read it with :func:`~histolatent.nuclei.patches.read_patch_store`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from histolatent.io.atomic import write_image_atomic
    >>> from histolatent.io.tables import write_cell_table
    >>> from histolatent.nuclei import cells_from_image, read_patch_store
    >>> from histolatent.nuclei.files import write_nucleus_patches
    >>> from histolatent.synth import render_tile
    >>> folder = Path(tempfile.mkdtemp())
    >>> rgb = render_tile(128, mpp=0.5, seed=11, tissue="lymphoid").rgb
    >>> _ = write_image_atomic(folder / "roi.png", rgb)
    >>> _ = write_cell_table(cells_from_image(rgb, mpp=0.5, slide_id="roi"), folder / "roi.parquet")
    >>> store = write_nucleus_patches(folder / "roi.parquet", folder / "roi.png", folder / "p.zarr",
    ...                               preset="infogan-40", slide_mpp=0.5)
    >>> patches, table = read_patch_store(store)
    >>> patches.shape[1:], len(table) == patches.shape[0]
    ((40, 40, 3), True)
    """
    from histolatent.io.tables import read_cell_table
    from histolatent.nuclei.cohort import list_inputs
    from histolatent.nuclei.patches import NucleusPatchDataset, patch_spec, write_patch_store
    from histolatent.nuclei.pipeline import default_slide_id

    table = cells if isinstance(cells, pd.DataFrame) else read_cell_table(cells)
    spec = patch_spec(preset, size_px=size_px, mpp=mpp)
    ids = sorted(set(table["slide_id"].astype(str)))
    slides = Path(slides)
    if slides.is_dir():
        found = {default_slide_id(p): p for p in list_inputs(slides)}
        missing = [i for i in ids if i not in found]
        if missing:
            raise InputError(f"slides {str(slides)!r}: no file for slide_id(s) {missing[:5]}")
        sources = {i: found[i] for i in ids}
    else:
        if len(ids) != 1:
            raise InputError(f"slides: one file given but the table holds {len(ids)} slides; give a folder")
        sources = {ids[0]: slides}
    ds = NucleusPatchDataset(table, sources, spec, edge=edge, mask=mask, mpp=slide_mpp)
    return write_patch_store(ds, out, overwrite=overwrite, progress=bool(progress))


def evaluate_nuclei(method: str, *, model: Any = None, tiles: int = 20, size_px: int = 256, mpp: float = 0.5,
                    stains: Sequence[int] = (0,), annotations: str | os.PathLike | None = None,
                    annotations_mpp: float = 0.25, match_um: float = 4.0) -> dict[str, dict[str, float]]:
    """Score a nucleus finder on held-out SynthPath tiles (one score per stain) or on annotations.

    Parameters
    ----------
    method : {"log", "watershed", "unet"}
    model
        The U-Net model for "unet" (see :func:`segment_nuclei`).
    tiles : int
        Held-out tiles per stain (:func:`~histolatent.nuclei.evaluate.heldout_tiles`).
    size_px, mpp
        Tile side (px) and scale (µm per pixel).
    stains : sequence of int
        Stain site ids (0 = reference); the same tissue under each.
    annotations : path-like, optional
        Score on an annotated folder instead (``images/`` + ``annotations/`` or ``labels/``).
    annotations_mpp : float
        µm per pixel of the annotated images.
    match_um : float
        Distance within which a found centre matches a true one.

    Returns
    -------
    dict
        ``{"stain_<id>": summary}`` or ``{"annotations": summary}``, each summary as
        :func:`~histolatent.nuclei.evaluate.summarise` (precision, recall, f1, dice, aji ...).

    Examples
    --------
    >>> from histolatent.nuclei.files import evaluate_nuclei
    >>> scores = evaluate_nuclei("watershed", tiles=1, size_px=128, stains=[0, 3])
    >>> sorted(scores), scores["stain_0"]["dice"] > 0.5
    (['stain_0', 'stain_3'], True)
    """
    from histolatent.io.image import check_mpp
    from histolatent.nuclei.evaluate import evaluate_method, heldout_tiles

    if annotations is not None:
        from histolatent.io.annotations import read_annotated_folder

        annotations_mpp = check_mpp(annotations_mpp, name="annotations_mpp")
        pairs = [(rgb, lab) for _, rgb, lab in read_annotated_folder(annotations)]
        return {"annotations": evaluate_method(pairs, mpp=annotations_mpp, method=method, model=model,
                                               match_um=match_um)[1]}
    mpp = check_mpp(mpp)
    result = {}
    for s in stains:
        ts = heldout_tiles(tiles, size_px=size_px, mpp=mpp, stain=s)
        result[f"stain_{s}"] = evaluate_method([(t.rgb, t.instances) for t in ts], mpp=mpp, method=method,
                                               model=model, match_um=match_um)[1]
    return result
