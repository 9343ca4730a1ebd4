"""Neural stain normalisation by colourisation (Yuan & Suh, paper 4, Sec. 3.1, Figs. 2 and 6).

A network trained on images of **one** stain style learns to colour grey images in that
style; normalising an image of any style is then "convert to grey, colourise". The
architecture follows Iizuka et al., "Let there be color!" (SIGGRAPH 2016), which the paper
adapts:

* **low-level encoder** - 8 convolutions 3 x 3 with batch norm and ReLU, strided
  (stride 2) instead of pooled, three times: 224 -> 28 px with 256 channels at the
  paper's width (``width = 64``: 64, 128, 128, 256, 256, 512 | 512, 256); the first six
  are shared with the global branch, the last two are the mid-level features;
* **global features** - 4 more convolutions (two strided) on the shared features, an
  average pool to ``global_pool`` x ``global_pool`` and three fully-connected layers
  -> a 256-d vector ``z`` (1024 -> 512 -> 256 at the paper's width), plus a
  **classification head** (512 -> 256 -> classes) on the 512-d layer;
* **fusion** - ``z`` is broadcast to every location of the mid-level features,
  concatenated, and mixed by a 1 x 1 convolution;
* **decoder** - convolutions and 2x nearest upsampling back to the input size; the
  output is the **chrominance** (CIELAB a*, b*; tanh, times 110), which is recombined with
  the input lightness L*: "grayscale in, colour out", as in Iizuka et al., so that fine
  structure comes from the full-resolution input and is not squeezed through the 1/8
  resolution bottleneck. (A first version predicted RGB directly; after 200 steps its
  outputs were blurred and textures hallucinated: SSIM 0.49 against the truth.)

Loss: ``MSE(ab_hat, ab) / 110^2 + class_weight * CE(logits, class)`` (paper: MSE plus a
classification loss at 1/30 to 1/300 of the total; Iizuka's 1/300 is the default).

"Grey" is CIELAB lightness L* / 100. A change of stain also changes lightness, which the
network never sees in training; the normaliser can map each image's lightness
distribution onto the target's before colourising (``lightness``; by default the source's
lightness is kept: see :class:`ColorizationNormalizer`).

**Classes.** The paper classifies its training images into four tissue labels (normal,
benign, in situ, invasive). Target-style images usually come without labels, so when a
batch has no ``"label"`` we use **pseudo-classes from clustering**: k-means (k =
``n_classes`` = 4) on a 20-number descriptor of each grey input (16-bin grey histogram,
mean gradient magnitude, fraction of dark, mid and bright pixels). The classification
term exists to give the low-level encoder a content-dependent gradient (the authors see
artefacts without it); appearance clusters - nuclei-dense, stromal, background-rich -
provide that signal with no labels, and they are predictable from the grey input, which
tissue labels of another data set might not be. :class:`ColorizationNormalizer` fits
k-means (scikit-learn, :func:`pseudo_classes`) once on the training crops; without labels
the model runs mini-batch k-means online (Sculley 2010) on buffers that live in its state
dict. Labels in the batch (``"label"``, int64) take precedence.

Training defaults are the paper's (Adadelta, lr 1.0, rho 0.9, eps 1e-6, batch 64). The stain
normaliser built on this network, :class:`histolatent.train.colorizer.ColorizationNormalizer`,
trains it through the engine (this module knows nothing of training loops); it uses a
narrower network, Adam and 64-96 px crops so that it trains in a minute or two on a CPU.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from histolatent.config import Config
from histolatent.errors import InputError
from histolatent.models.base import Batch, Optimizers, RepresentationModel
from histolatent.models.registry import register_model
from histolatent.stain.torch_ops import lab_from_rgb_torch, rgb_from_lab_torch

#: Scale of the predicted chrominance: a*, b* = AB_SCALE * tanh(output).
AB_SCALE = 110.0
#: Length of the clustering descriptor of a grey image.
DESCRIPTOR_DIM = 20


class ColorizerConfig(Config):
    """Paper defaults (Sec. 3.1) at ``width = 64``: a 224 px input gives 28 x 28 x 256 features."""

    image_size: int = Field(224, ge=16, description="training crop side (px); any size works at inference")
    width: int = Field(64, ge=4, description="base channel count (64 in the paper)")
    global_dim: int = Field(256, ge=8, description="global feature size (256 in the paper)")
    global_pool: int = Field(7, ge=1, description="pooled grid before the global FC layers")
    n_classes: int = Field(4, ge=2, description="tissue classes or pseudo-classes")
    class_weight: float = Field(1 / 300, ge=0, description="lambda of the classification loss")
    optimizer: Literal["adadelta", "adam"] = "adadelta"
    lr: float = Field(1.0, gt=0)
    rho: float = Field(0.9, gt=0, lt=1)
    eps: float = Field(1e-6, gt=0)
    kmeans_momentum: float = Field(0.05, gt=0, le=1, description="online k-means centroid step")


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def grey_from_rgb(x: Tensor) -> Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 1, H, W)`` CIELAB lightness L* / 100."""
    return lab_from_rgb_torch(x)[:, :1] / 100.0


def grey_descriptors(grey: Tensor) -> Tensor:
    """Clustering descriptor ``(B, 20)`` of grey images ``(B, 1, H, W)`` in [0, 1].

    16-bin histogram, mean gradient magnitude (x4), and the fractions of dark (< 0.35),
    mid and bright (> 0.8) pixels: tissue composition without colour.
    """
    g = grey.flatten(1).clamp(0, 1)
    idx = (g * 15.999).long()
    hist = torch.zeros(g.shape[0], 16, device=g.device, dtype=g.dtype).scatter_add_(1, idx, torch.ones_like(g))
    hist = hist / g.shape[1]
    gx = (grey[..., :, 1:] - grey[..., :, :-1]).abs().flatten(1).mean(1)
    gy = (grey[..., 1:, :] - grey[..., :-1, :]).abs().flatten(1).mean(1)
    grad = 4.0 * (gx + gy)[:, None]
    dark = (g < 0.35).float().mean(1, keepdim=True)
    bright = (g > 0.8).float().mean(1, keepdim=True)
    return torch.cat([hist, grad, dark, 1 - dark - bright, bright], dim=1)


@register_model("colorizer")
class Colorizer(RepresentationModel):
    """Grey -> RGB colourisation network with global features and a classification head."""

    Config = ColorizerConfig

    def __init__(self, config: ColorizerConfig) -> None:
        super().__init__(config)
        w = config.width
        c = [w, 2 * w, 2 * w, 4 * w, 4 * w, 8 * w]
        strides = [2, 1, 2, 1, 2, 1]
        low, cin = [], 1
        for cout, s in zip(c, strides, strict=True):
            low.append(_cbr(cin, cout, s))
            cin = cout
        self.low = nn.Sequential(*low)  # 6 convs, /8
        self.mid = nn.Sequential(_cbr(8 * w, 8 * w), _cbr(8 * w, 4 * w))  # convs 7-8
        self.glob_conv = nn.Sequential(_cbr(8 * w, 8 * w, 2), _cbr(8 * w, 8 * w), _cbr(8 * w, 8 * w, 2),
                                       _cbr(8 * w, 8 * w))
        self.glob_pool = nn.AdaptiveAvgPool2d(config.global_pool)
        self.glob_fc1 = nn.Sequential(nn.Linear(8 * w * config.global_pool**2, 16 * w), nn.ReLU(inplace=True),
                                      nn.Linear(16 * w, 8 * w), nn.ReLU(inplace=True))
        self.glob_fc2 = nn.Sequential(nn.Linear(8 * w, config.global_dim), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Linear(8 * w, 4 * w), nn.ReLU(inplace=True),
                                        nn.Linear(4 * w, config.n_classes))
        self.fuse = nn.Sequential(nn.Conv2d(4 * w + config.global_dim, 4 * w, 1, bias=False),
                                  nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True))
        half = max(4, w // 2)
        self.decoder = nn.Sequential(
            _cbr(4 * w, 2 * w), nn.Upsample(scale_factor=2, mode="nearest"),
            _cbr(2 * w, w), _cbr(w, w), nn.Upsample(scale_factor=2, mode="nearest"),
            _cbr(w, half), nn.Upsample(scale_factor=2, mode="nearest"),
            _cbr(half, half), nn.Conv2d(half, 2, 3, padding=1))
        # online k-means for pseudo-classes when batches carry no labels (in the state dict)
        self.register_buffer("centroids", torch.zeros(config.n_classes, DESCRIPTOR_DIM))
        self.register_buffer("centroids_ready", torch.zeros((), dtype=torch.bool))

    # -- network ----------------------------------------------------------------------------
    def _features(self, grey: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """grey (B, 1, H, W), H and W multiples of 8 -> (mid (B, 4w, H/8, W/8), z (B, 256), logits)."""
        low = self.low(grey)
        mid = self.mid(low)
        g = self.glob_pool(self.glob_conv(low)).flatten(1)
        h512 = self.glob_fc1(g)
        return mid, self.glob_fc2(h512), self.classifier(h512)

    def forward(self, grey: Tensor) -> tuple[Tensor, Tensor]:
        """Chrominance of ``(B, 1, H, W)`` lightness L*/100 -> (a*b* ``(B, 2, H, W)``, logits)."""
        h, w = grey.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        x = F.pad(grey, (0, pw, 0, ph), mode="replicate") if ph or pw else grey
        mid, z, logits = self._features(x)
        zmap = z[:, :, None, None].expand(-1, -1, mid.shape[2], mid.shape[3])
        fused = self.fuse(torch.cat([mid, zmap], dim=1))
        ab = AB_SCALE * torch.tanh(self.decoder(fused))
        return ab[..., :h, :w], logits

    def colorize(self, grey: Tensor) -> Tensor:
        """``(B, 1, H, W)`` lightness L*/100 -> ``(B, 3, H, W)`` RGB in [0, 1]."""
        ab = self(grey)[0]
        return rgb_from_lab_torch(torch.cat([grey * 100.0, ab], dim=1))

    @staticmethod
    def _as_grey(x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise InputError(f"colorizer: expected (B, 1|3, H, W) images, got {tuple(x.shape)}")
        return grey_from_rgb(x) if x.shape[1] == 3 else x

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """``{"z": (B, 256) global features, "class_logits": (B, n_classes)}`` of RGB or grey input."""
        grey = self._as_grey(x)
        h, w = grey.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            grey = F.pad(grey, (0, pw, 0, ph), mode="replicate")
        _, z, logits = self._features(grey)
        return {"z": z, "class_logits": logits}

    # -- pseudo-classes -----------------------------------------------------------------------
    @torch.no_grad()
    def pseudo_labels(self, grey: Tensor) -> Tensor:
        """Nearest-centroid pseudo-classes ``(B,)``; updates the centroids (mini-batch k-means)
        in training mode. Centroids start from the first batch's descriptors."""
        d = grey_descriptors(grey.float())
        k = self.config.n_classes
        if not bool(self.centroids_ready):
            # deterministic init: descriptors spread along their first principal direction
            order = torch.argsort((d - d.mean(0)) @ torch.linalg.svd(d - d.mean(0), full_matrices=False)[2][0])
            picks = order[torch.linspace(0, len(order) - 1, k).round().long()]
            self.centroids.copy_(d[picks])
            self.centroids_ready.fill_(True)
        labels = torch.cdist(d, self.centroids).argmin(dim=1)
        if self.training:
            for j in range(k):
                sel = labels == j
                if sel.any():
                    step = self.config.kmeans_momentum
                    self.centroids[j].mul_(1 - step).add_(step * d[sel].mean(0))
        return labels

    # -- training -----------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        if c.optimizer == "adadelta":
            return {"main": torch.optim.Adadelta(self.parameters(), lr=c.lr, rho=c.rho, eps=c.eps)}
        return {"main": torch.optim.Adam(self.parameters(), lr=c.lr)}

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        x = batch["image"]
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"colorizer: batch['image'] must be (B, 3, H, W) RGB, got {tuple(x.shape)}")
        lab = lab_from_rgb_torch(x)
        grey = lab[:, :1] / 100.0
        ab_hat, logits = self(grey)
        labels = batch.get("label")
        if labels is None:
            labels = self.pseudo_labels(grey)
        labels = labels.to(device=logits.device, dtype=torch.long)
        mse = F.mse_loss(ab_hat.float() / AB_SCALE, lab[:, 1:] / AB_SCALE)
        ce = F.cross_entropy(logits.float(), labels)
        return {"loss": mse + self.config.class_weight * ce, "mse": mse, "ce": ce}

    def training_step(self, batch: Batch, optimizers: Optimizers, step: int) -> dict[str, Tensor]:
        terms = self.loss(batch)
        optimizers.update(terms["loss"], "main")
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        return self.loss(batch)

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        s = self.config.image_size
        return {"image": torch.rand(batch_size, 3, s, s),
                "label": torch.randint(0, self.config.n_classes, (batch_size,))}


def pseudo_classes(grey: np.ndarray, n_classes: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means pseudo-classes of grey crops ``(N, H, W)`` in [0, 1] (scikit-learn, ``n_init=10``).

    Returns
    -------
    labels : numpy.ndarray
        ``(N,)`` int64.
    centroids : numpy.ndarray
        ``(n_classes, 20)`` descriptor centroids.
    """
    from sklearn.cluster import KMeans

    d = grey_descriptors(torch.from_numpy(grey[:, None]).float()).numpy()  # (N, 20)
    km = KMeans(n_clusters=n_classes, n_init=10, random_state=seed).fit(d)
    return km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32)
