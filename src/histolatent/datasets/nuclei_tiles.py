"""Nuclei segmentation training data: image crops and 3-class targets.

``nuclei-synth``: SynthPath tiles (:func:`histolatent.synth.render.render_tile`) with their
exact nucleus instances. Splits use disjoint world seeds (train, val and test never share
tissue); stains are the reference stain or a random perturbed site per tile
(``stains="sites"``, a stain augmentation with ground truth).

``nuclei-folder``: the user's own annotations, MoNuSeg-style (``images/*.tif|png`` +
``annotations/*.xml`` polygons) or generic (``images/*`` + ``labels/*.png`` instance
maps), read by :mod:`histolatent.io.annotations`. Images are split 70/15/15 by a
permutation fixed by ``split_seed``.

Items: ``{"image": (3, S, S) float32 in [0, 1], "target": (S, S) int64}`` with classes
0 background, 1 nucleus, 2 boundary (:func:`histolatent.nuclei.unet.classes_from_instances`).
A crop is a pure function of ``(seed, index)``; flips, rotations and stain jitter are drawn
per step in the model (:class:`histolatent.models.unet.UNet`).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from histolatent.config import Config
from histolatent.datasets.registry import register_dataset
from histolatent.errors import InputError
from histolatent.io.image import tensor_from_rgb8

_SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}


def synth_tile_seed(split: str, index: int, split_seed: int = 0) -> int:
    """World seed of tile ``index`` of ``split``: disjoint ranges per split and split_seed."""
    return int(split_seed) * 10_000_000 + _SPLIT_OFFSET[split] * 1_000_000 + int(index)


def _crop_origin(seed: int, index: int, h: int, w: int, size: int) -> tuple[int, int]:
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), 0xC209])
    return int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))


class _CropDataset(Dataset):
    """Crops of a list of (rgb, target) pairs; crop ``i`` is a pure function of (seed, i)."""

    images: list[np.ndarray]
    targets: list[np.ndarray]

    def _setup(self, size: int, crops_per_image: int, seed: int) -> None:
        self.size, self.crops_per_image, self.seed = int(size), int(crops_per_image), int(seed)
        for img in self.images:
            if img.shape[0] < self.size or img.shape[1] < self.size:
                raise InputError(f"image of {img.shape[1]}x{img.shape[0]} px is smaller than the crop size {self.size}")

    def __len__(self) -> int:
        return len(self.images) * self.crops_per_image

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        k = i // self.crops_per_image
        img, tgt = self.images[k], self.targets[k]
        y, x = _crop_origin(self.seed, i, img.shape[0], img.shape[1], self.size)
        s = self.size
        image = tensor_from_rgb8(np.ascontiguousarray(img[y:y + s, x:x + s]))[0]  # (3, s, s)
        target = torch.from_numpy(tgt[y:y + s, x:x + s].astype(np.int64))
        return {"image": image, "target": target}


class NucleiSynthConfig(Config):
    size: int = Field(144, ge=16, description="crop side, px (the paper's 144)")
    mpp: float = Field(0.5, gt=0, description="µm per pixel of the rendered tiles")
    tile_px: int = Field(288, ge=16, description="rendered tile side, px")
    tiles: int = Field(160, ge=1, description="training tiles (val/test get a quarter each)")
    crops_per_tile: int = Field(4, ge=1)
    stains: Literal["reference", "sites"] = "sites"
    site_strength: float = Field(1.0, ge=0, description="strength of the random site stains")
    tissues: list[str] = Field(default_factory=lambda: ["breast", "tumour", "normal", "lymphoid", "stroma"])
    boundary_px: int = Field(1, ge=1)
    split_seed: int = 0


@register_dataset("nuclei-synth")
class NucleiSynthDataset(_CropDataset):
    """SynthPath tiles -> (image, 3-class target) crops; see the module docstring."""

    Config = NucleiSynthConfig

    def __init__(self, config: NucleiSynthConfig, *, split: str = "train", seed: int = 0) -> None:
        from histolatent.nuclei.unet import classes_from_instances
        from histolatent.synth.noise import seed32
        from histolatent.synth.render import render_tile
        from histolatent.synth.stain import site_stain

        if not config.tissues:
            raise InputError("data.tissues: expected at least one tissue preset")
        n = config.tiles if split == "train" else max(1, config.tiles // 4)
        self.images, self.targets, self.stain_sites = [], [], []
        for i in range(n):
            wseed = synth_tile_seed(split, i, config.split_seed)
            if config.stains == "sites":
                site = 1 + seed32(wseed, 0x57) % 100_000
                stain = site_stain(site, strength=config.site_strength)
            else:
                site, stain = 0, None
            tile = render_tile(config.tile_px, mpp=config.mpp, seed=wseed, stain=stain,
                               tissue=config.tissues[i % len(config.tissues)])
            self.images.append(tile.rgb)
            self.targets.append(classes_from_instances(tile.instances, boundary_px=config.boundary_px))
            self.stain_sites.append(site)
        self._setup(min(config.size, config.tile_px), config.crops_per_tile, seed)


class NucleiFolderConfig(Config):
    root: str = Field(..., description="folder with images/ and annotations/ (MoNuSeg XML) or labels/ (PNG)")
    annotations: Literal["auto", "monuseg", "labels"] = "auto"
    mpp: float = Field(0.25, gt=0, description="µm per pixel of the images (MoNuSeg: 0.25 at 40x)")
    target_mpp: float = Field(0.5, gt=0, description="µm per pixel the model trains at")
    size: int = Field(144, ge=16)
    crops_per_image: int = Field(32, ge=1)
    boundary_px: int = Field(1, ge=1)
    split_seed: int = 0


@register_dataset("nuclei-folder")
class NucleiFolderDataset(_CropDataset):
    """The user's annotated images -> (image, 3-class target) crops at ``target_mpp``."""

    Config = NucleiFolderConfig

    def __init__(self, config: NucleiFolderConfig, *, split: str = "train", seed: int = 0) -> None:
        from histolatent.io.annotations import read_annotated_folder
        from histolatent.nuclei.unet import classes_from_instances

        pairs = read_annotated_folder(config.root, kind=config.annotations)
        perm = np.random.default_rng(config.split_seed).permutation(len(pairs))
        n = len(pairs)
        a, b = max(1, int(round(0.7 * n))), max(1, int(round(0.85 * n)))
        idx = {"train": perm[:a], "val": perm[a:b] if b > a else perm[:1], "test": perm[b:] if n > b else perm[-1:]}[split]
        scale = config.mpp / config.target_mpp
        self.images, self.targets, self.names = [], [], []
        for k in idx:
            name, rgb, inst = pairs[int(k)]
            if abs(scale - 1) > 1e-3:
                w2, h2 = int(round(rgb.shape[1] * scale)), int(round(rgb.shape[0] * scale))
                rgb = cv2.resize(rgb, (w2, h2), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
                inst = cv2.resize(inst.astype(np.int32), (w2, h2), interpolation=cv2.INTER_NEAREST)
            self.images.append(rgb)
            self.targets.append(classes_from_instances(inst, boundary_px=config.boundary_px))
            self.names.append(name)
        size = min([config.size] + [min(im.shape[:2]) for im in self.images])
        self._setup(size, config.crops_per_image, seed)
