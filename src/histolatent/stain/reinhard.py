"""Reinhard colour transfer (Reinhard et al., IEEE CG&A 2001) in CIELAB, numpy + batched torch.

Each LAB channel of the stained pixels is standardised and given the target's mean and
standard deviation: ``lab_out = (lab - mu_src) / sd_src * sd_tgt + mu_tgt``. Statistics are
computed over stained pixels only (OD >= beta in every channel, and inside a user mask),
so background does not drag them; and glass is left as it is: the transform is blended in
with a weight that ramps from 0 where every channel is brighter than ``255 / 10**0.02``
(about 244) to 1 where some channel is darker than ``255 / 10**0.08`` (about 212). With
``preserve_background=False`` the transform applies to every pixel, as in the original.

LAB here is CIE L*a*b* of sRGB under D65 (L in [0, 100]; :mod:`~histolatent.stain.lab`),
computed by the same formulas on both paths.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from histolatent.errors import InputError
from histolatent.stain.base import StainNormalizer, as_matrix, register_normalizer
from histolatent.stain.lab import lab_from_rgb, rgb_from_lab
from histolatent.stain.optical_density import BETA_MACENKO, od_lut

#: OD ramp (log10) of the background blend.
_RAMP = (0.02, 0.08)


def _blend_weight(od: np.ndarray) -> np.ndarray:
    """0 on glass, 1 on stain: ramp of the largest channel OD between ``_RAMP``."""
    return np.clip((od.max(axis=-1) - _RAMP[0]) / (_RAMP[1] - _RAMP[0]), 0.0, 1.0)


@register_normalizer("reinhard")
class ReinhardNormalizer(StainNormalizer):
    """Reinhard colour transfer of LAB means and standard deviations.

    Parameters
    ----------
    beta : float
        Per-channel OD threshold (log10) for the pixels the statistics are taken from.
    preserve_background : bool
        Blend the transform out on glass (see the module docstring).
    min_tissue_fraction, min_tissue_pixels
        See :class:`~histolatent.stain.base.StainNormalizer`.

    Attributes
    ----------
    mean_, std_ : numpy.ndarray
        ``(3,)`` target LAB moments.
    """

    def __init__(self, *, beta: float = BETA_MACENKO, preserve_background: bool = True,
                 min_tissue_fraction: float = 0.02, min_tissue_pixels: int = 100) -> None:
        super().__init__(min_tissue_fraction=min_tissue_fraction, min_tissue_pixels=min_tissue_pixels)
        self.beta = float(beta)
        self.preserve_background = bool(preserve_background)
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None

    def _stats_pixels(self, rgb: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        flat = rgb.reshape(-1, 3)
        od = od_lut(255.0)[flat]
        keep = (od.min(axis=1) >= self.beta) & (flat.max(axis=1) >= 8)
        if mask is not None:
            keep &= mask.reshape(-1)
        return keep, od

    def _moments(self, lab_t: np.ndarray, n_total: int) -> tuple[np.ndarray, np.ndarray] | None:
        if self._too_little_tissue(lab_t.shape[0], n_total):
            return None
        mean, std = lab_t.mean(axis=0), lab_t.std(axis=0)
        if not np.isfinite(std).all() or np.any(std < 1e-3):
            return None  # a flat channel (grey or single-colour image): nothing to match
        return mean, std

    def _pooled(self, images: list[np.ndarray], masks: list[np.ndarray | None], what: str
                ) -> tuple[np.ndarray, np.ndarray]:
        labs, total = [], 0
        for rgb, m in zip(images, masks, strict=True):
            keep, _ = self._stats_pixels(rgb, m)
            labs.append(lab_from_rgb(rgb.reshape(-1, 3)[keep]))
            total += keep.size
        est = self._moments(np.concatenate(labs), total)
        if est is None:
            raise InputError(f"Reinhard {what}: too few stained pixels or a flat colour channel")
        return est

    def _fit(self, images: list[np.ndarray], masks: list[np.ndarray | None]) -> None:
        self.mean_, self.std_ = self._pooled(images, masks, "target")

    def _source_estimate(self, images, masks):
        return self._pooled(images, masks, "source")

    def _transform_one(self, rgb: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        keep, od = self._stats_pixels(rgb, mask)
        lab = lab_from_rgb(rgb.reshape(-1, 3))
        est = self.source_ if self.source_ is not None else self._moments(lab[keep], keep.size)
        if est is None:
            return None
        mean, std = est
        out = (lab - mean) * (self.std_ / std) + self.mean_
        if self.preserve_background:
            wgt = _blend_weight(od)[:, None]
            out = wgt * out + (1.0 - wgt) * lab
        res = rgb_from_lab(out)
        return np.clip(np.rint(res), 0, 255).astype(np.uint8).reshape(rgb.shape)

    def _transform_batch_torch(self, x8, mask):
        import torch

        from histolatent.stain.torch_ops import lab_from_rgb8_torch, rgb255_from_lab_torch

        n, _, h, w = x8.shape
        flat = x8.reshape(n, 3, h * w)
        lab = lab_from_rgb8_torch(flat)  # (N, 3, P) float32
        od_lut_t = torch.as_tensor(od_lut(255.0), device=x8.device)
        od = od_lut_t[flat.to(torch.int64)]
        keep = (od.amin(dim=1) >= self.beta) & (flat.amax(dim=1) >= 8)
        if mask is not None:
            keep &= mask.reshape(n, h * w)
        cnt = keep.sum(dim=1)
        wk = keep.to(torch.float64)
        lab64 = lab.to(torch.float64)
        mean = (lab64 * wk[:, None]).sum(-1) / cnt.clamp(min=1)[:, None]
        var = (((lab64 - mean[..., None]) ** 2) * wk[:, None]).sum(-1) / cnt.clamp(min=1)[:, None]
        std = var.sqrt()
        ok = (cnt >= self.min_tissue_pixels) & (cnt >= self.min_tissue_fraction * h * w)
        ok &= (std >= 1e-3).all(-1) & torch.isfinite(std).all(-1)
        m_t = torch.as_tensor(self.mean_, dtype=torch.float64, device=x8.device)
        s_t = torch.as_tensor(self.std_, dtype=torch.float64, device=x8.device)
        gain = torch.where(ok[:, None], s_t / std.clamp(min=1e-3), 1.0)
        shift = torch.where(ok[:, None], m_t - mean * gain, 0.0)
        out = lab * gain[..., None].to(lab.dtype) + shift[..., None].to(lab.dtype)
        if self.preserve_background:
            wgt = ((od.amax(dim=1) - _RAMP[0]) / (_RAMP[1] - _RAMP[0])).clamp(0.0, 1.0)[:, None]
            out = wgt * out + (1.0 - wgt) * lab
        return rgb255_from_lab_torch(out).reshape(n, 3, h, w), ~ok

    @property
    def fitted(self) -> bool:
        return self.mean_ is not None

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "beta": self.beta, "preserve_background": self.preserve_background}

    def _state(self) -> dict[str, Any]:
        return {"mean": self.mean_.tolist(), "std": self.std_.tolist()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.mean_ = as_matrix(state, "mean", (3,))
        self.std_ = as_matrix(state, "std", (3,))
        if np.any(self.std_ <= 0):
            raise InputError("reinhard state: std must be positive")
