"""Stain normalisation by colourisation (Yuan & Suh, paper 4, Sec. 3.1): the normaliser.

The network and its loss live in :mod:`histolatent.models.colorizer`; this module holds
the :class:`~histolatent.stain.StainNormalizer` whose ``fit`` trains that network on crops
of the target-style images. It lives in ``train`` because its ``fit`` *is* a training run:
it goes through :func:`histolatent.train.fit` like every other model (seeds, schedules,
NaN checks, progress in the log), and ``models`` may not import ``train``. It registers
itself under ``"colorizer"`` in the stain package's registry when :mod:`histolatent.train`
is imported (``stain`` never imports ``models`` or ``train``).

Example
-------
>>> from histolatent.stain import create_normalizer
>>> import histolatent.train  # registers "colorizer"
>>> create_normalizer("colorizer", steps=300).crop_px
64
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from histolatent.config import validate
from histolatent.errors import InputError
from histolatent.io.image import tensor_from_rgb8
from histolatent.models import create_model, model_class
from histolatent.models.colorizer import Colorizer, grey_from_rgb, pseudo_classes
from histolatent.stain.base import StainNormalizer, register_normalizer
from histolatent.train.engine import fit
from histolatent.train.run import load_model, read_metrics, save_weights

__all__ = ["ColorizationNormalizer"]


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
        small = [im for im in images if min(im.shape[:2]) >= self.crop_px]
        if not small:
            raise InputError(f"colorizer target: every image is smaller than crop_px={self.crop_px}")
        rng = np.random.default_rng(self.seed)
        model_cfg = {**self.model_overrides, "image_size": self.crop_px}
        n_classes = validate(model_class("colorizer").Config, model_cfg, source="<ColorizationNormalizer>",
                             prefix="model").n_classes
        # a pool of crops and their k-means pseudo-classes, fixed for the whole run
        pool = _random_crops(small, max(256, 8 * self.batch_size), self.crop_px, rng)
        grey = grey_from_rgb(tensor_from_rgb8(pool))[:, 0].numpy()
        labels, centroids = pseudo_classes(grey, n_classes, seed=self.seed)
        self.grey_quantiles_ = np.quantile(grey, np.linspace(0, 1, 101))
        stained = _stain_weight(torch.from_numpy(pool).permute(0, 3, 1, 2)).numpy()[:, 0] >= 1.0
        g_t = grey[stained] if stained.sum() > 100 else grey.ravel()
        self.grey_moments_ = np.array([g_t.mean(), max(float(g_t.std()), 1e-3)])
        device = torch.device(self.device)
        run_cfg = {"model": {"name": "colorizer", **model_cfg},
                   "train": {"steps": self.steps, "batch_size": self.batch_size, "seed": self.seed,
                             "accelerator": device.type, "log_every": max(1, self.steps // 30), "progress": False}}
        with contextlib.ExitStack() as stack:
            out = self.out or stack.enter_context(tempfile.TemporaryDirectory(prefix="colorizer-"))
            run = fit(run_cfg, data={"image": pool, "label": labels}, out=out)
            net = load_model(run, device=self.device)
            self.history_ = [{"step": int(r["step"]), **{k: float(v) for k, v in r.items()
                                                         if k not in ("step", "split", "elapsed_s", "lr") and v}}
                             for r in read_metrics(run) if r["split"] == "train"]
            # trained on the k-means classes; the centroids serve later training without labels
            net.centroids.copy_(torch.from_numpy(centroids))
            net.centroids_ready.fill_(True)
            if self.out is not None:
                save_weights(net, self.out, step=self.steps,
                             extra={"grey_quantiles": self.grey_quantiles_.tolist(),
                                    "grey_moments": self.grey_moments_.tolist(),
                                    "trained_by": "ColorizationNormalizer"})
        self.net = net.eval()
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

            net = create_model("colorizer", source="<colorizer state>", **state["config"])
            net.load_state_dict(load(base64.b64decode(state["weights_safetensors_b64"])))
            self.net = net.to(self.device).eval()
        else:
            raise InputError("colorizer state: needs 'run' or embedded weights")
        if state.get("grey_quantiles") is not None:
            self.grey_quantiles_ = np.asarray(state["grey_quantiles"], dtype=np.float64)
        if state.get("grey_moments") is not None:
            self.grey_moments_ = np.asarray(state["grey_moments"], dtype=np.float64)
