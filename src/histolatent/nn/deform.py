"""Elastic deformation of a batch of images (papers/drl_deformation-representation-learning.txt §3.2).

Simard et al. (2003)'s recipe as DRL states it:

1. a random displacement per pixel and axis, ``Δd ~ U(-1, 1)``;
2. convolution (zero padding) with the 2-D Gaussian ``G`` of Eq. 1, standard deviation
   ``σ`` px, then multiplication by ``α`` px;
3. each output pixel ``(i, j)`` is read from the input at ``(i + Δd^y_ij, j + Δd^x_ij)`` by
   bilinear interpolation.

The paper sets ``σ ∈ [0.03 S, 0.05 S]`` and ``α = 2 S``, where ``S = min(W, H)`` is the image
side in pixels (§4.B.1). With a normalised kernel the smoothed field has, away from the
border, the standard deviation ``α / (σ sqrt(12 π))`` px and the lag-one autocorrelation
``exp(-1 / (4 σ²))``: at those settings about 8 px whatever ``S`` is, correlated over a few
percent of the image. ``G`` is applied as two 1-D passes truncated at ``4 σ`` and normalised
to sum 1 (for ``σ >= 1`` px that differs from sampling Eq. 1 by less than 1e-8).

Everything is batched torch on the input's device; each image may have its own ``σ``
(a grouped convolution). Random numbers come from the caller's ``torch.Generator`` (drawn
on the generator's device, so a CPU generator gives the same field on CPU and CUDA) or, with
none, from torch's global generator on the input's device. The bilinear read is written
with gathers in pixel units, so an integer-valued field moves pixels exactly and a zero
field is exactly the identity. Outside the image the input is mirrored (``"reflection"``,
the default: a constant border would be a trivial cue that an image was deformed) or its
edge repeated (``"border"``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from histolatent.errors import InputError

__all__ = ["Padding", "displacement_field", "elastic_deform", "gaussian_smooth", "sigma_px", "warp"]

Padding = Literal["reflection", "border"]
#: The kernel is cut at this many standard deviations (scipy's default).
TRUNCATE = 4.0


def _check_images(x: Tensor, who: str) -> tuple[int, int, int]:
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.dtype.is_floating_point:
        raise InputError(f"{who}: expected a float (N, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    n, _, h, w = x.shape
    if h < 2 or w < 2:
        raise InputError(f"{who}: images must be at least 2 x 2 px, got {h} x {w}")
    return n, h, w


def sigma_px(n: int, size: int, fraction: float | tuple[float, float], *,
             generator: torch.Generator | None = None) -> Tensor:
    """``σ`` in pixels for ``n`` images of side ``S = size``: ``fraction * S``.

    ``fraction`` is one value or a range ``(lo, hi)`` from which each image draws uniformly
    (§4.B.1: ``σ ∈ [0.03 S, 0.05 S]``). Returns ``(n,)`` float32 on the generator's device
    (CPU without one).
    """
    if isinstance(fraction, (int, float)):
        return torch.full((n,), float(fraction) * size)
    lo, hi = (float(v) for v in fraction)
    if not 0 <= lo <= hi:
        raise InputError(f"sigma range {fraction!r}: expected 0 <= lo <= hi")
    device = generator.device if generator is not None else None
    u = torch.rand(n, generator=generator, device=device)
    return (lo + (hi - lo) * u) * size


def _kernels(sigma: Tensor) -> Tensor:
    """Normalised 1-D Gaussians ``(N, 2r + 1)``, one per ``σ`` (px), ``r = ceil(4 max σ)``.

    ``σ = 0`` gives the unit impulse (no smoothing).
    """
    r = max(int(math.ceil(TRUNCATE * float(sigma.max()))), 0)
    t = torch.arange(-r, r + 1, device=sigma.device, dtype=torch.float32)
    s = sigma.float().clamp_min(1e-6)[:, None]
    g = torch.exp(-0.5 * (t[None] / s) ** 2)  # (N, 2r + 1); σ -> 0 leaves only the centre
    return g / g.sum(dim=1, keepdim=True)


def gaussian_smooth(field: Tensor, sigma: Tensor | float) -> Tensor:
    """Convolve each image of ``field (N, K, H, W)`` with the Gaussian of Eq. 1, zero padding.

    ``sigma``: px, one value or ``(N,)`` (one per image). Separable: two grouped 1-D
    convolutions, ``N K`` groups. Returns a new float32 tensor of the same shape.
    """
    n, k, h, w = field.shape
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=field.device).reshape(-1).expand(n)
    g = _kernels(sigma).repeat_interleave(k, dim=0)  # (N K, 2r + 1): the kernel of each (image, axis)
    r = (g.shape[1] - 1) // 2
    u = field.float().reshape(1, n * k, h, w)
    u = F.conv2d(u, g[:, None, :, None], padding=(r, 0), groups=n * k)  # along rows (y)
    u = F.conv2d(u, g[:, None, None, :], padding=(0, r), groups=n * k)  # along columns (x)
    return u.reshape(n, k, h, w)


def displacement_field(n: int, size: tuple[int, int], *, sigma: Tensor | float, alpha: float,
                       generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> Tensor:
    """A random elastic displacement field ``(N, 2, H, W)`` in pixels, channels ``(Δx, Δy)``.

    Uniform ``U(-1, 1)`` per pixel and axis, smoothed by :func:`gaussian_smooth` with
    ``sigma`` (px, scalar or ``(N,)``), times ``alpha`` (px). Drawn on the generator's device
    (or ``device`` with torch's global generator), returned on ``device`` (default: where it
    was drawn).
    """
    h, w = size
    where = generator.device if generator is not None else (device if device is not None else "cpu")
    u = torch.rand((n, 2, h, w), generator=generator, device=where) * 2.0 - 1.0
    out = float(alpha) * gaussian_smooth(u, torch.as_tensor(sigma, device=u.device))
    return out if device is None else out.to(device)


def _reflect(c: Tensor, hi: int) -> Tensor:
    """Mirror coordinates into ``[0, hi]`` about both ends (period ``2 hi``)."""
    period = 2 * hi
    c = torch.remainder(c, period)
    return torch.where(c > hi, period - c, c)


def warp(x: Tensor, field: Tensor, *, padding: Padding = "reflection") -> Tensor:
    """Backward bilinear warp: ``out[..., i, j] = x[..., i + Δy_ij, j + Δx_ij]``.

    ``x (N, C, H, W)`` float, ``field (N, 2, H, W)`` in pixels, channels ``(Δx, Δy)``.
    Differentiable in ``x`` and ``field``. Returns a new tensor of ``x``'s dtype.
    """
    n, h, w = _check_images(x, "warp")
    if field.shape != (n, 2, h, w):
        raise InputError(f"warp: field must be (N, 2, H, W) = {(n, 2, h, w)}, got {tuple(field.shape)}")
    field = field.to(x.device, torch.float32)
    ys = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w)
    cx, cy = xs + field[:, 0], ys + field[:, 1]  # (N, H, W) source coordinates, px
    if padding == "reflection":
        cx, cy = _reflect(cx, w - 1), _reflect(cy, h - 1)
    elif padding == "border":
        cx, cy = cx.clamp(0, w - 1), cy.clamp(0, h - 1)
    else:
        raise InputError(f"warp: padding must be 'reflection' or 'border', got {padding!r}")
    x0f, y0f = cx.floor(), cy.floor()
    fx, fy = cx - x0f, cy - y0f  # (N, H, W) in [0, 1)
    x0 = x0f.long().clamp(0, w - 1)
    y0 = y0f.long().clamp(0, h - 1)
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    flat = x.reshape(n, x.shape[1], h * w)

    def at(yy: Tensor, xx: Tensor) -> Tensor:  # (N, H, W) indices -> (N, C, H, W) values
        idx = (yy * w + xx).reshape(n, 1, h * w).expand(-1, x.shape[1], -1)
        return flat.gather(2, idx).reshape(x.shape)

    fx, fy = fx[:, None].to(x.dtype), fy[:, None].to(x.dtype)
    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


def elastic_deform(x: Tensor, *, sigma: Tensor | float, alpha: float, generator: torch.Generator | None = None,
                   padding: Padding = "reflection") -> tuple[Tensor, Tensor]:
    """Deform each image of ``x (N, C, H, W)`` by its own random elastic field (§3.2).

    ``sigma``: px, scalar or ``(N,)``; ``alpha``: px. Returns ``(deformed, field)``, the
    deformed batch (``x``'s dtype and device) and the field ``(N, 2, H, W)`` in px.

    >>> x = torch.rand(2, 3, 32, 32)
    >>> y, field = elastic_deform(x, sigma=0.04 * 32, alpha=2 * 32, generator=torch.Generator().manual_seed(0))
    >>> y.shape, field.shape
    (torch.Size([2, 3, 32, 32]), torch.Size([2, 2, 32, 32]))
    """
    n, h, w = _check_images(x, "elastic_deform")
    field = displacement_field(n, (h, w), sigma=sigma, alpha=alpha, generator=generator, device=x.device)
    return warp(x, field, padding=padding), field
