"""Heatmap figures: a grid-resolution heatmap drawn over the slide's thumbnail, placed by its affine.

The heatmap is never stretched to the thumbnail: each thumbnail pixel looks up the grid cell
whose stride box (:class:`histolatent.downstream.heatmaps.GridGeometry`, ``"cell"``) holds
its centre in level-0 pixels. A grid rarely covers the whole slide (the last partial tile
of each row and column is not encoded), so stretching it would shift every cell towards
the bottom-right, more the further it lies from the origin; here the slide's uncovered
margin simply stays uncoloured.

:func:`render_heatmap_slide` is the one call behind ``histolatent slides heatmap``: the
heatmap store and GeoJSON from :func:`histolatent.downstream.heatmaps.heatmap_slide`, then
the PNG from :func:`write_heatmap_figure`. The split follows the layers: downstream writes
the data products, viz (one layer up) draws.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from histolatent.downstream.heatmaps import HeatmapPaths, grid_geometry, heatmap_slide, output_paths  # noqa: E402
from histolatent.errors import InputError  # noqa: E402
from histolatent.viz.save import save_png  # noqa: E402

__all__ = ["heatmap_on_thumbnail", "overlay_rgb", "render_heatmap_slide", "write_heatmap_figure"]


def heatmap_on_thumbnail(heatmap: np.ndarray, attrs: dict[str, Any], size: tuple[int, int], *,
                         mask: np.ndarray | None = None) -> np.ndarray:
    """The heatmap resampled onto the pixels of a thumbnail of the whole slide (nearest cell).

    Parameters
    ----------
    heatmap : ndarray
        ``(H, W)`` at grid resolution.
    attrs : dict
        The heatmap's (or grid's) attrs: ``affine``, tile size and ``level0_dimensions``.
    size : (int, int)
        The thumbnail's ``(height, width)``; it covers level-0 ``[0, W0) x [0, H0)``.
    mask : ndarray, optional
        ``(H, W)`` bool; cells outside it are left out (NaN).

    Returns
    -------
    ndarray
        ``(height, width)`` float32: the value of the cell under each pixel's centre, NaN
        where no cell (or a background cell) lies.

    Examples
    --------
    >>> attrs = {"affine": [[4.0, 0, 0], [0, 4.0, 0], [0, 0, 1]], "level0_dimensions": [10, 6]}
    >>> heatmap_on_thumbnail(np.array([[1.0, 2.0]]), attrs, (3, 5))   # 2 level-0 px per pixel
    array([[ 1.,  1.,  2.,  2., nan],
           [ 1.,  1.,  2.,  2., nan],
           [nan, nan, nan, nan, nan]], dtype=float32)
    """
    heat = np.asarray(heatmap, dtype=np.float32)
    geo = grid_geometry(attrs, shape=heat.shape)
    if attrs.get("level0_dimensions") is None:
        raise InputError("attrs: no level0_dimensions; the thumbnail's scale is unknown")
    big_w, big_h = (float(v) for v in attrs["level0_dimensions"])
    th, tw = (int(v) for v in size)
    x0, y0, (bw, bh) = geo.boxes("cell")
    xc = (np.arange(tw) + 0.5) * big_w / tw  # level-0 centres of the thumbnail's columns and rows
    yc = (np.arange(th) + 0.5) * big_h / th
    j = np.floor((xc - x0[0]) / bw).astype(np.int64)
    i = np.floor((yc - y0[0]) / bh).astype(np.int64)
    ok_j = (j >= 0) & (j < heat.shape[1])
    ok_i = (i >= 0) & (i < heat.shape[0])
    out = np.full((th, tw), np.nan, np.float32)
    ii, jj = np.ix_(np.flatnonzero(ok_i), np.flatnonzero(ok_j))
    block = heat[i[ok_i]][:, j[ok_j]]
    if mask is not None:
        block = np.where(np.asarray(mask, dtype=bool)[i[ok_i]][:, j[ok_j]], block, np.nan)
    out[ii, jj] = block
    return out


def overlay_rgb(thumbnail: np.ndarray, values: np.ndarray, *, alpha: float = 0.5, cmap: str = "inferno",
                vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """``(h, w, 3)`` uint8: ``values`` (``(h, w)``, NaN = none) coloured by ``cmap`` and blended over the thumbnail."""
    thumb = np.asarray(thumbnail)[..., :3].astype(np.float32) / 255.0
    vals = np.asarray(values, dtype=np.float32)
    if vals.shape != thumb.shape[:2]:
        raise InputError(f"values: shape {vals.shape} differs from the thumbnail's {thumb.shape[:2]}")
    have = np.isfinite(vals)
    norm = np.clip((np.where(have, vals, vmin) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    colours = plt.get_cmap(cmap)(norm)[..., :3]
    a = np.where(have, float(alpha), 0.0)[..., None]
    return np.round((thumb * (1 - a) + colours * a) * 255).astype(np.uint8)


def _thumbnail(slide: Any, attrs: dict[str, Any], max_px: int) -> tuple[np.ndarray, str]:
    """The slide's thumbnail and a title; a white canvas of the slide's shape when there is no slide."""
    if slide is None:
        recorded = attrs.get("slide")
        slide = recorded if recorded and Path(str(recorded)).is_file() else None
    if slide is not None:
        from histolatent.io.slide import Slide, open_slide

        if isinstance(slide, Slide):
            return slide.thumbnail(max_px), slide.name
        with open_slide(slide, mpp=attrs.get("slide_mpp")) as s:
            return s.thumbnail(max_px), Path(str(slide)).name if isinstance(slide, (str, os.PathLike)) else s.name
    big_w, big_h = (float(v) for v in attrs["level0_dimensions"])
    f = max(big_w, big_h) / max_px
    return np.full((max(1, round(big_h / f)), max(1, round(big_w / f)), 3), 255, np.uint8), "no slide"


def write_heatmap_figure(store: str | os.PathLike, path: str | os.PathLike, *, slide: Any = None,
                         geojson: str | os.PathLike | None = None, thumbnail_px: int = 1024, alpha: float = 0.5,
                         cmap: str = "inferno") -> Path:
    """``path`` (PNG): the slide's thumbnail | the heatmap over it, with the GeoJSON regions outlined.

    Parameters
    ----------
    store : path
        A heatmap store (:func:`histolatent.io.heatmap_store.write_heatmap`).
    path : path
        The PNG to write (atomically).
    slide : path, Slide or array, optional
        The slide (default: the one recorded in the store, if the file is there; else a white
        canvas of the slide's shape).
    geojson : path, optional
        Regions to outline (e.g. :func:`histolatent.downstream.heatmaps.heatmap_slide`'s).
    thumbnail_px, alpha, cmap
        Thumbnail's longest side, opacity of the heatmap, matplotlib colormap.
    """
    from histolatent.io.heatmap_store import read_heatmap

    heat, mask, attrs = read_heatmap(store)
    thumb, title = _thumbnail(slide, attrs, int(thumbnail_px))
    th, tw = thumb.shape[:2]
    vmax = float(heat[mask].max()) if mask.any() and heat[mask].max() > 0 else 1.0
    values = heatmap_on_thumbnail(heat, attrs, (th, tw), mask=mask)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2 * th / max(tw, 1) + 0.8), squeeze=False)
    axes[0, 0].imshow(thumb)
    axes[0, 0].set_title(title, fontsize=9)
    axes[0, 1].imshow(overlay_rgb(thumb, values, alpha=alpha, cmap=cmap, vmax=vmax))
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, vmax), cmap=cmap), ax=axes[0, 1], fraction=0.04)
    n_regions = 0
    if geojson is not None:
        from histolatent.io.geojson import read_geojson_polygons

        big_w, big_h = (float(v) for v in attrs["level0_dimensions"])
        scale = np.array([tw / big_w, th / big_h])
        for exterior, holes in read_geojson_polygons(geojson):
            n_regions += 1
            for ring in (exterior, *holes):
                xy = np.vstack([ring, ring[:1]]) * scale - 0.5  # level-0 edges -> imshow pixel coordinates
                axes[0, 1].plot(xy[:, 0], xy[:, 1], color="cyan", linewidth=0.8)
    h, w = heat.shape
    label = f"{attrs.get('method', 'heatmap')} ({attrs.get('layer', '')}), {h}x{w} cells"
    if geojson is not None:
        label += f", {n_regions} region(s) >= {attrs.get('threshold', '?')}"
    axes[0, 1].set_title(label, fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    return save_png(fig, path)


def render_heatmap_slide(model: Any, grid: str | os.PathLike, out: str | os.PathLike, *, slide: Any = None,
                         thumbnail_px: int = 1024, **options: Any) -> HeatmapPaths:
    """:func:`~histolatent.downstream.heatmaps.heatmap_slide` (heatmap store + GeoJSON), then its PNG.

    ``options`` go to :func:`~histolatent.downstream.heatmaps.heatmap_slide` (``threshold``,
    ``window``, ``overlap``, ``layer``, ``target``, ``overwrite`` …); ``slide`` and
    ``thumbnail_px`` to :func:`write_heatmap_figure`. Returns all three paths.
    """
    png = output_paths(grid, out).png
    if png.exists() and not options.get("overwrite", False):
        raise InputError(f"out: {str(png)!r} already exists (pass overwrite=True / --overwrite to replace it)")
    paths = heatmap_slide(model, grid, out, **options)
    write_heatmap_figure(paths.store, png, slide=slide, geojson=paths.geojson, thumbnail_px=thumbnail_px)
    return dataclasses.replace(paths, png=png)
