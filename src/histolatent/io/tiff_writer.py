"""Pyramidal tiled TIFF writer, tile by tile, with memory that does not grow with the image.

The file is a generic tiled pyramidal TIFF (OpenSlide's "generic-tiff", also read by
tiffslide and tifffile): each level is a tiled IFD, level 0 first, every later level half
the size of the one before (``NewSubfileType`` = reduced image), JPEG-compressed (YCbCr
4:2:0 by default, like most scanners), with X/YResolution in pixels per centimetre so that
readers report ``mpp``. BigTIFF is used when the uncompressed image would pass 2 GiB.

Level 0 is pulled from a callable ``read(x, y, w, h) -> (h, w, 3) uint8`` one tile at a
time (or from an in-memory array). While a level is written, each of its tiles is
downsampled 2x2 into a block of the next level and kept in a temporary file (raw blocks
of ``tile_px / 2``), so that no level is ever held in memory: peak memory is a few tiles.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from histolatent.errors import InputError
from histolatent.io.atomic import atomic_path, temp_prefix
from histolatent.io.image import check_mpp

TileReader = Callable[[int, int, int, int], np.ndarray]


class _BlockStore:
    """A level kept on disk as raw blocks of ``b x b x 3`` bytes (row-major block grid)."""

    def __init__(self, folder: str, width: int, height: int, block: int, channels: int) -> None:
        self.width, self.height, self.block, self.channels = width, height, block, channels
        self.nbx = -(-width // block)
        self.nby = -(-height // block)
        self.nbytes = block * block * channels
        fd, self.path = tempfile.mkstemp(prefix="level-", suffix=".raw", dir=folder)
        self.fd = fd
        os.ftruncate(fd, self.nbx * self.nby * self.nbytes)

    def put(self, bx: int, by: int, arr: np.ndarray) -> None:
        if bx >= self.nbx or by >= self.nby:
            return
        os.pwrite(self.fd, np.ascontiguousarray(arr, dtype=np.uint8).tobytes(), (by * self.nbx + bx) * self.nbytes)

    def get(self, bx: int, by: int) -> np.ndarray | None:
        if bx >= self.nbx or by >= self.nby:
            return None
        buf = os.pread(self.fd, self.nbytes, (by * self.nbx + bx) * self.nbytes)
        return np.frombuffer(buf, dtype=np.uint8).reshape(self.block, self.block, self.channels)

    def tile(self, tx: int, ty: int, tile_px: int, fill: int) -> np.ndarray:
        """Tile ``(tx, ty)`` of side ``tile_px`` = 2 x 2 blocks; outside the level: ``fill``."""
        out = np.full((tile_px, tile_px, self.channels), fill, dtype=np.uint8)
        b = self.block
        for j in range(2):
            for i in range(2):
                blk = self.get(2 * tx + i, 2 * ty + j)
                if blk is not None:
                    out[j * b:(j + 1) * b, i * b:(i + 1) * b] = blk
        # pixels beyond the level's size are padding
        h = min(tile_px, self.height - ty * tile_px)
        w = min(tile_px, self.width - tx * tile_px)
        out[h:, :] = fill
        out[:, w:] = fill
        return out

    def close(self) -> None:
        os.close(self.fd)
        os.unlink(self.path)


def level_sizes(width: int, height: int, tile_px: int, levels: int | None = None) -> list[tuple[int, int]]:
    """Sizes of the pyramid levels: halve until the level fits in one tile (or ``levels`` given)."""
    sizes = [(width, height)]
    while True:
        w, h = sizes[-1]
        if levels is not None and len(sizes) >= levels:
            break
        if levels is None and max(w, h) <= tile_px:
            break
        if min(w, h) < 2:
            break
        sizes.append((w // 2, h // 2))
    return sizes


def write_pyramidal_tiff(path: str | os.PathLike, source: TileReader | np.ndarray, *, size: tuple[int, int] | None = None,
                         mpp: float = 0.5, tile_px: int = 512, levels: int | None = None, quality: int = 90,
                         compression: str = "jpeg", fill: int = 255, description: str | None = None,
                         progress: Callable[[int, int], None] | None = None, bigtiff: bool | None = None,
                         tmp_dir: str | os.PathLike | None = None) -> Path:
    """Write a tiled pyramidal TIFF, level 0 pulled tile by tile from ``source``.

    Parameters
    ----------
    path : path-like
        Output file (written to a temporary name and renamed: atomic).
    source : callable or ndarray
        ``read(x, y, w, h) -> (h, w, 3) uint8`` for level-0 regions (called once per tile,
        in row-major order), or an (H, W, 3) uint8 array.
    size : (width, height)
        Level-0 size in px; required when ``source`` is a callable.
    mpp : float
        Microns per pixel of level 0 (level k: ``mpp * 2**k``), stored as resolution tags.
    tile_px : int
        Tile side, a multiple of 16.
    levels : int, optional
        Number of levels (default: halve until a level fits in one tile).
    quality : int
        JPEG quality (1–100).
    compression : {"jpeg", "deflate", "none"}
        Tile compression. OpenSlide reads all three.
    fill : int
        Grey level of the padding of edge tiles.
    progress : callable, optional
        ``progress(done_tiles, total_tiles)`` after each tile of every level.
    bigtiff : bool, optional
        Force (or forbid) BigTIFF; default: when the uncompressed pixels exceed 2 GiB.
    tmp_dir : path-like, optional
        Where the scratch copies of the lower levels go (default: beside ``path``, named as a
        temporary of this process, so a killed run's are removed by the next run there).

    Returns
    -------
    Path
    """
    import tifffile

    if isinstance(source, np.ndarray):
        arr = source
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise InputError(f"source: expected an (H, W, 3) uint8 array, got {arr.shape} {arr.dtype}")
        if size is not None and tuple(size) != (arr.shape[1], arr.shape[0]):
            raise InputError(f"size: {size} does not match the array's (width, height) {(arr.shape[1], arr.shape[0])}")
        size = (arr.shape[1], arr.shape[0])

        def read(x: int, y: int, w: int, h: int) -> np.ndarray:
            return arr[y:y + h, x:x + w]
    elif callable(source):
        read = source
        if size is None:
            raise InputError("size: required (width, height) when source is a callable")
    else:
        raise InputError(f"source: expected a callable or an ndarray, got {type(source).__name__}")
    width, height = (int(v) for v in size)
    if width < 1 or height < 1:
        raise InputError(f"size: expected positive (width, height), got {size}")
    if tile_px < 16 or tile_px % 16:
        raise InputError(f"tile_px: expected a multiple of 16 (>= 16), got {tile_px}")
    mpp = check_mpp(mpp)
    if compression not in ("jpeg", "deflate", "none"):
        raise InputError(f"compression: expected 'jpeg', 'deflate' or 'none', got {compression!r}")
    if not (1 <= int(quality) <= 100):
        raise InputError(f"quality: expected 1..100, got {quality}")
    sizes = level_sizes(width, height, tile_px, levels)
    total = sum(-(-w // tile_px) * -(-h // tile_px) for w, h in sizes)
    if bigtiff is None:
        bigtiff = width * height * 3 > 2**31
    comp: dict = {"compression": None}
    if compression == "jpeg":
        comp = {"compression": "jpeg", "compressionargs": {"level": int(quality)}}
    elif compression == "deflate":
        comp = {"compression": "zlib", "compressionargs": {"level": 6}}
    done = [0]
    block = tile_px // 2

    def tiles(level: int, store_in: _BlockStore | None, store_out: _BlockStore | None) -> Iterator[np.ndarray]:
        w, h = sizes[level]
        for ty in range(-(-h // tile_px)):
            for tx in range(-(-w // tile_px)):
                if store_in is None:
                    x, y = tx * tile_px, ty * tile_px
                    tw, th = min(tile_px, w - x), min(tile_px, h - y)
                    region = np.asarray(read(x, y, tw, th))
                    if region.shape != (th, tw, 3) or region.dtype != np.uint8:
                        raise InputError(f"source: read({x}, {y}, {tw}, {th}) returned {region.shape} "
                                         f"{region.dtype}, expected ({th}, {tw}, 3) uint8")
                    tile = np.full((tile_px, tile_px, 3), fill, dtype=np.uint8)
                    tile[:th, :tw] = region
                else:
                    tile = store_in.tile(tx, ty, tile_px, fill)
                if store_out is not None:
                    store_out.put(tx, ty, cv2.resize(tile, (block, block), interpolation=cv2.INTER_AREA))
                done[0] += 1
                if progress is not None:
                    progress(done[0], total)
                yield tile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the scratch levels live beside the output (or in tmp_dir) under a temporary's name, so that a
    # killed writer's are removed by the next run there (io.atomic.remove_stale_temps)
    with tempfile.TemporaryDirectory(prefix=temp_prefix(path), suffix=".tmp",
                                     dir=tmp_dir if tmp_dir is not None else path.parent) as tmp, \
            atomic_path(path) as tmp_path, tifffile.TiffWriter(tmp_path, bigtiff=bigtiff) as tif:
        store_in: _BlockStore | None = None
        try:
            for level, (w, h) in enumerate(sizes):
                store_out = None
                if level + 1 < len(sizes):
                    store_out = _BlockStore(tmp, sizes[level + 1][0], sizes[level + 1][1], block, 3)
                res = 1e4 / (float(mpp) * 2**level)  # pixels per centimetre
                tif.write(tiles(level, store_in, store_out), shape=(h, w, 3), dtype=np.uint8,
                          tile=(tile_px, tile_px), photometric="rgb", resolution=(res, res),
                          resolutionunit="CENTIMETER", subfiletype=0 if level == 0 else 1,
                          description=description if level == 0 else None, metadata=None, maxworkers=1,
                          software="histolatent", **comp)
                if store_in is not None:
                    store_in.close()
                store_in = store_out
        finally:
            if store_in is not None:
                store_in.close()
    return path


def read_level_tiles(path: str | os.PathLike, level: int = 0) -> np.ndarray:
    """Decode one level of a TIFF written here with tifffile (the JPEG-decoded pixels)."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        return tf.pages[level].asarray()
