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
k-means (scikit-learn) once on the training crops; inside the engine (no fit step) the
model runs mini-batch k-means online (Sculley 2010) on buffers that live in its state
dict. Labels in the batch (``"label"``, int64) take precedence.

Training defaults are the paper's (Adadelta, lr 1.0, rho 0.9, eps 1e-6, batch 64);
:class:`ColorizationNormalizer` uses a narrower network, Adam and 64-96 px crops so that
it trains in a minute or two on a CPU.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from histolatent.config import Config
from histolatent.errors import InputError
from histolatent.models.base import Batch, Optimizers, PlainOptimizers, RepresentationModel
from histolatent.models.registry import register_model
from histolatent.stain.base import StainNormalizer, register_normalizer
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


# -- the normaliser -------------------------------------------------------------------------
def _stain_weight(x8: Tensor) -> Tensor:
    """``(B, 1, H, W)``: 0 on glass, 1 on stain; ramp of the largest channel OD (log10) from
    0.02 to 0.08, as in Reinhard (every channel above ~244 -> 0, some channel below ~212 -> 1)."""
    od_max = torch.log10(256.0 / (x8.amin(dim=1, keepdim=True).float() + 1.0))
    return ((od_max - 0.02) / 0.06).clamp(0.0, 1.0)


def _random_crops(images: list[np.ndarray], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random ``size`` x ``size`` crops (uint8 NHWC), images weighted by area."""
    areas = np.array([max(1, (im.shape[0] - size + 1) * (im.shape[1] - size + 1)) for im in images], float)
    which = rng.choice(len(images), size=n, p=areas / areas.sum())
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, k in enumerate(which):
        im = images[k]
        y = rng.integers(0, im.shape[0] - size + 1)
        x = rng.integers(0, im.shape[1] - size + 1)
        out[i] = im[y:y + size, x:x + size]
    return out


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

    d = grey_descriptors(torch.from_numpy(grey[:, None]).float()).numpy()
    km = KMeans(n_clusters=n_classes, n_init=10, random_state=seed).fit(d)
    return km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32)


@register_normalizer("colorizer")
class ColorizationNormalizer(StainNormalizer):
    """Stain normalisation by colourisation (paper 4): fit trains or loads, transform = grey -> colour.

    Glass (every channel brighter than about 244) is left as it is, with a soft ramp to the
    colourised tissue (darker than about 212 in some channel), as in Reinhard.

    Parameters
    ----------
    steps : int
        Training steps of :meth:`fit`.
    crop_px : int
        Training crop side (px).
    batch_size : int
        Crops per step.
    model : dict
        :class:`ColorizerConfig` overrides; the defaults here are a CPU-sized network
        (``width=16``, ``global_pool=4``) with Adam at 2e-3 (see the module docstring).
    lightness : {"source", "moments", "quantiles"}
        What lightness L* the colourised image gets. The network only ever saw the target
        style's lightness, and another stain's is darker or lighter. ``"source"`` keeps
        the image's own (default); ``"moments"`` gives the stained pixels the mean and
        standard deviation of the target's stained pixels (Reinhard on L* alone);
        ``"quantiles"`` maps the whole lightness distribution onto the target's, which
        pushes a tile whose content differs from the target's (all stroma, say) towards the
        target's mix of nuclei and stroma.
    seed : int
        Seeds the crops, k-means and the network initialisation.
    device : str
        Torch device for training and the numpy path.
    run : path-like, optional
        A finished run folder (``histolatent train`` with ``model.name=colorizer``) to load
        instead of training.
    out : path-like, optional
        Where :meth:`fit` writes its run (``model.json`` + ``weights.safetensors``); without
        it the weights are embedded in :meth:`to_dict`.
    """

    def __init__(self, *, steps: int = 600, crop_px: int = 64, batch_size: int = 32,
                 model: dict[str, Any] | None = None, lightness: str = "source", seed: int = 0,
                 device: str = "cpu", run: str | None = None, out: str | None = None,
                 min_tissue_fraction: float = 0.0, min_tissue_pixels: int = 1) -> None:
        super().__init__(min_tissue_fraction=min_tissue_fraction, min_tissue_pixels=min_tissue_pixels)
        if steps < 1 or crop_px < 16 or batch_size < 2:
            raise InputError(f"colorizer: need steps >= 1, crop_px >= 16, batch_size >= 2; got "
                             f"{steps}, {crop_px}, {batch_size}")
        self.steps, self.crop_px, self.batch_size = int(steps), int(crop_px), int(batch_size)
        self.model_overrides = {"width": 16, "global_pool": 4, "optimizer": "adam", "lr": 2e-3,
                                **(model or {})}
        if lightness not in ("source", "moments", "quantiles"):
            raise InputError(f"colorizer: lightness must be source, moments or quantiles, got {lightness!r}")
        self.lightness, self.seed, self.device = lightness, int(seed), str(device)
        self.run = None if run is None else str(run)
        self.out = None if out is None else str(out)
        self.net: Colorizer | None = None
        self.grey_quantiles_: np.ndarray | None = None
        self.grey_moments_: np.ndarray | None = None
        self.history_: list[dict[str, float]] = []
        if self.run is not None:
            self.load_run(self.run)

    # -- fit ----------------------------------------------------------------------------------
    def load_run(self, run_dir: str | os.PathLike) -> ColorizationNormalizer:
        """Load a trained colorizer from a run folder (and its grey quantiles, if saved)."""
        import json

        from histolatent.train.run import load_model

        net = load_model(run_dir, device=self.device)
        if not isinstance(net, Colorizer):
            raise InputError(f"run {str(run_dir)!r} holds a {type(net).__name__}, not a colorizer")
        self.net, self.run = net.eval(), str(run_dir)
        meta = json.loads((Path(run_dir) / "model.json").read_text())
        q = meta.get("grey_quantiles")
        self.grey_quantiles_ = None if q is None else np.asarray(q, dtype=np.float64)
        mom = meta.get("grey_moments")
        self.grey_moments_ = None if mom is None else np.asarray(mom, dtype=np.float64)
        return self

    def _fit(self, images: list[np.ndarray], masks: list[np.ndarray | None]) -> None:
        from histolatent.models.registry import create_model

        small = [im for im in images if min(im.shape[:2]) >= self.crop_px]
        if not small:
            raise InputError(f"colorizer target: every image is smaller than crop_px={self.crop_px}")
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        cfg = {**self.model_overrides, "image_size": self.crop_px}
        net = create_model("colorizer", source="<ColorizationNormalizer>", **cfg).to(self.device)
        # a pool of crops and their k-means pseudo-classes, fixed for the whole run
        pool = _random_crops(small, max(256, 8 * self.batch_size), self.crop_px, rng)
        pool_t = torch.from_numpy(pool).permute(0, 3, 1, 2).float().div_(255.0)
        grey = grey_from_rgb(pool_t)[:, 0].numpy()
        labels, centroids = pseudo_classes(grey, net.config.n_classes, seed=self.seed)
        net.centroids.copy_(torch.from_numpy(centroids))
        net.centroids_ready.fill_(True)
        self.grey_quantiles_ = np.quantile(grey, np.linspace(0, 1, 101))
        stained = _stain_weight(torch.from_numpy(pool).permute(0, 3, 1, 2)).numpy()[:, 0] >= 1.0
        g_t = grey[stained] if stained.sum() > 100 else grey.ravel()
        self.grey_moments_ = np.array([g_t.mean(), max(float(g_t.std()), 1e-3)])
        opt = PlainOptimizers(net.configure_optimizers())
        net.train()
        self.history_ = []
        labels_t = torch.from_numpy(labels)
        for step in range(self.steps):
            idx = torch.from_numpy(rng.choice(len(pool), self.batch_size, replace=False))
            x = pool_t[idx]
            if rng.random() < 0.5:  # flips and 90-degree turns: free augmentation
                x = x.flip(-1)
            x = torch.rot90(x, int(rng.integers(4)), dims=(-2, -1))
            batch = {"image": x.to(self.device), "label": labels_t[idx].to(self.device)}
            terms = net.training_step(batch, opt, step)
            if step % 20 == 0 or step == self.steps - 1:
                self.history_.append({"step": step, **{k: float(v) for k, v in terms.items()}})
        self.net = net.eval()
        if self.out is not None:
            from histolatent.train.run import save_weights

            save_weights(net, self.out, step=self.steps,
                         extra={"grey_quantiles": self.grey_quantiles_.tolist(),
                                "grey_moments": self.grey_moments_.tolist(), "trained_by": "ColorizationNormalizer"})
            self.run = self.out

    # -- transform ----------------------------------------------------------------------------
    def _match(self, grey: Tensor, w: Tensor) -> Tensor:
        """The lightness to colourise (see ``lightness``); ``w`` ``(B, 1, H, W)`` is the stain weight."""
        if self.lightness == "moments" and self.grey_moments_ is not None:
            sel = (w >= 1.0).float()
            n = sel.sum(dim=(1, 2, 3), keepdim=True).clamp(min=1.0)
            mu = (grey * sel).sum(dim=(1, 2, 3), keepdim=True) / n
            sd = (((grey - mu) ** 2 * sel).sum(dim=(1, 2, 3), keepdim=True) / n).sqrt().clamp(min=1e-3)
            ok = n >= 100
            mt, st = float(self.grey_moments_[0]), float(self.grey_moments_[1])
            moved = ((grey - mu) / sd * st + mt).clamp(0.0, 1.0)
            return torch.where(ok, w * moved + (1.0 - w) * grey, grey)
        if self.lightness != "quantiles" or self.grey_quantiles_ is None:
            return grey
        q = torch.linspace(0, 1, 101, device=grey.device, dtype=grey.dtype)
        tgt = torch.as_tensor(self.grey_quantiles_, device=grey.device, dtype=grey.dtype)
        out = torch.empty_like(grey)
        for i in range(grey.shape[0]):
            g = grey[i].flatten()
            src = torch.quantile(g[:: max(1, g.numel() // 65536)], q)
            src = torch.cummax(src + torch.arange(101, device=g.device, dtype=g.dtype) * 1e-7, 0).values
            pos = torch.searchsorted(src.contiguous(), g.contiguous()).clamp(1, 100)
            lo, hi = src[pos - 1], src[pos]
            t = ((g - lo) / (hi - lo).clamp(min=1e-7)).clamp(0, 1)
            out[i] = (tgt[pos - 1] + t * (tgt[pos] - tgt[pos - 1])).view_as(grey[i])
        return out

    @torch.no_grad()
    def _colorize255(self, x8: Tensor) -> Tensor:
        x = x8.to(device=self.device, dtype=torch.float32) / 255.0
        # glass stays glass: the network has rarely seen it and would tint it
        w = _stain_weight(x8.to(x.device))
        rgb = self.net.colorize(self._match(grey_from_rgb(x), w))
        return ((w * rgb + (1.0 - w) * x) * 255.0).to(x8.device)

    def _transform_one(self, rgb: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        if self._too_little_tissue(int(rgb.size // 3 if mask is None else mask.sum()), rgb.size // 3):
            return None
        x8 = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        out = self._colorize255(x8)[0].permute(1, 2, 0).numpy()
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def _transform_batch_torch(self, x8, mask):
        n = x8.shape[0]
        skipped = torch.zeros(n, dtype=torch.bool, device=x8.device)
        if mask is not None:
            cnt = mask.flatten(1).sum(1)
            total = mask[0].numel()
            skipped = (cnt < self.min_tissue_pixels) | (cnt < self.min_tissue_fraction * total)
        return self._colorize255(x8), skipped

    # -- state --------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self.net is not None

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "steps": self.steps, "crop_px": self.crop_px,
                "batch_size": self.batch_size, "model": self.model_overrides, "lightness": self.lightness,
                "seed": self.seed, "device": self.device, "out": self.out}

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "grey_quantiles": None if self.grey_quantiles_ is None else self.grey_quantiles_.tolist(),
            "grey_moments": None if self.grey_moments_ is None else self.grey_moments_.tolist()}
        if self.run is not None:
            state["run"] = str(Path(self.run).resolve())
        else:  # no run folder: embed the weights (safetensors, base64)
            from safetensors.torch import save

            sd = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
            state["config"] = self.net.config.to_dict()
            state["weights_safetensors_b64"] = base64.b64encode(save(sd)).decode("ascii")
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise InputError("colorizer state: expected a mapping")
        if state.get("run"):
            self.load_run(state["run"])
        elif state.get("weights_safetensors_b64"):
            from safetensors.torch import load

            from histolatent.models.registry import create_model

            net = create_model("colorizer", source="<colorizer state>", **state["config"])
            net.load_state_dict(load(base64.b64decode(state["weights_safetensors_b64"])))
            self.net = net.to(self.device).eval()
        else:
            raise InputError("colorizer state: needs 'run' or embedded weights")
        if state.get("grey_quantiles") is not None:
            self.grey_quantiles_ = np.asarray(state["grey_quantiles"], dtype=np.float64)
        if state.get("grey_moments") is not None:
            self.grey_moments_ = np.asarray(state["grey_moments"], dtype=np.float64)
