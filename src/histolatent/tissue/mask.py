"""Tissue masks: detected from a thumbnail, or supplied by the user (PNG or GeoJSON).

Detection (:func:`tissue_mask`) works on a low-resolution RGB thumbnail. Background on a
bright-field slide is glass: **bright and unsaturated**. Each pixel gets a tissue score
``max(saturation, 1 - value)`` (HSV), thresholded by Otsu's method (clamped to a sane
range so that an all-tissue or all-glass thumbnail is not split in half), then cleaned
with morphology: closing, filling of small holes and removal of small objects. Very dark pixels
(scanner borders, black ink) are not tissue. Optionally, pen marks are removed by hue:
green, cyan and blue inks sit far from the pink-to-purple hues of H&E.

:class:`TissueMask` pairs the boolean mask with its scale (level-0 pixels per mask pixel)
so that :mod:`histolatent.tissue.grid` can measure the tissue fraction of any tile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from histolatent.errors import InputError
from histolatent.io.image import check_mpp, rgb8_from_any


@dataclass(frozen=True)
class TissueMask:
    """A boolean tissue mask over a whole slide.

    Attributes
    ----------
    mask : numpy.ndarray
        ``(h, w)`` bool, True = tissue.
    level0_dimensions : tuple of int
        ``(W, H)`` of the slide's level 0, in pixels.
    """

    mask: np.ndarray
    level0_dimensions: tuple[int, int]

    def __post_init__(self) -> None:
        m = np.asarray(self.mask)
        if m.ndim != 2 or m.size == 0:
            raise InputError(f"tissue mask: expected a non-empty 2-D array, got shape {m.shape}")
        m = m.astype(bool, copy=True)
        m.flags.writeable = False
        object.__setattr__(self, "mask", m)
        W, H = (int(v) for v in self.level0_dimensions)
        if W < 1 or H < 1:
            raise InputError(f"tissue mask: level-0 dimensions must be positive, got {self.level0_dimensions}")
        object.__setattr__(self, "level0_dimensions", (W, H))

    @property
    def downsample(self) -> tuple[float, float]:
        """Level-0 pixels per mask pixel, ``(sx, sy)``."""
        h, w = self.mask.shape
        W, H = self.level0_dimensions
        return W / w, H / h

    @property
    def tissue_fraction(self) -> float:
        """Fraction of the slide covered by tissue."""
        return float(self.mask.mean())


def hsv_planes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1] of a uint8 RGB image (float32)."""
    x = rgb.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    c = v - x.min(axis=-1)
    s = np.divide(c, v, out=np.zeros_like(v), where=v > 0)
    safe = np.where(c > 0, c, 1.0)
    h = np.where(v == r, ((g - b) / safe) % 6.0, np.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = np.where(c > 0, h * 60.0, 0.0).astype(np.float32)
    return h, s, v


def otsu_threshold(values: np.ndarray, *, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1] (maximises the between-class variance)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return 0.5
    hist, edges = np.histogram(v, bins=bins, range=(0.0, 1.0))
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mu1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[1:][np.argmax(between)])


def pen_mask(rgb: np.ndarray, *, hue_range: tuple[float, float] = (60.0, 245.0),
             min_saturation: float = 0.25) -> np.ndarray:
    """Pixels coloured like pen ink or marking dye (green, cyan, blue), as a bool mask.

    H&E hues lie between purple (about 250-300 degrees) and pink/red (300-360 and 0-20);
    marker inks commonly used on slides are green, cyan or blue: hue in ``hue_range``
    degrees and saturation above ``min_saturation``.
    """
    h, s, _ = hsv_planes(rgb)
    return (h >= hue_range[0]) & (h <= hue_range[1]) & (s >= min_saturation)


def remove_small_objects(mask: np.ndarray, min_px: int) -> np.ndarray:
    """Drop 8-connected components smaller than ``min_px`` pixels (new array)."""
    if min_px <= 1 or not mask.any():
        return mask.copy()
    labels, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_px
    keep[0] = False
    return keep[labels]


def tissue_mask(thumbnail: np.ndarray, *, mpp: float | None = None, remove_pen: bool = False,
                threshold: float | None = None, threshold_range: tuple[float, float] = (0.06, 0.25),
                dark_value: float = 0.1, close_um: float = 10.0, min_object_um2: float = 2.0e4,
                max_hole_um2: float = 2.0e4) -> np.ndarray:
    """Detect tissue in an RGB thumbnail.

    Parameters
    ----------
    thumbnail : numpy.ndarray
        ``(h, w, 3)`` RGB, any input :func:`~histolatent.io.image.rgb8_from_any` accepts
        (RGBA: transparent pixels are glass). Not modified.
    mpp : float, optional
        Microns per thumbnail pixel; sets the morphology sizes in physical units. Without
        it the closing radius is 0.5 % of the longer side and the smallest object 0.05 %
        of the image area.
    remove_pen : bool
        Remove green/cyan/blue pen and dye marks (:func:`pen_mask`), dilated by 2 px.
    threshold : float, optional
        Fixed tissue-score threshold in [0, 1] instead of Otsu's.
    threshold_range : (float, float)
        Otsu's threshold is clamped to this range.
    dark_value : float
        Pixels with HSV value below this (near black) are not tissue.
    close_um : float
        Closing radius (microns) bridging gaps between tissue fragments.
    min_object_um2 : float
        Smallest tissue object kept (square microns); 2e4 um^2 is a disc of 80 um radius.
    max_hole_um2 : float
        Holes enclosed by tissue up to this area (square microns) are filled; larger
        holes (lumina, tears) stay background. ``0`` fills none, ``inf`` fills all.

    Returns
    -------
    numpy.ndarray
        ``(h, w)`` bool, True = tissue.
    """
    rgb = rgb8_from_any(thumbnail, name="thumbnail")
    mpp = check_mpp(mpp, name="tissue_mask: mpp", optional=True)
    h, w = rgb.shape[:2]
    _, s, v = hsv_planes(rgb)
    score = np.maximum(s, 1.0 - v)
    dark = v < dark_value
    if threshold is None:
        candidates = score[~dark]
        t = otsu_threshold(candidates) if candidates.size else threshold_range[1]
        t = float(np.clip(t, *threshold_range))
    else:
        if not 0.0 <= threshold <= 1.0:
            raise InputError(f"threshold must lie in [0, 1], got {threshold}")
        t = float(threshold)
    mask = (score > t) & ~dark
    if remove_pen:
        pen = ndi.binary_dilation(pen_mask(rgb), iterations=2)
        mask &= ~pen
    if mpp is not None:
        radius = int(round(close_um / mpp))
        min_px = int(round(min_object_um2 / mpp**2))
        max_hole_px = max_hole_um2 / mpp**2
    else:
        radius = int(round(0.003 * max(h, w)))
        min_px = int(round(5e-4 * h * w))
        max_hole_px = 5e-4 * h * w
    radius = min(radius, max(1, int(0.02 * max(h, w))))  # a structuring element beyond 2 % is no cleaning
    if radius >= 1:
        disk = _disk(radius)
        padded = np.pad(mask, radius, mode="constant")
        mask = ndi.binary_closing(padded, structure=disk)[radius:-radius, radius:-radius]
    if max_hole_px > 0:
        holes = ndi.binary_fill_holes(mask) & ~mask
        mask = mask | (holes & ~_large(holes, max_hole_px))
    return remove_small_objects(mask, min_px)


def _large(mask: np.ndarray, min_px: float) -> np.ndarray:
    """Components of ``mask`` with at least ``min_px`` pixels."""
    if not mask.any():
        return mask.copy()
    labels, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    big = sizes >= min_px
    big[0] = False
    return big[labels]


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return (xx**2 + yy**2) <= radius**2


def detect_tissue(slide, *, thumbnail_px: int = 2048, **kwargs) -> TissueMask:
    """Tissue mask of a :class:`~histolatent.io.slide.Slide` from its thumbnail.

    Parameters
    ----------
    slide : Slide
    thumbnail_px : int
        Longest side of the thumbnail the mask is computed on.
    **kwargs
        Passed to :func:`tissue_mask` (``remove_pen``, ``threshold``, …).
    """
    thumb = slide.thumbnail(min(int(thumbnail_px), max(slide.dimensions)))  # never enlarge
    mpp = None
    if slide.mpp is not None:
        mpp = slide.mpp * slide.dimensions[0] / thumb.shape[1]
    return TissueMask(tissue_mask(thumb, mpp=mpp, **kwargs), slide.dimensions)


def mask_from_image(path_or_array: str | os.PathLike | np.ndarray,
                    level0_dimensions: tuple[int, int]) -> TissueMask:
    """A user-supplied mask image (PNG/TIFF/array, any size), non-zero = tissue.

    The image is taken to cover the whole slide; its aspect ratio must match the slide's
    within 2 %.
    """
    if isinstance(path_or_array, np.ndarray):
        arr, name = path_or_array, "<array>"
    else:
        from histolatent.io.image import open_image_file

        path = Path(path_or_array)
        name = str(path)
        if not path.is_file():
            raise InputError(f"mask {name!r}: file does not exist")
        with open_image_file(path, what="mask") as im:
            arr = np.asarray(im.convert("L") if im.mode not in ("1", "L", "I;16", "I") else im)
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr.max(axis=-1)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"mask {name!r}: expected a 2-D image, got shape {arr.shape}")
    W, H = level0_dimensions
    ratio_mask, ratio_slide = arr.shape[1] / arr.shape[0], W / H
    if abs(ratio_mask / ratio_slide - 1.0) > 0.02:
        raise InputError(f"mask {name!r}: aspect ratio {arr.shape[1]}x{arr.shape[0]} does not match "
                         f"the slide's {W}x{H}")
    return TissueMask(arr > 0, (W, H))


def mask_from_geojson(path: str | os.PathLike, level0_dimensions: tuple[int, int], *,
                      max_px: int = 4096) -> TissueMask:
    """Rasterise GeoJSON polygons (level-0 coordinates; holes respected) into a mask.

    Parameters
    ----------
    path : path-like
        GeoJSON file (see :func:`histolatent.io.geojson.read_geojson_polygons`).
    level0_dimensions : (int, int)
        The slide's level-0 ``(W, H)``.
    max_px : int
        Longest side of the rasterised mask.
    """
    from skimage.draw import polygon as draw_polygon

    from histolatent.io.geojson import read_geojson_polygons

    W, H = (int(v) for v in level0_dimensions)
    factor = max(W, H) / max_px if max(W, H) > max_px else 1.0
    w, h = max(1, round(W / factor)), max(1, round(H / factor))
    sx, sy = w / W, h / H
    mask = np.zeros((h, w), dtype=bool)
    polygons = read_geojson_polygons(path)
    name = f"mask {str(path)!r}"
    if not polygons:
        raise InputError(f"{name}: no Polygon or MultiPolygon (points and lines outline no tissue)")
    reach = max(float(np.abs(r).max()) for ext, holes in polygons for r in (ext, *holes))
    if reach > 100.0 * max(W, H):
        raise InputError(f"{name}: coordinates reach {reach:.3g}, far off the {W} x {H} px slide; "
                         "expected level-0 pixel coordinates")
    for exterior, holes in polygons:
        fill = np.zeros_like(mask)
        rr, cc = draw_polygon(exterior[:, 1] * sy - 0.5, exterior[:, 0] * sx - 0.5, shape=mask.shape)
        fill[rr, cc] = True
        for hole in holes:
            rr, cc = draw_polygon(hole[:, 1] * sy - 0.5, hole[:, 0] * sx - 0.5, shape=mask.shape)
            fill[rr, cc] = False
        mask |= fill
    if not mask.any():
        raise InputError(f"{name}: the polygons cover no part of the {W} x {H} px slide (off the slide, or of no area)")
    return TissueMask(mask, (W, H))
