"""Tile grids: level-0 coordinates of tiles at a physical scale, with their tissue fraction.

A :class:`TileGrid` says "tiles of ``tile_px`` pixels at ``mpp`` microns per pixel, every
``stride_px`` pixels": each tile covers ``tile_px * mpp / slide_mpp`` level-0 pixels. The
tissue fraction of every candidate tile is read from a :class:`TissueMask` in one pass
with a summed-area table, so building a grid costs O(mask pixels + tiles) whatever the
slide size; reading the tiles is streamed (:meth:`TileGrid.iter_tiles`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from histolatent.errors import InputError
from histolatent.io.image import check_mpp
from histolatent.tissue.mask import TissueMask, detect_tissue


@dataclass(frozen=True)
class TileGrid:
    """Tiles of a slide at a physical scale.

    Attributes
    ----------
    x, y : numpy.ndarray
        ``(n,)`` int64 level-0 top-left corners.
    tissue_fraction : numpy.ndarray
        ``(n,)`` float32 in [0, 1]: fraction of each tile covered by the tissue mask.
    mpp : float
        Microns per pixel of the tiles.
    tile_px, stride_px : int
        Tile size and step in pixels at ``mpp``.
    slide_mpp : float
        Microns per level-0 pixel of the slide.
    level0_dimensions : (int, int)
        The slide's level-0 ``(W, H)``.
    """

    x: np.ndarray
    y: np.ndarray
    tissue_fraction: np.ndarray
    mpp: float
    tile_px: int
    stride_px: int
    slide_mpp: float
    level0_dimensions: tuple[int, int]

    @property
    def level0_tile(self) -> float:
        """Tile side in level-0 pixels."""
        return self.tile_px * self.mpp / self.slide_mpp

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def read(self, slide, i: int) -> np.ndarray:
        """Tile ``i`` as a ``(tile_px, tile_px, 3)`` uint8 array."""
        return slide.read(int(self.x[i]), int(self.y[i]), self.tile_px, self.tile_px, mpp=self.mpp)

    def iter_tiles(self, slide) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, tile)`` in grid order; one tile in memory at a time."""
        for i in range(len(self)):
            yield i, self.read(slide, i)

    def to_records(self) -> list[dict]:
        """One dict per tile: ``x``, ``y`` (level 0), ``mpp``, ``tile_px``, ``tissue_fraction``."""
        return [{"x": int(a), "y": int(b), "mpp": self.mpp, "tile_px": self.tile_px,
                 "tissue_fraction": float(f)} for a, b, f in zip(self.x, self.y, self.tissue_fraction, strict=True)]

    def to_csv(self, path) -> None:
        """Write the tiles as CSV (atomically)."""
        from histolatent.io.atomic import write_text_atomic

        lines = ["x,y,mpp,tile_px,tissue_fraction"]
        lines += [f"{int(a)},{int(b)},{self.mpp},{self.tile_px},{float(f):.4f}"
                  for a, b, f in zip(self.x, self.y, self.tissue_fraction, strict=True)]
        write_text_atomic(path, "\n".join(lines) + "\n")


def tile_grid(slide=None, *, mpp: float, tile_px: int, stride_px: int | None = None,
              min_tissue: float = 0.5, mask: TissueMask | None = None,
              level0_dimensions: tuple[int, int] | None = None, slide_mpp: float | None = None,
              **detect_kwargs) -> TileGrid:
    """Tiles at ``mpp`` whose tissue fraction is at least ``min_tissue``.

    Parameters
    ----------
    slide : Slide, optional
        The slide; gives the dimensions and mpp, and the tissue mask when ``mask`` is None
        (:func:`~histolatent.tissue.mask.detect_tissue`, ``detect_kwargs`` passed on).
    mpp : float
        Microns per pixel of the tiles (keyword-only).
    tile_px : int
        Tile side in pixels at ``mpp``.
    stride_px : int, optional
        Step between tiles in pixels at ``mpp``; defaults to ``tile_px`` (no overlap).
    min_tissue : float
        Keep tiles with at least this tissue fraction (0 keeps every tile).
    mask : TissueMask, optional
        A precomputed or user-supplied mask.
    level0_dimensions, slide_mpp : optional
        Use instead of ``slide`` (with a ``mask``) to build a grid without opening a slide.

    Returns
    -------
    TileGrid
        Only tiles that lie entirely inside the slide; row-major order.
    """
    if slide is not None:
        level0_dimensions = slide.dimensions
        slide_mpp = slide.require_mpp() if slide_mpp is None else slide_mpp
    if level0_dimensions is None or slide_mpp is None:
        raise InputError("tile_grid: pass a slide, or level0_dimensions and slide_mpp")
    mpp = check_mpp(mpp, name="tile_grid: mpp")
    slide_mpp = check_mpp(slide_mpp, name="tile_grid: slide_mpp")
    tile_px = int(tile_px)
    stride_px = tile_px if stride_px is None else int(stride_px)
    if tile_px < 1 or stride_px < 1:
        raise InputError(f"tile_grid: tile_px and stride_px must be >= 1, got {tile_px}, {stride_px}")
    if not 0.0 <= min_tissue <= 1.0:
        raise InputError(f"tile_grid: min_tissue must lie in [0, 1], got {min_tissue}")
    if mask is None:
        if slide is None:
            raise InputError("tile_grid: pass a mask when no slide is given")
        mask = detect_tissue(slide, **detect_kwargs)
    W, H = (int(v) for v in level0_dimensions)
    scale = float(mpp) / float(slide_mpp)
    tile0, stride0 = tile_px * scale, stride_px * scale
    nx = int(math.floor((W - tile0) / stride0)) + 1 if W >= tile0 else 0
    ny = int(math.floor((H - tile0) / stride0)) + 1 if H >= tile0 else 0
    xs = np.round(np.arange(nx) * stride0).astype(np.int64)
    ys = np.round(np.arange(ny) * stride0).astype(np.int64)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    gx, gy = gx.ravel(), gy.ravel()
    frac = box_fractions(mask, gx, gy, tile0)
    keep = frac >= min_tissue if min_tissue > 0 else np.ones_like(frac, dtype=bool)
    return TileGrid(x=gx[keep], y=gy[keep], tissue_fraction=frac[keep].astype(np.float32),
                    mpp=float(mpp), tile_px=tile_px, stride_px=stride_px, slide_mpp=float(slide_mpp),
                    level0_dimensions=(W, H))


def box_fractions(mask: TissueMask, x: np.ndarray, y: np.ndarray, size0: float | tuple[float, float]) -> np.ndarray:
    """Fraction of mask pixels set inside level-0 boxes ``[x, x+w) x [y, y+h)``.

    ``size0`` is the side ``w = h`` of square boxes or their ``(w, h)``. Box edges are
    rounded to the nearest mask pixel (at least one pixel per box), and the sums read from
    a summed-area table: O(1) per box.
    """
    bw, bh = (size0, size0) if np.isscalar(size0) else size0
    m = mask.mask
    h, w = m.shape
    sx, sy = mask.downsample
    sat = np.zeros((h + 1, w + 1), dtype=np.int64)
    np.cumsum(np.cumsum(m, axis=0, dtype=np.int64), axis=1, out=sat[1:, 1:])
    x0 = np.clip(np.round(x / sx).astype(np.int64), 0, w - 1)
    y0 = np.clip(np.round(y / sy).astype(np.int64), 0, h - 1)
    x1 = np.clip(np.maximum(np.round((x + bw) / sx).astype(np.int64), x0 + 1), 1, w)
    y1 = np.clip(np.maximum(np.round((y + bh) / sy).astype(np.int64), y0 + 1), 1, h)
    total = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    area = (x1 - x0) * (y1 - y0)
    return (total / np.maximum(area, 1)).astype(np.float64)
