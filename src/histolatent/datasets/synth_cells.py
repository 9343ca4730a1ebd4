"""``synth-cells``: SynthPath nucleus-centred patches (papers/se2n-vae_orientation-disentangled.txt).

Items: ``{"image": (3, H, W) float32 in [0, 1], "label": int64 (index of the nucleus type in
``types``), "angle": float32 (true orientation of the nucleus in the patch, radians),
"rotation": float32 (rotation applied), "shift": (2,) float32 (dx, dy px)}``.

Item ``i`` of a split is a pure function of ``(seed, split, i)`` (``seed`` is the config's
``seed`` if set, else the run seed); items are rendered on first use in chunks of 64 and
cached (a few chunks), so that no epoch needs the whole set in memory.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from histolatent.config import Config
from histolatent.datasets.registry import SPLITS, register_dataset

_CHUNK = 64


class SynthCellsConfig(Config):
    size: int = 68
    mpp: float = 0.25
    n: int = 10000
    n_eval: int = 2000
    rotate: str | None = "uniform"
    translate_px: float = 0.0
    neighbours: bool = True
    types: list[str] = ["epithelial", "lymphocyte", "fibroblast"]
    stain_jitter: float = 0.0
    sites: int = 4
    grade: int | None = None
    seed: int | None = None


@register_dataset("synth-cells")
class SynthCellsDataset(Dataset):
    Config = SynthCellsConfig

    def __init__(self, config: SynthCellsConfig, *, split: str = "train", seed: int = 0) -> None:
        from histolatent.synth.noise import seed32

        self.config = config
        base = config.seed if config.seed is not None else seed
        self.seed = seed32(base, 0xCE1, SPLITS.index(split))
        self.n = config.n if split == "train" else config.n_eval
        self._cache: OrderedDict[int, tuple[np.ndarray, dict]] = OrderedDict()

    def __len__(self) -> int:
        return self.n

    def _chunk(self, c: int) -> tuple[np.ndarray, dict]:
        if c in self._cache:
            self._cache.move_to_end(c)
            return self._cache[c]
        from histolatent.synth.cells import cell_patches

        cfg = self.config
        start = c * _CHUNK
        k = min(_CHUNK, self.n - start)
        images, table = cell_patches(k, cfg.size, cfg.mpp, self.seed, rotate=cfg.rotate,
                                     translate_px=cfg.translate_px, neighbours=cfg.neighbours, types=cfg.types,
                                     stain_jitter=cfg.stain_jitter, sites=cfg.sites, grade=cfg.grade, start=start)
        label = np.array([cfg.types.index(t) for t in table["type"]], dtype=np.int64)
        cols = {"label": label, "angle": table["orientation"].to_numpy(np.float32),
                "rotation": table["rotation"].to_numpy(np.float32),
                "shift": table[["dx", "dy"]].to_numpy(np.float32)}
        self._cache[c] = (images, cols)
        while len(self._cache) > 8:
            self._cache.popitem(last=False)
        return self._cache[c]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not (0 <= i < self.n):
            raise IndexError(i)
        images, cols = self._chunk(i // _CHUNK)
        j = i % _CHUNK
        img = torch.from_numpy(images[j]).permute(2, 0, 1).float().div_(255.0)
        return {"image": img, "label": torch.tensor(cols["label"][j]), "angle": torch.tensor(cols["angle"][j]),
                "rotation": torch.tensor(cols["rotation"][j]), "shift": torch.from_numpy(cols["shift"][j].copy())}
