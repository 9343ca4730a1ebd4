"""Whole-slide images at a physical scale: :func:`open_slide` -> :class:`Slide`.

One API over three backends:

* **OpenSlide** (openslide-bin): Aperio SVS, Hamamatsu, Leica, MIRAX, Philips, Sakura,
  Trestle, Ventana, Zeiss, DICOM and generic tiled TIFF;
* **tiffslide**: other TIFFs, OME-TIFF and untiled TIFFs;
* :class:`ArraySlide`: PNG/JPEG/BMP files and in-memory arrays, with a user-given ``mpp``.

Users ask for pixels at a physical scale: ``slide.read(x, y, w, h, mpp=0.5)`` returns a
``(h, w, 3)`` uint8 RGB array whose top-left corner is the level-0 pixel ``(x, y)`` and whose
pixels are ``mpp`` microns wide. The reader picks the coarsest pyramid level that is at
least as fine as ``mpp`` and resamples (area averaging when shrinking, bilinear when
enlarging). Pixels outside the slide, and OpenSlide's transparent pixels, are white.

For JPEG-tiled TIFF pages (SVS and most scanner TIFFs) the native tiles are decoded
directly (:mod:`histolatent.io.native_tiles`); a slide switches to that path for a level
only after one tile decoded both ways was found pixel-identical.

Example
-------
>>> import numpy as np
>>> image = np.zeros((600, 800, 3), np.uint8)                  # any slide file works the same way
>>> with open_slide(image, mpp=0.25) as slide:
...     tile = slide.read(100, 200, 256, 128, mpp=0.5)        # x, y in level-0 px; 256 x 128 px at 0.5 µm/px
...     thumb = slide.thumbnail(200)
>>> tile.shape, thumb.shape
((128, 256, 3), (150, 200, 3))
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from histolatent.errors import InputError
from histolatent.io.image import check_mpp, open_image_file, rgb8_from_any

#: File suffixes read as plain images by :class:`ArraySlide`.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})


class Slide(ABC):
    """A pyramid of RGB images with a physical pixel size (abstract base).

    Attributes
    ----------
    path : Path or None
        The file, or None for an in-memory slide.
    dimensions : tuple of int
        Level-0 ``(width, height)`` in pixels.
    level_dimensions : tuple of (int, int)
        ``(width, height)`` of each pyramid level, finest first.
    level_downsamples : tuple of float
        Level-0 pixels per pixel of each level.
    properties : dict
        Backend metadata (vendor keys, objective power, …).
    """

    path: Path | None
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    properties: dict[str, Any]

    def __init__(self, *, mpp: float | None) -> None:
        self._mpp = None if mpp is None else float(mpp)
        self._native: list = []
        self._closed = False

    # -- metadata ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<array>"

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def mpp(self) -> float | None:
        """Microns per level-0 pixel, or None when neither the file nor the caller gave one."""
        return self._mpp

    def require_mpp(self) -> float:
        """The level-0 mpp, or a clear :class:`InputError` when it is unknown."""
        if self._mpp is None:
            raise InputError(f"slide {self.name!r} has no microns-per-pixel in its metadata; "
                             "pass open_slide(path, mpp=...) to read it at a physical scale")
        return self._mpp

    @property
    def native_levels(self) -> list[int]:
        """Levels read through the native-tile fast path."""
        return [i for i, r in enumerate(self._native) if r is not None]

    def native_seconds(self) -> tuple[float, float] | None:
        """Cumulative ``(read_s, decode_s)`` of the native-tile readers, or None without any."""
        readers = [r for r in self._native if r is not None]
        if not readers:
            return None
        return sum(r.read_s for r in readers), sum(r.decode_s for r in readers)

    def best_level(self, downsample: float) -> int:
        """The coarsest level whose downsample is at most ``downsample`` (with 0.1 % slack)."""
        best = 0
        for i, d in enumerate(self.level_downsamples):
            if d <= downsample * 1.001:
                best = i
        return best

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary: path, backend, dimensions, levels, mpp, native levels."""
        return {
            "path": self.name, "backend": type(self).__name__,
            "dimensions": list(self.dimensions), "mpp": self._mpp,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": [float(d) for d in self.level_downsamples],
            "native_tile_levels": self.native_levels,
            "vendor": self.properties.get("openslide.vendor") or self.properties.get("tiffslide.vendor"),
        }

    # -- reading ----------------------------------------------------------------------------
    @abstractmethod
    def _read_backend(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """``(h, w, 3)`` uint8 RGB of level ``level``, level coordinates, white outside."""

    def read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Pixels of one pyramid level, in that level's coordinates.

        Parameters
        ----------
        level : int
            Pyramid level (0 = finest).
        x, y : int
            Top-left corner in pixels of ``level`` (may lie outside the slide).
        w, h : int
            Size in pixels; both >= 1.

        Returns
        -------
        numpy.ndarray
            New ``(h, w, 3)`` uint8 RGB array; white outside the slide.
        """
        self._check_open()
        if not 0 <= level < self.level_count:
            raise InputError(f"slide {self.name!r}: level {level} out of range 0..{self.level_count - 1}")
        w, h = int(w), int(h)
        if w < 1 or h < 1:
            raise InputError(f"slide {self.name!r}: region size must be >= 1, got {w}x{h}")
        reader = self._native[level] if level < len(self._native) else None
        if reader is not None:
            return reader.read(int(x), int(y), w, h)
        return self._read_backend(level, int(x), int(y), w, h)

    def read(self, x: float, y: float, w: int, h: int, *, mpp: float | None = None) -> np.ndarray:
        """A region at a physical scale.

        Parameters
        ----------
        x, y : float
            Top-left corner in level-0 pixels.
        w, h : int
            Output size in pixels (at ``mpp``).
        mpp : float, optional
            Microns per output pixel; None reads level 0 without resampling.

        Returns
        -------
        numpy.ndarray
            New ``(h, w, 3)`` uint8 RGB array. The region covers ``w * mpp / slide.mpp``
            level-0 pixels across; its corner is placed to within half a pixel of the level
            it is read from.
        """
        w, h = int(w), int(h)
        if w < 1 or h < 1:
            raise InputError(f"slide {self.name!r}: region size must be >= 1, got {w}x{h}")
        if mpp is None:
            return self.read_level(0, round(x), round(y), w, h)
        mpp = check_mpp(mpp, name=f"slide {self.name!r}: mpp")
        downsample = mpp / self.require_mpp()
        level = self.best_level(downsample)
        ds = self.level_downsamples[level]
        scale = downsample / ds  # level pixels per output pixel
        xl, yl = x / ds, y / ds
        if abs(scale - 1.0) < 1e-6:
            return self.read_level(level, round(xl), round(yl), w, h)
        x0, y0 = round(xl), round(yl)
        x1, y1 = max(x0 + 1, round(xl + w * scale)), max(y0 + 1, round(yl + h * scale))
        region = self.read_level(level, x0, y0, x1 - x0, y1 - y0)
        return _resize(region, w, h)

    def read_tiles(self, xs: Any, ys: Any, w: int, h: int, *, mpp: float | None = None) -> np.ndarray:
        """Many regions of one size: ``read(x, y, w, h, mpp=mpp)`` for each corner, pixel for pixel.

        The level region that covers all of them is read once (through the native-tile path
        where the slide has one, so each native tile is decoded once), then cut and resampled
        tile by tile exactly as :meth:`read` would. Keep the corners close together (a band
        of a tile grid): the covering region is held in memory.

        Returns
        -------
        numpy.ndarray
            ``(n, h, w, 3)`` uint8.
        """
        xs = np.asarray(xs, dtype=np.float64).reshape(-1)
        ys = np.asarray(ys, dtype=np.float64).reshape(-1)
        w, h = int(w), int(h)
        if w < 1 or h < 1:
            raise InputError(f"slide {self.name!r}: region size must be >= 1, got {w}x{h}")
        out = np.empty((len(xs), h, w, 3), dtype=np.uint8)
        if len(xs) == 0:
            return out
        if mpp is None:
            level, ds, scale = 0, 1.0, 1.0
        else:
            mpp = check_mpp(mpp, name=f"slide {self.name!r}: mpp")
            downsample = mpp / self.require_mpp()
            level = self.best_level(downsample)
            ds = self.level_downsamples[level]
            scale = downsample / ds
        same = mpp is None or abs(scale - 1.0) < 1e-6
        xl, yl = xs / ds, ys / ds
        x0, y0 = np.round(xl).astype(np.int64), np.round(yl).astype(np.int64)
        if same:
            x1, y1 = x0 + w, y0 + h
        else:
            x1 = np.maximum(x0 + 1, np.round(xl + w * scale).astype(np.int64))
            y1 = np.maximum(y0 + 1, np.round(yl + h * scale).astype(np.int64))
        bx, by = int(x0.min()), int(y0.min())
        region = self.read_level(level, bx, by, int(x1.max()) - bx, int(y1.max()) - by)
        for k in range(len(xs)):
            sub = region[y0[k] - by:y1[k] - by, x0[k] - bx:x1[k] - bx]
            out[k] = sub if same else _resize(sub, w, h)
        return out

    def thumbnail(self, max_px: int = 1024) -> np.ndarray:
        """The whole slide, longest side ``max_px`` pixels, read in strips (bounded memory).

        A ``max_px`` above the slide's size gives an enlarged image (bilinear).

        Returns
        -------
        numpy.ndarray
            ``(th, tw, 3)`` uint8; ``self.dimensions[0] / tw`` level-0 pixels per pixel.
        """
        max_px = int(max_px)
        if max_px < 1:
            raise InputError(f"thumbnail max_px must be >= 1, got {max_px}")
        W, H = self.dimensions
        factor = max(W, H) / max_px
        tw, th = max(1, round(W / factor)), max(1, round(H / factor))
        level = self.best_level(max(1.0, factor))
        lw, lh = self.level_dimensions[level]
        out = np.empty((th, tw, 3), dtype=np.uint8)
        # strips of output rows, each mapped to whole rows of the level (about 4 MiB each)
        rows_per_strip = max(1, int(4 * 2**20 / (3 * lw * max(1.0, lh / th))))
        for o0 in range(0, th, rows_per_strip):
            o1 = min(th, o0 + rows_per_strip)
            r0, r1 = round(o0 * lh / th), max(round(o0 * lh / th) + 1, round(o1 * lh / th))
            strip = self.read_level(level, 0, r0, lw, r1 - r0)
            out[o0:o1] = _resize(strip, tw, o1 - o0)
        return out

    # -- lifetime ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise InputError(f"slide {self.name!r} is closed")

    def close(self) -> None:
        for r in self._native:
            if r is not None:
                r.close()
        self._native = []
        self._closed = True

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dimensions={self.dimensions}, mpp={self._mpp})"

    # -- native fast path -------------------------------------------------------------------
    def _enable_native(self, mode: bool | str) -> None:
        """Attach native readers for levels where one tile decodes identically to the backend."""
        if mode is False or self.path is None:
            return
        from histolatent.io.native_tiles import native_readers

        readers = native_readers(self.path, list(self.level_dimensions))
        for level, reader in enumerate(readers):
            if reader is None:
                continue
            # check the middle tile of the level (clipped to the page)
            row, col = reader.n_rows // 2, reader.n_cols // 2
            x, y = col * reader.tile_w, row * reader.tile_h
            w, h = min(reader.tile_w, reader.width - x), min(reader.tile_h, reader.height - y)
            try:
                same = np.array_equal(reader.read(x, y, w, h), self._read_backend(level, x, y, w, h))
            except InputError:
                same = False
            if not same:
                reader.close()
                readers[level] = None
        self._native = readers


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Area averaging when shrinking, bilinear when enlarging (OpenCV)."""
    import cv2

    ih, iw = img.shape[:2]
    if (iw, ih) == (w, h):
        return img
    interp = cv2.INTER_AREA if (w <= iw and h <= ih) else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=interp)
    return out.reshape(h, w, -1) if out.ndim == 2 else out


def _rgba_to_rgb_white(rgba: np.ndarray) -> np.ndarray:
    """OpenSlide's RGBA (un-premultiplied by openslide-python) -> RGB composited on white."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha[..., None].astype(np.float32) / 255.0
    return np.rint(rgb.astype(np.float32) * a + 255.0 * (1.0 - a)).astype(np.uint8)


class OpenSlideSlide(Slide):
    """A slide read through OpenSlide (openslide-bin)."""

    def __init__(self, path: str | os.PathLike, *, mpp: float | None = None,
                 native: bool | str = "auto") -> None:
        import openslide

        self.path = Path(path)
        try:
            self._osr = openslide.OpenSlide(str(self.path))
        except openslide.OpenSlideError as err:
            raise InputError(f"slide {str(self.path)!r}: unreadable or corrupt ({err})") from None
        self.properties = dict(self._osr.properties)
        self.level_dimensions = tuple(tuple(int(v) for v in d) for d in self._osr.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in self._osr.level_downsamples)
        super().__init__(mpp=mpp if mpp is not None else _mpp_from_properties(self.properties, "openslide"))
        self._enable_native(native)

    def _read_backend(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        import openslide

        ds = self.level_downsamples[level]
        try:
            img = self._osr.read_region((round(x * ds), round(y * ds)), level, (w, h))
        except openslide.OpenSlideError as err:
            raise InputError(f"slide {self.name!r}: cannot read level {level} region "
                             f"({x}, {y}, {w}, {h}): truncated or corrupt file ({err})") from None
        return _rgba_to_rgb_white(np.asarray(img))

    def close(self) -> None:
        super().close()
        if getattr(self, "_osr", None) is not None:
            self._osr.close()
            self._osr = None


class TiffSlideSlide(Slide):
    """A slide read through tiffslide (TIFF and OME-TIFF, tiled or not)."""

    def __init__(self, path: str | os.PathLike, *, mpp: float | None = None,
                 native: bool | str = "auto") -> None:
        import tiffslide

        self.path = Path(path)
        try:
            self._ts = tiffslide.TiffSlide(str(self.path))
            dims = self._ts.level_dimensions
        except Exception as err:  # tifffile/tiffslide raise many types
            raise InputError(f"slide {str(self.path)!r}: unreadable or corrupt ({type(err).__name__}: {err})") from None
        self.properties = {k: v for k, v in self._ts.properties.items() if v is not None}
        self.level_dimensions = tuple(tuple(int(v) for v in d) for d in dims)
        self.level_downsamples = tuple(float(d) for d in self._ts.level_downsamples)
        super().__init__(mpp=mpp if mpp is not None else _mpp_from_properties(self.properties, "tiffslide"))
        self._enable_native(native)

    def _read_backend(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        lw, lh = self.level_dimensions[level]
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, lw), min(y + h, lh)
        if x1 <= x0 or y1 <= y0:
            return out
        ds = self.level_downsamples[level]
        try:
            arr = self._ts.read_region((_level0_corner(x0, ds), _level0_corner(y0, ds)), level,
                                       (x1 - x0, y1 - y0), as_array=True)
        except Exception as err:
            raise InputError(f"slide {self.name!r}: cannot read level {level} region "
                             f"({x}, {y}, {w}, {h}): truncated or corrupt file ({type(err).__name__}: {err})") from None
        out[y0 - y:y1 - y, x0 - x:x1 - x] = rgb8_from_any(arr, name=f"slide {self.name!r}")
        return out

    def close(self) -> None:
        super().close()
        if getattr(self, "_ts", None) is not None:
            self._ts.close()
            self._ts = None


def _level0_corner(v: int, ds: float) -> int:
    """The level-0 coordinate that tiffslide maps back to level pixel ``v`` (it truncates
    ``corner / ds``; with a non-integer ``ds``, ``round(v * ds)`` can fall one pixel short)."""
    c = math.ceil(v * ds)
    while int(c / ds) < v:
        c += 1
    return c


class ArraySlide(Slide):
    """A single-level slide over an in-memory image (PNG/JPEG files, numpy arrays).

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` grey, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA; uint8, uint16 or float
        in [0, 1]. A uint8 array is kept as a read-only view (never modified); any other is
        converted once, when the slide opens, under the image-input policy
        (:func:`~histolatent.io.image.rgb8_from_any`: a float image in 0..255 is an error).
        RGBA is composited on white.
    mpp : float, optional
        Microns per pixel. Without it the slide can be read in pixels but not at a
        physical scale.
    path : path-like, optional
        Where the image came from (for messages).
    """

    def __init__(self, image: np.ndarray, *, mpp: float | None = None,
                 path: str | os.PathLike | None = None) -> None:
        arr = np.asarray(image)
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or arr.size == 0:
            raise InputError(f"image {path or '<array>'}: expected HxW, HxWx3 or HxWx4, got shape {arr.shape}")
        mpp = check_mpp(mpp, name=f"image {str(path) if path else '<array>'}: mpp", optional=True)
        if arr.dtype != np.uint8:  # the image-input policy, once, where the array enters (a float in 0..255 is
            arr = rgb8_from_any(arr, name=f"image {str(path) if path else '<array>'}")  # an error, not white)
        view = arr.view()
        view.flags.writeable = False
        self._image = view
        self.path = Path(path) if path is not None else None
        self.properties = {"histolatent.backend": "array"}
        self.level_dimensions = ((int(arr.shape[1]), int(arr.shape[0])),)
        self.level_downsamples = (1.0,)
        super().__init__(mpp=mpp)

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, mpp: float | None = None) -> ArraySlide:
        """Read a PNG/JPEG/BMP file (errors name the file)."""
        path = Path(path)
        with open_image_file(path) as im:
            if im.mode not in ("RGB", "RGBA", "L", "I;16", "I;16B", "I;16L", "LA"):
                im = im.convert("RGB")
            if im.mode == "LA":
                im = im.convert("RGBA")
            arr = np.asarray(im)
        return cls(arr, mpp=mpp, path=path)

    def _read_backend(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        W, H = self.level_dimensions[0]
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x1 > x0 and y1 > y0:
            out[y0 - y:y1 - y, x0 - x:x1 - x] = rgb8_from_any(self._image[y0:y1, x0:x1], name=f"image {self.name!r}")
        return out


def _mpp_from_properties(props: dict[str, Any], prefix: str) -> float | None:
    vals = []
    for axis in ("x", "y"):
        v = props.get(f"{prefix}.mpp-{axis}")
        try:
            f = float(v) if v is not None else float("nan")
        except (TypeError, ValueError):
            f = float("nan")
        if math.isfinite(f) and f > 0:
            vals.append(f)
    return float(np.mean(vals)) if vals else None


def open_slide(source: str | os.PathLike | np.ndarray, *, mpp: float | None = None,
               native: bool | str = "auto") -> Slide:
    """Open a slide file, a plain image file or an array.

    Parameters
    ----------
    source : path-like or numpy.ndarray
        A whole-slide file (any OpenSlide format, TIFF/OME-TIFF), a PNG/JPEG/BMP image,
        or an image array.
    mpp : float, optional
        Microns per level-0 pixel; overrides the file's metadata. Plain images carry none,
        so reads at a physical scale need it.
    native : bool or "auto"
        Use the native JPEG-tile fast path where it gives identical pixels ("auto"), or
        never (False).

    Returns
    -------
    Slide
        Use as a context manager, or call :meth:`Slide.close`.

    Raises
    ------
    InputError
        Missing, empty, unreadable, truncated or corrupt files, and unsupported formats.
    """
    if isinstance(source, np.ndarray):
        return ArraySlide(source, mpp=mpp)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"slide: expected a path or an array, got {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise InputError(f"slide {str(path)!r}: file does not exist")
    if path.is_dir():
        raise InputError(f"slide {str(path)!r}: is a folder, expected a slide file")
    if path.stat().st_size == 0:
        raise InputError(f"slide {str(path)!r}: file is empty")
    mpp = check_mpp(mpp, name=f"slide {str(path)!r}: mpp", optional=True)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ArraySlide.from_file(path, mpp=mpp)

    import openslide

    try:
        fmt = openslide.OpenSlide.detect_format(str(path))
    except openslide.OpenSlideError:
        fmt = None
    if fmt is not None:
        return OpenSlideSlide(path, mpp=mpp, native=native)
    if _looks_like_tiff(path):
        return TiffSlideSlide(path, mpp=mpp, native=native)
    try:
        return ArraySlide.from_file(path, mpp=mpp)
    except InputError:
        raise InputError(f"slide {str(path)!r}: not a supported slide or image format "
                         "(or the file is corrupt)") from None


def _looks_like_tiff(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
