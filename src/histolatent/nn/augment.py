"""Batched, seeded image augmentation in torch: rotation, zoom, elastic deformation,
brightness, contrast, Gaussian noise (and stain colour through :class:`histolatent.stain.augment.StainAugment`).

The "heavy" augmentation of papers/nic_neural-image-compression.txt §2.2 (after Tellez et al.
2018/2019), shared with later methods (DRL). Every random number comes from the caller's
``torch.Generator``; the same generator state gives the same output on CPU. Geometry
(rotation, zoom, elastic field) is folded into one sampling grid, so each image is
interpolated once (bilinear, reflection padding). Images are ``(N, C, H, W)`` float in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from histolatent.config import Config
from histolatent.errors import InputError

__all__ = ["AugmentConfig", "augment", "elastic_field", "geometric", "photometric", "warp"]


class AugmentConfig(Config):
    """Strengths of the NIC augmentation (0 switches a transform off)."""

    rotate: bool = True  # uniform angle in [0, 2 pi) (plus a random mirror)
    zoom: float = Field(0.2, ge=0, lt=1, description="scale ~ U(1 - zoom, 1 + zoom)")
    elastic_alpha: float = Field(0.04, ge=0, description="displacement std, fraction of the image side")
    elastic_grid: int = Field(4, ge=2, description="control points a side of the smooth field")
    brightness: float = Field(0.1, ge=0, description="additive shift ~ U(-b, b)")
    contrast: float = Field(0.2, ge=0, lt=1, description="factor ~ U(1 - c, 1 + c) around the image mean")
    noise: float = Field(0.03, ge=0, description="Gaussian noise std ~ U(0, noise)")
    stain: float = Field(1.0, ge=0, description="HED stain jitter strength (3-channel images only)")


def _u(n: int, lo: float, hi: float, g: torch.Generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def elastic_field(n: int, size: tuple[int, int], alpha: float, grid: int, g: torch.Generator) -> Tensor:
    """A smooth random displacement field ``(N, H, W, 2)`` in normalised [-1, 1] units.

    Gaussian control points on a ``grid x grid`` lattice (std ``alpha`` of the half-side),
    upsampled bicubically: a field as smooth as a Gaussian-filtered one, at a fraction of the cost.
    """
    return _smooth_field(torch.randn(n, 2, grid, grid, generator=g), size, alpha)


def _smooth_field(coarse: Tensor, size: tuple[int, int], alpha: float) -> Tensor:
    return F.interpolate(coarse * (2.0 * alpha), size=size, mode="bicubic", align_corners=True).permute(0, 2, 3, 1)


def _draw(n: int, g: torch.Generator, rotate: bool, zoom: float, elastic_alpha: float,
          elastic_grid: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """The random numbers of :func:`geometric` for ``n`` images, in the order it draws them."""
    ang = _u(n, 0.0, 2 * math.pi, g) if rotate else torch.zeros(n)
    mirror = (torch.rand(n, generator=g) < 0.5).float() * 2 - 1 if rotate else torch.ones(n)
    scale = _u(n, 1.0 - zoom, 1.0 + zoom, g) if zoom > 0 else torch.ones(n)
    coarse = torch.randn(n, 2, elastic_grid, elastic_grid, generator=g) if elastic_alpha > 0 else None
    return ang, mirror, scale, coarse


def geometric(x: Tensor, g: torch.Generator, *, rotate: bool = True, zoom: float = 0.0,
              elastic_alpha: float = 0.0, elastic_grid: int = 4) -> Tensor:
    """Random rotation (+ mirror), zoom and elastic deformation of ``x (N, C, H, W)``, one resampling."""
    return warp(x, *_draw(x.shape[0], g, rotate, zoom, elastic_alpha, elastic_grid), elastic_alpha=elastic_alpha)


def warp(x: Tensor, angle: Tensor, mirror: Tensor, scale: Tensor, coarse: Tensor | None = None, *,
         elastic_alpha: float = 0.0) -> Tensor:
    """:func:`geometric` with its random numbers given: ``angle`` (radians), ``mirror`` (+-1) and
    ``scale`` ``(N,)``, ``coarse`` ``(N, 2, G, G)`` standard-normal control points of the
    elastic field (scaled by ``elastic_alpha``) or None. For a data set that draws each item's
    numbers from the item's own seed and resamples the batch at once."""
    n, _, h, w = x.shape
    if not (angle.shape == mirror.shape == scale.shape == (n,)):
        raise InputError(f"warp: angle, mirror and scale must be ({n},), got {tuple(angle.shape)}, "
                         f"{tuple(mirror.shape)}, {tuple(scale.shape)}")
    theta = torch.zeros(n, 2, 3)
    c, s = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta[:, 0, 0], theta[:, 0, 1] = c * mirror, -s
    theta[:, 1, 0], theta[:, 1, 1] = s * mirror, c
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    if coarse is not None and elastic_alpha > 0:
        grid = grid + _smooth_field(coarse, (h, w), elastic_alpha)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)


def photometric(x: Tensor, g: torch.Generator, *, brightness: float = 0.0, contrast: float = 0.0,
                noise: float = 0.0) -> Tensor:
    """Random brightness shift, contrast factor and Gaussian noise; clipped to [0, 1]."""
    n = x.shape[0]
    b = _u(n, -brightness, brightness, g).view(n, 1, 1, 1)
    k = _u(n, 1.0 - contrast, 1.0 + contrast, g).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    y = (x - mean) * k + mean + b
    if noise > 0:
        sd = _u(n, 0.0, noise, g).view(n, 1, 1, 1)
        y = y + torch.randn(x.shape, generator=g) * sd
    return y.clamp(0.0, 1.0)


def augment(x: Tensor, cfg: AugmentConfig, g: torch.Generator) -> Tensor:
    """The full NIC augmentation of ``x (N, C, H, W)`` in [0, 1]: stain colour (C = 3), geometry, photometry."""
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.dtype.is_floating_point:
        raise InputError(f"augment: expected a float (N, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    if cfg.stain > 0 and x.shape[1] == 3:
        from histolatent.stain.augment import StainAugment

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        x = StainAugment(sigma_scale=0.2 * cfg.stain, sigma_shift=0.03 * cfg.stain, sigma_vector=0.05 * cfg.stain,
                         seed=seed)(x)
    x = geometric(x, g, rotate=cfg.rotate, zoom=cfg.zoom, elastic_alpha=cfg.elastic_alpha,
                  elastic_grid=cfg.elastic_grid)
    return photometric(x, g, brightness=cfg.brightness, contrast=cfg.contrast, noise=cfg.noise)
