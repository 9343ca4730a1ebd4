"""Slide-level models meet compressed slides: test-time prediction and attention maps (NIC §3.2).

:func:`predict_grid` predicts one slide the way the paper tests: ``T`` crops centred on tissue
cells spread over the tissue (:func:`histolatent.tissue.sampling.spread_cells`), each seen
under the 8 dihedral transforms (flips and quarter turns; the stored grid of each transform
in a dihedral store, else the transformed crop), and the model's predictions (probability or
value) averaged over the ``8 T`` views. :func:`predict_grids` does it for a cohort and returns
(and optionally writes, atomically) one row per slide. :func:`slide_attention` gives an
attention-MIL model's attention over a whole grid, background 0.

Example
-------
>>> import tempfile, pathlib
>>> import numpy as np
>>> from histolatent.io.grids import write_slide_grid
>>> from histolatent.models import create_model
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> rng = np.random.default_rng(0)
>>> for sid in ("a", "b"):
...     _ = write_slide_grid(root / f"{sid}.zarr", rng.normal(size=(4, 6, 9)), np.ones((6, 9), bool))
>>> net = create_model("slide-cnn", in_channels=4, crop=4, filters=8, hidden=8)
>>> table = predict_grids(net, root, crops=3)
>>> table[["slide_id", "views"]].values.tolist()
[['a', 24], ['b', 24]]
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from histolatent.embed.encode import module_device, weights_hash
from histolatent.embed.grid import dihedral_index
from histolatent.embed.runs import resolve_model
from histolatent.errors import InputError
from histolatent.io.grids import GridStore, dihedral_transform, find_grid_stores, verify_grid
from histolatent.io.labels import read_slide_labels
from histolatent.io.tables import write_table
from histolatent.tissue.sampling import spread_cells

__all__ = ["GridPrediction", "predict_grid", "predict_grids", "slide_attention"]


@dataclass(frozen=True)
class GridPrediction:
    """One slide's test-time prediction: the mean over its views and their spread.

    Attributes
    ----------
    slide_id : str
    prediction : float
        Mean of the model's ``prediction`` (probability or value) over the views.
    std : float
        Standard deviation over the views (how much crops and transforms disagree).
    views : int
        Crops x transforms averaged.
    centres : ndarray, (T, 2) int
        Row and column (in grid 0) of each crop's centre.
    """

    slide_id: str
    prediction: float
    std: float
    views: int
    centres: np.ndarray


def _store(grid: Any) -> GridStore:
    return grid if isinstance(grid, GridStore) else GridStore(grid)


def _crop_size(model: Any, crop: int | None) -> int:
    size = crop if crop is not None else getattr(getattr(model, "config", None), "crop", None)
    if size is None or int(size) < 1:
        raise InputError(f"crop: expected a crop side >= 1 (cells), got {size!r}; the model has no config.crop")
    return int(size)


def _views(store: GridStore, centres: np.ndarray, size: int, ks: tuple[int, ...]):
    """``(x (C, R, R), mask (R, R))`` of every centre under every transform ``k``, centre-major."""
    half = size // 2
    for r, c in centres:
        for k in ks:
            if store.dihedral:  # the stored grid of transform k, around the same tissue
                rk, ck, _ = dihedral_index(k, int(r), int(c), store.shape)
                yield (store.window(rk - half, ck - half, size, size, k=k),
                       store.mask_window(rk - half, ck - half, size, size, k=k))
            else:
                x = store.window(r - half, c - half, size, size)
                m = store.mask_window(r - half, c - half, size, size)
                yield dihedral_transform(x, k), dihedral_transform(m, k)


@torch.no_grad()
def predict_grid(model: Any, grid: str | os.PathLike | GridStore, *, crops: int = 10, dihedral: bool = True,
                 seed: int = 0, crop: int | None = None, batch_size: int = 16) -> GridPrediction:
    """Predict one slide from its grid: ``crops`` tissue crops x 8 transforms, averaged.

    Parameters
    ----------
    model : slide model
        ``model(x (N, C, R, R), mask (N, R, R))["prediction"]``, e.g. ``slide-cnn`` or
        ``attention-mil``; it is put in eval mode.
    grid : path or GridStore
        A grid store (``(C, H, W)`` or dihedral ``(8, C, L, L)``).
    crops : int
        T: crops centred on tissue cells spread over the tissue (fewer when the slide has
        fewer tissue cells).
    dihedral : bool
        Average over the 8 flips / quarter turns too (the paper's test-time augmentation).
    seed : int
        Seed of the first crop centre (the others follow from it).
    crop : int, optional
        R (default ``model.config.crop``).
    batch_size : int
        Views per forward pass.
    """
    store = _store(grid)
    size = _crop_size(model, crop)
    if int(crops) < 1 or int(batch_size) < 1:
        raise InputError(f"crops and batch_size must be >= 1, got {crops}, {batch_size}")
    want = getattr(getattr(model, "config", None), "in_channels", store.channels)
    if store.channels != want:
        raise InputError(f"grid {str(store.path)!r}: codes of {store.channels} channels, the model takes {want}")
    model.eval()
    device = module_device(model)
    centres = spread_cells(store.mask(0), int(crops), np.random.default_rng(seed))
    ks = tuple(range(8)) if dihedral else (0,)
    preds: list[torch.Tensor] = []
    batch: list[tuple[np.ndarray, np.ndarray]] = []
    views = _views(store, centres, size, ks)
    for view in [*views, None]:
        if view is not None:
            batch.append(view)
        if batch and (view is None or len(batch) == int(batch_size)):
            x = torch.from_numpy(np.stack([np.ascontiguousarray(v[0]) for v in batch])).to(device)
            m = torch.from_numpy(np.stack([np.ascontiguousarray(v[1]) for v in batch])).to(device)
            preds.append(model(x, m)["prediction"].float().cpu())
            batch = []
    p = torch.cat(preds).double()
    return GridPrediction(store.slide_id, float(p.mean()), float(p.std(unbiased=False)), len(p), centres)


def _run_crop(run: Path | None) -> int | None:
    """The crop side a run was trained on (``data.crop`` of its config.yaml), or None."""
    if run is None or not (run / "config.yaml").is_file():
        return None
    from histolatent.config import load_yaml

    value = (load_yaml(run / "config.yaml").get("data") or {}).get("crop")
    return None if value is None else int(value)


def predict_grids(run_or_model: Any, grids: str | os.PathLike | Iterable[str | os.PathLike], *,
                  out: str | os.PathLike | None = None, labels: str | os.PathLike | None = None, crops: int = 10,
                  dihedral: bool = True, seed: int = 0, crop: int | None = None, batch_size: int = 16,
                  verify: bool = True) -> pd.DataFrame:
    """Predict every slide of a cohort of grids (:func:`predict_grid` each); one row per slide.

    Parameters
    ----------
    run_or_model : run folder or model
        A trained slide model (a run folder is loaded on the CPU).
    grids : path or paths
        Grid stores (``*.zarr``) and/or folders of them; slide id = store name.
    out : path, optional
        Also write the table here, atomically (``.parquet`` or ``.csv``).
    labels : path, optional
        A label table (``slide_id,label``): adds a ``label`` column; every slide needs one.
    crops, dihedral, seed, batch_size
        As :func:`predict_grid`.
    crop : int, optional
        R (default: the run's ``data.crop``, else the model's ``config.crop``).
    verify : bool
        Refuse stores whose manifest does not verify.

    Returns
    -------
    pandas.DataFrame
        ``slide_id, prediction, std, views, crop, model, weights_hash`` (+ ``label``),
        sorted by slide id.
    """
    model, run = resolve_model(run_or_model)
    size = _crop_size(model, crop if crop is not None else _run_crop(run))
    stores = find_grid_stores(grids)
    truth = None
    if labels is not None:
        table = read_slide_labels(labels)
        truth = dict(zip(table["slide_id"], table["label"], strict=True))
        missing = sorted(set(stores) - set(truth))
        if missing:
            raise InputError(f"labels {str(labels)!r}: no label for slide(s) {missing[:10]}")
    name, digest = getattr(model, "registry_name", "") or type(model).__name__, weights_hash(model)
    rows = []
    for sid, path in sorted(stores.items()):
        if verify and (why := verify_grid(path)) is not None:
            raise InputError(f"grid {str(path)!r}: {why}")
        p = predict_grid(model, path, crops=crops, dihedral=dihedral, seed=seed, crop=size, batch_size=batch_size)
        row = {"slide_id": sid, "prediction": p.prediction, "std": p.std, "views": p.views, "crop": size,
               "model": name, "weights_hash": digest}
        if truth is not None:
            row["label"] = truth[sid]
        rows.append(row)
    result = pd.DataFrame(rows)
    if out is not None:
        write_table(result, out)
    return result


@torch.no_grad()
def slide_attention(model: Any, grid: str | os.PathLike | GridStore) -> np.ndarray:
    """An attention model's attention over a whole grid, ``(H, W)`` float32 at grid resolution.

    ``model.attention_map(grid (C, H, W), mask (H, W))`` (``attention-mil``) on grid 0 of the
    store, read whole (it is small: one code per tile). Sums to 1 over tissue, 0 on background;
    the grid's ``affine`` maps it to level-0 pixels.
    """
    store = _store(grid)
    if not hasattr(model, "attention_map"):
        raise InputError(f"model: {type(model).__name__} has no attention_map (an attention-mil model has)")
    model.eval()
    h, w = store.shape
    x = torch.from_numpy(store.window(0, 0, h, w)).to(module_device(model))
    m = torch.from_numpy(np.array(store.mask(0)[:h, :w])).to(x.device)
    return model.attention_map(x, m).float().cpu().numpy()
