"""Tissue masks and tile grids written to files: ``histolatent slide tissue | tiles`` as Python calls.

Both take a slide path (opened and closed here) or an open :class:`~histolatent.io.slide.Slide`,
and write every file atomically.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from histolatent.errors import InputError
from histolatent.io.atomic import atomic_folder, check_output, write_image_atomic
from histolatent.io.image import check_mpp
from histolatent.tissue.grid import TileGrid, tile_grid
from histolatent.tissue.mask import TissueMask, detect_tissue, mask_from_geojson, mask_from_image

__all__ = ["load_tissue_mask", "write_tile_grid", "write_tissue_mask"]


@contextlib.contextmanager
def _opened(slide: Any, slide_mpp: float | None) -> Iterator[Any]:
    from histolatent.io.slide import Slide, open_slide

    if isinstance(slide, Slide):
        yield slide
        return
    with open_slide(slide, mpp=check_mpp(slide_mpp, name="slide_mpp", optional=True)) as opened:
        yield opened


def write_tissue_mask(slide: Any, out: str | os.PathLike, *, thumbnail_px: int = 2048, remove_pen: bool = False,
                      threshold: float | None = None, slide_mpp: float | None = None) -> TissueMask:
    """Detect the tissue of a slide and write the mask as a PNG (255 = tissue).

    Parameters
    ----------
    slide : path-like or Slide
        The slide or image.
    out : path-like
        Output PNG, at the resolution of the thumbnail the mask is computed on.
    thumbnail_px, remove_pen, threshold
        See :func:`~histolatent.tissue.mask.tissue_mask` (Otsu unless ``threshold``).
    slide_mpp : float, optional
        µm per level-0 pixel of a file that carries none (scales the morphology).

    Returns
    -------
    TissueMask

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from histolatent.tissue.files import write_tissue_mask
    >>> image = np.full((200, 300, 3), 245, np.uint8)
    >>> image[50:150, 100:250] = (180, 90, 160)      # a pink-purple block of "tissue" on glass
    >>> mask = write_tissue_mask(image, Path(tempfile.mkdtemp()) / "mask.png")
    >>> round(mask.tissue_fraction, 2)
    0.25
    """
    check_output(out, name="out")
    with _opened(slide, slide_mpp) as s:
        mask = detect_tissue(s, thumbnail_px=thumbnail_px, remove_pen=remove_pen, threshold=threshold)
    write_image_atomic(out, (mask.mask * 255).astype(np.uint8))
    return mask


def load_tissue_mask(slide: Any, mask: Any = None, *, remove_pen: bool = False) -> TissueMask:
    """The tissue of ``slide`` (an open Slide): detected if ``mask`` is None, else read from ``mask``.

    ``mask`` is a :class:`TissueMask` (returned as it is), GeoJSON polygons (``.geojson`` /
    ``.json``, level-0 coordinates) or a mask image (non-zero = tissue) covering the slide.
    """
    if mask is None:
        return detect_tissue(slide, remove_pen=remove_pen)
    if isinstance(mask, TissueMask):
        return mask
    if Path(mask).suffix.lower() in (".geojson", ".json"):
        return mask_from_geojson(mask, slide.dimensions)
    return mask_from_image(mask, slide.dimensions)


def write_tile_grid(slide: Any, out: str | os.PathLike, *, mpp: float, tile_px: int = 256,
                    stride_px: int | None = None, min_tissue: float = 0.5, mask: Any = None,
                    remove_pen: bool = False, tiles_dir: str | os.PathLike | None = None,
                    slide_mpp: float | None = None) -> TileGrid:
    """The tile grid of a slide at a physical scale, written as CSV; optionally every tile as PNG.

    Parameters
    ----------
    slide : path-like or Slide
        The slide or image.
    out : path-like
        Output CSV: ``x,y,mpp,tile_px,tissue_fraction`` (``x``, ``y`` at level 0).
    mpp : float
        µm per pixel of the tiles.
    tile_px, stride_px, min_tissue
        See :func:`~histolatent.tissue.grid.tile_grid`.
    mask : path-like or TissueMask, optional
        The tissue (see :func:`load_tissue_mask`); detected if None.
    remove_pen : bool
        Remove pen marks from a detected mask.
    tiles_dir : path-like, optional
        Also write every tile to ``tiles_dir/tile_<x>_<y>.png`` (streamed, one at a time,
        into a temporary folder that replaces ``tiles_dir`` as a whole once every tile is
        written; the CSV follows it).
    slide_mpp : float, optional
        µm per level-0 pixel of a file that carries none.

    Returns
    -------
    TileGrid

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from histolatent.tissue.files import write_tile_grid
    >>> image = np.full((256, 256, 3), 245, np.uint8)
    >>> image[:, :128] = (180, 90, 160)                 # the left half is tissue
    >>> folder = Path(tempfile.mkdtemp())
    >>> grid = write_tile_grid(image, folder / "tiles.csv", mpp=8.0, tile_px=64, slide_mpp=4.0,
    ...                        tiles_dir=folder / "tiles")
    >>> len(grid), (folder / "tiles.csv").read_text().splitlines()[1]
    (2, '0,0,8.0,64,1.0000')
    >>> sorted(p.name for p in (folder / "tiles").iterdir())
    ['tile_0_0.png', 'tile_0_128.png']
    """
    mpp = check_mpp(mpp)
    check_output(out, name="out")
    if tiles_dir is not None:
        check_output(tiles_dir, name="tiles_dir", kind="folder")
        if Path(tiles_dir).resolve() == Path(out).resolve().parent:
            raise InputError(f"tiles_dir: {str(tiles_dir)!r} is the folder of the CSV; it is replaced as a whole, "
                             "so give a folder of its own")
    with _opened(slide, slide_mpp) as s:
        grid = tile_grid(s, mpp=mpp, tile_px=tile_px, stride_px=stride_px, min_tissue=min_tissue,
                         mask=load_tissue_mask(s, mask, remove_pen=remove_pen))
        with contextlib.ExitStack() as stack:  # the tiles as a whole, then the CSV: never a CSV without its tiles
            if tiles_dir is not None:
                tmp = stack.enter_context(atomic_folder(tiles_dir, overwrite=True, name="tiles_dir"))
                for i, tile in grid.iter_tiles(s):
                    write_image_atomic(tmp / f"tile_{int(grid.x[i])}_{int(grid.y[i])}.png", tile)
        grid.to_csv(out)
    return grid
