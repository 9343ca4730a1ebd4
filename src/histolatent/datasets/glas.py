"""``glas``: gland segmentation crops from a folder in the GLaS challenge layout.

Splits (:mod:`histolatent.io.glas`): train -> the ``train_N`` images, val -> ``testA``,
test -> ``testA`` and ``testB`` (GLaS has no validation set of its own). Images are resampled
from ``source_mpp`` (GLaS: 0.62 µm/px) to ``mpp``. The train split can be cut to a
stratified ``label_fraction`` of its images (stratified by grade). Each split has
``crops_per_image`` items per image: ``tile_px`` crops at positions drawn from
``(seed, split, index)`` (a whole image when it is smaller, zero-padded). Items:
``{"image": (3, P, P) float32 in [0, 1], "target": (P, P) int64 (1 gland, 0 background)}``.
:meth:`GlaS.full` gives a whole resampled image and its instance labels, for the object-level
metrics. SynthPath writes a GLaS-like folder (:func:`histolatent.synth.write_glas`).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from histolatent.datasets.labelled import LabelFractionConfig, stratified_subset
from histolatent.datasets.registry import SPLITS, register_dataset
from histolatent.errors import InputError
from histolatent.io.glas import GLAS_MPP, glas_index, read_glas_image

_SPLITS = {"train": ("train",), "val": ("testA",), "test": ("testA", "testB")}


class GlaSConfig(LabelFractionConfig):
    root: str = Field(..., description="GLaS folder (train_N.bmp, train_N_anno.bmp, ..., Grade.csv)")
    source_mpp: float = Field(GLAS_MPP, gt=0, description="µm per pixel of the folder's images")
    mpp: float = Field(GLAS_MPP, gt=0, description="µm per pixel the model sees")
    tile_px: int = Field(128, ge=8, description="crop side, px at mpp")
    crops_per_image: int = Field(8, ge=1)


@register_dataset("glas")
class GlaS(Dataset):
    """GLaS crops (module docstring)."""

    Config = GlaSConfig

    def __init__(self, config: GlaSConfig, *, split: str = "train", seed: int = 0) -> None:
        self.config, self.split, self.seed = config, split, seed
        index = glas_index(config.root)
        index = index[index["split"].isin(_SPLITS[split])].reset_index(drop=True)
        if index.empty:
            raise InputError(f"data.root: {config.root!r} has no {'/'.join(_SPLITS[split])} images for the {split} split")
        if split == "train" and config.label_fraction < 1:
            keep = stratified_subset(index["grade"].to_numpy(), config.label_fraction, config.label_seed)
            index = index.iloc[keep].reset_index(drop=True)
        self.index = index
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.index) * self.config.crops_per_image

    def full(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``k`` of the split at ``mpp``: ``(H, W, 3)`` uint8 and ``(H, W)`` int32 instances."""
        if k not in self._cache:
            row = self.index.iloc[k]
            rgb, inst = read_glas_image(row["image"], row["anno"])
            f = self.config.source_mpp / self.config.mpp
            if f != 1:
                size = (max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f)))
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
                inst = cv2.resize(inst, size, interpolation=cv2.INTER_NEAREST)
            self._cache[k] = (rgb, inst)
        return self._cache[k]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = i % len(self.index)
        rgb, inst = self.full(k)
        p = self.config.tile_px
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, SPLITS.index(self.split), 0x61A5, i])
        y0 = int(rng.integers(0, max(1, rgb.shape[0] - p + 1)))
        x0 = int(rng.integers(0, max(1, rgb.shape[1] - p + 1)))
        img = np.zeros((p, p, 3), np.uint8)
        tgt = np.zeros((p, p), np.int64)
        crop = rgb[y0:y0 + p, x0:x0 + p]
        img[:crop.shape[0], :crop.shape[1]] = crop
        tgt[:crop.shape[0], :crop.shape[1]] = inst[y0:y0 + p, x0:x0 + p] > 0
        return {"image": torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0).contiguous(),
                "target": torch.from_numpy(tgt)}
