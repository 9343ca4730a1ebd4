"""``synth-digits``: TARGET-VAE's MNIST(N) / MNIST(U) (papers/target-vae.txt §4.2).

Digits from ``digit_source``: sklearn's 8 x 8 digits upsampled (default) or 5,000 real MNIST
digits (``mnist-5k``, see :mod:`histolatent.synth.digits`). 50 x 50 images, 28 x 28 digits,
rotation ~ N(0, pi^2/16) (mode N) or U(0, 2 pi) (mode U), translation ~ N(0, 5^2) px.
Splits use disjoint source digits.
Items: ``{"image": (1, 50, 50) float32 in [0, 1], "label": int64, "angle": float32
(radians, counter-clockwise as displayed), "shift": (2,) float32 (dx, dy px)}``; item ``i``
is a pure function of ``(seed, split, mode, i)`` and is rendered on access.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from histolatent.config import Config
from histolatent.datasets.registry import register_dataset


class SynthDigitsConfig(Config):
    mode: str = "U"
    size: int = 50
    digit_px: int = 28
    translate_std: float = 5.0
    n: int = 60000
    n_eval: int = 10000
    split_seed: int = 0
    seed: int | None = None
    digit_source: str = "sklearn"  # or "mnist-5k" (histolatent.synth.digits.SOURCES)


@register_dataset("synth-digits")
class SynthDigitsDataset(Dataset):
    Config = SynthDigitsConfig

    def __init__(self, config: SynthDigitsConfig, *, split: str = "train", seed: int = 0) -> None:
        from histolatent.errors import InputError
        from histolatent.synth.digits import SOURCES, digit_transforms

        if config.digit_source not in SOURCES:
            raise InputError(f"data.digit_source: expected one of {SOURCES}, got {config.digit_source!r}")
        if config.mode not in ("N", "U"):
            raise InputError(f"data.mode: expected 'N' or 'U', got {config.mode!r}")
        self.config = config
        self.split = split
        self.seed = config.seed if config.seed is not None else seed
        n = config.n if split == "train" else config.n_eval
        self.table = digit_transforms(n, config.mode, split, self.seed, translate_std=config.translate_std,
                                      split_seed=config.split_seed, source=config.digit_source)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from histolatent.synth.digits import _upsampled, transform_digit

        if not (0 <= i < len(self.table)):
            raise IndexError(i)
        row = self.table.iloc[i]
        cfg = self.config
        digit = _upsampled(cfg.digit_px, cfg.digit_source)[int(row["source_index"])]
        img = transform_digit(digit, float(row["angle"]), float(row["dx"]), float(row["dy"]), cfg.size).clip(0.0, 1.0)
        return {"image": torch.from_numpy(img)[None], "label": torch.tensor(int(row["label"])),
                "angle": torch.tensor(float(row["angle"]), dtype=torch.float32),
                "shift": torch.tensor([float(row["dx"]), float(row["dy"])], dtype=torch.float32)}
