"""Deterministic procedural noise on a global µm coordinate system.

Everything random in a SynthPath world is a pure function of ``(seed, key, lattice
index)`` through an integer hash, never of the order in which things are drawn. So a
tile rendered alone and the same region inside a 50,000 x 50,000 px slide get identical
tissue, and neighbouring slide tiles join without seams.

- :func:`hash_uniform` — vectorised uint32 hash of integer keys -> uniform [0, 1).
- :class:`Grid` and :class:`Points` — where a field is evaluated: a pixel grid (window
  origin in µm + mpp) or scattered points (nucleus centres). The same field code runs on
  both, so the tissue class a nucleus sees equals the one drawn under it.
- :func:`value_noise` / :func:`fbm` — smooth value noise (smoothstep-interpolated lattice
  values in [-1, 1]) and its fractal sum. On a grid the interpolation is separable, so a
  field is two small matrix products ``Wy @ V @ Wx.T`` (exact, any origin, any mpp).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)
_GOLD = np.uint32(0x9E3779B1)


def seed32(*keys: int) -> int:
    """A 32-bit key derived from arbitrary (non-negative or negative) Python ints."""
    ints = [int(k) & 0xFFFFFFFFFFFFFFFF for k in keys]
    return int(np.random.SeedSequence(ints).generate_state(1, dtype=np.uint32)[0])


def _mix(x: np.ndarray) -> np.ndarray:
    """lowbias32 integer finaliser (uint32 in, uint32 out, wrapping arithmetic)."""
    x = x ^ (x >> np.uint32(16))
    x = x * _M1
    x = x ^ (x >> np.uint32(15))
    x = x * _M2
    return x ^ (x >> np.uint32(16))


def hash_u32(key: int, *coords: np.ndarray) -> np.ndarray:
    """uint32 hash of ``key`` and broadcastable integer coordinate arrays."""
    with np.errstate(over="ignore"):  # wrapping uint32 arithmetic is the point
        return _hash_u32(key, *coords)


def _hash_u32(key: int, *coords: np.ndarray) -> np.ndarray:
    h = np.uint32(key & 0xFFFFFFFF)
    out = None
    for c in coords:
        c = np.asarray(c).astype(np.int64).astype(np.uint32)
        base = h if out is None else out
        out = _mix(base ^ (c * _GOLD + np.uint32(0x632BE5AB)))
    if out is None:
        return _mix(np.asarray(h, dtype=np.uint32))
    return out


def hash_uniform(key: int, *coords: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) float64 from a hash of ``key`` and integer coordinates."""
    return (hash_u32(key, *coords) >> np.uint32(8)).astype(np.float64) * (1.0 / (1 << 24))


def hash_normal(key: int, *coords: np.ndarray) -> np.ndarray:
    """Standard normal values (Box–Muller on two hashed uniforms)."""
    u1 = hash_uniform(key, *coords, 0)
    u2 = hash_uniform(key, *coords, 1)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


@dataclass(frozen=True)
class Grid:
    """A pixel grid: pixel ``(i, j)`` has its centre at ``(x0 + (j + 0.5) mpp, y0 + (i + 0.5) mpp)`` µm."""

    x0: float
    y0: float
    width: int
    height: int
    mpp: float

    @property
    def xs(self) -> np.ndarray:
        return self.x0 + (np.arange(self.width) + 0.5) * self.mpp

    @property
    def ys(self) -> np.ndarray:
        return self.y0 + (np.arange(self.height) + 0.5) * self.mpp

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)


@dataclass(frozen=True)
class Points:
    """Scattered points in µm (1-D arrays of equal length)."""

    x: np.ndarray
    y: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return np.shape(self.x)


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def _interp_matrix(coords: np.ndarray, cell: float) -> tuple[np.ndarray, int]:
    """Dense (len(coords), n_lattice) smoothstep interpolation weights and first lattice index."""
    g = coords / cell
    i0 = np.floor(g)
    t = _fade(g - i0).astype(np.float32)
    first = int(i0.min())
    n = int(i0.max()) - first + 2
    w = np.zeros((len(coords), n), dtype=np.float32)
    rows = np.arange(len(coords))
    k = (i0 - first).astype(np.int64)
    w[rows, k] = 1.0 - t
    w[rows, k + 1] = t
    return w, first


def value_noise(key: int, where: Grid | Points, cell_um: float) -> np.ndarray:
    """Smooth value noise in [-1, 1] with lattice spacing ``cell_um`` (float32 on grids).

    On a :class:`Grid` the result has shape ``(height, width)``; on :class:`Points`, the
    points' shape. Both evaluate the same continuous function of position.
    """
    if isinstance(where, Grid):
        wx, fx = _interp_matrix(where.xs, cell_um)
        wy, fy = _interp_matrix(where.ys, cell_um)
        iy = np.arange(fy, fy + wy.shape[1])[:, None]
        ix = np.arange(fx, fx + wx.shape[1])[None, :]
        v = (hash_uniform(key, iy, ix) * 2.0 - 1.0).astype(np.float32)
        return (wy @ v) @ wx.T
    gx = np.asarray(where.x, dtype=np.float64) / cell_um
    gy = np.asarray(where.y, dtype=np.float64) / cell_um
    ix, iy = np.floor(gx), np.floor(gy)
    tx, ty = _fade(gx - ix), _fade(gy - iy)
    ix, iy = ix.astype(np.int64), iy.astype(np.int64)

    def corner(dy: int, dx: int) -> np.ndarray:
        return hash_uniform(key, iy + dy, ix + dx) * 2.0 - 1.0

    top = corner(0, 0) * (1 - tx) + corner(0, 1) * tx
    bottom = corner(1, 0) * (1 - tx) + corner(1, 1) * tx
    return top * (1 - ty) + bottom * ty


def fbm(key: int, where: Grid | Points, cell_um: float, octaves: int = 3, gain: float = 0.5) -> np.ndarray:
    """Fractal sum of ``octaves`` value-noise layers (cells ``cell_um / 2**o``), normalised to ~unit amplitude.

    Layers of one field are summed inside a single pair of matrix products on grids.
    """
    amps = gain ** np.arange(octaves)
    amps = amps / amps.sum()
    if isinstance(where, Grid) and octaves > 1:
        wys, wxs = [], []
        for o in range(octaves):
            cell = cell_um / 2**o
            wx, fx = _interp_matrix(where.xs, cell)
            wy, fy = _interp_matrix(where.ys, cell)
            iy = np.arange(fy, fy + wy.shape[1])[:, None]
            ix = np.arange(fx, fx + wx.shape[1])[None, :]
            v = (hash_uniform(seed32(key, o), iy, ix) * 2.0 - 1.0).astype(np.float32) * np.float32(amps[o])
            wys.append(wy @ v)
            wxs.append(wx)
        return np.concatenate(wys, axis=1) @ np.concatenate(wxs, axis=1).T
    out = None
    for o in range(octaves):
        layer = value_noise(seed32(key, o), where, cell_um / 2**o) * amps[o]
        out = layer if out is None else out + layer
    return out


def fine_noise(key: int, grid: Grid, cell_um: float) -> np.ndarray:
    """Value noise with a small lattice (texture scale, ~1 µm), bicubic-resampled with OpenCV.

    Cheaper than :func:`value_noise` for lattices close to the pixel size; still a pure
    function of position, so slide tiles agree across their borders.
    """
    fx = int(np.floor(grid.x0 / cell_um)) - 2
    fy = int(np.floor(grid.y0 / cell_um)) - 2
    nx = int(np.ceil(grid.width * grid.mpp / cell_um)) + 6
    ny = int(np.ceil(grid.height * grid.mpp / cell_um)) + 6
    v = (hash_uniform(key, np.arange(fy, fy + ny)[:, None], np.arange(fx, fx + nx)[None, :]) * 2.0 - 1.0)
    v = v.astype(np.float32)
    s = grid.mpp / cell_um
    # dst (j, i) -> lattice coordinate of the pixel centre, relative to the first lattice point
    m = np.array([[s, 0.0, (grid.x0 + 0.5 * grid.mpp) / cell_um - fx],
                  [0.0, s, (grid.y0 + 0.5 * grid.mpp) / cell_um - fy]], dtype=np.float64)
    return cv2.warpAffine(v, m, (grid.width, grid.height), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


@lru_cache(maxsize=8)
def fbm_quantiles(octaves: int = 3, gain: float = 0.5) -> np.ndarray:
    """Quantiles (0..1 in 201 steps) of :func:`fbm` values, to turn area fractions into thresholds."""
    g = Grid(0.0, 0.0, 400, 400, 1.0)
    v = fbm(seed32(12345, octaves), g, 20.0, octaves=octaves, gain=gain)
    return np.quantile(v, np.linspace(0.0, 1.0, 201)).astype(np.float64)


def threshold_for_fraction(fraction: float, octaves: int = 3) -> float:
    """The fbm level exceeded on about ``fraction`` of the area."""
    q = fbm_quantiles(octaves)
    f = float(np.clip(fraction, 0.0, 1.0))
    if f <= 0.0:
        return 10.0
    if f >= 1.0:
        return -10.0
    return float(np.interp(1.0 - f, np.linspace(0.0, 1.0, 201), q))


def ramp(v: np.ndarray, level: float | np.ndarray, width: float) -> np.ndarray:
    """Soft step: 0 below ``level - width/2``, 1 above ``level + width/2``, linear between."""
    out = (v - level) * (1.0 / width) + 0.5
    return np.clip(out, 0.0, 1.0, out=out) if isinstance(out, np.ndarray) else np.clip(out, 0.0, 1.0)
