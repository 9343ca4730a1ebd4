"""Nucleus-centred patches at a physical scale, read lazily from slides and a cell table.

Paper 0 (the SE(2,N)-VAE) trains on 68x68 px patches at about 0.25 µm/px centred on the
centre of mass of each segmented nucleus; Yuan & Suh (2018, §2.3) crop segmented nuclei to
40x40 px for their InfoGAN. Both are presets (:data:`~histolatent.io.image.PATCH_PRESETS`); any size and mpp can be
asked for.

- :func:`extract_patch` / :func:`extract_patches`: patches around given centres of one slide
  or image.
- :class:`NucleusPatchDataset`: a torch ``Dataset`` over a cell table and its slides that
  reads each patch when asked (no crops materialised; one slide handle per worker process).
- :func:`write_patch_store` / :func:`read_patch_store`: materialise patches into a zarr
  store when wanted (``patches`` array ``(N, H, W, C)`` uint8 + the cell table).

Edges (``edge``): ``"pad"`` fills outside the slide with white (glass), ``"reflect"``
mirrors the slide's pixels at its border, ``"skip"`` drops nuclei whose patch leaves the
slide. The optional mask channel (``mask=True``) is the nucleus's own outline (the cell
table's ``polygon``) rasterised into the patch: 255 inside, 0 outside.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import Dataset

from histolatent.errors import InputError
from histolatent.io.image import PATCH_PRESETS, PatchSpec, patch_spec  # noqa: F401 (the nuclei API names them too)
from histolatent.progress import progress as track


def _open(source: Any, mpp: float | None):
    """A Slide from a Slide, a path or an array (arrays and plain images need ``mpp``)."""
    from histolatent.io.slide import Slide, open_slide

    if isinstance(source, Slide):
        return source, False
    return open_slide(source, mpp=mpp), True


def patch_window(x: float, y: float, spec: PatchSpec, slide_mpp: float) -> tuple[float, float, float]:
    """Level-0 top-left corner ``(x0, y0)`` and side ``s0`` (level-0 px) of the patch centred at ``(x, y)``.

    ``x, y`` use the pixel-centre convention. The nucleus lands on the centre of patch pixel
    ``(size_px // 2, size_px // 2)`` (the exact centre for odd sizes, half a pixel past it for
    even ones): in continuous coordinates (pixel ``j`` spans ``[j, j + 1)``),
    ``x0 + (size_px // 2 + 0.5) * f = x + 0.5`` with ``f`` level-0 px per patch px.
    """
    f = spec.mpp / slide_mpp
    s0 = spec.size_px * f
    c = (spec.size_px // 2 + 0.5) * f
    return x + 0.5 - c, y + 0.5 - c, s0


def _inside(x0: float, y0: float, s0: float, dims: tuple[int, int]) -> bool:
    w, h = dims
    return x0 >= -1e-6 and y0 >= -1e-6 and x0 + s0 <= w + 1e-6 and y0 + s0 <= h + 1e-6


def extract_patch(slide: Any, x: float, y: float, spec: PatchSpec, *, edge: str = "pad",
                  polygon: np.ndarray | None = None, mask: bool = False) -> np.ndarray | None:
    """One nucleus-centred patch.

    Parameters
    ----------
    slide : Slide
        An open slide (:func:`histolatent.io.slide.open_slide`) with an mpp.
    x, y : float
        Nucleus centre, level-0 px (pixel-centre convention).
    spec : PatchSpec
        Size and mpp of the patch.
    edge : {"pad", "reflect", "skip"}
        What to do where the patch leaves the slide (see the module docstring); with
        "skip" such a patch returns None.
    polygon : ndarray, optional
        The nucleus outline, flat ``[x0, y0, ...]`` or ``(N, 2)``, level-0 px (for ``mask``).
    mask : bool
        Append the nucleus mask as a fourth channel.

    Returns
    -------
    ndarray of uint8, (size_px, size_px, 3 or 4), or None
    """
    if edge not in ("pad", "reflect", "skip"):
        raise InputError(f"edge: expected 'pad', 'reflect' or 'skip', got {edge!r}")
    smpp = slide.require_mpp()
    x0, y0, s0 = patch_window(float(x), float(y), spec, smpp)
    dims = slide.dimensions
    inside = _inside(x0, y0, s0, dims)
    if edge == "skip" and not inside:
        return None
    n = spec.size_px
    same_scale = abs(spec.mpp / smpp - 1.0) < 1e-6
    if same_scale:
        x0, y0 = float(math.floor(x0 + 0.5)), float(math.floor(y0 + 0.5))  # to the nearest pixel
        img = slide.read(x0, y0, n, n)
    else:
        img = slide.read(x0, y0, n, n, mpp=spec.mpp)
    if edge == "reflect" and not inside:
        img = _reflect_outside(img, x0, y0, s0, dims)
    if mask:
        if polygon is None:
            raise InputError("mask=True needs the nucleus polygon (a 'polygon' column in the cell table)")
        m = _polygon_mask(polygon, x0, y0, s0 / n, n)
        img = np.concatenate([img, m[..., None]], axis=2)
    return img


def _reflect_outside(img: np.ndarray, x0: float, y0: float, s0: float, dims: tuple[int, int]) -> np.ndarray:
    """Replace the part of ``img`` outside the slide by a mirror image of the part inside."""
    n = img.shape[0]
    f = s0 / n  # level-0 px per patch px
    centres_x = x0 + (np.arange(n) + 0.5) * f
    centres_y = y0 + (np.arange(img.shape[0]) + 0.5) * f
    okx = np.flatnonzero((centres_x >= 0) & (centres_x < dims[0]))
    oky = np.flatnonzero((centres_y >= 0) & (centres_y < dims[1]))
    if len(okx) == 0 or len(oky) == 0:
        return img
    core = img[oky[0]:oky[-1] + 1, okx[0]:okx[-1] + 1]
    pads = ((int(oky[0]), int(img.shape[0] - 1 - oky[-1])), (int(okx[0]), int(n - 1 - okx[-1])), (0, 0))
    return np.pad(core, pads, mode="symmetric")


def _polygon_mask(polygon: Any, x0: float, y0: float, f: float, n: int) -> np.ndarray:
    p = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    # level-0 pixel-centre coords -> patch pixel-centre coords
    px = (p[:, 0] + 0.5 - x0) / f - 0.5
    py = (p[:, 1] + 0.5 - y0) / f - 0.5
    from skimage.draw import polygon as draw_polygon

    # patch pixels whose centre is inside (cv2.fillPoly also took every pixel the outline touched)
    out = np.zeros((n, n), dtype=np.uint8)
    rr, cc = draw_polygon(py, px, shape=(n, n))
    out[rr, cc] = 255
    return out


def extract_patches(source: Any, xy: np.ndarray, spec: PatchSpec, *, edge: str = "pad", mpp: float | None = None,
                    polygons: list | None = None, mask: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Patches around many centres of one slide or image.

    Parameters
    ----------
    source : Slide, path or ndarray
        The slide / image (arrays and plain images need ``mpp``).
    xy : ndarray, (N, 2)
        Centres, level-0 px.
    spec : PatchSpec
    edge, mask
        See :func:`extract_patch`.
    mpp : float, optional
        Microns per pixel of ``source`` when it carries none.
    polygons : list, optional
        One outline per centre (for ``mask``).

    Returns
    -------
    patches : ndarray of uint8, (K, size_px, size_px, 3 or 4)
    kept : ndarray of int, (K,)
        Indices into ``xy`` of the patches returned (all of them unless ``edge="skip"``).
    """
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    slide, owned = _open(source, mpp)
    try:
        out, kept = [], []
        for i, (x, y) in enumerate(pts):
            p = extract_patch(slide, x, y, spec, edge=edge, mask=mask,
                              polygon=None if polygons is None else polygons[i])
            if p is not None:
                out.append(p)
                kept.append(i)
    finally:
        if owned:
            slide.close()
    c = 4 if mask else 3
    arr = np.stack(out) if out else np.zeros((0, spec.size_px, spec.size_px, c), dtype=np.uint8)
    return arr, np.asarray(kept, dtype=np.int64)


class NucleusPatchDataset(Dataset):
    """A torch ``Dataset`` of nucleus-centred patches read lazily from slides + a cell table.

    Parameters
    ----------
    cells : pandas.DataFrame or path
        Cell table (:mod:`histolatent.io.tables`): ``slide_id``, ``x``, ``y`` (level-0 px),
        and ``polygon`` for ``mask=True``.
    slides : mapping
        ``slide_id`` -> slide path, :class:`~histolatent.io.slide.Slide` or image array.
    spec : PatchSpec or str
        Patch geometry or a preset name (:data:`~histolatent.io.image.PATCH_PRESETS`).
    edge : {"pad", "reflect", "skip"}
        Edge handling; "skip" drops the nuclei whose patch leaves their slide (decided
        here, once).
    mask : bool
        Add the nucleus mask as a fourth channel.
    mpp : float or mapping, optional
        µm per level-0 pixel of sources that carry none (plain images, arrays).
    columns : list of str, optional
        Extra cell-table columns returned with each item (numeric ones as tensors).

    Items are ``{"image": (C, H, W) float32 in [0, 1], "index": row index in the table,
    **columns}``. Slides are opened on first use in each worker process and kept open.
    """

    def __init__(self, cells: pd.DataFrame | str | os.PathLike, slides: Mapping[str, Any],
                 spec: PatchSpec | str = "se2n-vae", *, edge: str = "pad", mask: bool = False,
                 mpp: float | Mapping[str, float] | None = None, columns: list[str] | None = None) -> None:
        if not isinstance(cells, pd.DataFrame):
            from histolatent.io.tables import read_cell_table

            cells = read_cell_table(cells)
        for c in ("slide_id", "x", "y"):
            if c not in cells.columns:
                raise InputError(f"cells: missing column '{c}'")
        if mask and "polygon" not in cells.columns:
            raise InputError("cells: mask=True needs a 'polygon' column")
        if edge not in ("pad", "reflect", "skip"):
            raise InputError(f"edge: expected 'pad', 'reflect' or 'skip', got {edge!r}")
        self.spec = patch_spec(spec) if isinstance(spec, str) else spec
        self.edge, self.mask = edge, bool(mask)
        self.columns = list(columns or [])
        bad = [c for c in self.columns if c not in cells.columns]
        if bad:
            raise InputError(f"columns: {bad} are not in the cell table")
        missing = sorted(set(cells["slide_id"].astype(str)) - {str(k) for k in slides})
        if missing:
            raise InputError(f"slides: no source given for slide_id(s) {missing[:5]}")
        self._sources = {str(k): v for k, v in slides.items()}
        self._mpp = mpp
        self._open: dict[str, Any] = {}
        rows = np.arange(len(cells))
        if edge == "skip" and len(cells):
            keep = np.zeros(len(cells), dtype=bool)
            for sid, idx in cells.groupby(cells["slide_id"].astype(str)).indices.items():
                slide = self._slide(sid)
                smpp, dims = slide.require_mpp(), slide.dimensions
                for i in idx:
                    x0, y0, s0 = patch_window(float(cells["x"].iat[i]), float(cells["y"].iat[i]), self.spec, smpp)
                    keep[i] = _inside(x0, y0, s0, dims)
            rows = rows[keep]
        self.rows = rows
        self.cells = cells

    def _slide_mpp(self, sid: str) -> float | None:
        if isinstance(self._mpp, Mapping):
            return self._mpp.get(sid)
        return self._mpp

    def _slide(self, sid: str):
        s = self._open.get(sid)
        if s is None:
            s, _ = _open(self._sources[sid], self._slide_mpp(sid))
            self._open[sid] = s
        return s

    def __getstate__(self) -> dict[str, Any]:  # worker processes open their own handles
        state = dict(self.__dict__)
        state["_open"] = {}
        return state

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        r = int(self.rows[i])
        row = self.cells.iloc[r]
        sid = str(row["slide_id"])
        poly = row["polygon"] if self.mask else None
        edge = "pad" if self.edge == "skip" else self.edge  # skipped rows were removed up front
        img = extract_patch(self._slide(sid), float(row["x"]), float(row["y"]), self.spec, edge=edge,
                            polygon=poly, mask=self.mask)
        item: dict[str, Any] = {"image": torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0,
                                "index": torch.tensor(r)}
        for c in self.columns:
            v = row[c]
            item[c] = torch.tensor(v) if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else v
        return item

    def close(self) -> None:
        for s in self._open.values():
            s.close()
        self._open.clear()


def write_patch_store(dataset: NucleusPatchDataset, path: str | os.PathLike, *, chunk: int = 1024,
                      overwrite: bool = False, progress: bool = False) -> Path:
    """Materialise a :class:`NucleusPatchDataset` into a zarr store.

    The store holds ``patches`` (``(N, H, W, C)`` uint8, chunked by ``chunk`` patches)
    with attrs ``mpp``, ``size_px``, ``edge``, ``mask``, and ``cells.parquet`` (the rows of
    the cell table in patch order). It is written to a temporary folder beside ``path`` and
    renamed, so ``path`` is either absent, the old store, or the complete new one.

    Returns
    -------
    Path
    """
    import zarr

    from histolatent.io.tables import write_cell_table

    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"patch store {str(path)!r} exists; pass overwrite=True to replace it")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    n = len(dataset)
    s = dataset.spec.size_px
    c = 4 if dataset.mask else 3
    try:
        root = zarr.open_group(str(tmp), mode="w")
        arr = root.create_array("patches", shape=(n, s, s, c), chunks=(max(1, min(chunk, max(n, 1))), s, s, c),
                                dtype="uint8")
        arr.attrs.update({"mpp": dataset.spec.mpp, "size_px": s, "edge": dataset.edge, "mask": dataset.mask,
                          "layout": "NHWC", "channels": ["R", "G", "B"] + (["mask"] if dataset.mask else [])})
        with track(n, "patches", enabled=None if progress else False, transient=True) as bar:
            for lo in range(0, n, chunk):
                hi = min(n, lo + chunk)
                block = np.stack([(dataset[i]["image"].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
                                  for i in range(lo, hi)])
                arr[lo:hi] = block
                bar.advance(hi - lo)
        cells = dataset.cells.iloc[dataset.rows].reset_index(drop=True)
        if {"mpp", "x_um", "y_um"} <= set(cells.columns):
            write_cell_table(cells, tmp / "cells.parquet", metadata={"patch_store": True})
        else:
            cells.drop(columns=[col for col in ("polygon",) if col in cells.columns]).to_parquet(tmp / "cells.parquet")
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_patch_store(path: str | os.PathLike) -> tuple[Any, pd.DataFrame]:
    """Open a patch store: the zarr ``patches`` array (lazy) and its cell table."""
    import zarr

    path = Path(path)
    if not (path / "cells.parquet").is_file():
        raise InputError(f"patch store {str(path)!r}: not a patch store (no cells.parquet)")
    arr = zarr.open_group(str(path), mode="r")["patches"]
    return arr, pd.read_parquet(path / "cells.parquet")

