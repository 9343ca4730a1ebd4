"""``dim``: Deep InfoMax (Hjelm et al. 2019), DRL's closest baseline, in DRL's VGG backbone.

papers/drl_deformation-representation-learning.txt re-implements DIM on VGG with DRL's
hyper-parameters (§4.B.1) and compares the two at several depths of the local features
(Table II). Facts of the authors' code are in REFERENCES.md (Deep InfoMax).

* Global code ``y`` ``(N, code_dim)``: the spatial mean of the last VGG block, then a linear
  layer (64 units as in DIM).
* Local objective (weight ``local_weight``, DIM's beta): the local features ``L`` (block
  ``local_block``, ``M x M``) pass through a 1 x 1 conv MI network (conv-BN-ReLU-conv plus an
  identity-initialised 1 x 1 shortcut, then LayerNorm over channels) and ``y`` through its
  fully connected twin (no LayerNorm); every (image, location, code) pair of the batch is
  scored by a dot product -- the same image is positive, the other images negative -- and the
  JSD estimate (:func:`~histolatent.losses.mi.in_batch_jsd_mi`) is maximised.
* Global objective (weight ``global_weight``, DIM's alpha; 0 by default, DIM(L)): a critic on
  (flattened ``L_i``, ``y_j``) pairs, FC ``global_hidden``-``global_hidden``-1 with ReLU on
  their concatenation, with the same in-batch positives and negatives.
* Prior matching (``prior_weight``, gamma = 0.1 as DIM(L)) on ``sigmoid(y)``
  (:mod:`histolatent.models.infomax`).

DIM's defaults (alpha, beta, gamma) = (0, 1, 0.1) are its best local variant, DIM(L), which
DRL describes ("local mutual information"). ``encode(x)``: ``z = y``, ``conv1 .. convB``.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from histolatent.losses.mi import in_batch_jsd_mi, pairwise_jsd_mi
from histolatent.models.infomax import InfoMaxConfig, InfoMaxModel, spatial_mean
from histolatent.models.registry import register_model

__all__ = ["DIM", "DIMConfig"]


class DIMConfig(InfoMaxConfig):
    code_dim: int = Field(64, ge=1, description="global code units")
    mi_units: int = Field(2048, ge=1, description="units of the MI networks")
    local_weight: float = Field(1.0, ge=0, description="beta: local-global MI")
    global_weight: float = Field(0.0, ge=0, description="alpha: global MI (0: DIM(L))")
    global_hidden: int = Field(512, ge=1, description="hidden units of the global critic")

    @model_validator(mode="after")
    def _some_objective(self) -> DIMConfig:
        if self.local_weight == 0 and self.global_weight == 0:
            raise ValueError("local_weight and global_weight are both 0: nothing to train the encoder")
        return self


def _identity_shortcut(layer: nn.Conv2d | nn.Linear) -> None:
    """Initialise a projection as a noisy copy of its input (where it has enough outputs)."""
    w = layer.weight.data.view(layer.weight.shape[0], -1)
    if w.shape[0] >= w.shape[1]:
        nn.init.uniform_(w, -0.01, 0.01)
        w[: w.shape[1]].fill_diagonal_(1.0)


class _MIConvNet(nn.Module):
    """``(N, C, M, M) -> (N, units, M, M)``: DIM's local MI network."""

    def __init__(self, cin: int, units: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(cin, units, 1, bias=False), nn.BatchNorm2d(units), nn.ReLU(inplace=True),
                                   nn.Conv2d(units, units, 1))
        self.shortcut = nn.Conv2d(cin, units, 1, bias=False)
        _identity_shortcut(self.shortcut)
        self.norm = nn.LayerNorm(units)

    def forward(self, x: Tensor) -> Tensor:
        h = self.block(x) + self.shortcut(x)
        return self.norm(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _MIFCNet(nn.Module):
    """``(N, d) -> (N, units)``: DIM's global MI network."""

    def __init__(self, cin: int, units: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(cin, units), nn.BatchNorm1d(units), nn.ReLU(inplace=True),
                                   nn.Linear(units, units))
        self.shortcut = nn.Linear(cin, units)
        _identity_shortcut(self.shortcut)

    def forward(self, y: Tensor) -> Tensor:
        return self.block(y) + self.shortcut(y)


class _GlobalCritic(nn.Module):
    """``T(L_i, y_j)`` for every pair: ``(N, C, M, M), (N, d) -> (N, N)`` logits.

    The first layer acts on the concatenation ``[flatten(L_i), y_j]``, computed as the sum of
    its two halves so that the N^2 pairs cost one hidden layer each.
    """

    def __init__(self, local_dim: int, code_dim: int, hidden: int) -> None:
        super().__init__()
        self.local_in = nn.Linear(local_dim, hidden)
        self.code_in = nn.Linear(code_dim, hidden, bias=False)
        self.rest = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, 1))

    def forward(self, local: Tensor, y: Tensor) -> Tensor:
        h = self.local_in(local.flatten(1))[:, None, :] + self.code_in(y)[None, :, :]  # (N, N, hidden)
        return self.rest(h)[..., 0]


@register_model("dim")
class DIM(InfoMaxModel):
    """Deep InfoMax: local (and optionally global) JSD MI with in-batch negatives, plus the prior."""

    Config = DIMConfig

    def __init__(self, config: DIMConfig) -> None:
        super().__init__(config)
        c = config
        c_local = c.local_channels
        self.head = nn.Linear(c.widths[-1], c.code_dim)
        self.local_net = _MIConvNet(c_local, c.mi_units) if c.local_weight > 0 else None
        self.code_net = _MIFCNet(c.code_dim, c.mi_units) if c.local_weight > 0 else None
        self.global_critic = (_GlobalCritic(c_local * c.local_size**2, c.code_dim, c.global_hidden)
                              if c.global_weight > 0 else None)
        self._init_prior(c.code_dim)

    def global_code(self, maps: list[Tensor]) -> Tensor:
        return self.head(spatial_mean(maps[-1]))

    def objective(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        c = self.config
        maps = self.blocks(x)
        local, y = maps[c.local_block - 1], self.global_code(maps)
        terms: dict[str, Tensor] = {}
        loss = y.new_zeros(())
        if self.local_net is not None:
            terms["local_mi"] = in_batch_jsd_mi(self.local_net(local).flatten(2), self.code_net(y))
            loss = loss - c.local_weight * terms["local_mi"]
        if self.global_critic is not None:
            t = self.global_critic(local, y)  # (N, N): diagonal = the image's own code
            terms["global_mi"] = pairwise_jsd_mi(t)
            loss = loss - c.global_weight * terms["global_mi"]
        terms["loss"] = loss
        terms[self.CODE] = y
        return terms
