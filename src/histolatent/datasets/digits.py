"""sklearn's 8x8 digits (1,797 images, shipped with scikit-learn), upsampled.

Splits are drawn from disjoint source digits: 70 % train, 15 % val, 15 % test, by a
permutation fixed by ``split_seed`` (not the run seed), so every run sees the same split.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from histolatent.config import Config
from histolatent.datasets.registry import register_dataset


class DigitsConfig(Config):
    size: int = 32
    split_seed: int = 0
    limit: int | None = None


def digits_split_indices(n: int, split: str, split_seed: int = 0) -> np.ndarray:
    perm = np.random.default_rng(split_seed).permutation(n)
    a, b = int(0.7 * n), int(0.85 * n)
    return {"train": perm[:a], "val": perm[a:b], "test": perm[b:]}[split]


@register_dataset("digits")
class DigitsDataset(Dataset):
    Config = DigitsConfig

    def __init__(self, config: DigitsConfig, *, split: str = "train", seed: int = 0) -> None:
        from sklearn.datasets import load_digits

        d = load_digits()
        idx = digits_split_indices(len(d.images), split, config.split_seed)
        if config.limit is not None:
            idx = idx[: config.limit]
        x = torch.from_numpy(d.images[idx].astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
        self.images = F.interpolate(x, size=(config.size, config.size), mode="bilinear", align_corners=False).clamp(0, 1)
        self.labels = torch.from_numpy(d.target[idx].astype(np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "label": self.labels[i]}
