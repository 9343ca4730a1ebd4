"""``drl``: Deformation Representation Learning (papers/drl_deformation-representation-learning.txt).

Xu, Hou et al. (2021). Each image ``x`` of a batch is paired with its elastically deformed
copy ``x^`` (§3.2, :mod:`histolatent.nn.deform`: ``σ ∈ [0.03 S, 0.05 S]`` drawn per image,
``α = 2 S``). Both pass through the VGG encoder in one batch (shared BN statistics, so
normalisation cannot tell them apart); block ``local_block`` gives the local features
``X_enc`` ``(N, C_1, M, M)``.

* **FEM** (§3.3, Eq. 5; :class:`~histolatent.nn.fem.FeatureEnhanceModule`): ``F(X)``, the
  concatenated dilated convolutions of ``X_enc`` with ``k = ceil(log2 M)`` rates 1, 2, 6, 12, ...
  Not part of the transferable encoder. With ``fem: false`` (Table IV's ablation) ``F(X)`` is
  the global descriptor ``F_G(x)`` broadcast over the ``M x M`` map.
* **LSH** (§3.3, Eqs. 4, 6): a fully convolutional discriminator ``D`` (three blocks of 512,
  256, 256 channels, then a one-channel score map) scores ``(X_enc, F(X))`` as positive and
  ``(X^_enc, F(X))`` -- the deformed image's local features with the original's ``F`` -- as
  negative, at every location. ``L_LSH = -I_JSD``: Eq. 6 writes ``log(sp(.))`` and a sigmoid
  output, which we read as Eq. 4's estimator on the logits (``sp(-T) = -log sigmoid(T)``),
  i.e. Deep InfoMax's JSD loss; the scores are averaged over locations and images.
* **GCH** (§3.4, Eqs. 7-10; :mod:`histolatent.losses.nce`): ``F_G`` = L2-normalised spatial
  mean of ``F(X)``; hard target (Eq. 8, the paper's default) or soft target (Eq. 10).
* **Loss** (Eq. 11): ``L_LSH + λ L_GCH`` plus DIM's prior term (§4.B.1) on the sigmoid of the
  un-normalised spatial mean of ``F(X)`` (:mod:`histolatent.models.infomax`). ``λ = 0.5`` for
  classification (0.01 for segmentation).

Ablations (Table IV): ``gch: none`` (LSH only), ``hard``, ``soft``; ``fem: false``.
``encode(x)``: ``z`` = spatial mean of ``X_enc`` (the encoder's own global feature),
``f_global`` = ``F_G(x)`` (the GCH embedding, FEM included), ``conv1 .. convB``.
The encoder's blocks past ``local_block`` are built (the transferable VGG-19) but the pretext
task does not train them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn

from histolatent.losses.mi import jsd_mi
from histolatent.losses.nce import hard_target_nce, soft_target_nce
from histolatent.models.infomax import InfoMaxConfig, InfoMaxModel, spatial_mean
from histolatent.models.registry import register_model
from histolatent.nn.deform import Padding, elastic_deform, sigma_px
from histolatent.nn.fem import FeatureEnhanceModule

__all__ = ["DRL", "DRLConfig"]


class DRLConfig(InfoMaxConfig):
    """The paper's defaults (§3, §4.B.1) for PCam-like patches."""

    gch: Literal["none", "hard", "soft"] = Field("hard", description="global context homogeneity loss (Eq. 8/10)")
    gch_weight: float = Field(0.5, ge=0, description="λ of Eq. 11 (0.5 classification, 0.01 segmentation)")
    gch_temperature: float = Field(1.0, gt=0, description="K = exp(f.f' / t); the paper: t = 1")
    gch_reduction: Literal["mean", "sum"] = Field("mean", description="Eqs. 8/10 sum over the batch; mean "
                                                  "keeps λ independent of the batch size")
    fem: bool = Field(True, description="Feature Enhance Module (false: F(X) = F_G(x) broadcast)")
    fem_channels: int = Field(128, ge=1, description="channels of each dilated branch")
    fem_kernel: int = Field(3, ge=1, description="s of Eq. 5")
    disc_channels: list[int] = Field(default_factory=lambda: [512, 256, 256])
    disc_kernel: int = Field(1, ge=1, description="kernel of the discriminator's convolutions (odd)")
    deform_sigma: tuple[float, float] = Field((0.03, 0.05), description="σ range as a fraction of S, drawn per image")
    deform_alpha: float = Field(2.0, ge=0, description="α as a multiple of S")
    deform_padding: Padding = "reflection"

    @field_validator("deform_sigma")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] <= v[1]:
            raise ValueError(f"deform_sigma must be (lo, hi) with 0 <= lo <= hi, got {v}")
        return v

    @field_validator("disc_kernel", "fem_kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"kernel sizes must be odd, got {v}")
        return v


class _LocalDiscriminator(nn.Module):
    """``D`` of Eq. 4: ``(N, C_in, M, M) -> (N, M, M)`` logits; conv-ReLU blocks, then one channel."""

    def __init__(self, cin: int, channels: list[int], kernel: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for ch in channels:
            layers += [nn.Conv2d(cin, ch, kernel, padding=kernel // 2), nn.ReLU(inplace=True)]
            cin = ch
        self.net = nn.Sequential(*layers, nn.Conv2d(cin, 1, kernel, padding=kernel // 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[:, 0]


@register_model("drl")
class DRL(InfoMaxModel):
    """LSH + GCH on elastic deformations (module docstring)."""

    Config = DRLConfig

    def __init__(self, config: DRLConfig) -> None:
        super().__init__(config)
        c = config
        c1 = c.local_channels
        self.enhance = FeatureEnhanceModule(c1, c.local_size, c.fem_channels, kernel_size=c.fem_kernel) if c.fem else None
        c2 = self.enhance.out_channels if c.fem else c1
        self.discriminator = _LocalDiscriminator(c1 + c2, c.disc_channels, c.disc_kernel)
        self._init_prior(c2)

    def enhanced(self, x_enc: Tensor) -> Tensor:
        """``F(X)`` ``(N, C_2, M, M)`` from ``X_enc``; without FEM, ``F_G(x)`` broadcast."""
        if self.enhance is not None:
            return self.enhance(x_enc)
        return F.normalize(spatial_mean(x_enc), dim=1)[:, :, None, None].expand_as(x_enc)

    def deform(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x^``: each image of ``x`` in [0, 1] under its own elastic field (§3.2 settings of the config)."""
        c = self.config
        s = min(x.shape[-2:])
        sigma = sigma_px(x.shape[0], s, c.deform_sigma, generator=generator)
        return elastic_deform(x, sigma=sigma, alpha=c.deform_alpha * s, generator=generator,
                              padding=c.deform_padding)[0]

    def global_code(self, maps: list[Tensor]) -> Tensor:
        return spatial_mean(maps[self.config.local_block - 1])

    def parts(self, maps: list[Tensor]) -> dict[str, Tensor]:
        out = super().parts(maps)
        out["f_global"] = F.normalize(spatial_mean(self.enhanced(maps[self.config.local_block - 1])), dim=1).float()
        return out

    def objective(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        c = self.config
        n = x.shape[0]
        x_hat = self.deform(x, generator)
        enc = self.blocks(torch.cat([x, x_hat]), upto=c.local_block)[-1]  # (2N, C_1, M, M)
        feat = self.enhanced(enc)  # (2N, C_2, M, M): F(X), then F(X^)
        e, e_hat, f = enc[:n], enc[n:], feat[:n]
        t_pos = self.discriminator(torch.cat([e, f], dim=1))  # (N, M, M)
        t_neg = self.discriminator(torch.cat([e_hat, f], dim=1))
        mi = jsd_mi(t_pos, t_neg)
        terms = {"lsh": -mi, "lsh_acc": 0.5 * ((t_pos > 0).float().mean() + (t_neg < 0).float().mean())}
        pooled = spatial_mean(feat)  # (2N, C_2)
        g = F.normalize(pooled, dim=1)
        if c.gch != "none":
            nce = hard_target_nce if c.gch == "hard" else soft_target_nce
            terms["gch"] = nce(g[:n], g[n:], temperature=c.gch_temperature, reduction=c.gch_reduction)
            terms["loss"] = terms["lsh"] + c.gch_weight * terms["gch"]
        else:
            terms["loss"] = terms["lsh"]
        with torch.no_grad():  # share of images whose nearest deformed image is their own copy
            terms["gch_acc"] = (g[:n] @ g[n:].T).argmax(dim=1).eq(torch.arange(n, device=g.device)).float().mean()
        terms[self.CODE] = pooled[:n]
        return terms
