"""Reconstruction likelihoods of VAE decoders: pure tensor functions, one value per sample.

Every function returns ``-log p(x | decoder output)`` per sample, shape ``(B,)``, summed
over pixels and channels; the caller averages over the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from histolatent.nn.fourier import at_least_float32


def gaussian_nll(x_hat: Tensor, x: Tensor, sigma: float = 1.0) -> Tensor:
    """Negative log-likelihood of ``x`` under ``N(x_hat, sigma^2 I)`` without the constant.

    ``0.5 / sigma^2 * ||x - x_hat||^2`` summed over all but the first dimension -> ``(B,)``
    (paper 0 §4.2: "a multivariate Gaussian with identity covariance" is ``sigma = 1``).
    """
    d = (x_hat.float() - x.float()).pow(2).flatten(1).sum(dim=1)
    return 0.5 * d / (sigma * sigma)


def reconstruction_nll(out: Tensor, target: Tensor, likelihood: str, *, min_std: float = 0.02,
                       fixed_std: float | None = None) -> Tensor:
    """``-log p(y | z, theta, t)`` of a pixel-wise decoder (TARGET-VAE, Nasiri & Bepler 2022, Eq. 1).

    Parameters
    ----------
    out : Tensor
        Decoder output, pixel-major: ``(B, P, C)`` Bernoulli logits, or ``(B, P, 2 C)``
        Gaussian means and log-stds (``(B, P, C)`` means with ``fixed_std``). Half precision
        is computed in float32.
    target : Tensor
        ``(B, C, H, W)`` images with ``P = H W``.
    likelihood : {"bernoulli", "gaussian"}
    min_std : float
        Smooth floor of a learned Gaussian std: ``log_std = logaddexp(raw, log min_std)``.
    fixed_std : float, optional
        A fixed Gaussian std instead of a learned one.

    Returns
    -------
    Tensor
        ``(B,)``: summed over pixels and channels (the Gaussian one with its constant).
    """
    b, c = target.shape[:2]
    out = at_least_float32(out)
    y = target.to(out.dtype).reshape(b, c, -1).transpose(1, 2)  # (B, P, C)
    if likelihood == "bernoulli":
        return F.binary_cross_entropy_with_logits(out, y, reduction="none").sum(dim=(1, 2))
    if likelihood == "gaussian":
        mean = out[..., :c]
        if fixed_std is not None:
            log_std = torch.full_like(mean, math.log(fixed_std))
        else:
            log_std = torch.logaddexp(out[..., c:], torch.full_like(mean, math.log(min_std)))  # smooth floor
        nll = 0.5 * ((y - mean) * torch.exp(-log_std)).pow(2) + log_std + 0.5 * math.log(2 * math.pi)
        return nll.sum(dim=(1, 2))
    raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
