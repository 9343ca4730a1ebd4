"""``synth-cells``: SynthPath nucleus-centred patches (papers/se2n-vae_orientation-disentangled.txt).

Items: ``{"image": (3, H, W) float32 in [0, 1], "label": int64 (index of the nucleus type in
``types``), "angle": float32 (true orientation of the nucleus in the patch, radians),
"rotation": float32 (rotation applied), "shift": (2,) float32 (dx, dy px)}``.

Item ``i`` of a split is a pure function of ``(seed, split, i)`` (``seed`` is the config's
``seed`` if set, else the run seed). An item is rendered when it is first asked for, alone
(rendering costs the same per patch whether patches come one or many at a time, so a random
batch of 32 renders 32 patches), and with ``cache`` it is kept: every rendered item goes
into memory shared with the data-loader workers, so a run renders each item once, and its
second epoch costs no rendering at all. With ``train.num_workers >= 1`` the rendering of
the first epoch runs beside the model's steps.

With ``prerender``, every item of the split is rendered when the data set is built, before
the first step, by ``prerender_workers`` processes (default: one per core), and kept on disk
(``cache_dir``, default ``$HISTOLATENT_CACHE/datasets``; keyed by the options, the split's
seed and a hash of SynthPath's source), so that the next run with the same data starts at
once. Use it where a step is cheaper than rendering its batch (small models on small patches):
the steps then never wait for SynthPath.
"""

from __future__ import annotations

import mmap

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from histolatent.config import Config
from histolatent.datasets.registry import SPLITS, register_dataset
from histolatent.io.image import tensor_from_rgb8


class SynthCellsConfig(Config):
    size: int = 68
    mpp: float = 0.25
    n: int = Field(10000, ge=1)
    n_eval: int = Field(2000, ge=1)
    rotate: str | None = "uniform"
    translate_px: float = 0.0
    neighbours: bool = True
    types: list[str] = ["epithelial", "lymphocyte", "fibroblast"]
    stain_jitter: float = 0.0
    sites: int = 4
    grade: int | None = None
    seed: int | None = None
    cache: bool = Field(True, description="keep every rendered item (n x size^2 x 3 bytes, shared with the "
                        "data-loader workers): each item is rendered once per run")
    prerender: bool = Field(False, description="render the whole split before the first step, in parallel, and "
                            "keep it on disk for later runs")
    prerender_workers: int | None = Field(None, ge=1, description="processes for prerender (default: one per core)")
    cache_dir: str | None = Field(None, description="folder of prerendered splits (default $HISTOLATENT_CACHE/datasets)")


class _SharedItems:
    """Rendered items in anonymous shared memory (``MAP_SHARED``): forked data-loader workers
    fill one cache together. Pages are allocated as items are written."""

    def __init__(self, n: int, size: int) -> None:
        self.n, self.size = n, size
        self._maps = [mmap.mmap(-1, n * size * size * 3), mmap.mmap(-1, n * 5 * 4), mmap.mmap(-1, n)]
        self.images = np.frombuffer(self._maps[0], np.uint8).reshape(n, size, size, 3)
        self.cols = np.frombuffer(self._maps[1], np.float32).reshape(n, 5)  # label, angle, rotation, dx, dy
        self.done = np.frombuffer(self._maps[2], np.uint8)

    def __reduce__(self):  # a spawned worker gets an empty cache of its own, not a copy
        return _SharedItems, (self.n, self.size)


_FILLING: SynthCellsDataset | None = None  # the data set a prerender's forked workers fill


def _fill_filling(start: int, stop: int) -> int:
    return _FILLING._fill(start, stop)


@register_dataset("synth-cells")
class SynthCellsDataset(Dataset):
    Config = SynthCellsConfig

    def __init__(self, config: SynthCellsConfig, *, split: str = "train", seed: int = 0) -> None:
        from histolatent.synth.noise import seed32

        self.config = config
        base = config.seed if config.seed is not None else seed
        self.seed = seed32(base, 0xCE1, SPLITS.index(split))
        self.n = config.n if split == "train" else config.n_eval
        self._cache = _SharedItems(self.n, config.size) if config.cache or config.prerender else None
        if config.prerender:
            self._prerender()

    def __len__(self) -> int:
        return self.n

    def _prerender(self) -> None:
        """Fill the cache with every item: from the disk cache if there, else rendered and saved."""
        import hashlib
        import json
        import os
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context
        from pathlib import Path

        from histolatent.datasets.synth_nuclei_crops import renderer_fingerprint
        from histolatent.io.atomic import atomic_path
        from histolatent.progress import progress

        cfg = self.config
        key = {k: v for k, v in cfg.to_dict().items() if k not in ("cache", "prerender", "prerender_workers",
                                                                    "cache_dir", "n_eval", "n")}
        key.update(n=self.n, seed=self.seed, renderer=renderer_fingerprint())
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        root = Path(cfg.cache_dir) if cfg.cache_dir else \
            Path(os.environ.get("HISTOLATENT_CACHE", Path.home() / ".cache" / "histolatent")) / "datasets"
        path = root / f"synth-cells-{digest}.npz"
        c = self._cache
        if path.is_file():
            with np.load(path, allow_pickle=False) as f:
                c.images[:], c.cols[:] = f["images"], f["cols"]
            c.done[:] = 1
            return
        workers = cfg.prerender_workers or os.cpu_count() or 1
        chunk = max(1, min(256, -(-self.n // (4 * workers))))
        starts = list(range(0, self.n, chunk))
        with progress(self.n, f"synth-cells: prerender {self.n} items", unit="items") as bar:
            if workers == 1:
                for a in starts:
                    self._fill(a, min(self.n, a + chunk))
                    bar.advance(min(self.n, a + chunk) - a)
            else:
                global _FILLING
                _FILLING = self  # forked workers inherit it, and its cache is shared memory: no pickling
                try:
                    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
                        stops = [min(self.n, a + chunk) for a in starts]
                        for a, b in zip(starts, pool.map(_fill_filling, starts, stops), strict=True):
                            bar.advance(b - a)
                finally:
                    _FILLING = None
        root.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, images=c.images, cols=c.cols)

    def _fill(self, start: int, stop: int) -> int:
        """Render items ``start .. stop-1`` into the shared cache (in a forked process or here)."""
        c = self._cache
        for i in range(start, stop):
            c.images[i], c.cols[i] = self._render(i)
            c.done[i] = 1
        return stop

    def _render(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``i`` -> (image (H, W, 3) uint8, [label, angle, rotation, dx, dy] float32)."""
        from histolatent.synth.cells import cell_patches

        cfg = self.config
        images, table = cell_patches(1, cfg.size, cfg.mpp, self.seed, rotate=cfg.rotate,
                                     translate_px=cfg.translate_px, neighbours=cfg.neighbours, types=cfg.types,
                                     stain_jitter=cfg.stain_jitter, sites=cfg.sites, grade=cfg.grade, start=i)
        row = table.iloc[0]
        cols = np.array([cfg.types.index(row["type"]), row["orientation"], row["rotation"], row["dx"], row["dy"]],
                        dtype=np.float32)
        return images[0], cols

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not (0 <= i < self.n):
            raise IndexError(i)
        c = self._cache
        if c is not None and c.done[i]:
            image, cols = c.images[i], c.cols[i]
        else:
            image, cols = self._render(i)
            if c is not None:  # the flag last: another process never reads a half-written item
                c.images[i], c.cols[i] = image, cols
                c.done[i] = 1
        return {"image": tensor_from_rgb8(image)[0], "label": torch.tensor(int(cols[0])),
                "angle": torch.tensor(cols[1]), "rotation": torch.tensor(cols[2]),
                "shift": torch.from_numpy(cols[3:5].copy())}
