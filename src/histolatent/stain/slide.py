"""Normalise a whole slide into a pyramidal TIFF, tile by tile (``histolatent stain apply`` on a slide).

The slide's stain is estimated once, from a sample of its most stained tiles spread over
the slide (:meth:`~histolatent.stain.base.StainNormalizer.fix_source`), and every tile is
then normalised with that one estimate, so neighbouring tiles get no seams. Level 0 of the
output is pulled tile by tile from the slide and written by
:func:`histolatent.io.tiff_writer.write_pyramidal_tiff` (atomic: a temporary name, then a
rename), so memory does not grow with the slide.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from histolatent.errors import InputError
from histolatent.io.image import check_mpp
from histolatent.progress import progress as progress_bar
from histolatent.stain.base import StainNormalizer, load_normalizer
from histolatent.stain.optical_density import tissue_pixel_mask

__all__ = ["normalize_slide", "source_tiles"]


def source_tiles(slide: Any, *, tile_px: int, n_tiles: int = 16, min_stained: float = 0.25,
                 thumbnail_px: int = 1024) -> list[tuple[int, int]]:
    """Level-0 origins of up to ``n_tiles`` tiles to estimate a slide's stain from.

    Each whole ``tile_px`` tile of level 0 is scored by its fraction of stain-carrying pixels
    (:func:`~histolatent.stain.optical_density.tissue_pixel_mask` on a thumbnail). The
    candidates are the tiles with at least ``min_stained`` of them; the pick is spread
    evenly over the candidates in row-major order. An empty list means no tile qualifies.
    """
    W, H = slide.dimensions
    nx, ny = W // tile_px, H // tile_px
    if nx == 0 or ny == 0:
        return []
    stained = tissue_pixel_mask(slide.thumbnail(min(int(thumbnail_px), max(W, H)))).astype(np.float64)
    th, tw = stained.shape
    integral = np.pad(stained.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # box sums in O(1)
    gy, gx = np.meshgrid(np.arange(ny) * tile_px, np.arange(nx) * tile_px, indexing="ij")
    gx, gy = gx.ravel(), gy.ravel()
    x0 = np.clip(np.round(gx * tw / W).astype(int), 0, tw - 1)
    y0 = np.clip(np.round(gy * th / H).astype(int), 0, th - 1)
    x1 = np.maximum(x0 + 1, np.round((gx + tile_px) * tw / W).astype(int).clip(max=tw))
    y1 = np.maximum(y0 + 1, np.round((gy + tile_px) * th / H).astype(int).clip(max=th))
    frac = (integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]) / ((x1 - x0) * (y1 - y0))
    cand = np.flatnonzero(frac >= min_stained)
    if len(cand) == 0:
        return []
    pick = cand[np.unique(np.linspace(0, len(cand) - 1, min(n_tiles, len(cand))).round().astype(int))]
    return [(int(gx[i]), int(gy[i])) for i in pick]


def _can_fix_source(norm: StainNormalizer) -> bool:
    """Whether the method estimates a source stain at all (the neural normaliser does not)."""
    return type(norm)._source_estimate is not StainNormalizer._source_estimate


def normalize_slide(normalizer: StainNormalizer | str | os.PathLike, slide: Any, out: str | os.PathLike, *,
                    tile_px: int = 512, per_tile: bool = False, n_source_tiles: int = 16,
                    slide_mpp: float | None = None, quality: int = 90, progress: bool | None = None) -> Path:
    """Normalise a whole slide to the fitted target and write it as a pyramidal JPEG TIFF.

    Parameters
    ----------
    normalizer : StainNormalizer or path-like
        A fitted normaliser, or the JSON written by its ``save`` (``histolatent stain fit``).
    slide : path-like or Slide
        Any slide :func:`~histolatent.io.slide.open_slide` reads (a path is opened and
        closed here).
    out : path-like
        Output TIFF (written atomically).
    tile_px : int
        Tile side of the output TIFF (a multiple of 16); also the size of the tiles the
        source stain is estimated from.
    per_tile : bool
        Estimate the source stain on every tile instead of once (tiles may then differ).
    n_source_tiles : int
        Tiles of the once-per-slide estimate (see :func:`source_tiles`); with no stained
        tile the estimate falls back to per tile.
    slide_mpp : float, optional
        µm per level-0 pixel of a slide that carries none; the output records the slide's
        mpp (1.0 when neither is known).
    quality : int
        JPEG quality of the output tiles.
    progress : bool, optional
        A bar over the output's tiles (default: on a terminal); counts go to the log.

    Returns
    -------
    Path
        ``out``; ``normalizer.n_transformed`` / ``n_skipped`` count the tiles.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from histolatent.io.slide import open_slide
    >>> from histolatent.io.tiff_writer import write_pyramidal_tiff
    >>> from histolatent.stain import MacenkoNormalizer
    >>> from histolatent.stain.slide import normalize_slide
    >>> from histolatent.synth import render_tile
    >>> folder = Path(tempfile.mkdtemp())
    >>> slide = write_pyramidal_tiff(folder / "s.tiff", render_tile((256, 128), seed=1, stain=3, tissue="tumour").rgb,
    ...                              mpp=0.5, tile_px=64)
    >>> norm = MacenkoNormalizer().fit(render_tile(128, seed=2).rgb)
    >>> out = normalize_slide(norm, slide, folder / "n.tiff", tile_px=64)
    >>> with open_slide(out) as s:
    ...     s.dimensions, s.mpp
    ((256, 128), 0.5)
    >>> norm.n_transformed, norm.n_skipped  # 4 x 2 tiles, all under the slide's one estimate
    (8, 0)
    """
    from histolatent.io.slide import Slide, open_slide
    from histolatent.io.tiff_writer import level_sizes, write_pyramidal_tiff

    norm = normalizer if isinstance(normalizer, StainNormalizer) else load_normalizer(normalizer)
    slide_mpp = check_mpp(slide_mpp, name="slide_mpp", optional=True)
    if tile_px < 16 or tile_px % 16:
        raise InputError(f"tile_px: expected a multiple of 16 (>= 16), got {tile_px}")
    owned = not isinstance(slide, Slide)
    sl = open_slide(slide, mpp=slide_mpp) if owned else slide
    fixed_before = getattr(norm, "source_", None)  # this slide's estimate must not outlive the call
    try:
        if not per_tile and _can_fix_source(norm):
            origins = source_tiles(sl, tile_px=tile_px, n_tiles=n_source_tiles)
            if origins:
                norm.fix_source([sl.read_level(0, x, y, tile_px, tile_px) for x, y in origins])
        total = sum(-(-w // tile_px) * -(-h // tile_px) for w, h in level_sizes(*sl.dimensions, tile_px))
        with progress_bar(total, f"normalise {sl.name}", unit="tiles", enabled=progress) as bar:
            def read(x: int, y: int, w: int, h: int) -> np.ndarray:
                return norm.transform(sl.read_level(0, x, y, w, h))

            def tick(done: int, _total: int) -> None:
                bar.advance(done - bar.done)

            return write_pyramidal_tiff(out, read, size=sl.dimensions, mpp=sl.mpp or 1.0, tile_px=tile_px,
                                        quality=quality, progress=tick)
    finally:
        norm.source_ = fixed_before
        if owned:
            sl.close()
