"""TARGET-VAE: translation and rotation group-equivariant VAE (Nasiri & Bepler, NeurIPS 2022).

Inference (§3.2-3.3.1): one lifting group conv over P_R (``R`` = 4, 8 or 16 kernel rotations, a
kernel larger than the object so that one layer sees all of it) -> LeakyReLU -> 1x1 group convs
-> three 1x1 heads giving, for every location ``t = (i, j)`` and rotation ``r``, the attention
logit ``a(y)_{r,i,j}``, ``q(theta | t, r, y) = N(mu_theta + 2 pi r / R, sigma_theta^2)`` and
``q(z | t, r, y) = N(mu_z, sigma_z^2)`` (Eq. 3). ``q(t, r | y)`` is the softmax of ``a`` plus the
log prior ``log p(t) + log p(r)`` over the flattened ``R x H x W`` map.

Training (Eq. 6): a soft one-hot Gumbel-softmax sample ``s`` of ``q(t, r | y)`` (``temperature``;
1 in the authors' code, 0.5 in this package's CPU presets, where about one epoch of training with
temperature 1 leaves the attention diffuse) weights the per-location parameters; ``z`` and ``theta`` are drawn from the weighted Gaussians and
``t = sum s * grid``. The spatial generator (§3.3.2; :class:`~histolatent.nn.fourier.SpatialGenerator`)
renders ``p(y_i | z, M(theta)(x_i - t))`` (Eq. 2). The KL is Eq. 5::

    KL = KL_{t,r} + sum_{t,r} q(t, r | y) (KL_theta + KL_z),
    KL_{t,r} = sum q(t, r | y) log q(t, r | y) / p(t, r)

with ``p(t)`` a discretised ``N(0, sigma_t^2)`` over the grid, ``p(r)`` uniform (or ``N(0,
sigma_r^2)`` at the offsets, for data known to be roughly upright), ``p(theta | r) = N(2 pi r / R,
(pi / R)^2)`` and ``p(z) = N(0, I)``.

Shapes: images ``(B, C, D, D)`` in [0, 1]; maps ``(B, R, H, W)`` with ``H = D' + 2 p - k + 1``
(``D' = D / pool``); ``z`` ``(B, Z)``; ``theta`` ``(B,)`` radians, counter-clockwise as displayed;
``t`` ``(B, 2)`` as ``(x, y-down)`` in coordinate units where a ``D``-pixel training image spans
``[-1, 1]`` (pixel spacing ``2 / (D - 1)``), see :mod:`histolatent.nn.fourier`.

Reference configuration (REFERENCES.md; the authors' code): 50x50 inputs, kernel 28, padding 8,
128 channels, R = 8, one 1x1 hidden layer, 1024 Fourier features, generator 2 x 512, Adam 2e-4,
batch 100. ``pool`` > 1 pools the input and the reconstruction target (a CPU preset; ``pool_filter``
'binomial' aliases far less than plain averaging;
``decode`` still renders at any resolution since the generator is a function of coordinates).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from histolatent.config import Config
from histolatent.losses.kl import target_kl
from histolatent.losses.likelihood import reconstruction_nll
from histolatent.models.base import LossTermsModel
from histolatent.models.registry import register_model
from histolatent.nn.fourier import (
    SpatialGenerator,
    at_least_float32,
    coordinate_grid,
    grid_axes,
    wrap_angle,
)
from histolatent.nn.groupconv import LiftingConv2d
from histolatent.nn.target_layers import PointwiseGroupConv

__all__ = ["TargetVAE", "TargetVAEConfig", "flops_per_image"]

_LOGSTD_RANGE = (-8.0, 4.0)


def binomial_pool(x: Tensor, pool: int) -> Tensor:
    """Downsample ``(B, C, D, D)`` by ``pool`` with the separable filter ``box_pool * [1, 2, 1] / 4``
    (``[1, 3, 3, 1] / 8`` for ``pool = 2``), edges replicated -> ``(B, C, D / pool, D / pool)``.

    Output pixel ``i`` is centred where average pooling's is (input ``pool i + (pool - 1) / 2``),
    so coordinates are unchanged; computed in float32 even under autocast.
    """
    tap = torch.ones(pool, dtype=torch.float64) / pool
    k1 = F.conv1d(F.pad(tap, (2, 2))[None, None], torch.tensor([[[0.25, 0.5, 0.25]]], dtype=torch.float64))[0, 0]
    k2 = (k1[:, None] * k1[None, :]).float().to(x.device)  # (pool + 2, pool + 2)
    c = x.shape[1]
    with torch.autocast(x.device.type, enabled=False):
        xp = F.pad(x.float(), (1, 1, 1, 1), mode="replicate")
        return F.conv2d(xp, k2.expand(c, 1, *k2.shape).contiguous(), stride=pool, groups=c)


def flops_per_image(c: TargetVAEConfig, *, training: bool = True) -> dict[str, float]:
    """Matmul/conv FLOPs (a multiply-add counts 2) of one image through TARGET-VAE.

    Forward, plus for ``training`` the backward pass: weight gradients everywhere, input
    gradients everywhere except into the image (the lifting conv) — the generator needs them
    down to the Fourier phases since ``theta`` and ``t`` are differentiable. Elementwise work
    (activations, cos/sin, softmax) is not counted. Returns ``{"encoder", "generator", "total"}``.
    """
    d = c.image_size // c.pool
    hw = (d + 2 * c.padding - c.kernel_size + 1) ** 2
    rc = c.n_rotations * c.channels
    n_out = 3 + 2 * c.z_dim
    lift = 2.0 * rc * hw * c.in_channels * c.kernel_size**2
    pointwise = c.n_pointwise * 2.0 * c.channels * c.channels * c.n_rotations * hw
    head = 2.0 * c.channels * n_out * c.n_rotations * hw
    p = d * d
    f_in = c.fourier_features or 2
    out_dim = c.in_channels * (2 if c.likelihood == "gaussian" and c.gaussian_std is None else 1)
    phase = 4.0 * c.fourier_features * p
    gen = 2.0 * p * (f_in * c.gen_hidden + (c.gen_layers - 1) * c.gen_hidden**2 + c.gen_hidden * out_dim)
    if training:
        enc = 2 * lift + 3 * (pointwise + head)
        gen_total = 3 * gen + 3.5 * phase  # phase recomputed in the backward, plus its two gradients
    else:
        enc, gen_total = lift + pointwise + head, gen + phase
    return {"encoder": enc, "generator": gen_total, "total": enc + gen_total}


class TargetVAEConfig(Config):
    """TARGET-VAE options; defaults are the authors' reference configuration (see module doc)."""

    in_channels: int = Field(1, ge=1)
    image_size: int = Field(50, ge=4, description="side D of the training images")
    pool: int = Field(1, ge=1, description="pool inputs and targets by this factor (CPU presets; see pool_filter)")
    pool_filter: Literal["box", "binomial"] = Field(
        "box", description="low-pass filter of the pooling: 'box' (plain average pooling) or 'binomial' "
        "(box * [1, 2, 1] / 4, i.e. [1, 3, 3, 1] / 8 for pool 2): far less aliasing, so one-pixel shifts "
        "of the input change the pooled image, and the inferred pose, much less")
    n_rotations: int = Field(8, ge=1, description="R: the P_R group of the lifting conv")
    channels: int = Field(128, ge=1)
    kernel_size: int = Field(28, ge=1, description="lifting kernel (in pooled pixels); larger than the object")
    padding: int = Field(8, ge=0)
    disk: bool = Field(False, description="disk-mask the lifting kernel (the authors' code: no mask)")
    n_pointwise: int = Field(1, ge=0, description="1x1 group conv hidden layers before the heads")
    z_dim: int = Field(2, ge=1)
    leaky_slope: float = 0.01
    fourier_features: int = Field(1024, ge=0, description="0: raw coordinates into the generator")
    fourier_scale: float = Field(1.0, gt=0, description="Fourier sigma in pixel spacings of the working grid")
    gen_hidden: int = Field(512, ge=1)
    gen_layers: int = Field(2, ge=1)
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    min_std: float = Field(0.02, gt=0, description="Gaussian likelihood: floor of the learned pixel std")
    gaussian_std: float | None = Field(None, gt=0, description="Gaussian likelihood: a fixed pixel std "
                                       "instead of a learned one (the generator then outputs means only)")
    t_prior_std: float = Field(0.1, gt=0, description="std of p(t), coordinate units ([-1, 1] image)")
    rotation_prior: Literal["uniform", "normal"] = "uniform"
    rotation_prior_std: float = Field(math.pi / 4, gt=0, description="normal p(r): std at the offsets")
    theta_prior_std: float | None = Field(None, gt=0, description="std of p(theta | r); None: pi / R")
    temperature: float = Field(1.0, gt=0, description="Gumbel-softmax temperature")
    beta: float = Field(1.0, ge=0, description="weight of the KL (1: the ELBO)")
    lr: float = Field(2e-4, gt=0)
    seed: int = Field(0, description="seed of the random Fourier features")

    @model_validator(mode="after")
    def _check(self):
        if self.image_size % self.pool:
            raise ValueError(f"image_size {self.image_size} must be divisible by pool {self.pool}")
        d = self.image_size // self.pool
        if d + 2 * self.padding - self.kernel_size + 1 < 1:
            raise ValueError(f"kernel_size {self.kernel_size} with padding {self.padding} is larger than the "
                             f"{d}x{d} (pooled) image")
        return self


@register_model("target-vae")
class TargetVAE(LossTermsModel):
    """TARGET-VAE (see the module docstring). ``encode(x)`` gives ``z``, ``theta``, ``t`` and the attention."""

    Config = TargetVAEConfig

    def __init__(self, config: TargetVAEConfig) -> None:
        super().__init__(config)
        c = config
        r = c.n_rotations
        self.lift = LiftingConv2d(c.in_channels, c.channels, c.kernel_size, r, padding=c.padding, disk=c.disk)
        self.pointwise = nn.ModuleList(PointwiseGroupConv(c.channels, c.channels, r) for _ in range(c.n_pointwise))
        self.n_out = 3 + 2 * c.z_dim  # attention, theta (mu, log std), z (mu, log std)
        self.head = PointwiseGroupConv(c.channels, self.n_out, r)
        out_dim = c.in_channels * (2 if c.likelihood == "gaussian" and c.gaussian_std is None else 1)
        self.generator = SpatialGenerator(c.z_dim, out_dim, fourier_features=c.fourier_features,
                                          sigma=c.fourier_scale * self.spacing, hidden=c.gen_hidden,
                                          n_layers=c.gen_layers, leaky_slope=c.leaky_slope, seed=c.seed)
        self._prior_cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    # -- constants ------------------------------------------------------------------------
    @property
    def spacing(self) -> float:
        """Coordinate step of one working (pooled) pixel: ``pool * 2 / (D - 1)``."""
        return self.config.pool * 2.0 / (self.config.image_size - 1)

    @property
    def theta_prior_std(self) -> float:
        c = self.config
        return c.theta_prior_std if c.theta_prior_std is not None else math.pi / c.n_rotations

    def offsets(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
        """Rotation offsets ``2 pi r / R`` wrapped to ``(-pi, pi]``: ``(R,)``."""
        r = self.config.n_rotations
        return wrap_angle(torch.arange(r, dtype=torch.float64) * (2 * math.pi / r)).to(device, dtype)

    def translation_grid(self, height: int, width: int, device: torch.device | str = "cpu",
                         dtype: torch.dtype = torch.float32) -> Tensor:
        """Coordinates ``(H * W, 2)`` of the attention locations (centre of the map = image centre)."""
        return coordinate_grid(height, width, spacing=self.spacing, device=device, dtype=dtype)

    def log_priors(self, height: int, width: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """``(log p(t) (H W,), log p(r) (R,))``, each normalised (computed in float64); cached."""
        key = (height, width, str(device), dtype)
        if key not in self._prior_cache:
            c = self.config
            grid = self.translation_grid(height, width, dtype=torch.float64)
            log_pt = torch.log_softmax(-grid.pow(2).sum(1) / (2 * c.t_prior_std**2), dim=0)
            if c.rotation_prior == "uniform":
                log_pr = torch.full((c.n_rotations,), -math.log(c.n_rotations), dtype=torch.float64)
            else:
                off = self.offsets(dtype=torch.float64)
                log_pr = torch.log_softmax(-off.pow(2) / (2 * c.rotation_prior_std**2), dim=0)
            self._prior_cache[key] = (log_pt.to(device, dtype), log_pr.to(device, dtype))
        return self._prior_cache[key]

    def log_prior_map(self, height: int, width: int, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> Tensor:
        """``log p(t, r) = log p(r) + log p(t)`` flattened in (r, i, j) order: ``(R H W,)``."""
        log_pt, log_pr = self.log_priors(height, width, device, dtype)
        return (log_pr[:, None] + log_pt[None, :]).reshape(-1)

    # -- inference network ----------------------------------------------------------------
    def prepare(self, x: Tensor) -> Tensor:
        """Pool ``(B, C, D, D)`` by ``pool`` with ``pool_filter`` (identity for ``pool = 1``)."""
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"TARGET-VAE expects images (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        p = self.config.pool
        if p == 1:
            return x
        if self.config.pool_filter == "box":
            return F.avg_pool2d(x, p)
        return binomial_pool(x, p)

    def encoder_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Per-location, per-rotation parameters of an already pooled input ``(B, C, D', D')``.

        Returns float32 ``{"logits" (B, R, H, W), "theta_mu", "theta_logstd" (B, R, H, W),
        "z_mu", "z_logstd" (B, Z, R, H, W)}``; ``theta_mu`` excludes the offset.
        """
        slope = self.config.leaky_slope
        # out-of-place activations: in place on these views would cost a full copy in backward
        h = F.leaky_relu(self.lift(x), slope)  # (B, C, R, H, W)
        for layer in self.pointwise:
            h = F.leaky_relu(layer(h), slope)
        out = at_least_float32(self.head(h))  # (B, 3 + 2Z, R, H, W)
        z = self.config.z_dim
        lo, hi = _LOGSTD_RANGE
        return {"logits": out[:, 0], "theta_mu": out[:, 1], "theta_logstd": out[:, 2].clamp(lo, hi),
                "z_mu": out[:, 3:3 + z], "z_logstd": out[:, 3 + z:].clamp(lo, hi)}

    def posterior(self, x: Tensor) -> dict[str, Tensor]:
        """Maps of :meth:`encoder_maps` plus ``log_q (B, R H W)`` and ``log_prior (R H W,)``."""
        maps = self.encoder_maps(self.prepare(x))
        _, r, h, w = maps["logits"].shape
        log_prior = self.log_prior_map(h, w, x.device, maps["logits"].dtype)
        maps["log_prior"] = log_prior
        maps["log_q"] = torch.log_softmax(maps["logits"].reshape(x.shape[0], -1) + log_prior, dim=1)
        return maps

    # -- generative network ---------------------------------------------------------------
    def render(self, z: Tensor, theta: Tensor, t: Tensor, height: int, width: int | None = None, *,
               spacing: float | None = None) -> Tensor:
        """Generator output on an ``height x width`` grid: ``(B, P, out_dim)`` logits / (mean, log std)."""
        width = height if width is None else width
        grid = grid_axes(height, width, spacing=self.spacing if spacing is None else spacing, device=z.device)
        return self.generator(z, theta, t, grid)

    @torch.no_grad()
    def decode(self, z: Tensor, theta: Tensor | float = 0.0, t: Tensor | None = None, *,
               size: int | None = None) -> Tensor:
        """Render ``z (B, Z)`` at rotation ``theta`` and position ``t`` (default: canonical pose).

        ``size`` is in input pixels (default: ``image_size``); returns ``(B, C, size, size)``
        probabilities (Bernoulli) or means (Gaussian).
        """
        c = self.config
        b = z.shape[0]
        theta = torch.as_tensor(theta, dtype=torch.float32, device=z.device).expand(b)
        t = torch.zeros(b, 2, device=z.device) if t is None else t.to(z.device).float()
        size = c.image_size if size is None else size
        out = self.render(z.float(), theta, t, size, spacing=2.0 / (c.image_size - 1))
        img = out[..., : c.in_channels]
        img = torch.sigmoid(img) if c.likelihood == "bernoulli" else img.clamp(0, 1)
        return img.transpose(1, 2).reshape(b, c.in_channels, size, size)

    # -- training -------------------------------------------------------------------------
    def sample_noise(self, batch_size: int, n_cells: int, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Gumbel noise ``(B, N)`` and standard normals ``eps_z (B, Z)``, ``eps_theta (B,)``."""
        u = torch.rand(batch_size, n_cells, generator=generator).to(device)
        gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))
        eps_z = torch.randn(batch_size, self.config.z_dim, generator=generator).to(device)
        eps_theta = torch.randn(batch_size, generator=generator).to(device)
        return {"gumbel": gumbel, "eps_z": eps_z, "eps_theta": eps_theta}

    def loss_terms(self, x: Tensor, noise: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Negative ELBO (Eq. 6 with the KL of Eq. 5), batch-averaged, and its parts.

        ``noise`` (optional, for tests): ``{"gumbel" (B, R H W), "eps_z" (B, Z), "eps_theta" (B,)}``.
        """
        c = self.config
        xp = self.prepare(x)
        maps = self.encoder_maps(xp)
        b, r, h, w = maps["logits"].shape
        n = r * h * w
        dt = maps["logits"].dtype
        log_prior = self.log_prior_map(h, w, x.device, dt)
        log_q = torch.log_softmax(maps["logits"].reshape(b, n) + log_prior, dim=1)  # q(t, r | y)
        if noise is None:
            noise = self.sample_noise(b, n, x.device)
        noise = {k: v.to(dt) for k, v in noise.items()}
        s = torch.softmax((log_q + noise["gumbel"]) / c.temperature, dim=1)  # soft one-hot sample (B, N)

        theta_mu = maps["theta_mu"].reshape(b, n)
        theta_ls = maps["theta_logstd"].reshape(b, n)
        z_mu = maps["z_mu"].reshape(b, c.z_dim, n)
        z_ls = maps["z_logstd"].reshape(b, c.z_dim, n)
        offsets = self.offsets(x.device, dt)[:, None].expand(r, h * w).reshape(n)

        # attention-weighted parameters of q(theta | t, r, y) and q(z | t, r, y)
        th_mean = (s * (theta_mu + offsets)).sum(1)  # (B,)
        th_std = (s * theta_ls).sum(1).exp()
        zw = (torch.cat([z_mu, z_ls], 1) * s[:, None, :]).sum(-1)  # (B, 2Z); a K=1 bmm is slower
        z_mean, z_std = zw[:, : c.z_dim], zw[:, c.z_dim:].exp()
        theta = th_mean + th_std * noise["eps_theta"]
        z = z_mean + z_std * noise["eps_z"]
        grid = self.translation_grid(h, w, x.device, dt)  # (H W, 2)
        t = s.reshape(b, r, h * w).sum(1) @ grid  # (B, 2)

        out = self.render(z, theta, t, xp.shape[-2], xp.shape[-1])
        recon = reconstruction_nll(out, xp, c.likelihood, min_std=c.min_std, fixed_std=c.gaussian_std)
        kl = target_kl(log_q, log_prior, theta_mu, theta_ls, z_mu, z_ls, self.theta_prior_std)
        loss = recon + c.beta * kl["kl"]
        return {"loss": loss.mean(), "recon": recon.mean(), **{k: v.mean() for k, v in kl.items()}}

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        return {"image": torch.rand(batch_size, c.in_channels, c.image_size, c.image_size)}

    # -- inference API --------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: Tensor, *, average_phases: bool = False) -> dict[str, Tensor]:
        """Pose and content at the most probable ``(t, r)`` of ``q(t, r | y)``.

        ``average_phases`` (``pool > 1`` only): average ``q(t, r | y)`` over the ``pool^2``
        sampling phases of the pooling (the image moved by 0 .. pool-1 pixels before pooling) and
        take the mode of the average; ``theta`` and ``z`` are then ``q``-weighted means over the
        phases at that cell. A pooled encoder is not invariant to sub-pool shifts: on MNIST
        digits(U) a one-pixel shift turns about 5 % of near-symmetric digits by pi, and the
        average removes part of that (benchmarks/target_vae.py). Costs ``pool^2`` encoder passes.

        Returns ``{"z" (B, Z), "z_logstd" (B, Z), "theta" (B,) in (-pi, pi], "theta_logstd" (B,),
        "t" (B, 2), "r" (B,) rotation index, "attention" (B, R, H, W) = q(t, r | y)}``.
        """
        p = self.config.pool if average_phases else 1
        phases = [self.posterior(F.pad(x, (0, dj, 0, di))[..., di:, dj:] if di or dj else x)
                  for di in range(p) for dj in range(p)]
        b = x.shape[0]
        _, r, h, w = phases[0]["logits"].shape
        log_q = torch.stack([m["log_q"] for m in phases])  # (P, B, N)
        log_q_mean = torch.logsumexp(log_q, 0) - math.log(len(phases))
        idx = log_q_mean.argmax(dim=1)  # (B,)
        ri, loc = idx // (h * w), idx % (h * w)
        ar = torch.arange(b, device=x.device)
        wq = torch.softmax(log_q[:, ar, idx], dim=0)  # (P, B): phase weights at the chosen cell

        def at_cell(key: str) -> Tensor:  # (P, B, ...) values of every phase at the chosen cell
            return torch.stack([m[key].reshape(b, *m[key].shape[1:-3], -1)[ar, ..., idx] for m in phases])

        th = at_cell("theta_mu") + self.offsets(x.device)[ri]
        theta = torch.atan2((wq * th.sin()).sum(0), (wq * th.cos()).sum(0))
        wz = wq[..., None]
        # the phases move the image up-left by (pool - 1) / 2 pixels on average: undo that in t
        t = self.translation_grid(h, w, x.device)[loc] + (p - 1) / (self.config.image_size - 1)
        return {"z": (wz * at_cell("z_mu")).sum(0), "z_logstd": (wz * at_cell("z_logstd")).sum(0),
                "theta": wrap_angle(theta), "theta_logstd": (wq * at_cell("theta_logstd")).sum(0),
                "t": t, "r": ri, "attention": log_q_mean.exp().reshape(b, r, h, w)}

    @torch.no_grad()
    def detect(self, x: Tensor, *, max_objects: int = 10, min_distance: int | None = None,
               threshold: float = 0.05) -> list[list[dict[str, Tensor | float]]]:
        """Several objects on a larger canvas (appendix A.4): peaks of the attention map.

        The per-location score is ``log sum_r exp(a_{r,t}) p(r)`` (no translation prior: objects
        may be anywhere). Local maxima at least ``min_distance`` working pixels apart (default:
        half the kernel) whose probability is at least ``threshold`` times the largest peak's
        become objects, each with its ``z``, ``theta`` (most probable rotation at that location),
        ``t`` (coordinate units, canvas centre = 0, training-image scale) and ``position``
        ``(x, y)`` in canvas pixels.

        ``x``: ``(B, C, H, W)`` canvases (``H, W`` divisible by ``pool``). Returns one list of
        objects per canvas, strongest first.
        """
        c = self.config
        maps = self.encoder_maps(self.prepare(x))
        b, r, h, w = maps["logits"].shape
        _, log_pr = self.log_priors(h, w, x.device)
        score = torch.logsumexp(maps["logits"] + log_pr[None, :, None, None], dim=1)  # (B, H, W)
        md = max(1, c.kernel_size // 2) if min_distance is None else int(min_distance)
        peak = F.max_pool2d(score[:, None], 2 * md + 1, stride=1, padding=md)[:, 0]
        grid = self.translation_grid(h, w, x.device).reshape(h, w, 2)
        offsets = self.offsets(x.device)
        # attention cell (i, j) sits over pooled pixel i + (k - 1) / 2 - p
        shift = (c.kernel_size - 1) / 2 - c.padding
        results = []
        for bi in range(b):
            sc = score[bi]
            cand = torch.nonzero((sc >= peak[bi]) & (sc >= sc.max() + math.log(threshold)))
            order = sc[cand[:, 0], cand[:, 1]].argsort(descending=True)[:max_objects]
            objs = []
            for i, j in cand[order].tolist():
                rr = int(maps["logits"][bi, :, i, j].argmax())
                objs.append({
                    "z": maps["z_mu"][bi, :, rr, i, j].clone(),
                    "theta": float(wrap_angle(maps["theta_mu"][bi, rr, i, j] + offsets[rr])),
                    "t": grid[i, j].clone(),
                    "position": ((j + shift) * c.pool + (c.pool - 1) / 2, (i + shift) * c.pool + (c.pool - 1) / 2),
                    "r": rr,
                    "score": float(sc[i, j]),
                })
            results.append(objs)
        return results

    @torch.no_grad()
    def compose(self, objects: list[dict], height: int, width: int | None = None) -> Tensor:
        """Re-render detected ``objects`` (from :meth:`detect`) on a ``height x width`` canvas.

        Each object is rendered from its ``z`` at its ``theta`` and ``t`` and kept inside the
        ``image_size`` field of view around its position (the generator never saw coordinates
        outside it); objects are max-composited. Returns ``(C, H, W)``.
        """
        c = self.config
        width = height if width is None else width
        canvas = torch.zeros(c.in_channels, height, width)
        sp = 2.0 / (c.image_size - 1)
        ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32) - (height - 1) / 2,
                                torch.arange(width, dtype=torch.float32) - (width - 1) / 2, indexing="ij")
        for o in objects:
            t = o["t"].float().reshape(1, 2).to(self.device)
            b = torch.as_tensor(float(o["theta"])).reshape(1)
            grid = grid_axes(height, width, spacing=sp, device=self.device)
            out = self.generator(o["z"].float().reshape(1, -1).to(self.device), b.to(self.device), t, grid)
            img = out[0, :, : c.in_channels].float().cpu()
            img = torch.sigmoid(img) if c.likelihood == "bernoulli" else img.clamp(0, 1)
            img = img.t().reshape(c.in_channels, height, width)
            tx, ty = float(t[0, 0]) / sp, float(t[0, 1]) / sp  # object centre, px from the canvas centre
            inside = ((xs - tx).abs() <= (c.image_size - 1) / 2) & ((ys - ty).abs() <= (c.image_size - 1) / 2)
            canvas = torch.maximum(canvas, img * inside)
        return canvas

