"""From pixels to a cell table: detect or segment nuclei in an image or a whole slide.

``method`` names the nucleus finder:

- ``"log"``: LoG blob centres only (:func:`~histolatent.nuclei.detect.detect_log`);
  the table has ``score`` and ``radius_um`` but no outlines or morphometrics.
- ``"watershed"``: LoG-seeded watershed of the haematoxylin foreground
  (:func:`~histolatent.nuclei.watershed.segment_watershed`), measured.
- ``"unet"``: the U-Net's 3-class map -> instances (:func:`~histolatent.nuclei.unet.segment_unet`),
  measured; needs ``model`` (a run folder or a loaded model).

:func:`cells_from_slide` streams a slide tile by tile (memory does not grow with the
slide): each tile is read with a margin, nuclei are kept only if their centroid lies in the
tile's core, so a nucleus on a tile border is found once, whole.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd

from histolatent.errors import InputError
from histolatent.nuclei.detect import check_mpp, detect_log
from histolatent.nuclei.haematoxylin import haematoxylin_from_rgb
from histolatent.nuclei.morphometrics import measure_nuclei
from histolatent.progress import progress as track

METHODS = ("log", "watershed", "unet")


def _check_method(method: str, model: Any) -> None:
    if method not in METHODS:
        raise InputError(f"method: expected one of {METHODS}, got {method!r}")
    if method == "unet" and model is None:
        raise InputError("method 'unet' needs a model (a U-Net run folder, e.g. from `histolatent nuclei train`)")


def segment_image(image: np.ndarray, *, mpp: float, method: str = "watershed", model: Any = None,
                  **options: Any) -> np.ndarray:
    """Instance labels ``(H, W)`` int32 of an RGB image by ``"watershed"`` or ``"unet"``."""
    _check_method(method, model)
    if method == "log":
        raise InputError("method 'log' detects centres only; use 'watershed' or 'unet' to segment")
    if method == "unet":
        from histolatent.nuclei.unet import segment_unet

        return segment_unet(image, model, mpp=mpp, **options)
    from histolatent.nuclei.watershed import segment_watershed

    return segment_watershed(image, mpp=mpp, **options)


def cells_from_image(image: np.ndarray, *, mpp: float, method: str = "watershed", model: Any = None,
                     slide_id: str = "image", roi_id: str | None = None, polygons: bool = True,
                     stain_matrix: Any = "macenko", **options: Any) -> pd.DataFrame:
    """The cell table of one image (coordinates are the image's pixels).

    Parameters
    ----------
    image : ndarray, (H, W, 3)
        RGB H&E; never modified.
    mpp : float
        Microns per pixel.
    method : {"log", "watershed", "unet"}
        See the module docstring.
    model
        The U-Net for ``method="unet"``.
    slide_id, roi_id : str
        Identifiers written into the table.
    polygons : bool
        Keep the outlines (``polygon`` column).
    stain_matrix : array, "macenko" or "ruifrok"
        Stain vectors of the haematoxylin channel used for detection, watershed and the
        ``h_mean`` / ``h_sd`` measurements (default: estimated from the image, Macenko).
    **options
        Passed to the detector / segmenter.

    Returns
    -------
    pandas.DataFrame
        A cell table (:mod:`histolatent.io.tables`).
    """
    mpp = check_mpp(mpp)
    _check_method(method, model)
    rgb = np.asarray(image)
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4):
        raise InputError(f"image: expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    table = _cells_in_window(rgb, mpp=mpp, method=method, model=model, polygons=polygons, options=options,
                             stain_matrix=stain_matrix)
    return _finish(table, slide_id=slide_id, roi_id=roi_id, mpp=mpp, method=method)


def _cells_in_window(rgb: np.ndarray, *, mpp: float, method: str, model: Any, polygons: bool,
                     options: dict[str, Any], stain_matrix: Any = "macenko") -> pd.DataFrame:
    h = haematoxylin_from_rgb(rgb, stain_matrix=stain_matrix)
    if method == "log":
        return detect_log(h, mpp=mpp, **options)
    if method == "unet":
        from histolatent.nuclei.unet import segment_unet

        labels = segment_unet(rgb, model, mpp=mpp, **options)
    else:
        from histolatent.nuclei.watershed import segment_watershed

        labels = segment_watershed(h, mpp=mpp, **options)
    return measure_nuclei(labels, mpp=mpp, haematoxylin=h, polygons=polygons)


def _finish(table: pd.DataFrame, *, slide_id: str, roi_id: str | None, mpp: float, method: str) -> pd.DataFrame:
    out = table.drop(columns=[c for c in ("label",) if c in table.columns]).reset_index(drop=True)
    out.insert(0, "slide_id", str(slide_id))
    if roi_id is not None:
        out.insert(1, "roi_id", str(roi_id))
    out.insert(2 if roi_id is not None else 1, "cell_id", np.arange(len(out), dtype=np.int64))
    x_pos = list(out.columns).index("y") + 1
    out.insert(x_pos, "mpp", float(mpp))
    out.insert(x_pos + 1, "x_um", out["x"].to_numpy(dtype=np.float64) * mpp)
    out.insert(x_pos + 2, "y_um", out["y"].to_numpy(dtype=np.float64) * mpp)
    out.insert(x_pos + 3, "method", method)
    out.attrs["histolatent"] = {"kind": "cells", "method": method}
    return out


def cells_from_slide(source: Any, *, method: str = "watershed", model: Any = None, mpp: float | None = None,
                     slide_mpp: float | None = None, slide_id: str | None = None, tile_px: int = 1024,
                     margin_um: float = 20.0, tissue: bool = True, min_tissue: float = 0.01,
                     polygons: bool = True, stain_matrix: Any = "slide", progress: bool = False,
                     **options: Any) -> pd.DataFrame:
    """The cell table of a whole slide (or a large image), tile by tile.

    Parameters
    ----------
    source : path, Slide or ndarray
        The slide; plain images and arrays need ``slide_mpp``.
    method, model
        See :func:`cells_from_image`.
    mpp : float, optional
        Resolution the nuclei are found at (default: the slide's level-0 mpp).
    slide_mpp : float, optional
        µm per level-0 pixel when the file carries none (overrides the file).
    slide_id : str, optional
        Default: the file stem, or "slide".
    tile_px : int
        Core tile side at ``mpp``; each tile is read with ``margin_um`` on every side.
    margin_um : float
        Context around each tile, µm (more than the largest nucleus).
    tissue : bool
        Skip tiles with less than ``min_tissue`` tissue (thumbnail tissue mask).
    stain_matrix : "slide", "macenko", "ruifrok" or array
        Stain vectors of the haematoxylin channel: "slide" estimates them once from the
        slide's thumbnail (Macenko), so every tile is deconvolved alike; "macenko" per tile.
    progress : bool
        Show a progress bar over tiles.

    Returns
    -------
    pandas.DataFrame
        A cell table: ``x``, ``y`` and ``polygon`` in level-0 px, ``mpp`` = level-0 mpp.
    """
    from histolatent.io.slide import Slide, open_slide

    _check_method(method, model)
    owned = not isinstance(source, Slide)
    slide = open_slide(source, mpp=slide_mpp) if owned else source
    try:
        smpp = slide.require_mpp()
        proc_mpp = check_mpp(mpp) if mpp is not None else smpp
        f = proc_mpp / smpp  # level-0 px per processing px
        if slide_id is None:
            slide_id = slide.path.stem if getattr(slide, "path", None) is not None else "slide"
        if method == "unet":
            from histolatent.nuclei.unet import check_segmenter

            model = check_segmenter(model)
        W0, H0 = slide.dimensions
        core = int(tile_px)
        if core < 16:
            raise InputError(f"tile_px: expected >= 16, got {tile_px}")
        m = int(math.ceil(margin_um / proc_mpp))
        wp, hp = int(math.ceil(W0 / f)), int(math.ceil(H0 / f))  # slide size in processing px
        origins = [(ty, tx) for ty in range(0, hp, core) for tx in range(0, wp, core)]
        if tissue and len(origins) > 1:
            origins = _tissue_tiles(slide, origins, f, core, min_tissue)
        if isinstance(stain_matrix, str) and stain_matrix == "slide":
            stain_matrix = _slide_stain_matrix(slide)
        with track(len(origins), f"nuclei {slide_id}", unit="tiles", enabled=None if progress else False,
                   transient=True) as bar:
            parts = []
            for ty, tx in origins:
                win = slide.read((tx - m) * f, (ty - m) * f, core + 2 * m, core + 2 * m,
                                 mpp=None if abs(f - 1) < 1e-9 else proc_mpp)
                t = _cells_in_window(win, mpp=proc_mpp, method=method, model=model, polygons=polygons, options=options,
                                     stain_matrix=stain_matrix)
                if len(t):
                    keep = ((t["x"] >= m - 0.5) & (t["x"] < m + core - 0.5) & (t["y"] >= m - 0.5)
                            & (t["y"] < m + core - 0.5) & (t["x"] + tx - m < wp) & (t["y"] + ty - m < hp))
                    t = t[keep.to_numpy()].copy()
                    ox, oy = tx - m, ty - m
                    # processing px (pixel centres) -> level-0 px (pixel centres)
                    t["x"] = (t["x"] + ox + 0.5) * f - 0.5
                    t["y"] = (t["y"] + oy + 0.5) * f - 0.5
                    if "polygon" in t.columns:
                        t["polygon"] = [_poly_to_level0(p, ox, oy, f) for p in t["polygon"]]
                    parts.append(t)
                bar.advance(1)
    finally:
        if owned:
            slide.close()
    table = pd.concat(parts, ignore_index=True) if parts else _empty_window_table(method, polygons)
    out = _finish(table, slide_id=str(slide_id), roi_id=None, mpp=smpp, method=method)
    out.attrs["histolatent"].update({"processing_mpp": proc_mpp, "tile_px": core, "margin_um": margin_um,
                                     "level0_dimensions": [int(W0), int(H0)]})
    return out


def _slide_stain_matrix(slide: Any) -> Any:
    """Macenko stain vectors of a slide's thumbnail, or "macenko" (per tile) if they cannot be estimated."""
    from histolatent.stain.macenko import macenko_stain_matrix

    try:
        return macenko_stain_matrix(slide.thumbnail(1024))
    except InputError:
        return "macenko"


def _poly_to_level0(p: Any, ox: float, oy: float, f: float) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64).reshape(-1, 2)
    a = (a + np.array([ox, oy]) + 0.5) * f - 0.5
    return a.ravel()


def _empty_window_table(method: str, polygons: bool) -> pd.DataFrame:
    if method == "log":
        return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in ("x", "y", "radius_um", "score")})
    return measure_nuclei(np.zeros((4, 4), dtype=np.int32), mpp=1.0, polygons=polygons)


def _tissue_tiles(slide: Any, origins: list[tuple[int, int]], f: float, core: int,
                  min_tissue: float) -> list[tuple[int, int]]:
    """Tiles (processing-px origins, ``f`` level-0 px per processing px) with tissue >= ``min_tissue``."""
    from histolatent.tissue.grid import box_fractions
    from histolatent.tissue.mask import detect_tissue

    try:
        mask = detect_tissue(slide, thumbnail_px=1024)
    except InputError:  # no usable thumbnail: process every tile
        return origins
    x0 = np.round(np.array([tx for _, tx in origins], dtype=np.float64) * f).astype(np.int64)
    y0 = np.round(np.array([ty for ty, _ in origins], dtype=np.float64) * f).astype(np.int64)
    frac = box_fractions(mask, x0, y0, core * f)
    return [o for o, fr in zip(origins, frac, strict=True) if fr >= min_tissue]


def slide_summary(cells: pd.DataFrame) -> dict[str, Any]:
    """Counts and MNA / SDNA (µm²) of one slide's cell table (NaN where not measured)."""
    n = int(len(cells))
    if "area_um2" in cells.columns and n:
        a = cells["area_um2"].to_numpy(dtype=np.float64)
        return {"n_nuclei": n, "mna_um2": float(a.mean()), "sdna_um2": float(a.std(ddof=1)) if n > 1 else float("nan")}
    return {"n_nuclei": n, "mna_um2": float("nan"), "sdna_um2": float("nan")}


def default_slide_id(path: str | os.PathLike) -> str:
    """Slide id of a file: its name without the extension (``a.ome.tiff`` -> ``a``)."""
    name = os.path.basename(os.fspath(path))
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0]
