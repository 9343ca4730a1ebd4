"""``nic-siamese``: NIC's contrastive encoder (papers/nic_neural-image-compression.txt §2.2, supplementary).

A two-branch Siamese network S: both branches are the VAE's encoder architecture E (shared
weights, 5 strided convs 32 -> 512, dense 512, linear C); the two codes are concatenated and
classified by dense 256 (BN, LReLU) -> one sigmoid unit: same location (1) or different (0,
a neighbouring non-overlapping patch 75 % / a patch of another slide 25 %; see
:mod:`histolatent.datasets.nic_patches`). Binary cross-entropy, Adam 1e-2, batch 64.

Batches: ``{"image": (N, 3, P, P), "image2": (N, 3, P, P), "label": (N,)}`` in [0, 1].
``encode(x) -> {"z": E(x)}`` ``(N, C)``: the shared branch is the encoder.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from histolatent.losses.nic import same_different_bce
from histolatent.models.base import Batch
from histolatent.models.nic_base import NICConfig, NICModel
from histolatent.models.registry import register_model


class NICSiameseConfig(NICConfig):
    head_hidden: int = Field(256, ge=1)
    lr: float = 1e-2


@register_model("nic-siamese")
class NICSiamese(NICModel):
    """Siamese same/different classifier; its shared branch ``encoder`` is the patch encoder."""

    Config = NICSiameseConfig

    def __init__(self, config: NICSiameseConfig) -> None:
        super().__init__(config)
        c = config
        self.encoder = self._encoder(c.code_size)
        self.head = nn.Sequential(nn.Linear(2 * c.code_size, c.head_hidden), nn.BatchNorm1d(c.head_hidden, eps=1e-3),
                                  nn.LeakyReLU(c.slope), nn.Linear(c.head_hidden, 1))

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        return {"z": self.encoder(self.prepare(x)).float()}

    def pair_logits(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Logit of "same" for each pair, ``(N,)``; both branches in one pass (shared BN statistics)."""
        n = x1.shape[0]
        e = self.encoder(self.prepare(torch.cat([x1, x2])))
        return self.head(torch.cat([e[:n], e[n:]], dim=1)).view(-1)

    def batch_terms(self, batch: Batch) -> dict[str, Tensor]:
        y = batch["label"].to(self.device)
        logits = self.pair_logits(batch["image"], batch["image2"])
        loss = same_different_bce(logits, y)
        acc = ((logits.detach() > 0).long() == y.long()).float().mean()
        return {"loss": loss, "accuracy": acc}

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        out = super().example_batch(batch_size)
        g = torch.Generator().manual_seed(1)
        out["image2"] = torch.rand(out["image"].shape, generator=g)
        out["label"] = torch.arange(batch_size) % 2
        return out
