"""Fast path for JPEG-tiled TIFF pyramids (SVS and friends): decode the native tiles directly.

OpenSlide and tiffslide decode a slide's JPEG tiles one ``read_region`` at a time, through
premultiplied-ARGB conversion and Python image objects. For the commonest case, a tiled
TIFF page whose tiles are baseline JPEG, reading the compressed bytes with ``os.pread`` and
decoding them with libjpeg-turbo (imagecodecs) is several times faster and gives the very
same pixels, provided the colourspace is right: Aperio writes its tiles as **RGB** JPEG
(TIFF photometric 2) without an Adobe marker, so a decoder left to guess would treat them
as YCbCr and shift every colour.

:class:`NativeTileReader` reads one page (one pyramid level). :func:`native_readers`
finds the page for each level of an opened slide. Whether the fast path is *used* is
decided by :class:`histolatent.io.slide.Slide`, which checks one tile per level against
the backend (OpenSlide or tiffslide) and only switches when the pixels are identical.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from histolatent.errors import InputError

#: TIFF compression codes that this reader decodes (7 = JPEG, "new-style").
_JPEG = 7
#: TIFF photometric interpretations: 2 = RGB, 6 = YCbCr.
_RGB, _YCBCR = 2, 6


class NativeTileReader:
    """Decode the JPEG tiles of one tiled TIFF page, with a small LRU cache of decoded tiles.

    Parameters
    ----------
    path : path-like
        The TIFF/SVS file.
    page_index : int
        Index of the page (IFD) in ``tifffile.TiffFile(path).pages``.
    cache_tiles : int
        How many decoded tiles to keep (LRU). Reading a grid of tiles that straddle the
        native tile boundaries then decodes each native tile about once. A 240 x 240 RGB
        tile is 169 KiB, so the default holds about 11 MiB.

    Notes
    -----
    Pixels outside the page, and tiles that the file marks as missing (byte count 0), are
    white (255), which is how :class:`~histolatent.io.slide.Slide` renders OpenSlide's
    transparent pixels.
    """

    def __init__(self, path: str | os.PathLike, page_index: int, *, cache_tiles: int = 64) -> None:
        import tifffile

        self.path = Path(path)
        with tifffile.TiffFile(self.path) as tif:
            page = tif.pages[page_index]
            if not supports_page(page):
                raise InputError(f"{self.path}: page {page_index} is not a tiled 8-bit RGB JPEG page")
            self.width = int(page.imagewidth)
            self.height = int(page.imagelength)
            self.tile_w = int(page.tilewidth)
            self.tile_h = int(page.tilelength)
            self.offsets = np.asarray(page.dataoffsets, dtype=np.int64)
            self.counts = np.asarray(page.databytecounts, dtype=np.int64)
            self.tables = page.jpegtables
            self.photometric = int(page.photometric)
        self.n_cols = -(-self.width // self.tile_w)
        self.n_rows = -(-self.height // self.tile_h)
        if len(self.offsets) < self.n_cols * self.n_rows:
            raise InputError(f"{self.path}: page {page_index} lists {len(self.offsets)} tiles, "
                             f"expected {self.n_cols * self.n_rows}")
        size = self.path.stat().st_size
        end = int((self.offsets + self.counts).max()) if len(self.offsets) else 0
        if end > size:
            raise InputError(f"{self.path}: file is truncated: page {page_index} needs {end} bytes, "
                             f"the file has {size}")
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_tiles = max(0, int(cache_tiles))
        self._lock = threading.Lock()
        self._fd: int | None = os.open(self.path, os.O_RDONLY)
        #: Seconds spent reading compressed bytes and decoding them (cumulative, for stage timings).
        self.read_s = 0.0
        self.decode_s = 0.0

    # -- tiles ------------------------------------------------------------------------------
    def _decode(self, index: int) -> np.ndarray | None:
        import imagecodecs

        count = int(self.counts[index])
        if count == 0:
            return None
        if self._fd is None:
            raise InputError(f"{self.path}: slide is closed")
        t0 = time.perf_counter()
        data = os.pread(self._fd, count, int(self.offsets[index]))
        t1 = time.perf_counter()
        self.read_s += t1 - t0
        if len(data) != count:
            raise InputError(f"{self.path}: file is truncated at tile {index}")
        try:
            if self.photometric == _RGB:
                tile = imagecodecs.jpeg8_decode(data, tables=self.tables, colorspace="RGB",
                                                outcolorspace="RGB")
            else:
                tile = imagecodecs.jpeg8_decode(data, tables=self.tables)
        except Exception as err:  # imagecodecs raises its own error types
            raise InputError(f"{self.path}: corrupt JPEG tile {index}: {err}") from None
        finally:
            self.decode_s += time.perf_counter() - t1
        if tile.ndim != 3 or tile.shape[2] != 3:
            raise InputError(f"{self.path}: tile {index} decoded to shape {tile.shape}, expected RGB")
        return tile

    def tile(self, row: int, col: int) -> np.ndarray | None:
        """Decoded tile ``(tile_h, tile_w, 3)`` uint8 (read-only, cached), or None if missing."""
        index = row * self.n_cols + col
        with self._lock:
            hit = self._cache.get(index)
            if hit is not None:
                self._cache.move_to_end(index)
                return hit
        tile = self._decode(index)
        if tile is not None:
            tile.flags.writeable = False
        if self._cache_tiles:
            with self._lock:
                self._cache[index] = tile
                while len(self._cache) > self._cache_tiles:
                    self._cache.popitem(last=False)
        return tile

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Pixels ``[y, y+h) x [x, x+w)`` of this page as a new ``(h, w, 3)`` uint8 array."""
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x1 <= x0 or y1 <= y0:
            return out
        for row in range(y0 // self.tile_h, (y1 - 1) // self.tile_h + 1):
            ty = row * self.tile_h
            sy0, sy1 = max(y0, ty), min(y1, ty + self.tile_h)
            for col in range(x0 // self.tile_w, (x1 - 1) // self.tile_w + 1):
                tile = self.tile(row, col)
                if tile is None:
                    continue
                tx = col * self.tile_w
                sx0, sx1 = max(x0, tx), min(x1, tx + self.tile_w)
                out[sy0 - y:sy1 - y, sx0 - x:sx1 - x] = tile[sy0 - ty:sy1 - ty, sx0 - tx:sx1 - tx]
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._cache.clear()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def supports_page(page) -> bool:
    """Whether a ``tifffile.TiffPage`` is a tiled, 8-bit, 3-sample, JPEG page this reader decodes."""
    try:
        return (bool(page.is_tiled) and int(page.compression) == _JPEG
                and int(page.photometric) in (_RGB, _YCBCR) and int(page.samplesperpixel) == 3
                and int(page.bitspersample) == 8 and int(page.planarconfig) == 1
                and int(page.tiledepth) == 1)
    except (AttributeError, TypeError, ValueError):
        return False


def native_readers(path: str | os.PathLike, level_dimensions: list[tuple[int, int]],
                   *, cache_tiles: int = 64) -> list[NativeTileReader | None]:
    """One :class:`NativeTileReader` per level whose page is a JPEG-tiled page, else None.

    A level is matched to the page of the file's first series with the same width and
    height. Files that tifffile cannot parse (MIRAX, DICOM folders, …) give all None.
    """
    import tifffile

    out: list[NativeTileReader | None] = [None] * len(level_dimensions)
    try:
        with tifffile.TiffFile(path) as tif:
            by_size: dict[tuple[int, int], list[int]] = {}
            for i, page in enumerate(tif.pages):
                if supports_page(page):
                    by_size.setdefault((int(page.imagewidth), int(page.imagelength)), []).append(i)
    except Exception:  # not a TIFF, or one tifffile cannot parse: no fast path
        return out
    for level, dims in enumerate(level_dimensions):
        pages = by_size.get((int(dims[0]), int(dims[1])), [])
        if len(pages) == 1:
            out[level] = NativeTileReader(path, pages[0], cache_tiles=cache_tiles)
    return out
