"""Wasserstein GAN losses with the gradient penalty (WGAN-GP).

Gulrajani et al. (2017, "Improved training of Wasserstein GANs", ref. [6] of
papers/stain-normalization_infogan-nuclei.txt) replace weight clipping by a penalty on the
critic's gradient norm at random points between real and generated samples; Yuan & Suh
(2018, §3.3, Eqs. 2–3) train their nuclei InfoGAN with it:

* Wasserstein estimate (Eq. 3): ``W = E_real[D(x)] - E_fake[D(G(z, c))]``;
* critic loss: ``-W + lambda * GP`` (the critic maximises ``W``);
* generator loss: ``-E_fake[D(G(z, c))]``;
* gradient penalty (Eq. 2, in the two-sided form of Gulrajani et al.):
  ``GP = E_{x_hat}[(||grad_x_hat D(x_hat)||_2 - 1)^2]`` with
  ``x_hat = eps * x_real + (1 - eps) * x_fake``, ``eps ~ U(0, 1)`` per sample.

Pure tensor functions; the critic is passed as a callable ``(B, ...) -> (B,)`` or ``(B, 1)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["gradient_penalty", "interpolate", "wasserstein_critic_loss", "wasserstein_estimate",
           "wasserstein_generator_loss"]


def wasserstein_estimate(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """``E[D(real)] - E[D(fake)]`` (Eq. 3): the critic's estimate of W1, a scalar.

    ``d_real`` (B,) or (B, 1), ``d_fake`` (B',) or (B', 1).
    """
    return d_real.float().mean() - d_fake.float().mean()


def wasserstein_critic_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Critic loss without the penalty: ``E[D(fake)] - E[D(real)] = -W``, a scalar."""
    return -wasserstein_estimate(d_real, d_fake)


def wasserstein_generator_loss(d_fake: Tensor) -> Tensor:
    """Generator loss ``-E[D(G(z, c))]``, a scalar; ``d_fake`` (B,) or (B, 1)."""
    return -d_fake.float().mean()


def interpolate(real: Tensor, fake: Tensor, eps: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> Tensor:
    """Random points on the segments between paired real and fake samples.

    Parameters
    ----------
    real, fake : Tensor, (B, ...)
        Paired samples (same shape); ``fake`` is detached.
    eps : Tensor, (B,), optional
        Mixing weights in [0, 1]; drawn from U(0, 1) (with ``generator``) when omitted.

    Returns
    -------
    Tensor, (B, ...), ``eps * real + (1 - eps) * fake``, requiring grad.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} must have the same shape")
    b = real.shape[0]
    if eps is None:
        eps = torch.rand(b, generator=generator, device=real.device, dtype=torch.float32)
    eps = eps.to(real.device, torch.float32).reshape(b, *([1] * (real.dim() - 1)))
    x_hat = eps * real.detach().float() + (1 - eps) * fake.detach().float()
    return x_hat.requires_grad_(True)


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, eps: Tensor | None = None, *,
                     generator: torch.Generator | None = None, target: float = 1.0,
                     fp32: bool = True) -> tuple[Tensor, Tensor]:
    """Two-sided gradient penalty of Gulrajani et al. (2017), Eq. 2 of paper 4.

    The gradient is taken with ``create_graph=True`` so that the penalty can be
    back-propagated into the critic's weights (a double backward). By default it is
    computed in float32 with autocast off (``fp32=False`` keeps the caller's autocast).

    Parameters
    ----------
    critic : callable
        ``(B, ...) -> (B,)`` or ``(B, 1)`` critic scores.
    real, fake : Tensor, (B, ...)
    eps : Tensor, (B,), optional
        Interpolation weights (random when omitted).
    target : float
        The gradient norm aimed at (1 for 1-Lipschitz).

    Returns
    -------
    penalty : Tensor, scalar — ``mean_b (||grad D(x_hat_b)||_2 - target)^2``
    norms : Tensor, (B,) — the per-sample gradient norms (detached), for diagnostics.
    """
    x_hat = interpolate(real, fake, eps, generator=generator)
    with torch.autocast(device_type=x_hat.device.type, enabled=not fp32 and torch.is_autocast_enabled(
            x_hat.device.type)):
        scores = critic(x_hat).float().reshape(-1)
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    # the tiny constant keeps the norm differentiable where a gradient vanishes exactly
    norms = torch.sqrt(grad.float().flatten(1).pow(2).sum(1) + 1e-12)  # (B,)
    penalty = ((norms - target) ** 2).mean()
    return penalty, norms.detach()
