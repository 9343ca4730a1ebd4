"""Tissue figures: thumbnail with the tissue mask and the tile grid overlaid."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from histolatent.io.atomic import atomic_path  # noqa: E402


def tissue_overlay_figure(thumbnail: np.ndarray, mask: np.ndarray, path: str | os.PathLike, *,
                          grid=None, level0_dimensions: tuple[int, int] | None = None,
                          title: str | None = None) -> Path:
    """Thumbnail | thumbnail with the mask outlined and tiles drawn, coloured by tissue fraction.

    Parameters
    ----------
    thumbnail : numpy.ndarray
        ``(h, w, 3)`` uint8.
    mask : numpy.ndarray
        ``(hm, wm)`` bool tissue mask (any resolution covering the same slide).
    path : path-like
        PNG to write (atomically).
    grid : TileGrid, optional
        Tiles to draw (level-0 coordinates, scaled to the thumbnail).
    level0_dimensions : (int, int), optional
        Slide ``(W, H)``; taken from ``grid`` when given.
    """
    thumb = np.asarray(thumbnail)[..., :3]
    h, w = thumb.shape[:2]
    m = np.asarray(mask, dtype=bool)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2 * h / max(w, 1) + 0.6), squeeze=False)
    axes[0, 0].imshow(thumb)
    axes[0, 0].set_title("thumbnail", fontsize=10)
    ax = axes[0, 1]
    ax.imshow(thumb)
    tint = np.zeros((*m.shape, 4))
    tint[~m] = (0.1, 0.1, 0.6, 0.35)
    ax.imshow(tint, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")
    ax.contour(np.linspace(0, w - 1, m.shape[1]), np.linspace(0, h - 1, m.shape[0]), m.astype(float),
               levels=[0.5], colors="lime", linewidths=1.0)
    label = f"tissue {m.mean():.0%}"
    if grid is not None and len(grid):
        W, H = grid.level0_dimensions if level0_dimensions is None else level0_dimensions
        sx, sy = w / W, h / H
        size = grid.level0_tile
        rects = [Rectangle((x * sx - 0.5, y * sy - 0.5), size * sx, size * sy)
                 for x, y in zip(grid.x, grid.y, strict=True)]
        pc = PatchCollection(rects, facecolor="none", linewidth=0.6,
                             edgecolor=plt.cm.viridis(np.asarray(grid.tissue_fraction, dtype=float)))
        ax.add_collection(pc)
        label += f", {len(grid)} tiles of {grid.tile_px} px at {grid.mpp:g} um/px"
    ax.set_title(label, fontsize=10)
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
