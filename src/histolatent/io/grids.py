"""Slide grid stores (Neural Image Compression): open, verify and read windows of a zarr grid.

A grid store (written by :func:`histolatent.embed.grid.compress_slide`, or by
:func:`write_slide_grid` for a grid held in memory) is a zarr group with

``grid``
    ``(C, H, W)`` float16 codes, 0 on background; or ``(8, C, L, L)`` with the grids of the
    8 dihedral transforms of the slide (``k = 4 * flip + r``: mirror left-right if ``flip``,
    then ``r`` quarter turns as ``numpy.rot90``; each anchored top-left in an ``L x L`` frame).
``mask``
    ``(H, W)`` bool (``(8, L, L)``): True on the tissue cells that were encoded.
``manifest.json``
    shape, dtype, options and the checksum of both arrays; :func:`verify_grid` recomputes it.

The store lives here, below every package that reads it (data sets, prediction, figures);
``embed`` writes it. :class:`GridStore` reads windows by slicing zarr, so a crop of a
gigapixel slide's grid costs the chunks it touches, never the whole array.

Example
-------
>>> import tempfile, pathlib
>>> import numpy as np
>>> grid = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
>>> out = write_slide_grid(pathlib.Path(tempfile.mkdtemp()) / "s1.zarr", grid, grid[0] > 2)
>>> verify_grid(out) is None
True
>>> store = GridStore(out)
>>> store.slide_id, store.channels, store.shape
('s1', 2, (3, 4))
>>> store.window(-1, 2, 2, 3)[0].tolist()            # rows -1..0, columns 2..4: zero outside
[[0.0, 0.0, 0.0], [2.0, 3.0, 0.0]]
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from histolatent.errors import InputError
from histolatent.io.atomic import atomic_folder

__all__ = ["GRID_FORMAT", "GRID_SUFFIX", "MANIFEST", "GridStore", "check_dihedral_k", "dihedral_transform",
           "find_grid_stores",
           "grid_checksum", "grid_manifest", "grid_options", "read_manifest", "read_slide_grid", "store_shape", "window_overlap",
           "verify_grid", "write_slide_grid"]

#: Name of the manifest inside a grid store.
MANIFEST = "manifest.json"
#: Version of the store layout.
GRID_FORMAT = 2
#: Folder suffix of a grid store; the slide id is the folder's name without it.
GRID_SUFFIX = ".zarr"
#: Rows of one band of the checksum (fixed: it is part of what the checksum means).
_CHECKSUM_ROWS = 32


def check_dihedral_k(k: int) -> tuple[int, int]:
    """``(flip, quarter_turns)`` of dihedral index ``k`` in 0..7."""
    if not 0 <= int(k) < 8:
        raise InputError(f"dihedral k: expected 0..7, got {k}")
    return int(k) // 4, int(k) % 4


def dihedral_transform(a: np.ndarray, k: int) -> np.ndarray:
    """``a (..., rows, cols)`` transformed by dihedral ``k`` on its last two axes (a view).

    ``k = 4 * flip + r``: mirror left-right if ``flip``, then ``r`` quarter turns as
    :func:`numpy.rot90` -- the convention of the dihedral grids of a store.

    >>> dihedral_transform(np.array([[1, 2], [3, 4]]), 5).tolist()   # mirror, then a quarter turn
    [[1, 3], [2, 4]]
    """
    flip, r = check_dihedral_k(k)
    if flip:
        a = a[..., ::-1]
    return np.rot90(a, r, axes=(-2, -1)) if r else a


# -- manifests and verification ------------------------------------------------------------
def store_shape(path: str | os.PathLike) -> list[int]:
    """Shape of the ``grid`` array of a store."""
    import zarr

    return list(zarr.open_group(str(path), mode="r")["grid"].shape)


def grid_checksum(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a store's ``grid`` and ``mask``: shapes, dtypes and bytes, read in bands."""
    import zarr

    root = zarr.open_group(str(path), mode="r")
    h = hashlib.sha256()
    for name in ("grid", "mask"):
        arr = root[name]
        h.update(f"{name}|{arr.dtype}|{tuple(arr.shape)}|".encode())
        rows = arr.shape[-2]
        for r0 in range(0, rows, _CHECKSUM_ROWS):
            h.update(np.ascontiguousarray(arr[..., r0:r0 + _CHECKSUM_ROWS, :]).tobytes())
    return h.hexdigest()


def grid_options(attrs: dict) -> dict:
    """The options that make two grids of one slide comparable (what a resume must match)."""
    return {k: attrs.get(k) for k in ("mpp", "tile_px", "stride_px", "min_tissue", "part", "precision", "dihedral",
                                      "encoder", "weights_hash")}


def grid_manifest(path: str | os.PathLike, attrs: dict, *, store: str | None = None, **extra: Any) -> dict:
    """The manifest of the finished store at ``path`` (shape, dtype, options, checksum, ``extra``).

    ``store`` is the name the store will have (``path`` may be its temporary folder).
    """
    path = Path(path)
    return {"format": GRID_FORMAT, "slide": attrs.get("slide"), "store": store or path.name,
            "shape": store_shape(path),
            "dtype": "float16", "encoder": attrs.get("encoder"), "weights_hash": attrs.get("weights_hash"),
            "options": grid_options(attrs), "checksum": grid_checksum(path), **extra}


def read_manifest(path: str | os.PathLike) -> dict | None:
    """The manifest of a grid store, or None when there is none (or it does not parse)."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def verify_grid(path: str | os.PathLike, expect: dict | None = None) -> str | None:
    """Why the store at ``path`` is not a finished grid, or None when its manifest verifies.

    Verifies: the manifest exists and parses; the arrays open with the shape and dtype it
    records; their checksum (:func:`grid_checksum`) is the one it records; and each of
    ``expect`` (options such as ``mpp``, ``weights_hash``, ``dihedral``) matches it.
    """
    path = Path(path)
    if not path.is_dir():
        return "no store"
    manifest = read_manifest(path)
    if manifest is None:
        return "no manifest (unfinished or foreign store)"
    try:
        shape = store_shape(path)
        if shape != manifest.get("shape"):
            return f"grid shape {shape} differs from the manifest's {manifest.get('shape')}"
        if grid_checksum(path) != manifest.get("checksum"):
            return "checksum differs from the manifest's (corrupt or half-written)"
    except Exception as err:  # zarr raises many kinds on a damaged store
        return f"unreadable store ({type(err).__name__}: {err})"
    for key, want in (expect or {}).items():
        have = manifest.get("options", {}).get(key)
        if have != want:
            return f"{key} is {have!r}, expected {want!r}"
    return None


def read_slide_grid(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A whole slide grid: ``(grid float16, mask bool, attrs)`` (small grids; see :class:`GridStore`)."""
    import zarr

    path = Path(path)
    try:
        root = zarr.open_group(str(path), mode="r")
        return root["grid"][...], root["mask"][...], dict(root.attrs)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise InputError(f"slide grid {str(path)!r}: not a slide grid ({err})") from None


def write_slide_grid(out: str | os.PathLike, grid: np.ndarray, mask: np.ndarray, *, attrs: dict | None = None,
                     overwrite: bool = False) -> Path:
    """Write a grid held in memory as a store with its manifest (atomically).

    For grids made without a slide (synthetic cohorts, codes from elsewhere); slides are
    compressed by :func:`histolatent.embed.grid.compress_slide`, band by band.

    Parameters
    ----------
    out : path
        The store folder, ``<slide_id>.zarr``.
    grid : (C, H, W) array
        Codes; stored as float16.
    mask : (H, W) bool array
        Tissue cells.
    attrs : dict, optional
        Store attributes (``mpp``, ``tile_px``, ``affine``, ``encoder`` ...); ``format``,
        ``slide``, ``dihedral`` and ``grid_shape`` are filled in.
    overwrite : bool
        Replace an existing store once the new one is complete.
    """
    import zarr

    grid = np.asarray(grid)
    mask = np.asarray(mask)
    if grid.ndim != 3 or not np.issubdtype(grid.dtype, np.number):
        raise InputError(f"grid: expected a numeric (C, H, W) array, got {grid.dtype} {grid.shape}")
    if mask.shape != grid.shape[1:] or mask.dtype != bool:
        raise InputError(f"mask: expected a bool array of shape {grid.shape[1:]}, got {mask.dtype} {mask.shape}")
    if not np.isfinite(grid).all():
        raise InputError("grid: contains NaN or inf")
    out = Path(out)
    meta = {"format": GRID_FORMAT, "slide": out.name.removesuffix(GRID_SUFFIX), "dihedral": False,
            "grid_shape": list(mask.shape), **(attrs or {})}
    with atomic_folder(out, overwrite=overwrite) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.create_array("grid", shape=grid.shape, chunks=(grid.shape[0], min(grid.shape[1], 32), grid.shape[2]),
                          dtype="float16", fill_value=0)[...] = grid.astype(np.float16)
        root.create_array("mask", shape=mask.shape, dtype="bool", fill_value=False)[...] = mask
        root.attrs.update(meta)
        manifest = grid_manifest(tmp, meta, store=out.name, n_tissue_tiles=int(mask.sum()), n_cells=int(mask.size))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return out


# -- reading ----------------------------------------------------------------------------------
def find_grid_stores(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> dict[str, Path]:
    """``{slide_id: store}`` of grid stores: ``*.zarr`` folders, or folders holding them.

    The slide id is the store's name without ``.zarr`` (as ``compress`` names them). Two
    stores with one slide id, or a source that is neither, are errors naming it.
    """
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    out: dict[str, Path] = {}
    for src in items:
        p = Path(src)
        if p.is_dir() and p.name.endswith(GRID_SUFFIX):
            stores = [p]
        elif p.is_dir():
            stores = sorted(q for q in p.iterdir() if q.is_dir() and q.name.endswith(GRID_SUFFIX))
            if not stores:
                raise InputError(f"grids {str(p)!r}: no {GRID_SUFFIX} stores in this folder")
        else:
            raise InputError(f"grids {str(p)!r}: neither a {GRID_SUFFIX} store nor a folder of them")
        for s in stores:
            sid = s.name.removesuffix(GRID_SUFFIX)
            if sid in out and out[sid] != s:
                raise InputError(f"grids: slide id {sid!r} names two stores, {str(out[sid])!r} and {str(s)!r}")
            out[sid] = s
    return out


class GridStore:
    """A grid store opened for reading windows; arrays are read by slicing, never whole.

    ``dihedral`` stores hold 8 grids; ``k`` selects one (0 = the slide as scanned). The tissue
    mask of each (grid resolution, small) is read once and kept.

    Attributes
    ----------
    path : Path
    slide_id : str
        The store's name without ``.zarr``.
    attrs : dict
    dihedral : bool
        Whether the store holds the 8 dihedral grids ``(8, C, L, L)``.
    channels : int
        C.
    shape : (H, W)
        Rows and columns of grid ``k = 0`` (``L x L`` frames for the others of a dihedral store).
    """

    #: a grid whose codes take at most this many bytes is read whole at its first window and kept
    #: (float16): small grids are then cut in memory instead of paying zarr's per-read cost (about
    #: 1 ms, more than the crop); larger ones, i.e. real slides, are always read window by window
    KEEP_BYTES = 4 * 2**20

    def __init__(self, path: str | os.PathLike) -> None:
        import zarr

        self.path = Path(path)
        self._kept: dict[int, np.ndarray] = {}
        self.slide_id = self.path.name.removesuffix(GRID_SUFFIX)
        try:
            root = zarr.open_group(str(self.path), mode="r")
            self._grid, self._mask_array = root["grid"], root["mask"]
            self.attrs = dict(root.attrs)
        except (FileNotFoundError, KeyError, ValueError) as err:
            raise InputError(f"slide grid {str(self.path)!r}: not a slide grid ({err})") from None
        self.dihedral = self._grid.ndim == 4
        want = (4, 3) if self.dihedral else (3, 2)
        if (self._grid.ndim, self._mask_array.ndim) != want or self._grid.shape[-2:] != self._mask_array.shape[-2:]:
            raise InputError(f"slide grid {str(self.path)!r}: grid {self._grid.shape} and mask "
                             f"{self._mask_array.shape} are not a (C, H, W) or (8, C, L, L) grid with its mask")
        self.channels = int(self._grid.shape[-3])
        shape = self.attrs.get("grid_shape") if self.dihedral else None
        self.shape = tuple(int(v) for v in shape) if shape else tuple(int(v) for v in self._grid.shape[-2:])
        self._masks: dict[int, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"GridStore({str(self.path)!r}, C={self.channels}, shape={self.shape}, dihedral={self.dihedral})"

    def _k(self, k: int) -> int:
        check_dihedral_k(k)
        if k and not self.dihedral:
            raise InputError(f"slide grid {str(self.path)!r}: has no dihedral grids (k={k}); compress with dihedral")
        return int(k)

    def frame(self, k: int = 0) -> tuple[int, int]:
        """Rows and columns of the array of grid ``k`` (the ``L x L`` frame of a dihedral store)."""
        self._k(k)
        return tuple(int(v) for v in self._grid.shape[-2:])

    def mask(self, k: int = 0) -> np.ndarray:
        """The tissue mask of grid ``k``, ``frame(k)`` bool (read once, then kept; do not modify)."""
        k = self._k(k)
        if k not in self._masks:
            m = self._mask_array[k] if self.dihedral else self._mask_array[...]
            self._masks[k] = np.asarray(m, dtype=bool)
            self._masks[k].flags.writeable = False
        return self._masks[k]

    def window(self, top: int, left: int, height: int, width: int, k: int = 0) -> np.ndarray:
        """Codes of rows ``top .. top+height-1``, columns ``left .. left+width-1`` of grid ``k``.

        ``(C, height, width)`` float32; zero where the window leaves the grid. Only the
        chunks under the window are read.
        """
        k = self._k(k)
        out = np.zeros((self.channels, int(height), int(width)), np.float32)
        (r0, r1, c0, c1), (o0, o1, p0, p1) = window_overlap(top, left, height, width, self.frame(k))
        if r1 > r0 and c1 > c0:
            out[:, o0:o1, p0:p1] = self.region(r0, r1, c0, c1, k)
        return out

    def region(self, r0: int, r1: int, c0: int, c1: int, k: int = 0) -> np.ndarray:
        """Codes of rows ``r0:r1``, columns ``c0:c1`` of grid ``k``, inside the grid: ``(C, r1-r0, c1-c0)``
        as stored (float16; a view of the kept grid for a small store, do not modify)."""
        k = self._k(k)
        whole = self._whole(k)
        if whole is not None:
            return whole[:, r0:r1, c0:c1]
        return self._grid[k, :, r0:r1, c0:c1] if self.dihedral else self._grid[:, r0:r1, c0:c1]

    def _whole(self, k: int) -> np.ndarray | None:
        """Grid ``k`` in memory if it is small (:attr:`KEEP_BYTES`), else None."""
        if k not in self._kept:
            size = self.channels * int(np.prod(self._grid.shape[-2:])) * self._grid.dtype.itemsize
            if size > self.KEEP_BYTES:
                return None
            self._kept[k] = np.asarray(self._grid[k] if self.dihedral else self._grid[...])
        return self._kept[k]

    def mask_window(self, top: int, left: int, height: int, width: int, k: int = 0) -> np.ndarray:
        """The tissue mask under :meth:`window`, ``(height, width)`` bool (False outside the grid)."""
        out = np.zeros((int(height), int(width)), bool)
        (r0, r1, c0, c1), (o0, o1, p0, p1) = window_overlap(top, left, height, width, self.frame(k))
        if r1 > r0 and c1 > c0:
            out[o0:o1, p0:p1] = self.mask(k)[r0:r1, c0:c1]
        return out

    def __getstate__(self) -> dict:
        # zarr handles reopen cheaply in a loader worker; only the path travels
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])


def window_overlap(top: int, left: int, height: int, width: int, shape: tuple[int, int]
             ) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The part of a window inside an ``shape`` array: (source rows/cols), (window rows/cols)."""
    top, left = int(top), int(left)
    r0, r1 = max(0, top), min(shape[0], top + int(height))
    c0, c1 = max(0, left), min(shape[1], left + int(width))
    return (r0, r1, c0, c1), (r0 - top, r1 - top, c0 - left, c1 - left)
