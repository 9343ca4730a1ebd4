"""Figures of compressed slides: the first three principal components of a grid as RGB.

:func:`grid_pca_rgb` turns a ``(C, H, W)`` grid of tile codes into an ``(H, W, 3)`` image
(tissue cells only; background white), and :func:`write_grid_figure` puts it beside the
slide's thumbnail. The compression cohort writes it as ``<slide>.png`` on request.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from histolatent.errors import InputError  # noqa: E402
from histolatent.viz.save import save_png  # noqa: E402

__all__ = ["grid_pca_rgb", "write_grid_figure"]


def grid_pca_rgb(grid: np.ndarray, mask: np.ndarray, *, clip: float = 1.0) -> np.ndarray:
    """The first three principal components of the tissue cells' codes as RGB in [0, 1].

    Each component is scaled from its ``clip`` to ``100 - clip`` percentile; its sign makes
    its largest loading positive (the same grid gives the same colours). Background and
    missing components are white / grey.

    >>> g = np.zeros((4, 2, 3), np.float16); g[0] = [[0, 1, 2], [3, 4, 5]]
    >>> r = grid_pca_rgb(g, np.ones((2, 3), bool))[..., 0].ravel()   # one component: a ramp
    >>> float(r[0]), float(r[-1]), bool(np.all(np.diff(r) > 0))
    (0.0, 1.0, True)
    """
    grid = np.asarray(grid, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if grid.ndim != 3 or mask.shape != grid.shape[1:]:
        raise InputError(f"grid: expected (C, H, W) and an (H, W) mask, got {grid.shape} and {mask.shape}")
    rgb = np.ones(grid.shape[1:] + (3,), np.float32)
    codes = grid[:, mask].T  # (n, C)
    if len(codes) == 0:
        return rgb
    x = codes - codes.mean(0)
    _, vecs = np.linalg.eigh(x.T @ x)
    vecs = vecs[:, ::-1][:, :3]
    vecs = vecs * np.where(vecs[np.abs(vecs).argmax(0), range(vecs.shape[1])] < 0, -1.0, 1.0)
    pcs = x @ vecs
    out = np.full((len(codes), 3), 0.5, np.float32)
    for c in range(pcs.shape[1]):
        lo, hi = np.percentile(pcs[:, c], [clip, 100 - clip])
        out[:, c] = np.clip((pcs[:, c] - lo) / (hi - lo), 0, 1) if hi > lo else 0.5
    rgb[mask] = out
    return rgb


def write_grid_figure(store: str | os.PathLike, path: str | os.PathLike, *, thumbnail_px: int = 768) -> Path:
    """``<path>.png``: the slide's thumbnail | the grid's first three principal components as RGB.

    For a dihedral store the identity copy is shown. The slide is the one recorded in the
    store's attrs; without it (moved, or an in-memory slide) only the grid is drawn.
    """
    from histolatent.embed.grid import read_slide_grid

    grid, mask, attrs = read_slide_grid(store)
    if grid.ndim == 4:
        h, w = attrs["dihedral_shapes"][0]
        grid, mask = grid[0][:, :h, :w], mask[0][:h, :w]
    rgb = grid_pca_rgb(grid, mask)
    thumb = None
    slide = attrs.get("slide")
    if slide and Path(slide).is_file():
        from histolatent.io.slide import open_slide

        with open_slide(slide, mpp=attrs.get("slide_mpp")) as s:
            thumb = s.thumbnail(thumbnail_px)
    panels = 2 if thumb is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 5 * grid.shape[1] / max(grid.shape[2], 1) + 0.6),
                             squeeze=False)
    if thumb is not None:
        axes[0, 0].imshow(thumb)
        axes[0, 0].set_title(Path(slide).name, fontsize=9)
    axes[0, -1].imshow(rgb, interpolation="nearest")
    axes[0, -1].set_title(f"{attrs.get('encoder')}: PC 1-3 of {grid.shape[0]}-d codes, "
                          f"{grid.shape[1]}x{grid.shape[2]} cells", fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    return save_png(fig, path)
