"""A whole slide -> a ``(C, H, W)`` grid of tile codes (Neural Image Compression, Tellez et al.).

:func:`embed_slide_grid` tiles a slide at a physical scale (:func:`histolatent.tissue.grid.tile_grid`),
encodes the tissue tiles in batches and writes a zarr store:

``grid``
    ``(C, H, W)`` float16: the code of the tile at grid row ``i``, column ``j`` in
    ``grid[:, i, j]``; 0 where there is no tissue.
``mask``
    ``(H, W)`` bool: True where the tile was encoded (tissue fraction >= ``min_tissue``).
    Background is explicit here, not only a zero code.
attrs
    ``mpp``, ``tile_px``, ``stride_px`` (pixels at ``mpp``), ``slide_mpp``,
    ``level0_dimensions`` (W, H), ``min_tissue``, ``part``, ``encoder`` (registry name),
    ``weights_hash`` (:func:`~histolatent.embed.encode.weights_hash`) and ``affine``: the
    3 x 3 matrix that maps ``(j, i, 1)`` (column, row) to the level-0 ``(x, y, 1)`` of the
    top-left corner of that cell's tile. Tiles are read at that corner rounded to the
    nearest level-0 pixel.

The slide is read one band of grid rows at a time (one tile per read) and the store is
written band by band into a temporary folder that is renamed when complete, so memory holds
one band of the grid and one batch of tiles whatever the slide's size, and a crash leaves no
half-written store.

What this does not do yet (issue 15, NIC part 1): dihedral copies, the native-tile read
path in tile order, per-slide manifests and Dask cohorts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from histolatent.embed.encode import encode_images, weights_hash
from histolatent.errors import InputError
from histolatent.io.atomic import atomic_dir
from histolatent.io.image import check_mpp
from histolatent.progress import progress as progress_meter

__all__ = ["embed_slide_grid", "grid_affine", "read_slide_grid"]


class _CallableEncoder(torch.nn.Module):
    """A plain ``f(x) -> (N, C)`` encoder behind the model contract: ``encode(x) = {"z": f(x)}``."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn  # an nn.Module is registered, so its weights are hashed and its device used

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"z": self.fn(x)}


def _as_model(encoder: Any, part: str) -> tuple[Any, str, str]:
    """(a model with encode(), the part to take, its name)."""
    if hasattr(encoder, "encode"):
        name = getattr(encoder, "registry_name", "") or type(encoder).__name__
        return encoder, part, name
    if callable(encoder):
        return _CallableEncoder(encoder), "z", getattr(encoder, "name", None) or type(encoder).__name__
    raise InputError(f"encoder: expected a model with encode() or a callable, got {type(encoder).__name__}")


def grid_affine(stride0: float, origin: tuple[float, float] = (0.0, 0.0)) -> list[list[float]]:
    """The 3 x 3 affine from grid ``(column j, row i, 1)`` to level-0 ``(x, y, 1)`` of the tile's corner.

    >>> grid_affine(64.0)
    [[64.0, 0.0, 0.0], [0.0, 64.0, 0.0], [0.0, 0.0, 1.0]]
    """
    s = float(stride0)
    return [[s, 0.0, float(origin[0])], [0.0, s, float(origin[1])], [0.0, 0.0, 1.0]]


def embed_slide_grid(encoder: Any, slide: Any, out: str | os.PathLike, *, tile_px: int, mpp: float,
                     stride_px: int | None = None, tissue: Any = None, min_tissue: float = 0.5,
                     part: str = "z", batch_size: int = 64, precision: str = "fp32", dihedral: bool = False,
                     slide_mpp: float | None = None, overwrite: bool = False,
                     progress: bool | None = None) -> Path:
    """Encode every tissue tile of a slide into a zarr ``(C, H, W)`` float16 grid (see the module docstring).

    Parameters
    ----------
    encoder : model, run folder or callable
        A :class:`~histolatent.models.base.RepresentationModel` (its ``part`` is the code,
        flattened), a run folder, or any ``f(x) -> (N, C)`` on float ``(N, 3, h, w)``
        tiles in [0, 1] (an ``nn.Module`` is hashed and run on its device).
    slide : path, Slide or array
        The slide (an array or plain image needs ``slide_mpp``).
    out : path
        The zarr store to write (a folder).
    tile_px, mpp : int, float
        Tiles of ``tile_px`` pixels at ``mpp`` µm/px (keyword-only).
    stride_px : int, optional
        Step between tiles, pixels at ``mpp`` (default ``tile_px``: no overlap).
    tissue : TissueMask, optional
        The tissue mask (default: detected from the thumbnail).
    min_tissue : float
        Tiles with at least this tissue fraction are encoded; 0 encodes every tile.
    part, batch_size, precision
        The encode part used as the code; forward pass options
        (:func:`~histolatent.embed.encode.encode_images`).
    dihedral : bool
        Reserved for the 8 dihedral encodings of NIC part 1; True raises NotImplementedError.
    slide_mpp : float, optional
        µm per level-0 pixel for a slide that carries none.
    overwrite : bool
        Replace an existing store (only once the new one is complete).
    progress : bool, optional
        A bar on a terminal (default: when stderr is one); progress lines go to the log.

    Returns
    -------
    Path
        ``out``.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from histolatent.tissue.mask import TissueMask
    >>> image = np.zeros((64, 96, 3), np.uint8); image[:, 32:64] = 255   # 2 x 3 tiles of 32 px
    >>> mean_rgb = lambda x: x.mean(dim=(2, 3))                          # a 3-number code per tile
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "slide.zarr"
    >>> everywhere = TissueMask(np.ones((2, 3), bool), (96, 64))
    >>> _ = embed_slide_grid(mean_rgb, image, out, tile_px=32, mpp=0.5, slide_mpp=0.5, tissue=everywhere)
    >>> grid, mask, attrs = read_slide_grid(out)
    >>> grid.shape, grid[0].tolist()
    ((3, 2, 3), [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    """
    from histolatent.embed.runs import resolve_model
    from histolatent.io.slide import Slide, open_slide
    from histolatent.tissue.grid import tile_grid
    from histolatent.tissue.mask import TissueMask, detect_tissue

    if dihedral:
        raise NotImplementedError("dihedral=True: the 8 dihedral encodings come with NIC part 1 (issue 15)")
    if isinstance(encoder, (str, os.PathLike)):
        encoder = resolve_model(encoder)[0]
    model, part, name = _as_model(encoder, part)
    mpp = check_mpp(mpp, name="mpp")
    if tissue is not None and not isinstance(tissue, TissueMask):
        raise InputError(f"tissue: expected a TissueMask, got {type(tissue).__name__}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{str(out)!r} exists; pass overwrite=True to replace it")
    owned = not isinstance(slide, Slide)
    if owned and isinstance(slide, (str, os.PathLike)) and not Path(slide).exists():
        raise InputError(f"slide {str(slide)!r}: does not exist")
    handle = open_slide(slide, mpp=check_mpp(slide_mpp, name="slide_mpp", optional=True)) if owned else slide
    try:
        smpp = handle.require_mpp()
        if tissue is None:
            tissue = detect_tissue(handle)
        tiles = tile_grid(handle, mpp=mpp, tile_px=tile_px, stride_px=stride_px, min_tissue=0.0, mask=tissue)
        if len(tiles) == 0:
            raise InputError(f"slide {handle.name!r}: smaller than one tile ({tile_px} px at {mpp} µm/px)")
        ny = int(np.unique(tiles.y).size)
        nx = len(tiles) // ny
        inside = (tiles.tissue_fraction >= min_tissue) if min_tissue > 0 else np.ones(len(tiles), bool)
        mask = inside.reshape(ny, nx)  # tile_grid is row-major
        stride0 = tiles.stride_px * mpp / smpp

        def encode(idx: np.ndarray) -> np.ndarray:
            batch = np.stack([tiles.read(handle, int(i)) for i in idx])  # (b, tile_px, tile_px, 3)
            code = encode_images(model, batch, parts=[part], batch_size=batch_size, precision=precision)[part]
            return code.reshape(len(idx), -1)

        first = np.flatnonzero(inside)[:1] if inside.any() else np.zeros(1, np.int64)
        channels = encode(first).shape[1]  # one tile tells the code size
        band = min(ny, max(1, math.ceil(batch_size / nx)))  # grid rows per write: about one batch of tiles
        attrs = {"mpp": mpp, "tile_px": tiles.tile_px, "stride_px": tiles.stride_px, "slide_mpp": smpp,
                 "level0_dimensions": list(tiles.level0_dimensions), "min_tissue": float(min_tissue),
                 "affine": grid_affine(stride0), "encoder": name, "part": part,
                 "weights_hash": weights_hash(model) if isinstance(model, torch.nn.Module) else None,
                 "slide": handle.name}
        with atomic_dir(out, overwrite=overwrite) as tmp:
            _write_grid(tmp, encode, mask, channels, band, attrs, progress)
    finally:
        if owned:
            handle.close()
    return out


def _write_grid(path: Path, encode: Any, mask: np.ndarray, channels: int, band: int, attrs: dict,
                progress: bool | None) -> None:
    """Write the store band by band: one band of codes (and its tiles) in memory at a time."""
    import zarr

    ny, nx = mask.shape
    root = zarr.open_group(str(path), mode="w")
    grid = root.create_array("grid", shape=(channels, ny, nx), chunks=(channels, band, nx), dtype="float16",
                             fill_value=0)
    root.create_array("mask", shape=(ny, nx), chunks=(band, nx), dtype="bool", fill_value=False)[:] = mask
    with progress_meter(int(mask.sum()), f"grid {path.name}", unit="tiles", enabled=progress) as bar:
        for r0 in range(0, ny, band):
            r1 = min(ny, r0 + band)
            sel = np.flatnonzero(mask[r0:r1].ravel())  # tissue cells of the band, row-major
            if len(sel) == 0:
                continue
            codes = np.zeros((channels, (r1 - r0) * nx), np.float32)
            codes[:, sel] = encode(sel + r0 * nx).T
            grid[:, r0:r1, :] = codes.reshape(channels, r1 - r0, nx).astype(np.float16)
            bar.advance(len(sel))
    root.attrs.update(attrs)


def read_slide_grid(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A slide grid written by :func:`embed_slide_grid`: ``(grid (C, H, W) float16, mask (H, W) bool, attrs)``."""
    import zarr

    path = Path(path)
    try:
        root = zarr.open_group(str(path), mode="r")
        return root["grid"][...], root["mask"][...], dict(root.attrs)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise InputError(f"slide grid {str(path)!r}: not a slide grid ({err})") from None
