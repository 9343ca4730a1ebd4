"""Heatmap stores: one value per cell of a slide grid, with the grid's level-0 geometry.

A heatmap store is a zarr group (a folder, e.g. ``slide.heatmap.zarr``) beside its grid:

``heatmap``
    ``(H, W)`` float32, one value per grid cell (row ``i``, column ``j``).
``mask``
    ``(H, W)`` bool, the grid's tissue cells.
attrs
    the grid's geometry, copied: ``affine`` (3 x 3, grid ``(j, i, 1)`` -> level-0
    ``(x, y, 1)`` of the top-left corner of that cell's tile), ``tile_px``, ``stride_px``,
    ``mpp``, ``slide_mpp``, ``level0_dimensions``, ``grid_shape`` and, when the grid has them,
    ``slide``, ``encoder``, ``weights_hash``; ``grid`` (the grid store's path when given
    one), ``kind = "heatmap"`` and whatever the caller adds (method, layer, threshold …).

Never a full-resolution canvas: a 100k x 100k-pixel slide at 128-px tiles is a 782 x 782
heatmap (2.4 MB). The store is written under a temporary name and renamed when complete.

Example
-------
>>> import numpy as np, tempfile, pathlib
>>> attrs = {"affine": [[64.0, 0, 0], [0, 64.0, 0], [0, 0, 1]], "tile_px": 128, "stride_px": 128,
...          "mpp": 0.5, "slide_mpp": 0.25, "level0_dimensions": [200, 130]}
>>> out = pathlib.Path(tempfile.mkdtemp()) / "s.heatmap.zarr"
>>> _ = write_heatmap(np.array([[0.0, 0.5, 1.0], [0.2, 0.0, 0.0]]), attrs, out, attrs={"method": "grad-cam"})
>>> heat, mask, meta = read_heatmap(out)
>>> str(heat.dtype), heat.shape, meta["grid_shape"], meta["method"], bool(mask.all())
('float32', (2, 3), [2, 3], 'grad-cam', True)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from histolatent.errors import InputError
from histolatent.io.atomic import atomic_folder

__all__ = ["GEOMETRY_KEYS", "HEATMAP_FORMAT", "read_heatmap", "write_heatmap"]

#: Version of the store layout written here.
HEATMAP_FORMAT = 1
#: The grid attrs a heatmap carries over (those present).
GEOMETRY_KEYS = ("affine", "tile_px", "stride_px", "mpp", "slide_mpp", "level0_dimensions", "grid_shape", "slide",
                 "encoder", "weights_hash", "part")
_CHUNK = 256


def _grid_attrs(grid: Any) -> tuple[dict[str, Any], np.ndarray | None, str | None]:
    """``(attrs, mask or None, path or None)`` of a grid store path or an attrs mapping."""
    if isinstance(grid, dict):
        return dict(grid), None, None
    if not isinstance(grid, (str, os.PathLike)):
        raise InputError(f"grid: expected a grid store path or its attrs (a dict), got {type(grid).__name__}")
    import zarr

    path = Path(grid)
    try:
        root = zarr.open_group(str(path), mode="r")
        attrs, stored = dict(root.attrs), root["mask"]
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise InputError(f"grid {str(path)!r}: not a slide grid store ({err})") from None
    if stored.ndim == 3:  # a dihedral store: the identity copy
        h, w = attrs["dihedral_shapes"][0]
        return attrs, np.asarray(stored[0, :h, :w], dtype=bool), str(path)
    return attrs, np.asarray(stored[...], dtype=bool), str(path)


def write_heatmap(heatmap: np.ndarray, grid: str | os.PathLike | dict, out: str | os.PathLike, *,
                  mask: np.ndarray | None = None, attrs: dict[str, Any] | None = None,
                  overwrite: bool = False) -> Path:
    """Write an ``(H, W)`` heatmap with its grid's geometry to a zarr store, atomically.

    Parameters
    ----------
    heatmap : ndarray
        ``(H, W)`` finite values, one per grid cell; stored as float32.
    grid : path or dict
        The grid store (its attrs and mask are read) or its attrs (needs ``affine``).
    out : path
        The store to write (a folder).
    mask : ndarray, optional
        ``(H, W)`` bool tissue cells (default: the grid's mask; every cell for attrs).
    attrs : dict, optional
        More attrs to record (JSON values), e.g. how the heatmap was made.
    overwrite : bool
        Replace an existing store (only once the new one is complete).

    Returns
    -------
    Path
        ``out``.
    """
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2 or heat.size == 0:
        raise InputError(f"heatmap: expected a non-empty (H, W) array, got shape {heat.shape}")
    if not np.isfinite(heat).all():
        raise InputError("heatmap: has NaN or infinite values")
    gattrs, gmask, gpath = _grid_attrs(grid)
    affine = np.asarray(gattrs.get("affine", ()), dtype=np.float64)
    if affine.shape != (3, 3):
        raise InputError(f"grid: expected a 3 x 3 'affine' in its attrs, got {gattrs.get('affine')!r}")
    shape = gattrs.get("grid_shape")
    if gmask is not None:
        shape = list(gmask.shape)
    if shape is not None and tuple(shape) != heat.shape:
        raise InputError(f"heatmap: shape {heat.shape} differs from its grid's {tuple(shape)}")
    mask = gmask if mask is None else np.asarray(mask, dtype=bool)
    if mask is None:
        mask = np.ones(heat.shape, bool)
    if mask.shape != heat.shape:
        raise InputError(f"mask: shape {mask.shape} differs from the heatmap's {heat.shape}")
    meta = {k: gattrs[k] for k in GEOMETRY_KEYS if k in gattrs}
    meta.update({"format": HEATMAP_FORMAT, "kind": "heatmap", "grid_shape": list(heat.shape), "grid": gpath})
    meta.update(attrs or {})
    import zarr

    chunks = (min(heat.shape[0], _CHUNK), min(heat.shape[1], _CHUNK))
    with atomic_folder(out, overwrite=overwrite) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.create_array("heatmap", shape=heat.shape, chunks=chunks, dtype="float32", fill_value=0)[:] = heat
        root.create_array("mask", shape=mask.shape, chunks=chunks, dtype="bool", fill_value=False)[:] = mask
        root.attrs.update(meta)
    return Path(out)


def read_heatmap(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A store written by :func:`write_heatmap`: ``(heatmap float32 (H, W), mask bool (H, W), attrs)``."""
    import zarr

    path = Path(path)
    try:
        root = zarr.open_group(str(path), mode="r")
        attrs = dict(root.attrs)
        if attrs.get("kind") != "heatmap":
            raise KeyError("attrs['kind'] is not 'heatmap'")
        return root["heatmap"][...], root["mask"][...], attrs
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise InputError(f"heatmap {str(path)!r}: not a heatmap store ({err})") from None
