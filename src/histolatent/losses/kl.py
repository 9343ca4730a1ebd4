"""KL divergences of VAE posteriors to their priors: pure tensor functions.

The functions return one value per sample, shape ``(B,)``, summed over latent dimensions
(the caller averages over the batch), except :func:`kl_normal`, which is elementwise so that
a model can weight or sum it as its objective says.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def kl_normal_standard(mu: Tensor, logvar: Tensor, *, dim: int = -1) -> Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over ``dim`` (paper 0, Eq. 1; Kingma & Welling).

    ``0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2)``. ``mu``, ``logvar``: ``(B, M)`` -> ``(B,)``
    (or any shape, summed over ``dim``).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=dim)


def kl_normal(mu: Tensor, logstd: Tensor, prior_std: float = 1.0) -> Tensor:
    """``KL(N(mu, exp(logstd)^2) || N(0, prior_std^2))``, elementwise (same shape as ``mu``).

    ``log(prior_std) - logstd + (exp(2 logstd) + mu^2) / (2 prior_std^2) - 1/2``: the KL of
    spatial-VAE's and TARGET-VAE's Gaussian posteriors (of ``z``, ``theta``, ``t``) to their
    zero-mean priors, parametrised by the log standard deviation as those models output it.
    """
    return math.log(prior_std) - logstd + (torch.exp(2 * logstd) + mu.pow(2)) / (2 * prior_std**2) - 0.5


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


def target_kl(log_q: Tensor, log_prior: Tensor, theta_mu: Tensor, theta_logstd: Tensor, z_mu: Tensor,
              z_logstd: Tensor, theta_prior_std: float) -> dict[str, Tensor]:
    """TARGET-VAE's KL (Nasiri & Bepler 2022, Eq. 5; derivation in appendix A.1), one value per image.

    ``KL = KL_{t,r} + sum_{t,r} q(t, r | y) (KL_theta + KL_z)`` with
    ``KL_{t,r} = sum q(t, r | y) log q(t, r | y) / p(t, r)``.

    Parameters
    ----------
    log_q : ``(B, N)`` ``log q(t, r | y)`` over the ``N = R H W`` flattened (r, i, j) cells.
    log_prior : ``(N,)`` ``log p(t, r) = log p(t) + log p(r)`` (normalised).
    theta_mu, theta_logstd : ``(B, N)`` the head outputs; the posterior is ``N(theta_mu +
        offset_r, exp(theta_logstd)^2)`` and the prior ``N(offset_r, theta_prior_std^2)``, so
        the offsets cancel in ``KL_theta`` (:func:`kl_normal`).
    z_mu, z_logstd : ``(B, Z, N)``; the prior of ``z`` is ``N(0, I)`` (:func:`kl_normal_standard`).

    Returns
    -------
    ``{"kl", "kl_tr", "kl_theta", "kl_z"}``, each ``(B,)``; ``kl_theta`` and ``kl_z`` are the
    ``q``-weighted sums ``sum q KL_theta`` and ``sum q KL_z``.
    """
    q = log_q.exp()
    kl_tr = (q * (log_q - log_prior)).sum(dim=1)
    kl_theta_map = kl_normal(theta_mu, theta_logstd, theta_prior_std)  # (B, N)
    kl_z_map = kl_normal_standard(z_mu, 2 * z_logstd, dim=1)  # (B, N)
    kl_theta = (q * kl_theta_map).sum(dim=1)
    kl_z = (q * kl_z_map).sum(dim=1)
    return {"kl": kl_tr + kl_theta + kl_z, "kl_tr": kl_tr, "kl_theta": kl_theta, "kl_z": kl_z}
