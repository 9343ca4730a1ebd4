"""Orientation-disentangled SE(2,N)-VAE (paper 0, §4.2–4.3, appendix B.2).

Encoder (SE(2,N) CNN, ``N = 8``): lifting block -> max-pool -> SE(2,N) conv blocks with
max-pools -> one SE(2,N) conv layer over the remaining ``5 x 5`` map with ``3M`` channels:

* ``M`` of them, soft-maxed over the ``N`` orientations, are ``Q_ORI`` (Eq. 4): for each angle
  variable ``z_ORI_i`` the probabilities of the bins ``[2 pi j / N, 2 pi (j + 1) / N)``;
* ``2M`` of them, mean-projected over orientations, are ``mu_ISO`` and ``log sigma_ISO^2``.

By construction (see ``nn/groupconv.py``) a rotation of the input by ``2 pi t / N`` rolls
``Q_ORI`` by ``t`` (Eq. 3 / 2a) and leaves ``mu_ISO, sigma_ISO`` unchanged (Eq. 2b) — exactly
for multiples of 90°.

Sampling: ``z_ISO = mu + eps sigma`` (reparameterisation); ``z_ORI = F_i^{-1}(u)``, ``u ~ U(0,1)``,
with ``F_i`` the continuous, piecewise-linear CDF of ``Q_i`` (inverse transform sampling,
differentiable w.r.t. ``Q``; Fig. 5). Decoder input: ``z_ISO`` repeated along the orientation
axis, concatenated with ``z_ORI`` encoded as SO(2,N) vectors by linear interpolation between
the two nearest bin centres and label smoothing — so adding ``2 pi / N`` to every ``z_ORI``
rolls the input by one orientation and rotates the decoded image by ``2 pi / N``. Decoder:
SE(2,N) transposed-conv blocks with 2x up-pooling, mean projection, 1x1 conv, sigmoid.

Objective (Eq. 5): Gaussian reconstruction + ``beta_ISO KL(q(z_ISO|x) || N(0, I))``
+ ``beta_ORI KL(q(z_ORI|x) || U[0, 2 pi)^M)``, plus ``gamma`` times Eq. 6's discriminator-feature
reconstruction (shared with the baseline VAE: ``models/feature_matching_vae.py``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from histolatent.losses.kl import kl_normal_standard, kl_orientation_uniform
from histolatent.losses.likelihood import gaussian_nll
from histolatent.models.discriminator import valid_conv_sizes
from histolatent.models.feature_matching_vae import (
    LOGVAR_RANGE,
    FeatureMatchingVAE,
    FeatureMatchingVAEConfig,
)
from histolatent.models.registry import register_model
from histolatent.nn.groupconv import (
    GroupBatchNorm,
    GroupConv2d,
    GroupConvTranspose2d,
    GroupMaxPool2d,
    GroupUpsample,
    LiftingConv2d,
    project_orientations,
)

TWO_PI = 2 * math.pi


# --------------------------------------------------------------------------------------------
# Angle variables: pure functions
# --------------------------------------------------------------------------------------------
def bin_centres(n: int, *, device=None) -> Tensor:
    """Centres ``2 pi (j + 1/2) / N`` of the ``N`` orientation bins of Eq. 4, ``(N,)``."""
    return (torch.arange(n, device=device, dtype=torch.float32) + 0.5) * (TWO_PI / n)


def inverse_cdf_angles(q: Tensor, u: Tensor, eps: float = 1e-6) -> Tensor:
    """Inverse transform sampling of angles from piecewise-constant densities (paper 0 Fig. 5).

    Parameters
    ----------
    q : ``(..., N)`` bin probabilities ``Q_ORI`` (sum to 1 over ``N``); bin ``j`` is
        ``[2 pi j / N, 2 pi (j + 1) / N)``.
    u : ``(...)`` uniform noise in [0, 1).

    Returns
    -------
    ``(...)`` angles in [0, 2 pi): ``F^{-1}(u)`` for the continuous CDF ``F`` that is linear
    within each bin. Differentiable w.r.t. ``q`` (through the bin's cumulative mass and width).
    """
    n = q.shape[-1]
    if q.dtype not in (torch.float32, torch.float64):
        q = q.float()
    cdf = torch.cumsum(q, dim=-1)  # (..., N), upper edges
    u = u.to(q.dtype).clamp(0.0, 1.0 - 1e-7) * cdf[..., -1]  # robust to sums slightly off 1
    j = (cdf <= u.unsqueeze(-1)).sum(dim=-1).clamp(max=n - 1)  # bin index, (...)
    q_j = q.gather(-1, j.unsqueeze(-1)).squeeze(-1)
    lower = cdf.gather(-1, j.unsqueeze(-1)).squeeze(-1) - q_j
    frac = ((u - lower) / q_j.clamp_min(eps)).clamp(0.0, 1.0)
    return (j.to(q.dtype) + frac) * (TWO_PI / n)


def orientation_vectors_from_angles(theta: Tensor, n: int, smoothing: float = 0.1) -> Tensor:
    """Encode angles as SO(2,N) vectors (label smoothing of a soft one-hot), ``(...) -> (..., N)``.

    Linear interpolation between the two nearest bin centres (a triangular kernel of half-width
    ``2 pi / N`` in circular distance), then ``(1 - smoothing) v + smoothing / N``. Depends only on
    circular distances, so ``theta + 2 pi k / N`` gives the vector rolled by ``k`` exactly;
    differentiable w.r.t. ``theta``.
    """
    c = bin_centres(n, device=theta.device)
    d = torch.remainder(theta.float().unsqueeze(-1) - c + math.pi, TWO_PI) - math.pi  # (..., N)
    v = (1.0 - d.abs() * (n / TWO_PI)).clamp_min(0.0)
    return (1.0 - smoothing) * v + smoothing / n


def circular_mean_angle(q: Tensor) -> Tensor:
    """Circular mean of the bin centres weighted by ``q``: ``(..., N) -> (...)`` in [0, 2 pi).

    The deterministic summary of ``z_ORI`` used by ``encode`` (rolls of ``q`` add ``2 pi / N``).
    """
    c = bin_centres(q.shape[-1], device=q.device)
    s = (q.float() * torch.sin(c)).sum(-1)
    co = (q.float() * torch.cos(c)).sum(-1)
    return torch.remainder(torch.atan2(s, co), TWO_PI)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
class SE2NVAEConfig(FeatureMatchingVAEConfig):
    n_rotations: int = 8  # N
    encoder_channels: list[int] = [8, 8, 8]  # C1..C3 (lifting block, then SE(2,N) blocks)
    decoder_channels: list[int] = [8, 8, 8, 32]  # one SE(2,N) transposed-conv block each; last is C8
    latent_dim: int = 32  # M, for each of z_ISO and z_ORI
    beta_iso: float = 1.0
    beta_ori: float = 1.0
    label_smoothing: float = 0.1
    disk: bool = True  # disk-masked kernels (Bekkers)


def _gblock(cin: int, cout: int, k: int, n: int, slope: float, disk: bool, *, kind: str) -> nn.Sequential:
    cls = {"lift": LiftingConv2d, "group": GroupConv2d, "transposed": GroupConvTranspose2d}[kind]
    return nn.Sequential(cls(cin, cout, k, n, disk=disk), GroupBatchNorm(cout), nn.LeakyReLU(slope))


@register_model("se2n-vae")
class SE2NVAE(FeatureMatchingVAE):
    """Orientation-disentangled VAE: ``x (B, 3, 68, 68) -> (z_ISO (B, 32), z_ORI (B, 32)) -> x_hat``.

    ``encode(x)`` returns

    * ``mu_iso``, ``logvar_iso``: ``(B, M)``; ``z_iso`` = ``mu_iso`` (rotation-invariant embedding);
    * ``q_ori``: ``(B, M, N)``, ``Q_ORI`` (rolls by ``t`` when the input turns by ``2 pi t / N``);
    * ``z_ori``: ``(B, M)``, circular mean angle of each ``Q_i`` in [0, 2 pi).
    """

    Config = SE2NVAEConfig

    def __init__(self, config: SE2NVAEConfig) -> None:
        super().__init__(config)
        c = config
        n_rot, k, slope = c.n_rotations, c.kernel_size, c.leaky_slope
        nb = len(c.encoder_channels)
        if len(c.decoder_channels) != nb + 1:
            raise ValueError(f"decoder_channels needs {nb + 1} entries, got {len(c.decoder_channels)}")
        conv_out, _, k_final = valid_conv_sizes(c.image_size, nb, k)
        enc: list[nn.Module] = []
        cin = c.in_channels
        for i, ch in enumerate(c.encoder_channels):
            enc += [_gblock(cin, ch, k, n_rot, slope, c.disk, kind="lift" if i == 0 else "group"), GroupMaxPool2d(2)]
            cin = ch
        self.encoder = nn.Sequential(*enc)
        self.head = GroupConv2d(cin, 3 * c.latent_dim, k_final, n_rot, disk=c.disk)  # (B, 3M, N, 1, 1)
        dch = c.decoder_channels
        dec: list[nn.Module] = [_gblock(2 * c.latent_dim, dch[0], k_final, n_rot, slope, c.disk, kind="transposed")]
        for i, ch in enumerate(dch[1:]):
            up = conv_out[nb - 1 - i]
            dec += [GroupUpsample(2), _gblock(dch[i], ch, k, n_rot, slope, c.disk, kind="transposed")]
            if up % 2:  # valid_conv_sizes guarantees even sizes; keep the mirror exact
                raise ValueError(f"odd intermediate size {up}")
        self.decoder = nn.Sequential(*dec)
        self.to_image = nn.Conv2d(dch[-1], c.in_channels, 1)
        self._init_discriminator(c)

    # -- posterior -------------------------------------------------------------------------
    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x (B, C, S, S) -> (q_ori (B, M, N), mu_iso (B, M), logvar_iso (B, M))``, float32."""
        m = self.config.latent_dim
        h = self.head(self.encoder(x)).float()  # (B, 3M, N, 1, 1)
        h = h.flatten(2)  # (B, 3M, N)
        q = torch.softmax(h[:, :m], dim=-1)  # Eq. 4, per latent over orientations
        iso = h[:, m:].mean(dim=-1)  # mean projection: rotation-invariant, (B, 2M)
        mu, logvar = iso.chunk(2, dim=1)
        return q, mu, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        q, mu, logvar = self.posterior(x)
        return {"z_iso": mu, "mu_iso": mu, "logvar_iso": logvar, "q_ori": q, "z_ori": circular_mean_angle(q)}

    # -- decoder ---------------------------------------------------------------------------
    def decoder_input(self, z_iso: Tensor, z_ori: Tensor) -> Tensor:
        """``z_iso (B, M)``, ``z_ori (B, M)`` angles -> SE(2,N) vectors ``(B, 2M, N, 1, 1)``."""
        n = self.config.n_rotations
        iso = z_iso.float().unsqueeze(-1).expand(-1, -1, n)  # repeated along orientations
        ori = orientation_vectors_from_angles(z_ori, n, self.config.label_smoothing)  # (B, M, N)
        return torch.cat([iso, ori], dim=1)[..., None, None]

    def decode(self, z_iso: Tensor, z_ori: Tensor) -> Tensor:
        """``(z_iso (B, M), z_ori (B, M)) -> x_hat (B, C, S, S)`` in [0, 1]."""
        h = self.decoder(self.decoder_input(z_iso, z_ori))  # (B, C8, N, S, S)
        return torch.sigmoid(self.to_image(project_orientations(h, "mean")))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction from ``mu_iso`` and the circular mean of ``Q_ORI``."""
        e = self.encode(x)
        return self.decode(e["z_iso"], e["z_ori"])

    # -- objective (Eq. 5) -------------------------------------------------------------------
    def vae_terms(self, x: Tensor) -> dict[str, Tensor]:
        c = self.config
        q, mu, logvar = self.posterior(x)
        z_iso = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        z_ori = inverse_cdf_angles(q, torch.rand(q.shape[:-1], device=q.device))
        x_hat = self.decode(z_iso, z_ori)
        recon = gaussian_nll(x_hat, x, c.recon_sigma).mean()
        kl_iso = kl_normal_standard(mu, logvar).mean()
        kl_ori = kl_orientation_uniform(q).mean()
        loss = recon + c.beta_iso * kl_iso + c.beta_ori * kl_ori
        return {"loss": loss, "recon": recon, "kl_iso": kl_iso, "kl_ori": kl_ori, "x_hat": x_hat}

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Draw from the priors ``N(0, I)`` and ``U[0, 2 pi)^M`` and decode."""
        m = self.config.latent_dim
        z_iso = torch.randn(n, m, generator=generator).to(self.device)
        z_ori = (torch.rand(n, m, generator=generator) * TWO_PI).to(self.device)
        return self.decode(z_iso, z_ori)
