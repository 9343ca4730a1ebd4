"""``grid-crops``: random crops of compressed slides with their slide labels (NIC §3.2).

A folder of grid stores (``<slide_id>.zarr``, :mod:`histolatent.io.grids`) and a label table
(``slide_id,label``, CSV or Parquet, :func:`histolatent.io.labels.read_slide_labels`) become
items ``{"image": (C, R, R) float32, "mask": (R, R) bool, "label": float32, "slide": int64,
"centre": (2,) int64 (row, column of the grid it was cut from), "dihedral": int64}``:

* **train**: ``samples_per_slide`` items per slide and epoch (item ``i`` is slide
  ``i % slides``). The crop's centre is a tissue cell drawn in proportion to its distance to
  background (:func:`histolatent.tissue.sampling.sample_cells`): dense tissue more often,
  background never. With ``dihedral``, a random one of the 8 flips/quarter turns: the stored
  grid of that transform in a dihedral store (the paper encoded each slide 8 times), else
  the transform of the crop array.
* **val / test**: ``eval_crops`` crops per slide, centred on tissue cells spread over the
  tissue (:func:`~histolatent.tissue.sampling.spread_cells`), untransformed.

Crops are read by slicing the zarr array (never the whole grid) and are zero where they
leave the grid; the mask is False there. Every item is a pure function of
``(seed, split, index)``.

Which slides form each split: ``splits`` (slide ids per split; what cross-validation
writes), else a ``split`` column of the label table, else fold 0 of
:func:`slide_partitions` (4 label-stratified partitions from ``partition_seed``: 2 train,
1 val, 1 test, the paper's protocol).

Checked on entry, with errors naming the input: a split's slide without a label or without
a store, a store whose manifest does not verify (``verify``), stores of different code sizes,
and labels of the wrong kind for ``task``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from histolatent.config import Config
from histolatent.datasets.registry import SPLITS, register_dataset
from histolatent.errors import InputError
from histolatent.io.grids import (
    GRID_SUFFIX,
    GridStore,
    dihedral_transform,
    verify_grid,
    window_overlap,
)
from histolatent.io.labels import read_slide_labels
from histolatent.tissue.sampling import distance_to_background, spread_cells

__all__ = ["GridCrops", "GridCropsConfig", "fold_splits", "slide_partitions", "split_slides"]


def slide_partitions(slide_ids: Sequence[str], labels: Sequence[float] | None = None, *, n: int = 4,
                     seed: int = 0) -> list[list[str]]:
    """Slides dealt into ``n`` partitions of sizes differing by at most one, stratified by label.

    Slides are ordered by label (ties in a random order), cut into consecutive runs of ``n``,
    and each run is dealt to the partitions in a random order: every partition gets one slide
    of each run, so classes (or the range of a score) are spread evenly. The result depends
    on the set of slides and labels, not on their order, and on ``seed``.

    >>> slide_partitions(["a", "b", "c", "d", "e"], [0, 0, 1, 1, 1], n=2, seed=0)
    [['a', 'c', 'e'], ['b', 'd']]
    """
    ids = [str(s) for s in slide_ids]
    if len(set(ids)) != len(ids):
        raise InputError("slide_partitions: slide ids must be unique")
    if int(n) < 1 or len(ids) < int(n):
        raise InputError(f"slide_partitions: {len(ids)} slides cannot fill {n} partitions")
    y = np.zeros(len(ids)) if labels is None else np.asarray(labels, dtype=np.float64)
    if y.shape != (len(ids),):
        raise InputError(f"slide_partitions: {len(ids)} slides but {y.size} labels")
    rng = np.random.default_rng(seed)
    canon = np.lexsort((np.array(ids), y))  # the same slides give the same order, whatever came in
    ties = rng.permutation(len(ids))
    order = canon[np.lexsort((ties, y[canon]))]
    parts: list[list[str]] = [[] for _ in range(int(n))]
    offsets = np.zeros(int(n), int)
    for start in range(0, len(order), int(n)):
        run = order[start:start + int(n)]
        # the short last run goes to the partitions that are smallest so far, chosen at random
        who = rng.permutation(int(n)) if len(run) == int(n) else \
            np.lexsort((rng.random(int(n)), offsets))[: len(run)]
        for p, k in zip(who, run, strict=False):
            parts[int(p)].append(ids[int(k)])
            offsets[int(p)] += 1
    return [sorted(p) for p in parts]


def fold_splits(partitions: Sequence[Sequence[str]], fold: int) -> dict[str, list[str]]:
    """The paper's rotation: partition ``fold`` tests, the next one validates, the rest train.

    >>> fold_splits([["a"], ["b"], ["c"], ["d"]], 3)
    {'train': ['b', 'c'], 'val': ['a'], 'test': ['d']}
    """
    n = len(partitions)
    if n < 3 or not 0 <= int(fold) < n:
        raise InputError(f"fold {fold}: needs 0 <= fold < {n} and at least 3 partitions")
    f = int(fold)
    train = sorted(s for k in range(n) if k not in (f, (f + 1) % n) for s in partitions[k])
    return {"train": train, "val": sorted(partitions[(f + 1) % n]), "test": sorted(partitions[f])}


def split_slides(config: GridCropsConfig, split: str, table=None) -> list[str]:
    """The slide ids of ``split``: ``config.splits``, else the label table's ``split`` column,
    else fold 0 of :func:`slide_partitions` over the stores in ``config.root`` (every one labelled).

    ``table`` is the label table when it has been read already.
    """
    if split not in SPLITS:
        raise InputError(f"split {split!r}: expected one of {SPLITS}")
    if config.splits is not None:
        return list(config.splits.get(split, []))
    table = read_slide_labels(config.labels, task=config.task) if table is None else table
    if "split" in table.columns:
        bad = sorted(set(table["split"].astype(str)) - set(SPLITS))
        if bad:
            raise InputError(f"data.labels {config.labels!r}: column 'split' holds {bad}; expected {SPLITS}")
        return table.loc[table["split"].astype(str) == split, "slide_id"].tolist()
    root = Path(config.root)
    if not root.is_dir():
        raise InputError(f"data.root: {str(root)!r} is not a folder")
    stores = sorted(p.name.removesuffix(GRID_SUFFIX) for p in root.iterdir()
                    if p.is_dir() and p.name.endswith(GRID_SUFFIX))
    missing = sorted(set(stores) - set(table["slide_id"]))
    if missing:
        raise InputError(f"data.labels {config.labels!r}: no label for the grid(s) {missing[:10]} in {config.root!r}")
    y = table.set_index("slide_id").loc[stores, "label"].to_numpy()
    return fold_splits(slide_partitions(stores, y, n=4, seed=config.partition_seed), 0)[split]


class GridCropsConfig(Config):
    root: str = Field(..., description="folder of grid stores <slide_id>.zarr")
    labels: str = Field(..., description="label table (CSV/TSV/Parquet): slide_id,label[,split]")
    task: Literal["binary", "regression"] = Field("binary", description="labels 0/1, or numbers")
    crop: int = Field(400, ge=1, description="R: crop side in grid cells (the paper's 400)")
    samples_per_slide: int = Field(64, ge=1, description="train items per slide and epoch")
    eval_crops: int = Field(10, ge=1, description="T: val/test crops per slide, spread over the tissue")
    dihedral: bool = Field(True, description="train crops under a random flip / quarter turn")
    splits: dict[Literal["train", "val", "test"], list[str]] | None = Field(
        None, description="slide ids of each split (default: the table's 'split' column, else fold 0)")
    partition_seed: int = Field(0, description="seed of the default partitions")
    verify: bool = Field(True, description="check each store's manifest checksum on entry")
    trim: bool = Field(False, description="cut each batch to the box holding its crops' grid cells: for models that "
                       "ignore cells off the tissue (attention-MIL), not for a CNN, whose input size is fixed")
    seed: int | None = None


@register_dataset("grid-crops")
class GridCrops(Dataset):
    """Crops of slide grids with slide labels (module docstring)."""

    Config = GridCropsConfig

    def __init__(self, config: GridCropsConfig, *, split: str = "train", seed: int = 0) -> None:
        self.config, self.split = config, split
        self.seed = config.seed if config.seed is not None else seed
        root = Path(config.root)
        if not root.is_dir():
            raise InputError(f"data.root: {str(root)!r} is not a folder")
        table = read_slide_labels(config.labels, task=config.task)
        labels = dict(zip(table["slide_id"], table["label"], strict=True))
        ids = split_slides(config, split, table)
        if not ids:
            raise InputError(f"data: the {split} split has no slides")
        unlabelled = [s for s in ids if s not in labels]
        if unlabelled:
            raise InputError(f"data.labels {config.labels!r}: no label for slide(s) {unlabelled[:10]} "
                             f"of the {split} split")
        self.slide_ids = ids
        self.labels = np.array([labels[s] for s in ids], np.float32)
        self.stores = []
        for sid in ids:
            path = root / f"{sid}{GRID_SUFFIX}"
            if not path.is_dir():
                raise InputError(f"data.root {str(root)!r}: no grid store {path.name} for slide {sid!r}")
            if config.verify and (why := verify_grid(path)) is not None:
                raise InputError(f"grid {str(path)!r}: {why}; compress the slide again")
            self.stores.append(GridStore(path))
        sizes = {s.channels for s in self.stores}
        if len(sizes) > 1:
            bad = {s.slide_id: s.channels for s in self.stores}
            raise InputError(f"data.root {str(root)!r}: grids of different code sizes {bad}")
        self.channels = sizes.pop()
        self._weights: dict[tuple[int, int], np.ndarray] = {}
        self._spread: dict[int, np.ndarray] = {}
        self.n = len(ids) * (config.samples_per_slide if split == "train" else config.eval_crops)

    def __len__(self) -> int:
        return self.n

    def _rng(self, *tags: int) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, SPLITS.index(self.split), *tags])

    def _cdf(self, s: int, k: int) -> np.ndarray:
        """Running sum of :func:`distance_to_background` over the cells of grid ``k`` of slide ``s``."""
        if (s, k) not in self._weights:
            w = distance_to_background(self.stores[s].mask(k)).ravel()
            if not w.sum() > 0:
                raise InputError(f"grid {str(self.stores[s].path)!r}: no tissue cell to take a crop around")
            self._weights[(s, k)] = np.cumsum(w)
        return self._weights[(s, k)]

    def locate(self, i: int) -> tuple[int, int, int, int]:
        """``(slide, row, column, k)`` of item ``i``: its slide, crop centre and dihedral transform."""
        return tuple(int(v) for v in self.locate_many([i])[0])

    def locate_many(self, indices) -> np.ndarray:
        """:meth:`locate` of every index, ``(n, 4)`` int64. A train item's numbers are hashes of
        (seed, split, index): the dihedral transform, and a uniform number that picks the centre
        through the running sum of the distance to background (a cell with probability
        proportional to its distance; background never)."""
        from histolatent.synth.noise import hash_uniform, seed32

        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = idx[(idx < 0) | (idx >= self.n)]
        if len(bad):
            raise IndexError(int(bad[0]))
        out = np.zeros((len(idx), 4), np.int64)
        if self.split == "train":
            key = seed32(self.seed, SPLITS.index(self.split), 0xC409)
            out[:, 0] = idx % len(self.stores)
            if self.config.dihedral:
                out[:, 3] = np.minimum((hash_uniform(key, idx, 0) * 8).astype(np.int64), 7)
            u = hash_uniform(key, idx, 1)
            for j, (s, k) in enumerate(zip(out[:, 0], out[:, 3], strict=True)):
                grid_k = int(k) if self.stores[s].dihedral else 0
                cdf = self._cdf(int(s), grid_k)
                cell = min(int(np.searchsorted(cdf, u[j] * cdf[-1], side="right")), len(cdf) - 1)
                out[j, 1:3] = divmod(cell, self.stores[s].frame(grid_k)[1])
            return out
        for j, i in enumerate(idx):
            s, t = divmod(int(i), self.config.eval_crops)
            if s not in self._spread:
                self._spread[s] = spread_cells(self.stores[s].mask(0), self.config.eval_crops, self._rng(0xE7A1, s))
            out[j, :3] = s, *self._spread[s][t % len(self._spread[s])]
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """Items ``indices`` (a batch) cut into one zeroed batch array: only the part of each
        crop that lies on its grid is read and transformed, never the whole (mostly empty) crop.
        With ``trim``, the batch array is only the box that holds every item's grid part."""
        size, n = self.config.crop, len(indices)
        where = self.locate_many(indices)  # slide, row, column, k
        parts = []
        for j, (s, r, c, k) in enumerate(where.tolist()):
            store = self.stores[s]
            grid_k = k if store.dihedral else 0
            (r0, r1, c0, c1), box = window_overlap(r - size // 2, c - size // 2, size, size, store.frame(grid_k))
            if r1 > r0 and c1 > c0:
                t = k if k and not store.dihedral else 0  # a plain store: transform the part read, and its place
                parts.append((j, store, grid_k, (r0, r1, c0, c1), t, _dihedral_box(box, size, t)))
        top, bottom, left, right = 0, size, 0, size
        if self.config.trim and parts:
            boxes = np.array([p[-1] for p in parts])
            top, bottom, left, right = boxes[:, 0].min(), boxes[:, 1].max(), boxes[:, 2].min(), boxes[:, 3].max()
        image = torch.zeros(n, self.channels, bottom - top, right - left)
        mask = torch.zeros(n, bottom - top, right - left, dtype=torch.bool)
        for j, store, grid_k, (r0, r1, c0, c1), t, (o0, o1, p0, p1) in parts:
            x, m = store.region(r0, r1, c0, c1, grid_k), store.mask(grid_k)[r0:r1, c0:c1]
            out = (slice(o0 - top, o1 - top), slice(p0 - left, p1 - left))
            image[j, :, out[0], out[1]] = torch.from_numpy(np.array(dihedral_transform(x, t), np.float32))
            mask[j, out[0], out[1]] = torch.from_numpy(np.array(dihedral_transform(m, t)))
        w = torch.from_numpy(where)
        labels = torch.from_numpy(self.labels[where[:, 0]])
        return [{"image": image[j], "mask": mask[j], "label": labels[j], "slide": w[j, 0], "centre": w[j, 1:3],
                 "dihedral": w[j, 3]} for j in range(n)]


def _dihedral_box(box: tuple[int, int, int, int], size: int, k: int) -> tuple[int, int, int, int]:
    """Where rows ``o0:o1``, columns ``p0:p1`` of a ``size x size`` array land under
    :func:`~histolatent.io.grids.dihedral_transform` ``k`` (mirror left-right, then quarter turns)."""
    o0, o1, p0, p1 = box
    if k >= 4:
        p0, p1 = size - p1, size - p0
    for _ in range(k % 4):  # numpy's rot90: (row, col) -> (size - 1 - col, row)
        o0, o1, p0, p1 = size - p1, size - p0, o0, o1
    return o0, o1, p0, p1
