"""KL divergences of VAE posteriors to their priors: pure tensor functions.

All functions return one value per sample, shape ``(B,)``, summed over latent dimensions;
the caller averages over the batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def kl_normal_standard(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over the last dimension (paper 0, Eq. 1).

    ``0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2)``. ``mu``, ``logvar``: ``(B, M)`` -> ``(B,)``.
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def kl_orientation_uniform(q: Tensor, eps: float = 1e-8) -> Tensor:
    """``KL(q(z_ORI | x) || U[0, 2 pi))`` for piecewise-constant angular posteriors (paper 0, Eq. 5).

    ``q``: ``(B, M, N)`` — for each of ``M`` angle variables the probabilities ``Q_ORI`` of the
    ``N`` orientation bins (Eq. 4), summing to 1 over ``N``. With the density ``q_j N / (2 pi)``
    on bin ``j``, the continuous KL to the uniform density ``1 / (2 pi)`` equals the discrete KL
    ``sum_j q_j log(N q_j)``, summed over the ``M`` variables -> ``(B,)``. Zero iff every ``Q_i``
    is uniform; at most ``M log N``.
    """
    n = q.shape[-1]
    return (q * (torch.log(q.clamp_min(eps)) + math.log(n))).sum(dim=(-2, -1))


def gaussian_nll(x_hat: Tensor, x: Tensor, sigma: float = 1.0) -> Tensor:
    """Negative log-likelihood of ``x`` under ``N(x_hat, sigma^2 I)`` without the constant.

    ``0.5 / sigma^2 * ||x - x_hat||^2`` summed over all but the first dimension -> ``(B,)``
    (paper 0 §4.2: "a multivariate Gaussian with identity covariance" is ``sigma = 1``).
    """
    d = (x_hat.float() - x.float()).pow(2).flatten(1).sum(dim=1)
    return 0.5 * d / (sigma * sigma)
