"""Compressed slides with ground truth: grids of codes with a lesion of known place and size.

A stand-in for a cohort compressed by NIC (a ``(C, H, W)`` grid per slide, background 0),
cheap enough to train slide-level models on a CPU in seconds, with every answer known:

* **tissue**: the union of a few random ellipses in an ``H x W`` grid (sides drawn per slide
  between 3/4 of ``size`` and ``size``, so grids differ and are rarely square);
* **codes**: on tissue, ``N(0, 1)`` in every channel (the codes of normal tissue);
* **lesion** (present with probability ``p_lesion``): a disc of tissue cells whose codes are
  shifted by ``strength`` along one fixed unit direction of code space (a "tumour code");
* **labels**: ``label`` = lesion present (the Camelyon16-like task) and ``lesion_fraction``
  = lesion cells / tissue cells (a score for regression).

The lesion mask at grid resolution is the ground truth of saliency and attention maps.

Example
-------
>>> s = grid_slide(3, size=(12, 16), channels=4, lesion=True)
>>> s.grid.shape[0], s.label, bool(s.lesion[~s.mask].any()), s.lesion_fraction > 0
(4, 1, False, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histolatent.errors import InputError
from histolatent.synth.noise import seed32

__all__ = ["GridSlide", "grid_slide", "lesion_direction"]


@dataclass(frozen=True)
class GridSlide:
    """One synthetic compressed slide.

    Attributes
    ----------
    grid : (C, H, W) float32
        Codes; 0 on background.
    mask : (H, W) bool
        Tissue cells.
    lesion : (H, W) bool
        Lesion cells (a subset of ``mask``).
    label : int
        1 if the slide has a lesion.
    lesion_fraction : float
        Lesion cells / tissue cells.
    seed : int
    """

    grid: np.ndarray
    mask: np.ndarray
    lesion: np.ndarray
    label: int
    lesion_fraction: float
    seed: int


def lesion_direction(channels: int) -> np.ndarray:
    """The unit code direction of lesion cells (fixed for a code size: one cohort, one tumour code)."""
    v = np.random.default_rng(seed32(int(channels), 0x7E5)).normal(size=int(channels))
    return (v / np.linalg.norm(v)).astype(np.float32)


def _ellipses(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), bool)
    for _ in range(n):
        cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
        ry, rx = rng.uniform(0.2, 0.45) * h, rng.uniform(0.2, 0.45) * w
        t = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u, v = dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)
        mask |= (u / rx) ** 2 + (v / ry) ** 2 <= 1
    return mask


def grid_slide(seed: int, *, size: tuple[int, int] = (48, 64), channels: int = 16, lesion: bool | None = None,
               p_lesion: float = 0.5, strength: float = 2.0, radius: tuple[float, float] = (0.1, 0.25)
               ) -> GridSlide:
    """One synthetic compressed slide (module docstring); a pure function of its arguments.

    Parameters
    ----------
    seed : int
    size : (H, W)
        Largest grid; each side is drawn in ``[3/4 size, size]``.
    channels : int
        C.
    lesion : bool, optional
        Force a lesion (True) or none (False); None draws one with probability ``p_lesion``.
    strength : float
        Shift of lesion codes along :func:`lesion_direction`, in units of the noise SD.
    radius : (lo, hi)
        Lesion radius as fractions of the grid's shorter side.
    """
    h0, w0 = (int(v) for v in size)
    if h0 < 4 or w0 < 4 or int(channels) < 1:
        raise InputError(f"size: expected at least 4 x 4 cells and channels >= 1, got {size}, {channels}")
    rng = np.random.default_rng(seed32(int(seed), 0x6D1D))
    h, w = int(rng.integers(-(-3 * h0 // 4), h0 + 1)), int(rng.integers(-(-3 * w0 // 4), w0 + 1))
    mask = _ellipses(rng, h, w, int(rng.integers(1, 4)))
    has = bool(rng.random() < p_lesion) if lesion is None else bool(lesion)
    les = np.zeros((h, w), bool)
    if has:
        cells = np.argwhere(mask)
        cy, cx = cells[rng.integers(len(cells))]
        r = rng.uniform(*radius) * min(h, w)
        yy, xx = np.mgrid[:h, :w]
        les = mask & ((yy - cy) ** 2 + (xx - cx) ** 2 <= max(r, 1.0) ** 2)
    grid = rng.normal(size=(int(channels), h, w)).astype(np.float32)
    grid += float(strength) * lesion_direction(channels)[:, None, None] * les
    grid *= mask
    return GridSlide(grid=grid, mask=mask, lesion=les, label=int(has),
                     lesion_fraction=float(les.sum() / mask.sum()), seed=int(seed))
