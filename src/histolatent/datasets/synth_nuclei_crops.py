"""SynthPath nucleus crops with their true type, split into disjoint train / val / test worlds.

The single-nucleus crops of papers/stain-normalization_infogan-nuclei.txt (§3.3: 40 x 40 px
crops of segmented nuclei of three types: epithelial, lymphocyte, fibroblast), rendered by
:func:`histolatent.synth.cells.cell_patches` with ground truth: each crop is rotated
uniformly about its nucleus and stained by one of ``sites`` perturbed H&E stains.

Splits never share a cell: train, val and test are drawn from different SynthPath seeds
(``1000 * split_seed + 1 / 2 / 3``), so a model evaluated on ``test`` has never seen its
cells, nor the tissue around them. The data do not depend on the run seed: every training
seed sees the same cells. Items: ``{"image": (3, H, W) float32 in [0, 1], "label": int64}``
(the index of the type in ``types``); :attr:`SynthNucleiCrops.table` holds the rest of the
ground truth (site, orientation, size, ...).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch.utils.data import Dataset

from histolatent.config import Config
from histolatent.datasets.registry import register_dataset
from histolatent.io.image import tensor_from_rgb8

__all__ = ["SynthNucleiCrops", "SynthNucleiCropsConfig", "split_seed_for", "synth_nuclei_crops"]

_SPLIT_OFFSET = {"train": 1, "val": 2, "test": 3}


class SynthNucleiCropsConfig(Config):
    size_px: int = Field(40, ge=8, description="crop side (paper 4: 40 px)")
    mpp: float = Field(0.5, gt=0, description="µm per pixel (40 px = 20 µm)")
    types: list[str] = ["epithelial", "lymphocyte", "fibroblast"]
    rotate: str | None = "uniform"
    translate_px: float = Field(0.0, ge=0)
    neighbours: bool = True
    stain_jitter: float = Field(1.0, ge=0, description="strength of the per-site stain perturbation")
    sites: int = Field(2, ge=1, description="number of stains (sites)")
    n_train: int = Field(3000, ge=1)
    n_val: int = Field(300, ge=1)
    n_test: int = Field(900, ge=1)
    split_seed: int = Field(0, ge=0, description="fixes the cells of all three splits")
    cache_dir: str | None = Field(None, description="keep rendered splits as .npz here (default: in memory only)")


def split_seed_for(split_seed: int, split: str) -> int:
    """The SynthPath seed of a split: disjoint for train / val / test."""
    return 1000 * int(split_seed) + _SPLIT_OFFSET[split]


@lru_cache(maxsize=1)
def renderer_fingerprint() -> str:
    """Hash of SynthPath's source: a disk cache made by another version of the renderer is not reused."""
    import histolatent.synth as synth

    h = hashlib.sha256()
    for f in sorted(Path(synth.__file__).parent.glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _key(cfg: SynthNucleiCropsConfig, split: str) -> str:
    d = cfg.to_dict()
    d.pop("cache_dir")
    d["split"] = split
    d["renderer"] = renderer_fingerprint()
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@lru_cache(maxsize=8)
def _render(key: str, cfg_json: str, split: str) -> tuple[np.ndarray, pd.DataFrame]:
    from histolatent.synth.cells import cell_patches

    c = SynthNucleiCropsConfig.model_validate_json(cfg_json)
    n = {"train": c.n_train, "val": c.n_val, "test": c.n_test}[split]
    images, table = cell_patches(n, size_px=c.size_px, mpp=c.mpp, seed=split_seed_for(c.split_seed, split),
                                 rotate=c.rotate, translate_px=c.translate_px, neighbours=c.neighbours,
                                 types=tuple(c.types), stain_jitter=c.stain_jitter, sites=c.sites)
    images.setflags(write=False)
    return images, table


def synth_nuclei_crops(config: SynthNucleiCropsConfig | None = None, split: str = "train",
                       **options) -> tuple[np.ndarray, pd.DataFrame]:
    """Rendered crops of one split: (images (N, H, W, 3) uint8, read-only; table with ``label``).

    Cached in memory per process (and on disk with ``cache_dir``): the benchmark's seeds
    share one rendering.
    """
    cfg = config if config is not None else SynthNucleiCropsConfig(**options)
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"split {split!r} must be one of {tuple(_SPLIT_OFFSET)}")
    key = _key(cfg, split)
    path = Path(cfg.cache_dir) / f"synth-nuclei-{key}.npz" if cfg.cache_dir else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as f:
            images = f["images"]
        table = pd.read_parquet(path.with_suffix(".parquet"))
    else:
        images, table = _render(key, json.dumps(cfg.to_dict(), sort_keys=True), split)
        if path is not None:
            _save(path, images, table)
    table = table.copy()
    table["label"] = table["type"].map({t: i for i, t in enumerate(cfg.types)}).astype(np.int64)
    table["split"] = split
    return images, table


def _save(path: Path, images: np.ndarray, table: pd.DataFrame) -> None:
    from histolatent.io.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path.with_suffix(".parquet")) as tmp:
        table.to_parquet(tmp)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, images=images)


@register_dataset("synth-nuclei-crops")
class SynthNucleiCrops(Dataset):
    """Map-style dataset over one split of :func:`synth_nuclei_crops`.

    ``image``: (3, H, W) float32 in [0, 1]; ``label``: int64 type index. The run ``seed`` is
    ignored on purpose (the same cells for every training seed).
    """

    Config = SynthNucleiCropsConfig

    def __init__(self, config: SynthNucleiCropsConfig, *, split: str = "train", seed: int = 0) -> None:
        self.config = config
        self.split = split
        self.images_uint8, self.table = synth_nuclei_crops(config, split)
        self.labels = torch.as_tensor(np.array(self.table["label"], dtype=np.int64))
        self.images = tensor_from_rgb8(self.images_uint8)  # (N, 3, H, W) float32, built once; items are views

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "label": self.labels[i]}
