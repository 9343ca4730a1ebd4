"""Stain augmentation: random perturbation of stain concentrations and stain vectors (torch).

A training-time transform for models that should not care about stain (Tellez et al.,
"Whole-slide mitosis detection in H&E breast histology using PHH3 as a reference",
IEEE TMI 2018, and "Quantifying the effects of data augmentation and stain color
normalization", MedIA 2019: "HED" augmentation). Each image is deconvolved with a 3 x 3
stain matrix (haematoxylin, eosin and their cross product as a residual channel), then

* each stain concentration is scaled and shifted, ``c' = c * a + b`` with
  ``a ~ U(1 - sigma_scale, 1 + sigma_scale)`` and ``b ~ U(-sigma_shift, sigma_shift)``
  (the shift is faded out on glass so that the background stays white);
* each stain vector is jittered, ``s' = normalise(max(s + N(0, sigma_vector^2), 0))``;

and the image is recomposed. Parameters are drawn per image from the transform's own
``torch.Generator``, seeded at construction, so a run is reproducible.
"""

from __future__ import annotations

import math

import numpy as np

from histolatent.errors import InputError
from histolatent.stain.optical_density import HE_RUIFROK, check_stain_matrix


class StainAugment:
    """Random stain perturbation as a torch transform.

    Parameters
    ----------
    stain_matrix : array-like
        ``(2, 3)`` H&E rows in OD space (Ruifrok's by default; a fitted normaliser's
        ``stain_matrix_`` matches a data set better).
    sigma_scale : float
        Half-width of the uniform concentration scale around 1.
    sigma_shift : float
        Half-width of the uniform concentration shift (log10 OD units).
    sigma_vector : float
        Standard deviation of the Gaussian jitter of each stain vector component.
    p : float
        Probability that an image is perturbed at all.
    background : float
        Light intensity I0.
    seed : int
        Seed of the transform's generator.

    Example
    -------
    >>> aug = StainAugment(seed=0)
    >>> import torch
    >>> x = torch.rand(4, 3, 32, 32)
    >>> aug(x).shape
    torch.Size([4, 3, 32, 32])
    """

    def __init__(self, *, stain_matrix=HE_RUIFROK, sigma_scale: float = 0.2, sigma_shift: float = 0.03,
                 sigma_vector: float = 0.05, p: float = 1.0, background: float = 255.0, seed: int = 0) -> None:
        import torch

        s = check_stain_matrix(stain_matrix, rows=2)
        s = s / np.linalg.norm(s, axis=1, keepdims=True)
        residual = np.cross(s[0], s[1])
        for name, v in (("sigma_scale", sigma_scale), ("sigma_shift", sigma_shift),
                        ("sigma_vector", sigma_vector)):
            if not (math.isfinite(v) and v >= 0):
                raise InputError(f"{name} must be >= 0, got {v}")
        if not 0.0 <= p <= 1.0:
            raise InputError(f"p must lie in [0, 1], got {p}")
        self.stain_matrix = torch.as_tensor(np.vstack([s, residual / np.linalg.norm(residual)]),
                                            dtype=torch.float32)
        self.sigma_scale, self.sigma_shift, self.sigma_vector = sigma_scale, sigma_shift, sigma_vector
        self.p, self.background, self.seed = p, float(background), int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, x):
        """Perturb ``(3, H, W)`` or ``(N, 3, H, W)`` images (uint8, or float in [0, 1]).

        Returns a new tensor of the same shape, dtype and device; ``x`` is not modified.
        """
        import torch

        if not isinstance(x, torch.Tensor):
            raise InputError(f"StainAugment: expected a torch tensor, got {type(x).__name__}")
        single = x.ndim == 3
        xb = x.unsqueeze(0) if single else x
        if xb.ndim != 4 or xb.shape[1] != 3:
            raise InputError(f"StainAugment: expected (3, H, W) or (N, 3, H, W), got {tuple(x.shape)}")
        if xb.dtype == torch.uint8:
            x255 = xb.to(torch.float32)
        elif xb.dtype.is_floating_point:
            if not torch.isfinite(xb).all():
                raise InputError("StainAugment: input contains NaN or inf")
            x255 = xb.to(torch.float32).clamp(0, 1) * 255.0
        else:
            raise InputError(f"StainAugment: unsupported dtype {xb.dtype}")
        n, _, h, w = xb.shape
        dev = xb.device
        g = self.generator
        scale = 1.0 + self.sigma_scale * (2 * torch.rand(n, 2, generator=g) - 1)
        shift = self.sigma_shift * (2 * torch.rand(n, 2, generator=g) - 1)
        jitter = self.sigma_vector * torch.randn(n, 2, 3, generator=g)
        apply = torch.rand(n, generator=g) < self.p
        scale = torch.where(apply[:, None], scale, torch.ones_like(scale))
        shift = torch.where(apply[:, None], shift, torch.zeros_like(shift))
        jitter = torch.where(apply[:, None, None], jitter, torch.zeros_like(jitter))

        s3 = self.stain_matrix  # (3, 3) rows H, E, residual
        new_he = (s3[:2][None] + jitter).clamp(min=0.0)
        new_he = new_he / new_he.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        new_s3 = torch.cat([new_he, s3[2:].expand(n, 1, 3)], dim=1)  # (N, 3, 3)

        od = math.log10(self.background + 1.0) - torch.log10(x255.reshape(n, 3, h * w) + 1.0)
        conc = torch.einsum("kc,ncp->nkp", torch.linalg.inv(s3).T.to(dev), od)  # (N, 3, P)
        tissue = ((od.amax(dim=1) - 0.02) / 0.06).clamp(0.0, 1.0)  # 0 on glass, 1 on stain
        he = conc[:, :2] * scale[..., None].to(dev) + shift[..., None].to(dev) * tissue[:, None]
        conc = torch.cat([he, conc[:, 2:]], dim=1)
        out_od = torch.einsum("nkp,nkc->ncp", conc, new_s3.to(dev))
        out = ((self.background + 1.0) * torch.pow(10.0, -out_od) - 1.0).clamp(0, 255).reshape(n, 3, h, w)
        res = out.round().to(torch.uint8) if xb.dtype == torch.uint8 else (out / 255.0).to(xb.dtype)
        return res[0] if single else res

    def __repr__(self) -> str:
        return (f"StainAugment(sigma_scale={self.sigma_scale}, sigma_shift={self.sigma_shift}, "
                f"sigma_vector={self.sigma_vector}, p={self.p}, seed={self.seed})")
