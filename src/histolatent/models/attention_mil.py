"""``attention-mil``: gated attention multiple-instance learning on compressed slides
(Ilse, Tomczak and Welling, "Attention-based deep multiple instance learning", ICML 2018;
NIC's reference [7]).

A bag is the set of tissue cells of a grid crop (or of a whole grid): instance ``k`` is the
code ``x_k`` (C numbers) of a cell where the mask is True. Each is embedded,
``h_k = ReLU(W x_k + b)`` (``instance_dim`` M = 500 units), and weighted by gated attention
(Ilse et al., Eq. 9)::

    a_k = softmax_k( w^T (tanh(V h_k) * sigmoid(U h_k)) )      V, U: L x M (L = 128)

The bag is ``z = sum_k a_k h_k`` and one output unit gives the slide's logit (sigmoid for
classification, linear for regression, as ``slide-cnn``). Background cells are no
instances: their attention is exactly 0 and the attention of a bag sums to 1. The
prediction does not depend on where the cells are, so dihedral transforms of a crop leave
it unchanged. Adam 5e-4, weight decay 1e-4 (Ilse et al.'s MNIST-bags settings).

``forward(x, mask)`` / ``encode`` on crops ``(N, C, R, R)`` return ``{"pooled": (N, M),
"logits": (N,), "prediction": (N,), "attention": (N, R, R)}``; without a mask, the cells
whose code is not all zero are the tissue (the grid convention). :meth:`AttentionMIL.attention_map`
gives the attention over a whole grid ``(H, W)``, the second heatmap beside Grad-CAM's.

Example
-------
>>> import torch
>>> from histolatent.models import create_model
>>> mil = create_model("attention-mil", in_channels=4, instance_dim=8, attention_dim=4).eval()
>>> grid, mask = torch.randn(4, 5, 6), torch.rand(5, 6) < 0.5
>>> a = mil.attention_map(grid, mask)
>>> bool(a[~mask].eq(0).all()), round(float(a.sum()), 5)
(True, 1.0)
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from histolatent.models.registry import register_model
from histolatent.models.slide_base import SlideModel, SlideModelConfig

__all__ = ["AttentionMIL", "AttentionMILConfig"]


class AttentionMILConfig(SlideModelConfig):
    instance_dim: int = Field(500, ge=1, description="M: units of the instance embedding")
    attention_dim: int = Field(128, ge=1, description="L: units of the gated attention")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the instance embeddings")
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)


@register_model("attention-mil")
class AttentionMIL(SlideModel):
    """Gated attention MIL over the tissue cells of a grid (module docstring)."""

    Config = AttentionMILConfig

    def __init__(self, config: AttentionMILConfig) -> None:
        super().__init__(config)
        c = config
        self.embed = nn.Sequential(nn.Linear(c.in_channels, c.instance_dim), nn.ReLU(), nn.Dropout(c.dropout))
        self.attention_v = nn.Linear(c.instance_dim, c.attention_dim)
        self.attention_u = nn.Linear(c.instance_dim, c.attention_dim)
        self.attention_w = nn.Linear(c.attention_dim, 1, bias=False)  # a bias cancels in the softmax
        self.out = nn.Linear(c.instance_dim, 1)

    def scores(self, h: Tensor) -> Tensor:
        """Gated attention scores (before the softmax) of instance embeddings ``(T, M) -> (T,)``."""
        gate = torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))
        return self.attention_w(gate)[:, 0]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """Crops ``x (N, C, R, R)`` and tissue ``mask (N, R, R)`` -> named parts (module docstring)."""
        x, mask = self.check_input(x, mask)
        n, c, rows, cols = x.shape
        if mask is None:
            mask = x.ne(0).any(dim=1)
        empty = torch.nonzero(~mask.flatten(1).any(dim=1))[:, 0]
        if len(empty):
            raise ValueError(f"attention-mil: crops {empty.tolist()} of the batch have no tissue cell (an empty bag)")
        flat = mask.flatten(1)  # (N, R*R)
        bag, cell = flat.nonzero(as_tuple=True)  # one row per instance, bag-major
        h = self.embed(x.flatten(2).transpose(1, 2)[bag, cell])  # (T, M)
        s = torch.full(flat.shape, float("-inf"), device=x.device, dtype=h.dtype)
        s = s.index_put((bag, cell), self.scores(h))
        attention = torch.softmax(s, dim=1)  # (N, R*R): exactly 0 on background
        # z_n = sum_k a_k h_k over the instances of bag n, as one (N, T) x (T, M) product
        weights = torch.zeros(n, len(bag), device=x.device, dtype=h.dtype)
        weights = weights.index_put((bag, torch.arange(len(bag), device=x.device)), attention[bag, cell])
        pooled = weights @ h
        logits = self.out(pooled)[:, 0]
        return {"pooled": pooled, "logits": logits, "prediction": self.prediction(logits),
                "attention": attention.view(n, rows, cols)}

    @torch.no_grad()
    def attention_map(self, grid: Tensor, mask: Tensor | None = None) -> Tensor:
        """The attention over a whole grid: ``grid (C, H, W)``, ``mask (H, W)`` -> ``(H, W)``.

        Sums to 1 over the tissue cells, 0 on background (as the model is: call ``eval()``
        first for dropout to be off).
        """
        grid = torch.as_tensor(grid)
        if grid.ndim != 3:
            raise ValueError(f"attention-mil: expected a grid (C, H, W), got {tuple(grid.shape)}")
        m = None if mask is None else torch.as_tensor(mask)[None]
        return self(grid[None], m)["attention"][0]
