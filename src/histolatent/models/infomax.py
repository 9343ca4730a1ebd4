"""What DRL and its Deep InfoMax baseline share: a VGG backbone, the prior term and the update rule.

DRL (papers/drl_deformation-representation-learning.txt) re-implements every self-supervised
baseline "by changing the backbone network to VGG and using the same hyper-parameter
configurations" (§4.B.1), and adds Deep InfoMax's prior-matching term "for a fair
comparison". This module holds those common parts; ``models/drl.py`` and ``models/dim.py``
write only their objectives (:meth:`InfoMaxModel.objective`). It registers no model.

* Input: float ``(N, C, S, S)`` in [0, 1] (PCam-like 96 px patches at ~1 µm/px by default),
  scaled to [-1, 1] inside the model.
* Backbone: :class:`~histolatent.nn.vgg.VGGEncoder` (VGG-19 by default). The local
  objectives read the output of block ``local_block`` (``M = S / 2^local_block``).
* Prior matching (Hjelm et al. 2019, §3.5; REFERENCES.md): the sigmoid of a global code
  ``y`` is pushed toward ``U(0, 1)^d`` by a discriminator (MLP 1000-200-1, ReLU) trained to
  tell prior samples from codes; the encoder minimises ``gamma * sp(-T(sigmoid(y)))``. The
  discriminator has its own Adam (``"prior"``); ``prior_weight = 0`` removes it.
* Update rule: one Adam (``"main"``) on the objective plus the prior term, with the prior
  discriminator frozen; then one step of the prior discriminator on the same codes.
* ``encode(x)``: ``z`` (the method's global representation), ``conv1 .. convB`` (each
  block's output averaged over space, ``(N, widths[b-1])``); :meth:`feature_maps` gives the
  blocks' full maps for probes and segmentation transfer.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from histolatent.losses.mi import prior_discriminator_loss, prior_generator_loss
from histolatent.models.base import Batch, Optimizers, RepresentationModel
from histolatent.nn.vgg import VGGBackboneConfig, VGGEncoder

__all__ = ["InfoMaxConfig", "InfoMaxModel", "PriorDiscriminator", "spatial_mean"]


class InfoMaxConfig(VGGBackboneConfig):
    """Backbone, prior term and optimiser (DRL §4.B.1: Adam 1e-4, batch 8, VGG-19)."""

    local_block: int = Field(4, ge=1, description="the block whose output the local objective reads (1-based)")
    prior_weight: float = Field(0.1, ge=0, description="gamma of DIM's prior matching (0: off)")
    prior_hidden: list[int] = Field(default_factory=lambda: [1000, 200])
    lr: float = Field(1e-4, gt=0)
    prior_lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)

    @model_validator(mode="after")
    def _fits(self) -> InfoMaxConfig:
        if self.local_block > len(self.widths):
            raise ValueError(f"local_block {self.local_block} is past the last of {len(self.widths)} blocks")
        return self

    @property
    def local_size(self) -> int:
        """``M``, the side of the local feature map."""
        return self.image_size // 2 ** self.local_block

    @property
    def local_channels(self) -> int:
        """Channels of the local feature map (the width of block ``local_block``)."""
        return self.widths[self.local_block - 1]


def spatial_mean(x: Tensor) -> Tensor:
    """Global average pooling ``(N, C, H, W) -> (N, C)``."""
    return x.mean(dim=(2, 3))


class PriorDiscriminator(nn.Module):
    """``(N, d)`` in [0, 1] -> ``(N,)`` logits: prior sample (positive) or code (negative)."""

    def __init__(self, dim: int, hidden: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(dim, h), nn.ReLU(inplace=True)]
            dim = h
        self.net = nn.Sequential(*layers, nn.Linear(dim, 1))

    def forward(self, v: Tensor) -> Tensor:
        return self.net(v).view(-1)


class InfoMaxModel(RepresentationModel):
    """Base of ``drl`` and ``dim``. Subclasses build their heads and write :meth:`objective`."""

    #: terms of :meth:`objective` that are not logged (tensors with a batch axis)
    CODE = "code"

    def __init__(self, config: InfoMaxConfig) -> None:
        super().__init__(config)
        c = config
        self.backbone = VGGEncoder(c.in_channels, c.widths, c.convs, batch_norm=c.batch_norm)

    def _init_prior(self, code_dim: int) -> None:
        c = self.config
        self.prior = PriorDiscriminator(code_dim, c.prior_hidden) if c.prior_weight > 0 else None

    # -- inputs and features ------------------------------------------------------------
    def images(self, x: Tensor) -> Tensor:
        """Check ``(N, C, S, S)``; float32 on the model's device, still in [0, 1]."""
        c = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"{self.registry_name}: expected (N, {c.in_channels}, {c.image_size}, {c.image_size}) "
                             f"images in [0, 1], got {tuple(x.shape)}")
        return x.to(self.device, torch.float32)

    def blocks(self, x: Tensor, upto: int | None = None) -> list[Tensor]:
        """Block outputs of images in [0, 1] (already checked), scaled to [-1, 1] first."""
        return self.backbone(x * 2.0 - 1.0, upto=upto)

    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        """``{"conv1": (N, C_1, S/2, S/2), ...}``: every block's output (the transferable encoder)."""
        return {f"conv{b + 1}": m for b, m in enumerate(self.blocks(self.images(x)))}

    def global_code(self, maps: list[Tensor]) -> Tensor:
        """The method's global representation ``z`` ``(N, d)`` from all block outputs."""
        raise NotImplementedError

    def parts(self, maps: list[Tensor]) -> dict[str, Tensor]:
        """The named parts of :meth:`encode` from all block outputs."""
        out = {"z": self.global_code(maps).float()}
        out.update({f"conv{b + 1}": spatial_mean(m).float() for b, m in enumerate(maps)})
        return out

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        return self.parts(self.blocks(self.images(x)))

    # -- objective and update rule ------------------------------------------------------
    def objective(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The method's loss terms on checked images ``x``: ``{"loss", ..., "code": (N, d)}``.

        ``loss`` excludes the prior term; ``code`` is the vector whose sigmoid is prior-matched.
        """
        raise NotImplementedError

    def loss_terms(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Every term of the encoder's loss, ``loss`` = objective + ``prior_weight * prior``, and ``code``."""
        terms = self.objective(self.images(x), generator)
        if self.prior is not None:
            terms["prior"] = prior_generator_loss(self.prior(torch.sigmoid(terms[self.CODE])))
            terms["loss"] = terms["loss"] + self.config.prior_weight * terms["prior"]
        return terms

    def prior_step_loss(self, code: Tensor) -> Tensor:
        """The prior discriminator's loss on ``U(0, 1)`` samples (torch's global generator) and ``sigmoid(code)``."""
        v = torch.rand(code.shape, device=code.device)
        return prior_discriminator_loss(self.prior(v), self.prior(torch.sigmoid(code.detach())))

    def training_step(self, batch: Batch, optimizers: Optimizers, step: int) -> dict[str, Tensor]:
        d = self.prior
        if d is not None:
            d.requires_grad_(False)  # the encoder's step must not touch the discriminator
        try:
            terms = self.loss_terms(batch["image"])
        finally:
            if d is not None:
                d.requires_grad_(True)
        optimizers.update(terms["loss"], "main")
        code = terms.pop(self.CODE)
        if d is not None:
            terms["prior_disc"] = self.prior_step_loss(code)
            optimizers.update(terms["prior_disc"], "prior")
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        # a fixed generator: every validation draws the same random fields, so val/loss can be compared
        terms = self.loss_terms(batch["image"], generator=torch.Generator().manual_seed(0))
        terms.pop(self.CODE)
        return terms

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        skip = {id(p) for p in self.prior.parameters()} if self.prior is not None else set()
        main = [p for p in self.parameters() if id(p) not in skip]
        opts = {"main": torch.optim.Adam(main, lr=c.lr, betas=tuple(c.betas))}
        if self.prior is not None:
            opts["prior"] = torch.optim.Adam(self.prior.parameters(), lr=c.prior_lr, betas=tuple(c.betas))
        return opts

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        g = torch.Generator().manual_seed(0)
        return {"image": torch.rand(batch_size, c.in_channels, c.image_size, c.image_size, generator=g)}
