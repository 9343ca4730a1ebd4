"""``pcam``: PatchCamelyon patches and labels from a folder in the official HDF5 layout.

Splits: train -> ``train``, val -> ``valid``, test -> ``test``
(:mod:`histolatent.io.pcam`). The train split can be cut to a stratified ``label_fraction``
(:mod:`histolatent.datasets.labelled`). SynthPath writes a PCam-like folder in the same layout
(:func:`histolatent.synth.write_pcam`). Items: ``{"image": (3, 96, 96) float32 in [0, 1],
"label": int64}``.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from histolatent.datasets.labelled import LabelFractionConfig, stratified_subset
from histolatent.datasets.registry import register_dataset
from histolatent.errors import InputError
from histolatent.io.pcam import PCamSplit

_SPLIT = {"train": "train", "val": "valid", "test": "test"}


class PCamConfig(LabelFractionConfig):
    root: str = Field(..., description="folder holding camelyonpatch_level_2_split_*_{x,y}.h5")
    limit: int | None = Field(None, ge=1, description="use only the first N items of each split")


@register_dataset("pcam")
class PCam(Dataset):
    """PCam patches (module docstring)."""

    Config = PCamConfig

    def __init__(self, config: PCamConfig, *, split: str = "train", seed: int = 0) -> None:
        self.config, self.split = config, split
        self.source = PCamSplit(config.root, _SPLIT[split])
        idx = np.arange(len(self.source) if config.limit is None else min(config.limit, len(self.source)))
        if split == "train" and config.label_fraction < 1:
            idx = idx[stratified_subset(self.source.labels[idx], config.label_fraction, config.label_seed)]
        if idx.size == 0:
            raise InputError(f"data.root: the PCam {split} split of {config.root!r} is empty")
        self.indices = idx

    @property
    def labels(self) -> np.ndarray:
        """Labels of the items, in order (no image read)."""
        return self.source.labels[self.indices].astype(np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self.indices):
            raise IndexError(i)
        k = int(self.indices[i])
        x = torch.from_numpy(self.source.image(k)).permute(2, 0, 1).float().div_(255.0)
        return {"image": x.contiguous(), "label": torch.tensor(int(self.source.labels[k]), dtype=torch.int64)}
