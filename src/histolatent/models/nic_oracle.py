"""``nic-oracle``: the supervised upper bound of NIC (papers/nic_neural-image-compression.txt,
supplementary: "supervised-tissue baseline").

The VAE's encoder architecture E (5 strided convs 32 -> 512, dense 512, linear C), then dense
256 (BN, LReLU) and a softmax over ``n_classes``, trained with categorical cross-entropy on
the labels SynthPath knows (``batch["label"]``: the tissue class of
:mod:`histolatent.datasets.nic_patches`; the digit class on the digit task). Adam 1e-2, batch 64.
``encode(x) -> {"z": E(x) (N, C), "hidden": (N, 256), "logits": (N, K)}``: the code is
E's output, the layer the paper compresses with (the classifier's features).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from histolatent.models.base import Batch
from histolatent.models.nic_base import NICConfig, NICModel
from histolatent.models.registry import register_model


class NICOracleConfig(NICConfig):
    n_classes: int = Field(6, ge=2, description="SynthPath tissue classes (nic_patches.TISSUE_CLASSES)")
    head_hidden: int = Field(256, ge=1)
    lr: float = 1e-2


@register_model("nic-oracle")
class NICOracle(NICModel):
    Config = NICOracleConfig

    def __init__(self, config: NICOracleConfig) -> None:
        super().__init__(config)
        c = config
        self.encoder = self._encoder(c.code_size)
        self.hidden = nn.Sequential(nn.Linear(c.code_size, c.head_hidden), nn.BatchNorm1d(c.head_hidden, eps=1e-3),
                                    nn.LeakyReLU(c.slope))
        self.classifier = nn.Linear(c.head_hidden, c.n_classes)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        z = self.encoder(self.prepare(x))
        h = self.hidden(z)
        return {"z": z.float(), "hidden": h.float(), "logits": self.classifier(h).float()}

    def batch_terms(self, batch: Batch) -> dict[str, Tensor]:
        y = batch["label"].to(self.device).long()
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.config.n_classes):
            raise ValueError(f"nic-oracle: labels must lie in [0, {self.config.n_classes}), got "
                             f"{int(y.min())}..{int(y.max())}; set model.n_classes")
        logits = self.encode(batch["image"])["logits"]
        return {"loss": F.cross_entropy(logits, y), "accuracy": (logits.detach().argmax(1) == y).float().mean()}

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        out = super().example_batch(batch_size)
        out["label"] = torch.arange(batch_size) % self.config.n_classes
        return out
