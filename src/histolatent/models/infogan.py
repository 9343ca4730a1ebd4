"""InfoGAN with a Wasserstein critic and gradient penalty, for unsupervised nucleus types.

Yuan & Suh (2018), papers/stain-normalization_infogan-nuclei.txt §3.3 and §4.2, after Hu
et al. (2018, their ref. [7]): a generator ``G(z, c)`` takes noise ``z`` (16-d in paper 4)
and a categorical code ``c`` (3 or 5 classes); a critic trunk ``D`` is shared by the
adversarial head ``D_D`` and the auxiliary head ``D_Q`` that predicts ``c`` (Fig. 5).

Losses (``losses/wgan.py``, ``losses/mi.py``):

* critic, ``n_critic = 5`` times per generator step:
  ``E[D_D(G(z, c))] - E[D_D(x)] + lambda * GP + w_MI * NLL(c | D_Q(G(z, c)))`` with
  ``lambda = 10`` (Eqs. 2–3). The MI term here trains ``D_Q`` and the shared trunk;
* generator: ``-E[D_D(G(z, c))] + w_MI * NLL(c | D_Q(G(z, c)))`` (Eq. 1), ``w_MI = 1``.

So the MI term updates G and Q, the Wasserstein term G and D. Adam with betas (0.5, 0.9);
learning rates 1e-4 for G and D_D, 2e-4 for D_Q (§3.3).

Networks (``arch="resnet"``, Hu et al.'s nets for 32 x 32 crops, generalised to any size
divisible by 8): G = Linear -> (C, s/8, s/8) -> 3 residual up-blocks -> BN-ReLU-conv3x3-tanh;
critic = an optimised residual down-block, a residual down-block, two residual blocks (all C
channels, no normalisation: the gradient penalty is per sample) -> ReLU -> spatial mean ->
``features`` (C). ``arch="dcgan"`` is a cheaper strided-conv pair (Radford et al. 2016) for
CPU budgets. Paper 4 trains on 40 x 40 crops; both 40 and 32 work.

Real images are augmented by the 8 flips/quarter-turns (paper 4 §4.2 augments with
rotations); with ``augment_fakes`` (default) generated images get the same random
transforms before the critic and Q, so the code must survive them (a class may not be an
orientation). Options beyond the paper, off by default: ``conditional_bn`` (the codes also
set the generator's batch-norm gains and biases, as in conditional GANs), ``augment_stain``
(random optical-density gains per channel). After training, ``encode(x)["c"]`` is
``q(c | x)``: the unsupervised class of a nucleus is its argmax.

On a 2-core CPU (benchmarks/infogan.py) the paper's setting (128-channel residual nets,
lr 1e-4, z 16-d, ~70k iterations) is out of reach; the benchmark uses ``arch="dcgan"``,
``conditional_bn``, ``z_dim=8``, ``augment_stain=0.2`` and larger learning rates for 8,000
generator steps, and says so in its results. Without the stain jitter the code often
settled on a tint (stain / tissue colour) instead of nuclear morphology.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn

from histolatent.config import Config
from histolatent.losses.mi import categorical_code_nll, gaussian_code_nll
from histolatent.losses.wgan import gradient_penalty, wasserstein_estimate
from histolatent.models.base import Batch, Optimizers, RepresentationModel
from histolatent.models.registry import register_model

__all__ = ["InfoGAN", "InfoGANConfig", "augment_dihedral", "augment_stain"]


class InfoGANConfig(Config):
    """Paper 4 §3.3 defaults (REFERENCES.md: InfoGAN for nuclei)."""

    image_size: int = Field(40, ge=16, description="crop side in px (paper 4: 40; Hu et al.: 32); divisible by 8")
    in_channels: int = Field(3, ge=1)
    n_classes: int = Field(3, ge=2, description="K, the categorical code (paper 4: 3 or 5)")
    z_dim: int = Field(16, ge=1, description="noise dims (paper 4: 16)")
    n_continuous: int = Field(0, ge=0, description="optional continuous codes U(-1, 1), predicted by Q (§5)")
    arch: Literal["resnet", "dcgan"] = "resnet"
    g_channels: int = Field(128, ge=4, description="generator width (Hu et al.: 128)")
    d_channels: int = Field(128, ge=4, description="critic width (Hu et al.: 128)")
    q_hidden: int = Field(128, ge=1, description="hidden units of the Q head")
    gp_weight: float = Field(10.0, ge=0, description="lambda of the gradient penalty")
    n_critic: int = Field(5, ge=1, description="critic steps per generator step")
    mi_weight: float = Field(1.0, ge=0, description="weight of the MI term (NLL of c)")
    continuous_weight: float = Field(1.0, ge=0, description="weight of the continuous-code NLL")
    lr_generator: float = Field(1e-4, gt=0)
    lr_critic: float = Field(1e-4, gt=0)
    lr_q: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.9)
    augment: Literal["none", "flip", "dihedral"] = "dihedral"
    augment_fakes: bool = Field(True, description="apply the same random flips/turns to generated images")
    augment_stain: float = Field(0.0, ge=0, description="SD of a random log-gain of each RGB optical density")
    conditional_bn: bool = Field(False, description="the codes also set the generator's BN gains and biases")
    gp_fp32: bool = Field(True, description="compute the gradient penalty in float32 (autocast off)")

    @field_validator("image_size")
    @classmethod
    def _div8(cls, v: int) -> int:
        if v % 8:
            raise ValueError(f"image_size must be divisible by 8 (3 up-samplings), got {v}")
        return v


def augment_dihedral(x: Tensor, mode: str = "dihedral") -> Tensor:
    """Random flip / quarter-turn per sample (torch's global RNG); ``x`` (B, C, H, W), H == W.

    ``mode``: "none", "flip" (horizontal and vertical flips) or "dihedral" (the 8 elements
    of D4). Returns a new tensor; the input is not modified.
    """
    if mode == "none":
        return x
    b = x.shape[0]
    r = torch.randint(0, 8, (b,))
    out = x.clone()
    if mode == "flip":
        for k, dims in ((1, (3,)), (2, (2,)), (3, (2, 3))):
            idx = (r % 4 == k).nonzero().flatten()
            if len(idx):
                out[idx] = torch.flip(x[idx], dims)
        return out
    for g in range(1, 8):
        idx = (r == g).nonzero().flatten()
        if len(idx):
            y = torch.rot90(x[idx], g % 4, dims=(2, 3))
            out[idx] = torch.flip(y, (3,)) if g >= 4 else y
    return out


class _BN(nn.Module):
    """Batch norm, optionally code-conditional (Dumoulin et al. 2017; Miyato & Koyama 2018).

    With ``n_code > 0`` the affine gain and bias are ``1 + W_g code`` and ``W_b code`` for the
    (B, n_code) code vector (one-hot c and continuous codes), so that c can set the style of
    every layer; otherwise a plain ``BatchNorm1d/2d``. ``x`` is (B, C) or (B, C, H, W).
    """

    def __init__(self, c: int, n_code: int = 0, dims: int = 2) -> None:
        super().__init__()
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.bn = bn(c, affine=n_code == 0)
        self.gain = nn.Linear(n_code, c, bias=False) if n_code else None
        self.bias = nn.Linear(n_code, c, bias=False) if n_code else None
        if n_code:
            nn.init.zeros_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, code: Tensor | None = None) -> Tensor:
        h = self.bn(x)
        if self.gain is None:
            return h
        shape = (x.shape[0], -1) + (1,) * (x.dim() - 2)
        return h * (1 + self.gain(code).view(shape)) + self.bias(code).view(shape)


def augment_stain(x: Tensor, strength: float) -> Tensor:
    """Random stain-like recolouring: each image's optical density per RGB channel scaled by ``exp(N(0, s^2))``.

    ``x`` (B, C, H, W) in [0, 1]; ``OD = -log x`` so the scaled image is ``x ** g``: white
    (glass) stays white. Differentiable (used on generated images too). Torch's global RNG.
    """
    if strength <= 0:
        return x
    g = torch.exp(torch.randn(x.shape[0], x.shape[1], 1, 1, device=x.device) * strength)
    return x.clamp_min(1e-3) ** g.to(x.dtype)


# -- residual networks (Hu et al. 2018 / Gulrajani et al. 2017) --------------------------------
class _UpBlock(nn.Module):
    """BN-ReLU-up2-conv3-BN-ReLU-conv3 + (up2-conv1) shortcut: (B, Cin, s, s) -> (B, Cout, 2s, 2s)."""

    def __init__(self, cin: int, cout: int, n_code: int = 0) -> None:
        super().__init__()
        self.bn1, self.bn2 = _BN(cin, n_code), _BN(cout, n_code)
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor, code: Tensor | None = None) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, code)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), code)))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))


class _DownBlock(nn.Module):
    """Critic residual block without normalisation; ``down`` halves the side by average pooling.

    ``first``: the "optimised" first block (conv-ReLU-conv, no leading ReLU on the image).
    """

    def __init__(self, cin: int, cout: int, *, down: bool, first: bool = False) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if (cin != cout or down) else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        s = x
        if self.down:
            h = F.avg_pool2d(h, 2)
            s = F.avg_pool2d(s, 2)
        return h + self.skip(s)


class _ResGenerator(nn.Module):
    """(B, z + K + n_cont) -> (B, C_img, s, s) in [-1, 1]; ``code`` (B, K + n_cont) for conditional BN."""

    def __init__(self, n_in: int, ch: int, size: int, c_img: int, n_code: int = 0) -> None:
        super().__init__()
        self.ch, self.s0 = ch, size // 8
        self.fc = nn.Linear(n_in, ch * self.s0 * self.s0)
        self.blocks = nn.ModuleList([_UpBlock(ch, ch, n_code) for _ in range(3)])
        self.bn = _BN(ch, n_code)
        self.conv = nn.Conv2d(ch, c_img, 3, padding=1)

    def forward(self, u: Tensor, code: Tensor | None = None) -> Tensor:
        h = self.fc(u).view(-1, self.ch, self.s0, self.s0)  # (B, C, s/8, s/8)
        for block in self.blocks:
            h = block(h, code)  # side doubles each time
        return torch.tanh(self.conv(F.relu(self.bn(h, code))))


class _ResTrunk(nn.Module):
    """(B, C_img, s, s) -> (B, C) features: 2 down-blocks (s -> s/4), 2 blocks, ReLU, spatial mean."""

    def __init__(self, c_img: int, ch: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(_DownBlock(c_img, ch, down=True, first=True), _DownBlock(ch, ch, down=True),
                                    _DownBlock(ch, ch, down=False), _DownBlock(ch, ch, down=False))
        self.out_dim = ch

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.blocks(x)).mean(dim=(2, 3))


# -- DCGAN-style networks (cheap) ---------------------------------------------------------------
class _ConvGenerator(nn.Module):
    """Linear -> (4C, s/8, s/8) -> 3 x [ConvT 4x4 stride 2] -> tanh; (B, n_in) -> (B, C_img, s, s)."""

    def __init__(self, n_in: int, ch: int, size: int, c_img: int, n_code: int = 0) -> None:
        super().__init__()
        self.ch, self.s0 = 4 * ch, size // 8
        self.fc = nn.Linear(n_in, self.ch * self.s0 * self.s0)
        self.bn0 = _BN(self.ch * self.s0 ** 2, n_code, dims=1)
        self.up1, self.bn1 = nn.ConvTranspose2d(4 * ch, 2 * ch, 4, 2, 1), _BN(2 * ch, n_code)
        self.up2, self.bn2 = nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1), _BN(ch, n_code)
        self.up3 = nn.ConvTranspose2d(ch, c_img, 4, 2, 1)

    def forward(self, u: Tensor, code: Tensor | None = None) -> Tensor:
        h = F.relu(self.bn0(self.fc(u), code)).view(-1, self.ch, self.s0, self.s0)  # (B, 4C, s/8, s/8)
        h = F.relu(self.bn1(self.up1(h), code))  # (B, 2C, s/4, s/4)
        h = F.relu(self.bn2(self.up2(h), code))  # (B, C, s/2, s/2)
        return torch.tanh(self.up3(h))  # (B, C_img, s, s)


class _ConvTrunk(nn.Module):
    """3 x [conv 4x4 stride 2, LeakyReLU 0.2] -> flatten; (B, C_img, s, s) -> (B, 4C (s/8)^2)."""

    def __init__(self, c_img: int, ch: int, size: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c_img, ch, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(2 * ch, 4 * ch, 4, 2, 1), nn.LeakyReLU(0.2))
        self.out_dim = 4 * ch * (size // 8) ** 2

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1)


@register_model("infogan")
class InfoGAN(RepresentationModel):
    """WGAN-GP InfoGAN (paper 4 §3.3): ``G(z, c)``, critic trunk + ``D_D`` and ``D_Q`` heads.

    Images enter and leave in [0, 1] (B, C, H, W); internally the networks see [-1, 1].
    Batches are ``{"image": (B, C, H, W)}``; one :meth:`training_step` is ``n_critic`` critic
    updates on ``n_critic`` disjoint chunks of the batch (so ``train.batch_size`` is
    ``n_critic`` times the per-update batch) followed by one generator update.
    """

    Config = InfoGANConfig

    def __init__(self, config: InfoGANConfig) -> None:
        super().__init__(config)
        c = config
        n_in = c.z_dim + c.n_classes + c.n_continuous
        n_code = c.n_classes + c.n_continuous if c.conditional_bn else 0
        if c.arch == "resnet":
            self.generator = _ResGenerator(n_in, c.g_channels, c.image_size, c.in_channels, n_code)
            self.trunk = _ResTrunk(c.in_channels, c.d_channels)
        else:
            self.generator = _ConvGenerator(n_in, c.g_channels, c.image_size, c.in_channels, n_code)
            self.trunk = _ConvTrunk(c.in_channels, c.d_channels, c.image_size)
        f = self.trunk.out_dim
        self.d_head = nn.Linear(f, 1)
        self.q_head = nn.Sequential(nn.Linear(f, c.q_hidden), nn.LeakyReLU(0.2),
                                    nn.Linear(c.q_hidden, c.n_classes + c.n_continuous))

    # -- networks ------------------------------------------------------------------------------
    def critic(self, x: Tensor) -> Tensor:
        """``D_D(D(x))``: critic scores (B,) for images in [-1, 1]."""
        return self.d_head(self.trunk(x)).squeeze(-1)

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(features (B, F), scores (B,), class logits (B, K), continuous means (B, n_cont))."""
        h = self.trunk(x)
        q = self.q_head(h)
        k = self.config.n_classes
        return h, self.d_head(h).squeeze(-1), q[:, :k], q[:, k:]

    def generate(self, z: Tensor, c: Tensor, c_cont: Tensor | None = None) -> Tensor:
        """``G(z, c)`` in [-1, 1]: z (B, z_dim), c (B, K) one-hot (or soft), c_cont (B, n_cont)."""
        codes = [c.to(z.dtype)]
        if self.config.n_continuous:
            if c_cont is None:
                c_cont = torch.zeros(z.shape[0], self.config.n_continuous, device=z.device)
            codes.append(c_cont.to(z.dtype))
        code = torch.cat(codes, dim=1)  # (B, K + n_cont)
        return self.generator(torch.cat([z, code], dim=1), code if self.config.conditional_bn else None)

    def sample_codes(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Draw ``z ~ N(0, I)`` (n, z_dim), ``c ~ U{0..K-1}`` (n,) int64, ``c_cont ~ U(-1, 1)`` (n, n_cont)."""
        c = self.config
        dev = self.device
        z = torch.randn(n, c.z_dim, generator=generator, device=dev)
        k = torch.randint(0, c.n_classes, (n,), generator=generator, device=dev)
        cc = torch.rand(n, c.n_continuous, generator=generator, device=dev) * 2 - 1
        return z, k, cc

    # -- training ------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        critic = torch.optim.Adam([
            {"params": [*self.trunk.parameters(), *self.d_head.parameters()], "lr": c.lr_critic},
            {"params": list(self.q_head.parameters()), "lr": c.lr_q},
        ], betas=c.betas)
        gen = torch.optim.Adam(self.generator.parameters(), lr=c.lr_generator, betas=c.betas)
        return {"critic": critic, "generator": gen}

    def _info_nll(self, logits: Tensor, cont: Tensor, k: Tensor, cc: Tensor) -> Tensor:
        nll = categorical_code_nll(logits, k)
        if self.config.n_continuous:
            nll = nll + self.config.continuous_weight * gaussian_code_nll(cont, cc)
        return nll

    def _augment(self, x: Tensor) -> Tensor:
        """Training augmentation of images in [-1, 1]: flips / quarter-turns, then stain jitter."""
        x = augment_dihedral(x, self.config.augment)
        if self.config.augment_stain > 0:
            x = augment_stain((x + 1) / 2, self.config.augment_stain) * 2 - 1
        return x

    def training_step(self, batch: Batch, optimizers: Optimizers, step: int) -> dict[str, Tensor]:
        cfg = self.config
        x = batch["image"]
        if tuple(x.shape[1:]) != (cfg.in_channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"batch['image']: expected (B, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size}) "
                             f"images (model.image_size), got {tuple(x.shape)}; make data.size_px match")
        real = self._augment(x.to(self.device) * 2 - 1)  # (B, C, H, W) in [-1, 1]
        chunks = list(real.chunk(cfg.n_critic)) if real.shape[0] >= cfg.n_critic else [real] * cfg.n_critic
        w_sum = gp_sum = gn_sum = nll_c_sum = loss_c_sum = 0.0
        for xr in chunks:
            b = xr.shape[0]
            z, k, cc = self.sample_codes(b)
            with torch.no_grad():
                fake = self.generate(z, F.one_hot(k, cfg.n_classes).float(), cc)
                if cfg.augment_fakes:
                    fake = self._augment(fake)
            _, d_both, logits, cont = self._heads(torch.cat([xr, fake.to(xr.dtype)]))  # one pass, (2b, ...)
            d_real, d_fake = d_both[:b], d_both[b:]
            w = wasserstein_estimate(d_real, d_fake)
            gp, norms = gradient_penalty(self.critic, xr, fake, fp32=cfg.gp_fp32)
            nll = self._info_nll(logits[b:], cont[b:], k, cc)
            loss = -w + cfg.gp_weight * gp + cfg.mi_weight * nll
            optimizers.update(loss, "critic")
            w_sum += w.detach()
            gp_sum += gp.detach()
            gn_sum += norms.mean()
            nll_c_sum += nll.detach()
            loss_c_sum += loss.detach()
        n = len(chunks)
        b = chunks[0].shape[0]
        z, k, cc = self.sample_codes(b)
        fake = self.generate(z, F.one_hot(k, cfg.n_classes).float(), cc)
        if cfg.augment_fakes:
            fake = self._augment(fake)
        _, d_fake, logits, cont = self._heads(fake)
        adv = -d_fake.float().mean()
        nll_g = self._info_nll(logits, cont, k, cc)
        loss_g = adv + cfg.mi_weight * nll_g
        optimizers.update(loss_g, "generator")
        acc = (logits.detach().argmax(1) == k).float().mean()
        return {"wasserstein": w_sum / n, "gp": gp_sum / n, "grad_norm": gn_sum / n, "critic_loss": loss_c_sum / n,
                "mi_nll_critic": nll_c_sum / n, "generator_adv": adv.detach(), "mi_nll": nll_g.detach(),
                "mi_bound": math.log(cfg.n_classes) - nll_g.detach(), "q_acc_fake": acc}

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        """W estimate on held-out reals vs fresh fakes, and how decided / balanced ``q(c | x)`` is."""
        x = batch["image"].to(self.device) * 2 - 1
        b = x.shape[0]
        z, k, cc = self.sample_codes(b)
        fake = self.generate(z, F.one_hot(k, self.config.n_classes).float(), cc)
        _, d, logits, _ = self._heads(torch.cat([x, fake.to(x.dtype)]))
        p = logits[:b].float().softmax(-1)
        ent = -(p * p.clamp_min(1e-12).log()).sum(-1).mean()
        pm = p.mean(0)
        marg = -(pm * pm.clamp_min(1e-12).log()).sum()
        w = wasserstein_estimate(d[:b], d[b:])
        return {"loss": -w, "wasserstein": w, "q_entropy": ent, "q_marginal_entropy": marg}

    # -- inference -----------------------------------------------------------------------------
    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """Representation of images ``x`` (B, C, H, W) in [0, 1].

        Returns ``c`` = q(c | x) (B, K) probabilities, ``c_logits`` (B, K), ``features``
        (B, F) of the shared critic trunk, ``critic`` (B,) scores and, with continuous
        codes, ``c_cont`` (B, n_cont) (the Q head's means).
        """
        h, d, logits, cont = self._heads(x * 2 - 1)
        out = {"c": logits.float().softmax(-1), "c_logits": logits, "features": h, "critic": d}
        if self.config.n_continuous:
            out["c_cont"] = cont
        return out

    @torch.no_grad()
    def sample(self, c: Tensor | int, z: Tensor | None = None, *, c_cont: Tensor | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """Generated images (B, C, H, W) in [0, 1] for classes ``c``.

        ``c``: (B,) class indices, (B, K) one-hot/soft codes, or an int (one image);
        ``z``: (B, z_dim) noise, drawn from N(0, I) with ``generator`` when omitted;
        ``c_cont``: (B, n_cont) continuous codes (zeros when omitted).
        """
        k = self.config.n_classes
        c = torch.as_tensor(c, device=self.device)
        if c.dim() == 0:
            c = c[None]
        onehot = F.one_hot(c.long(), k).float() if c.dim() == 1 else c.float()
        if onehot.shape[-1] != k:
            raise ValueError(f"c: expected codes for {k} classes, got shape {tuple(c.shape)}")
        if z is None:
            z = torch.randn(onehot.shape[0], self.config.z_dim, generator=generator, device=self.device)
        if z.shape != (onehot.shape[0], self.config.z_dim):
            raise ValueError(f"z: expected shape ({onehot.shape[0]}, {self.config.z_dim}), got {tuple(z.shape)}")
        return ((self.generate(z.to(self.device), onehot, c_cont) + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def class_grid(self, n_rows: int = 6, *, seed: int = 0) -> Tensor:
        """Fig. 7 of paper 4: (n_rows, K, C, H, W) images; row = one fixed z, column = class c."""
        k = self.config.n_classes
        g = torch.Generator(device=self.device).manual_seed(seed)
        z = torch.randn(n_rows, self.config.z_dim, generator=g, device=self.device)
        zz = z.repeat_interleave(k, dim=0)  # (n_rows * K, z_dim), rows of equal z
        cc = torch.arange(k, device=self.device).repeat(n_rows)
        imgs = self.sample(cc, zz)
        return imgs.view(n_rows, k, *imgs.shape[1:])

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        return {"image": torch.rand(max(batch_size, 1), c.in_channels, c.image_size, c.image_size)}
