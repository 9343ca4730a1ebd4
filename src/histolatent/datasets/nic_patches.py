"""Patch and pair data sets of Neural Image Compression (papers/nic_neural-image-compression.txt §2, §4.1.5).

Sources of tissue patches (``tile_px`` px at ``mpp`` µm/px, on a non-overlapping grid of cells):

* ``origin: synth`` — SynthPath slides (:func:`histolatent.synth.slide.slide_world`), rendered on
  demand, never written: slide ``s`` of a split has its own world seed (splits never share
  tissue), tissue preset ``TISSUE_CLASSES[s % 6]``, a random lesion, and its own stain site.
  Labels are known: ``label`` = tissue class (the lesion's "tumour" inside it, else the
  slide's preset), ``region`` = the patch's majority compartment
  (:data:`histolatent.synth.tissue.REGIONS`).
* ``origin: folder`` — every slide file in ``root`` (``origin: folder``; read through :func:`histolatent.io.slide.open_slide`
  at ``mpp``); tissue from :func:`histolatent.tissue.detect_tissue`. Splits take whole
  windows of cells (80/10/10 by a hash of ``split_seed``), so one slide serves every split
  and neighbours stay in one split. No labels (``label`` = -1).

Only cells whose tissue fraction is at least ``min_tissue`` are ever read (0.6: the NIC
authors' featurizer). Items are pure functions of ``(seed, split, index)``; ``block``
consecutive indices share a slide and a window of ``window x window`` cells, so a block of
a block-shuffled sampler renders (SynthPath) or reads (files) one small region. With
``prerender``, every window of the split's SynthPath slides is rendered when the data set is
built (in parallel; for the CPU presets, whose steps are cheaper than rendering a window).

``nic-patches``: ``{"image": (3, P, P) float32 in [0, 1], "label": int64, "region": int64,
"slide": int64, "cell": (2,) int64 (grid column, row)}``.

``nic-pairs`` (the contrastive task): ``{"image", "image2", "label": 1 same / 0 different,
"kind": 0 same, 1 neighbour, 2 other slide, "slide", "cell", "slide2", "cell2"}``. Same = one
location under two independent augmentations (probability ``p_same``); different = a
non-overlapping neighbouring cell (``p_neighbour`` = 75 % of the different pairs) or a cell of
another slide (25 %; with a single slide, a cell at least ``far_cells`` away).

The paper's augmentation (:func:`histolatent.nn.augment.augment`: stain colour, rotation, zoom,
elastic deformation, brightness, contrast, noise) is applied to the train split (``augment``).

``nic-digit-patches``: NIC's synthetic-task patches: MNIST-5k digits down-sampled to 9 x 9
(``{"image": (1, 9, 9), "label": digit}``; ``p_empty`` adds empty patches labelled 10), with
scaling and elastic deformation on the train split, as the paper.

``nic-digit-pairs``: the contrastive task on those patches (:class:`NICDigitPairs`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch.utils.data import Dataset

from histolatent.config import Config
from histolatent.datasets.registry import SPLITS, register_dataset
from histolatent.errors import InputError
from histolatent.nn.augment import AugmentConfig, augment, warp
from histolatent.synth.noise import hash_normal, hash_uniform

#: SynthPath tissue classes (the oracle's targets): the slide presets, "tumour" inside lesions.
TISSUE_CLASSES = ("breast", "tumour", "normal", "stroma", "lymphoid", "fat")
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".svslide", ".ome.tif")


def _seed(*parts: int) -> int:
    from histolatent.synth.noise import seed32

    return seed32(*(int(p) for p in parts))


@dataclass
class _SlideCells:
    """Tissue cells of one slide: ``cells (M, 2)`` (column, row) and the lookup of each."""

    cells: np.ndarray
    index: dict[tuple[int, int], int]


def _cells_from_grid(xs: np.ndarray, ys: np.ndarray, tile0: float) -> _SlideCells:
    cells = np.stack([np.rint(xs / tile0), np.rint(ys / tile0)], axis=1).astype(np.int64).reshape(-1, 2)
    return _SlideCells(cells, {(int(a), int(b)): k for k, (a, b) in enumerate(cells)})


class _SynthSource:
    """SynthPath slides rendered on demand; windows of cells cached (a few)."""

    def __init__(self, cfg: PatchesConfig, split: str, seed: int) -> None:
        from histolatent.synth.slide import random_lesion, slide_masks, slide_world
        from histolatent.synth.stain import as_scanner, site_stain
        from histolatent.tissue import TissueMask, tile_grid

        self.cfg, self.mpp, self.px = cfg, cfg.mpp, cfg.tile_px
        size = (cfg.slide_px, cfg.slide_px)
        self.worlds, self.stains, self.slides, self.classes = [], [], [], []
        for s in range(cfg.slides if split == "train" else max(2, cfg.slides // 4)):
            wseed = _seed(seed, 0x41C, SPLITS.index(split), s)
            cls = TISSUE_CLASSES[s % len(TISSUE_CLASSES)]
            lesion = random_lesion(wseed, size, cfg.mpp, p_present=cfg.p_lesion)
            world = slide_world(wseed, size, cfg.mpp, lesion, cls)
            _, tissue = slide_masks(world, size, cfg.mpp, cfg.mpp * 16)
            grid = tile_grid(mpp=cfg.mpp, tile_px=cfg.tile_px, min_tissue=cfg.min_tissue,
                             mask=TissueMask(tissue, size), level0_dimensions=size, slide_mpp=cfg.mpp)
            self.worlds.append(world)
            self.stains.append(site_stain(1 + _seed(wseed, 0x57) % 100_000, strength=cfg.stain_sites))
            self.slides.append(_cells_from_grid(grid.x, grid.y, float(cfg.tile_px)))
            self.classes.append(TISSUE_CLASSES.index(cls))
        self.scanner = as_scanner(None)
        self._all: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # prerendered
        self._cache: OrderedDict[tuple[int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()

    def _window(self, s: int, wx: int, wy: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = (s, wx, wy)
        if key in self._all:
            return self._all[key]
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        self._cache[key] = self._render(key)
        while len(self._cache) > 6:
            self._cache.popitem(last=False)
        return self._cache[key]

    def _render(self, key: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Window ``key = (slide, column, row)``: RGB, compartments and lesion mask."""
        from histolatent.synth.noise import Grid
        from histolatent.synth.render import render_region
        from histolatent.synth.stain import rgb_from_concentrations

        s, wx, wy = key
        n, px, mpp = self.cfg.window, self.px, self.mpp
        grid = Grid(wx * n * px * mpp, wy * n * px * mpp, n * px, n * px, mpp)
        world = self.worlds[s]
        reg = render_region(world, grid)
        rng = np.random.default_rng(_seed(world.seed, 0x711E, wx, wy))
        rgb = rgb_from_concentrations(reg.concentrations, self.stains[s], self.scanner, mpp=mpp, rng=rng)
        lesion = (world.lesion.membership(grid) >= 0.5) if world.lesion is not None else np.zeros(rgb.shape[:2], bool)
        return rgb, reg.regions, lesion

    def prerender(self, workers: int | None) -> None:
        """Render every window that holds a tissue cell, now, in ``workers`` processes (default: one per core)."""
        import os
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        from histolatent.progress import progress

        n = self.cfg.window
        keys = sorted({(s, int(gx) // n, int(gy) // n) for s, sl in enumerate(self.slides) for gx, gy in sl.cells})
        workers = min(len(keys), workers or os.cpu_count() or 1)
        with progress(len(keys), f"nic-patches: prerender {len(keys)} SynthPath windows", unit="windows") as bar:
            if workers <= 1:
                for key in keys:
                    self._all[key] = self._render(key)
                    bar.advance(1)
                return
            global _RENDERING
            _RENDERING = self  # forked workers inherit it: nothing to pickle but the keys and the pixels
            try:
                with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
                    for key, window in zip(keys, pool.map(_render_rendering, keys), strict=True):
                        self._all[key] = window
                        bar.advance(1)
            finally:
                _RENDERING = None

    def patch(self, s: int, gx: int, gy: int) -> tuple[np.ndarray, int, int]:
        n, px = self.cfg.window, self.px
        rgb, regions, lesion = self._window(s, gx // n, gy // n)
        y0, x0 = (gy % n) * px, (gx % n) * px
        sl = (slice(y0, y0 + px), slice(x0, x0 + px))
        label = TISSUE_CLASSES.index("tumour") if lesion[y0 + px // 2, x0 + px // 2] else self.classes[s]
        region = int(np.bincount(regions[sl].ravel(), minlength=6).argmax())
        return np.ascontiguousarray(rgb[sl]), label, region

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": OrderedDict()}


_RENDERING: _SynthSource | None = None  # the source whose windows a prerender's forked workers render


def _render_rendering(key: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _RENDERING._render(key)


class _FolderSource:
    """Slide files of a folder; tiles read one at a time (only tissue cells are read)."""

    def __init__(self, cfg: PatchesConfig, split: str, seed: int) -> None:
        from histolatent.io.slide import open_slide
        from histolatent.tissue import detect_tissue, tile_grid

        if not cfg.root:
            raise InputError("data.root: a folder of slides is needed for origin 'folder'")
        root = Path(cfg.root)
        if not root.is_dir():
            raise InputError(f"data.root: {str(root)!r} is not a folder")
        self.paths = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(SLIDE_SUFFIXES))
        if not self.paths:
            raise InputError(f"data.root: no slide files ({', '.join(SLIDE_SUFFIXES)}) in {str(root)!r}")
        self.cfg, self.px = cfg, cfg.tile_px
        want = SPLITS.index(split)
        self.slides, self.origin0 = [], []
        for p in self.paths:
            with open_slide(p, mpp=cfg.slide_mpp) as slide:
                grid = tile_grid(slide, mpp=cfg.mpp, tile_px=cfg.tile_px, min_tissue=cfg.min_tissue,
                                 mask=detect_tissue(slide))
            cells = _cells_from_grid(grid.x, grid.y, grid.level0_tile)
            n = cfg.window
            keep = [k for k, (gx, gy) in enumerate(cells.cells)
                    if self.split_of(_seed(cfg.split_seed, len(self.slides), gx // n, gy // n)) == want]
            sub = cells.cells[keep]
            self.slides.append(_SlideCells(sub, {(int(a), int(b)): k for k, (a, b) in enumerate(sub)}))
            self.origin0.append(grid.level0_tile)
        self._open: dict[int, object] = {}

    @staticmethod
    def split_of(h: int) -> int:
        r = h % 100
        return 0 if r < 80 else (1 if r < 90 else 2)

    def patch(self, s: int, gx: int, gy: int) -> tuple[np.ndarray, int, int]:
        from histolatent.io.slide import open_slide

        if s not in self._open:
            self._open[s] = open_slide(self.paths[s], mpp=self.cfg.slide_mpp)
        tile0 = self.origin0[s]
        rgb = self._open[s].read(int(round(gx * tile0)), int(round(gy * tile0)), self.px, self.px, mpp=self.cfg.mpp)
        return rgb, -1, -1

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}


class PatchesConfig(Config):
    origin: Literal["synth", "folder"] = Field("synth", description="SynthPath slides or a folder of slide files")
    root: str | None = Field(None, description="folder of slide files (origin 'folder')")
    slide_mpp: float | None = Field(None, gt=0, description="level-0 µm/px for files without it")
    tile_px: int = Field(128, ge=4, description="patch side P, px")
    mpp: float = Field(0.5, gt=0, description="µm per pixel of the patches")
    min_tissue: float = Field(0.6, ge=0, le=1)
    n: int = Field(50_000, ge=1, description="items in the train split")
    n_eval: int = Field(2_000, ge=1, description="items in val / test")
    block: int = Field(16, ge=1, description="consecutive indices sharing a slide window")
    window: int = Field(4, ge=1, description="cells a side of a window")
    slides: int = Field(12, ge=1, description="SynthPath slides in the train split (val/test: a quarter, >= 2)")
    slide_px: int = Field(4096, ge=256, description="SynthPath slide side, px at mpp")
    p_lesion: float = Field(0.5, ge=0, le=1)
    stain_sites: float = Field(1.0, ge=0, description="strength of the per-slide stain of SynthPath slides")
    split_seed: int = 0
    prerender: bool = Field(False, description="SynthPath: render every window of the split's slides before the "
                            "first step, in parallel, and keep them in memory (slides x slide_px^2 x 5 bytes)")
    prerender_workers: int | None = Field(None, ge=1, description="processes for prerender (default: one per core)")
    augment: bool = True
    augmentation: AugmentConfig = Field(default_factory=AugmentConfig)
    seed: int | None = None


class PairsConfig(PatchesConfig):
    p_same: float = Field(0.5, gt=0, lt=1)
    p_neighbour: float = Field(0.75, ge=0, le=1, description="share of neighbours among the different pairs")
    far_cells: int = Field(4, ge=1, description="single-slide 'other' pairs: at least this many cells apart")


class _PatchBase(Dataset):
    def __init__(self, config: PatchesConfig, *, split: str, seed: int) -> None:
        self.config, self.split = config, split
        self.seed = config.seed if config.seed is not None else seed
        if config.prerender and config.origin != "synth":
            raise InputError("data.prerender: only SynthPath slides (origin 'synth') are prerendered")
        self.source = (_SynthSource if config.origin == "synth" else _FolderSource)(config, split, self.seed)
        if config.prerender:
            self.source.prerender(config.prerender_workers)
        self.weights = np.array([len(c.cells) for c in self.source.slides], dtype=np.float64)
        if self.weights.sum() == 0:
            raise InputError(f"data: no tissue cells with min_tissue={config.min_tissue} in the {split} split")
        self.weights /= self.weights.sum()
        self.n = config.n if split == "train" else config.n_eval
        self.do_augment = config.augment and split == "train"
        #: the engine's sampler shuffles whole blocks (one window rendered or read per block)
        self.sample_block = config.block

    def __len__(self) -> int:
        return self.n

    def _rng(self, *tags: int) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, SPLITS.index(self.split), *tags])

    def _anchor_block(self, i: int) -> tuple[int, int, int]:
        """Block of ``i``: slide and the window (column, row) its items come from."""
        rng = self._rng(0xB10C, i // self.config.block)
        s = int(rng.choice(len(self.weights), p=self.weights))
        gx, gy = self.source.slides[s].cells[int(rng.integers(len(self.source.slides[s].cells)))]
        return s, int(gx) // self.config.window, int(gy) // self.config.window

    def _window_cells(self, s: int, wx: int, wy: int) -> np.ndarray:
        cells = self.source.slides[s].cells
        n = self.config.window
        return cells[(cells[:, 0] // n == wx) & (cells[:, 1] // n == wy)]

    def _tensor(self, rgb: np.ndarray, i: int, which: int) -> torch.Tensor:
        x = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)[None]
        if self.do_augment:
            g = torch.Generator().manual_seed(_seed(self.seed, 0xA06, SPLITS.index(self.split), i, which))
            x = augment(x, self.config.augmentation, g)
        return x[0].contiguous()

    def _check(self, i: int) -> None:
        if not (0 <= i < self.n):
            raise IndexError(i)


@register_dataset("nic-patches")
class NICPatches(_PatchBase):
    """Tissue patches of SynthPath slides or a folder of slides (module docstring)."""

    Config = PatchesConfig

    def locate(self, i: int) -> tuple[int, int, int]:
        """``(slide, column, row)`` of item ``i`` (no pixels read)."""
        self._check(i)
        s, wx, wy = self._anchor_block(i)
        cand = self._window_cells(s, wx, wy)
        gx, gy = cand[int(self._rng(0xCE11, i).integers(len(cand)))]
        return s, int(gx), int(gy)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s, gx, gy = self.locate(i)
        rgb, label, region = self.source.patch(s, gx, gy)
        return {"image": self._tensor(rgb, i, 0), "label": torch.tensor(label), "region": torch.tensor(region),
                "slide": torch.tensor(s), "cell": torch.tensor([gx, gy])}


_OFFSETS = [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)]


@register_dataset("nic-pairs")
class NICPairs(_PatchBase):
    """Same / different pairs for the contrastive (Siamese) encoder (module docstring)."""

    Config = PairsConfig

    def locate(self, i: int) -> tuple[int, int, int, int, int, int, int]:
        """``(kind, s, gx, gy, s2, gx2, gy2)`` of pair ``i`` (no pixels read)."""
        self._check(i)
        cfg = self.config
        rng = self._rng(0x9A1, i)
        u = rng.random()
        kind = 0 if u < cfg.p_same else (1 if rng.random() < cfg.p_neighbour else 2)
        s, wx, wy = self._anchor_block(i)
        cand = self._window_cells(s, wx, wy)
        lookup = self.source.slides[s].index
        if kind == 1:  # anchors with a tissue neighbour, in the window if any, else anywhere on the slide
            def has_nb(c: np.ndarray) -> bool:
                return any((int(c[0]) + dx, int(c[1]) + dy) in lookup for dx, dy in _OFFSETS)
            ok = [c for c in cand if has_nb(c)] or [c for c in self.source.slides[s].cells if has_nb(c)]
            if not ok:
                raise InputError(f"data: slide {s} of the {self.split} split has no two neighbouring tissue cells")
            cand = np.asarray(ok)
        gx, gy = (int(v) for v in cand[int(rng.integers(len(cand)))])
        if kind == 0:
            return kind, s, gx, gy, s, gx, gy
        if kind == 1:
            nbs = [(gx + dx, gy + dy) for dx, dy in _OFFSETS if (gx + dx, gy + dy) in lookup]
            gx2, gy2 = nbs[int(rng.integers(len(nbs)))]
            return kind, s, gx, gy, s, gx2, gy2
        if len(self.weights) > 1:
            w = self.weights.copy()
            w[s] = 0.0
            s2 = int(rng.choice(len(w), p=w / w.sum()))
            cells = self.source.slides[s2].cells
        else:
            s2 = s
            cells = self.source.slides[s].cells
            far = np.abs(cells - np.array([gx, gy])).max(axis=1) >= cfg.far_cells
            cells = cells[far] if far.any() else cells
        gx2, gy2 = (int(v) for v in cells[int(rng.integers(len(cells)))])
        return kind, s, gx, gy, s2, gx2, gy2

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        kind, s, gx, gy, s2, gx2, gy2 = self.locate(i)
        rgb, _, _ = self.source.patch(s, gx, gy)
        rgb2 = rgb if kind == 0 else self.source.patch(s2, gx2, gy2)[0]
        x1, x2 = self._tensor(rgb, i, 0), self._tensor(rgb2, i, 1)
        return {"image": x1, "image2": x2, "label": torch.tensor(float(kind == 0)), "kind": torch.tensor(kind),
                "slide": torch.tensor(s), "cell": torch.tensor([gx, gy]), "slide2": torch.tensor(s2),
                "cell2": torch.tensor([gx2, gy2])}


class DigitPatchesConfig(Config):
    patch: int = Field(9, ge=4, description="P: digits down-sampled to P x P (the paper's 9)")
    digit_source: str = "mnist-5k"
    n: int = Field(20_000, ge=1)
    n_eval: int = Field(2_000, ge=1)
    p_empty: float = Field(0.0, ge=0, lt=1, description="share of empty patches (label 10)")
    zoom: float = Field(0.1, ge=0, lt=1)
    elastic_alpha: float = Field(0.05, ge=0)
    augment: bool = True
    lattice: bool = Field(False, description="cells of a NIC digit image instead of centred digits: the digit's "
                          "centre falls anywhere in the P x P cell and other digits around it show as fragments")
    neighbours: float = Field(0.65, ge=0, le=8, description="with lattice: expected number of other digits "
                              "whose top-left corner lies within 2P x 2P of the cell's (the image's digits per "
                              "pixel x 4 P^2; 0.65 = the paper's 0.2 % at P = 9)")
    split_seed: int = 0
    seed: int | None = None


@register_dataset("nic-digit-patches")
class NICDigitPatches(Dataset):
    """NIC's synthetic-task patches for the digit linear probe (module docstring)."""

    Config = DigitPatchesConfig

    def __init__(self, config: DigitPatchesConfig, *, split: str = "train", seed: int = 0) -> None:
        import cv2

        from histolatent.synth.digits import source_digits, split_indices

        self.config, self.split = config, split
        self.seed = config.seed if config.seed is not None else seed
        imgs, labels = source_digits(config.digit_source)
        idx = split_indices(split, config.split_seed, config.digit_source)
        p = config.patch
        self.digits = np.stack([cv2.resize(imgs[k], (p, p), interpolation=cv2.INTER_AREA) for k in idx]).clip(0, 1)
        self.labels = labels[idx]
        self.n = config.n if split == "train" else config.n_eval

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """Items ``indices`` built together (what the data loader asks for a batch): each item's
        random numbers are hashes of (seed, split, index), drawn for the whole batch at once,
        and the batch is resampled in one call."""
        cfg = self.config
        idx = self._indices(indices)
        key = self._key(0xD161)
        digit = ~(hash_uniform(key, idx, 0) < cfg.p_empty)
        k = self._pick(key, idx)
        labels = np.where(digit, self.labels[k], 10).astype(np.int64)
        images = torch.zeros(len(idx), 1, cfg.patch, cfg.patch)
        if digit.any():
            images[torch.from_numpy(digit)] = self._views(key, idx[digit], k[digit], view=0)
        if cfg.lattice:
            images = self._lattice(key, idx, images, view=0)
        labels_t = torch.from_numpy(labels)
        return [{"image": images[j], "label": labels_t[j]} for j in range(len(idx))]

    def _indices(self, indices: list[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = idx[(idx < 0) | (idx >= self.n)]
        if len(bad):
            raise IndexError(int(bad[0]))
        return idx

    def _key(self, tag: int) -> int:
        return _seed(self.seed, SPLITS.index(self.split), tag)

    def _pick(self, key: int, idx: np.ndarray, tag: int = 1) -> np.ndarray:
        return np.minimum((hash_uniform(key, idx, tag) * len(self.labels)).astype(np.int64), len(self.labels) - 1)

    def _lattice(self, key: int, idx: np.ndarray, x: torch.Tensor, view: int | np.ndarray) -> torch.Tensor:
        """Items ``x`` ``(N, 1, P, P)`` as cells of a NIC digit image (``lattice``).

        In :func:`histolatent.synth.nic.nic_image` digits sit at random pixel positions and the
        grid's cells are fixed, so a cell holds its digit off-centre, cut by the cell's edge,
        with fragments of the digits around it. Here the item's digit gets its centre at a
        uniform position in the cell, up to 8 other digits (expected ``neighbours``) get their
        top-left corners anywhere within ``2P x 2P`` of the cell's except where their centre
        would fall in the cell (a cell is labelled by the digit centred in it), all are
        max-composited as the image is, and the cell is cut out. An empty item stays empty of
        its own digit but still shows its neighbours' fragments. ``view`` (an int, or one per
        item) picks the cell's position and context: items of one view share nothing.
        """
        cfg = self.config
        n, p = len(idx), cfg.patch
        if not n:
            return x
        view = np.broadcast_to(np.asarray(view, dtype=np.int64), idx.shape)
        canvas = torch.zeros(n, 1, 3 * p, 3 * p)
        half = p // 2
        # the item's digit: its centre (top-left + P // 2) anywhere in the central cell [P, 2P)
        oy, ox = ((hash_uniform(key, idx, view, 20, a) * p).astype(np.int64) for a in (0, 1))
        slots = 8
        keep = hash_uniform(key, idx[:, None], view[:, None], 21, np.arange(slots)[None]) < cfg.neighbours / slots
        ny, nx = ((hash_uniform(key, idx[:, None], view[:, None], 22 + a, np.arange(slots)[None]) * 2 * p).astype(np.int64)
                  for a in (0, 1))
        centred = ((ny + half >= p) & (ny + half < 2 * p)) & ((nx + half >= p) & (nx + half < 2 * p))
        keep &= ~centred
        other = np.minimum((hash_uniform(key, idx[:, None], view[:, None], 24, np.arange(slots)[None])
                            * len(self.labels)).astype(np.int64), len(self.labels) - 1)
        glyphs = torch.from_numpy(self.digits[other].astype(np.float32))  # (N, slots, P, P)
        for j in range(n):
            for s in np.flatnonzero(keep[j]):
                y0, x0 = int(ny[j, s]), int(nx[j, s])
                view_ = canvas[j, 0, y0:y0 + p, x0:x0 + p]
                torch.maximum(view_, glyphs[j, s], out=view_)
            y0, x0 = p + int(oy[j]) - half, p + int(ox[j]) - half
            view_ = canvas[j, 0, y0:y0 + p, x0:x0 + p]
            torch.maximum(view_, x[j, 0], out=view_)
        return canvas[:, :, p:2 * p, p:2 * p].contiguous()

    def _views(self, key: int, idx: np.ndarray, k: np.ndarray, view: int) -> torch.Tensor:
        """Digits ``k`` as ``(N, 1, P, P)``, zoomed and elastically deformed on the train split by
        numbers hashed from (item, view): one resampling for all of them."""
        cfg = self.config
        x = torch.from_numpy(self.digits[k].astype(np.float32))[:, None]
        if not (cfg.augment and self.split == "train") or not len(idx):
            return x
        m = len(idx)
        scale = 1.0 - cfg.zoom + 2.0 * cfg.zoom * hash_uniform(key, idx, view, 2)
        axis, g = np.arange(2), np.arange(4)  # a 2 x 4 x 4 field of control points per image
        coarse = hash_normal(key, idx[:, None, None, None], view, 3, axis[:, None, None], g[None, :, None],
                             g[None, None, :])
        return warp(x, torch.zeros(m), torch.ones(m), torch.from_numpy(scale.astype(np.float32)),
                    torch.from_numpy(np.ascontiguousarray(coarse, dtype=np.float32)),
                    elastic_alpha=cfg.elastic_alpha).clamp(0, 1)


class DigitPairsConfig(DigitPatchesConfig):
    p_same: float = Field(0.5, gt=0, lt=1, description="share of 'same' pairs")

    @model_validator(mode="after")
    def _no_empty(self) -> DigitPairsConfig:
        if self.p_empty:
            raise ValueError("p_empty: pairs are always of digits (set 0)")
        return self


@register_dataset("nic-digit-pairs")
class NICDigitPairs(NICDigitPatches):
    """Same / different pairs of digit patches, the contrastive encoder's task on the digit data.

    The paper's pairs of the synthetic task came from its digit images (§4.1.5): *same* =
    one location under two augmentations, *different* = a neighbouring location or another
    image. Here a location is one digit patch: *same* (``label`` 1, probability ``p_same``) =
    one source digit under two independent augmentations (zoom, elastic deformation); *different*
    (``label`` 0) = another source digit of the split, of any class (a neighbouring patch of a
    digit image holds an unrelated digit). With ``lattice``, both views are cells of a digit
    image (see ``NICDigitPatches._lattice``), and a *same* pair shares its cell's position and
    neighbours. ``{"image": (1, P, P), "image2": (1, P, P),
    "label": float 1 / 0, "digit": int64, "digit2": int64}`` (the classes, for checks only).
    """

    Config = DigitPairsConfig

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """Pairs ``indices`` built together: both views of every pair warped in one call."""
        idx = self._indices(indices)
        key = self._key(0xD1AB)
        same = hash_uniform(key, idx, 0) < self.config.p_same
        k = self._pick(key, idx)
        other = (k + 1 + np.minimum((hash_uniform(key, idx, 4) * (len(self.labels) - 1)).astype(np.int64),
                                    len(self.labels) - 2)) % len(self.labels)
        k2 = np.where(same, k, other)
        x1, x2 = self._views(key, idx, k, view=0), self._views(key, idx, k2, view=1)
        if self.config.lattice:  # same = one cell (position and neighbours) under two augmentations
            x1, x2 = self._lattice(key, idx, x1, view=0), self._lattice(key, idx, x2, view=(~same).astype(np.int64))
        d1, d2 = torch.from_numpy(self.labels[k].astype(np.int64)), torch.from_numpy(self.labels[k2].astype(np.int64))
        return [{"image": x1[j], "image2": x2[j], "label": torch.tensor(float(same[j])), "digit": d1[j],
                 "digit2": d2[j]} for j in range(len(idx))]


__all__ = ["NICDigitPairs", "NICDigitPatches", "NICPairs", "NICPatches", "TISSUE_CLASSES"]

