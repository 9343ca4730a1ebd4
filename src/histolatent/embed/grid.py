"""A whole slide -> a ``(C, H, W)`` grid of tile codes (Neural Image Compression, Tellez et al.).

:func:`compress_slide` tiles a slide at a physical scale (:func:`histolatent.tissue.grid.tile_grid`),
encodes the tissue tiles in batches and writes a zarr store:

``grid``
    ``(C, H, W)`` float16: the code of the tile at grid row ``i``, column ``j`` in
    ``grid[:, i, j]``; 0 where there is no tissue. With ``dihedral=True``:
    ``(8, C, L, L)``, see below.
``mask``
    ``(H, W)`` bool (``(8, L, L)`` with ``dihedral``): True where the tile was encoded
    (tissue fraction >= ``min_tissue``). Background is explicit here, not only a zero code.
``manifest.json``
    shape, dtype, encoder and weights hash, options, the checksum of the arrays
    (:func:`grid_checksum`) and seconds per stage (read, decode, transform, forward, write).
    :func:`verify_grid` recomputes it; a store without a manifest that verifies is not a
    finished grid.
attrs
    ``mpp``, ``tile_px``, ``stride_px`` (pixels at ``mpp``), ``slide_mpp``,
    ``level0_dimensions`` (W, H), ``min_tissue``, ``part``, ``encoder`` (registry name),
    ``weights_hash`` (:func:`~histolatent.embed.encode.weights_hash`), ``precision`` and
    ``affine``: the 3 x 3 matrix that maps ``(j, i, 1)`` (column, row) to the level-0
    ``(x, y, 1)`` of the top-left corner of that cell's tile.

**Dihedral copies.** ``dihedral=True`` encodes the 8 dihedral versions of every tile
(``k = 4 * flip + r``: mirror left-right if ``flip``, then ``r`` quarter turns as
``numpy.rot90``) and stores grid ``k`` as the grid of the slide transformed by ``k``: the
code of tile ``(i, j)`` goes to :func:`dihedral_index` ``(k, i, j)``, computed, never
searched. Quarter turns swap H and W, so the eight grids share one square ``L x L`` frame,
``L = max(H, W)``, each anchored top-left; ``attrs["dihedral_shapes"]`` gives each one's
``(H_k, W_k)`` and the mask marks the cells outside it as background.
``attrs["dihedral_index"][k]`` is the integer 3 x 3 matrix taking ``(j', i', 1)`` of grid
``k`` back to ``(j, i, 1)`` of grid 0 (then ``affine`` gives level-0 pixels). Grid ``k``
equals the grid of the transformed slide when the tiles cover the slide exactly
(``(n - 1) * stride + tile`` = its size on both axes); otherwise it is the grid of the
covered part, transformed.

The store's reading side (manifest, checksum, :func:`verify_grid`, :func:`read_slide_grid`,
windows of a grid) is :mod:`histolatent.io.grids`, below every package that reads grids;
its names are re-exported here.

**Bounded memory.** The slide is read in regions of about 512 x 2048 level pixels in tile
order (:meth:`~histolatent.io.slide.Slide.read_tiles`: through the native-tile fast path
where the slide has one, each native tile decoded about once), the next region read by a
helper thread while the current one is encoded, and the store written one band of grid rows
at a time into a temporary folder that is renamed when complete (with its manifest): memory
holds one band of codes and a couple of regions whatever the slide's size, and a crash
leaves no half-written store.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from histolatent.embed.encode import PRECISIONS, encode_images, module_device, weights_hash
from histolatent.errors import InputError
from histolatent.io.atomic import atomic_dir
from histolatent.io.grids import (
    GRID_FORMAT,
    MANIFEST,
    check_dihedral_k,
    dihedral_transform,
    grid_checksum,
    grid_manifest,
    read_manifest,
    read_slide_grid,
    verify_grid,
)
from histolatent.io.image import check_mpp, tensor_from_rgb8
from histolatent.progress import progress as progress_meter

__all__ = ["MANIFEST", "compress_slide", "dihedral_index", "dihedral_matrix", "embed_slide_grid",
           "grid_affine", "grid_checksum", "read_manifest", "read_slide_grid", "resolve_encoder",
           "verify_grid"]

#: Grid rows per zarr chunk and per write band; cells per chunk side of dihedral grids.
_CHUNK = 32
#: Level pixels of one read region (height, width).
_REGION = (512, 2048)


class _CallableEncoder(torch.nn.Module):
    """A plain ``f(x) -> (N, C)`` encoder behind the model contract: ``encode(x) = {"z": f(x)}``."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn  # an nn.Module is registered, so its weights are hashed and its device used

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"z": self.fn(x)}


#: File suffixes taken for TorchScript encoders.
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")


def resolve_encoder(spec: Any, part: str = "z") -> tuple[Any, str, str, str | None]:
    """``(model with encode(), part, registry name, weights hash)`` from what a user gives.

    ``spec`` is a model with ``encode()``, an ``nn.Module`` or callable ``f(x) -> (N, C)``
    on float ``(N, 3, h, w)`` tiles in [0, 1], a training-run folder
    (:func:`histolatent.models.load_model`) or a TorchScript file (``.pt``, ``.ts`` …;
    through ``histolatent.models.torchscript.load_torchscript_encoder``, imported lazily).
    """
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        if path.is_dir():
            from histolatent.models import load_model

            try:
                spec = load_model(path)
            except InputError:
                raise
            except Exception as err:  # a folder that is not a run
                raise InputError(f"encoder {str(path)!r}: not a training run folder ({err})") from None
        elif path.is_file() and path.suffix.lower() in TORCHSCRIPT_SUFFIXES:
            try:
                from histolatent.models.torchscript import load_torchscript_encoder
            except ImportError:
                raise InputError(f"encoder {str(path)!r}: TorchScript encoders need "
                                 "histolatent.models.torchscript, which this installation does not have "
                                 "yet (NIC part 1, items 1-2); pass a training run folder") from None
            spec = load_torchscript_encoder(path)
        elif not path.exists():
            raise InputError(f"encoder {str(path)!r}: no such run folder or TorchScript file")
        else:
            raise InputError(f"encoder {str(path)!r}: expected a run folder or a TorchScript file "
                             f"({', '.join(TORCHSCRIPT_SUFFIXES)})")
    if hasattr(spec, "encode"):
        name = getattr(spec, "registry_name", "") or type(spec).__name__
        model = spec
    elif callable(spec):
        model, part = _CallableEncoder(spec), "z"
        name = getattr(spec, "name", None) or getattr(spec, "__name__", None) or type(spec).__name__
        if isinstance(spec, torch.nn.Module):
            name = type(spec).__name__
    else:
        raise InputError(f"encoder: expected a run folder, a TorchScript file, a model with encode() or a "
                         f"callable, got {type(spec).__name__}")
    digest = weights_hash(model) if isinstance(model, torch.nn.Module) else None
    return model, part, str(name), digest


def grid_affine(stride0: float, origin: tuple[float, float] = (0.0, 0.0)) -> list[list[float]]:
    """The 3 x 3 affine from grid ``(column j, row i, 1)`` to level-0 ``(x, y, 1)`` of the tile's corner.

    >>> grid_affine(64.0)
    [[64.0, 0.0, 0.0], [0.0, 64.0, 0.0], [0.0, 0.0, 1.0]]
    """
    s = float(stride0)
    return [[s, 0.0, float(origin[0])], [0.0, s, float(origin[1])], [0.0, 0.0, 1.0]]


# -- the dihedral group on grids ------------------------------------------------------------
def dihedral_index(k: int, i: Any, j: Any, shape: tuple[int, int]) -> tuple[Any, Any, tuple[int, int]]:
    """Where cell ``(i, j)`` of an ``(H, W)`` grid lands in the grid of the slide transformed by ``k``.

    ``k = 4 * flip + r``: mirror left-right (``j -> W-1-j``) if ``flip``, then ``r`` quarter
    turns as ``numpy.rot90`` (each ``(i, j) -> (W-1-j, i)`` and ``(H, W) -> (W, H)``).
    Works on integers and arrays; returns ``(i', j', (H', W'))``.

    >>> dihedral_index(1, 0, 0, (2, 3))   # the top-left cell, one quarter turn: bottom-left
    (2, 0, (3, 2))
    """
    flip, r = check_dihedral_k(k)
    h, w = int(shape[0]), int(shape[1])
    if flip:
        j = w - 1 - j
    for _ in range(r):
        i, j, h, w = w - 1 - j, i, w, h
    return i, j, (h, w)


def dihedral_matrix(k: int, shape: tuple[int, int]) -> list[list[int]]:
    """Integer 3 x 3 matrix taking ``(j', i', 1)`` of grid ``k`` back to ``(j, i, 1)`` of grid 0."""
    h, w = int(shape[0]), int(shape[1])
    # the forward map is affine: read it off three cells, then invert
    cells = [(0, 0), (0, 1), (1, 0)]
    fwd = [dihedral_index(k, i, j, (h, w))[:2] for i, j in cells]
    (i0, j0), (i1, j1), (i2, j2) = fwd
    a = np.array([[j1 - j0, j2 - j0, j0], [i1 - i0, i2 - i0, i0], [0, 0, 1]], dtype=np.float64)  # (j, i) -> (j', i')
    return np.rint(np.linalg.inv(a)).astype(int).tolist()


def _transform_tiles(x: torch.Tensor, k: int) -> torch.Tensor:
    """The tiles ``(N, 3, h, w)`` transformed by ``k`` (as the slide is)."""
    flip, r = check_dihedral_k(k)
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, r, dims=(-2, -1)) if r else x


def _device(model: Any, device: str | None) -> torch.device:
    """The device to run on: ``None``/"auto" = CUDA when present (the model is moved), else the model's."""
    if device in (None, "auto"):
        if torch.cuda.is_available() and isinstance(model, torch.nn.Module):
            model.to("cuda")
        return module_device(model)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device: expected 'auto', 'cpu' or 'cuda[:n]', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: CUDA is not available on this machine")
    if isinstance(model, torch.nn.Module):
        model.to(dev)
    return dev


def compress_slide(slide: Any, encoder: Any, out: str | os.PathLike, *, mpp: float = 0.5, tile_px: int = 128,
                   stride_px: int | None = None, dihedral: bool = False, tissue: Any = None,
                   min_tissue: float = 0.5, part: str = "z", batch_size: int = 64, precision: str = "fp32",
                   device: str | None = None, slide_mpp: float | None = None, overwrite: bool = False,
                   prefetch: bool = True, progress: bool | None = None) -> Path:
    """Encode every tissue tile of a slide into a zarr float16 grid with its mask and manifest.

    See the module docstring for the layout.

    Parameters
    ----------
    slide : path, Slide or array
        The slide (an array or plain image needs ``slide_mpp``).
    encoder : model, module, callable, run folder or TorchScript file
        See :func:`resolve_encoder`. Tiles reach it as float ``(N, 3, tile_px, tile_px)``
        in [0, 1]; a model whose ``config.in_channels`` is 1 gets ``(N, 1, tile_px, tile_px)``,
        the first channel (NIC's digit slides are grey, written as RGB).
    out : path
        The zarr store to write (a folder), e.g. ``slide.zarr``.
    mpp, tile_px : float, int
        Tiles of ``tile_px`` pixels at ``mpp`` µm/px (the paper: 128 px at 0.5 µm/px).
    stride_px : int, optional
        Step between tiles, pixels at ``mpp`` (default ``tile_px``: no overlap).
    dihedral : bool
        Store the grids of the 8 dihedral transforms of the slide, ``(8, C, L, L)``.
    tissue : TissueMask, optional
        The tissue mask (default: detected from the thumbnail).
    min_tissue : float
        Tiles with at least this tissue fraction are encoded; 0 encodes every tile.
    part, batch_size, precision
        The encode part used as the code; tiles per forward pass; "fp32" or "bf16"
        (autocast; check its accuracy for your encoder before using it on the CPU).
    device : str, optional
        "auto" (default): CUDA when present, else the encoder's device; or "cpu", "cuda".
    slide_mpp : float, optional
        µm per level-0 pixel for a slide that carries none.
    overwrite : bool
        Replace an existing store (only once the new one is complete).
    prefetch : bool
        Read the next region in a helper thread while the current one is encoded.
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
    >>> _ = compress_slide(image, mean_rgb, out, tile_px=32, mpp=0.5, slide_mpp=0.5, tissue=everywhere)
    >>> grid, mask, attrs = read_slide_grid(out)
    >>> grid.shape, grid[0].tolist()
    ((3, 2, 3), [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    """
    from histolatent.io.slide import Slide, open_slide
    from histolatent.tissue.grid import tile_grid
    from histolatent.tissue.mask import TissueMask, detect_tissue

    t_start = time.perf_counter()
    model, part, name, digest = resolve_encoder(encoder, part)
    mpp = check_mpp(mpp, name="mpp")
    if precision not in PRECISIONS:
        raise InputError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    if int(batch_size) < 1:
        raise InputError(f"batch_size: expected >= 1, got {batch_size}")
    if tissue is not None and not isinstance(tissue, TissueMask):
        raise InputError(f"tissue: expected a TissueMask, got {type(tissue).__name__}")
    if not 0.0 <= float(min_tissue) <= 1.0:
        raise InputError(f"min_tissue: expected a fraction in [0, 1], got {min_tissue}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{str(out)!r} exists; pass overwrite=True to replace it")
    owned = not isinstance(slide, Slide)
    if owned and isinstance(slide, (str, os.PathLike)) and not Path(slide).exists():
        raise InputError(f"slide {str(slide)!r}: does not exist")
    dev = _device(model, device)
    if hasattr(model, "eval"):
        model.eval()
    handle = open_slide(slide, mpp=check_mpp(slide_mpp, name="slide_mpp", optional=True)) if owned else slide
    stages = {"tissue": 0.0, "read": 0.0, "decode": 0.0, "transform": 0.0, "forward": 0.0, "write": 0.0}
    try:
        smpp = handle.require_mpp()
        t0 = time.perf_counter()
        if tissue is None:  # on a thumbnail of about 8 µm/px (finer for small tiles): the closing of a
            # full-size thumbnail at a fine scale costs seconds and changes nothing at tile scale
            thumb_mpp = max(smpp, min(8.0, mpp * int(tile_px) / 4))
            tissue = detect_tissue(handle, thumbnail_px=max(64, min(2048, math.ceil(
                max(handle.dimensions) * smpp / thumb_mpp))))
        tiles = tile_grid(handle, mpp=mpp, tile_px=tile_px, stride_px=stride_px, min_tissue=0.0, mask=tissue)
        if len(tiles) == 0:
            raise InputError(f"slide {handle.name!r}: smaller than one tile ({tile_px} px at {mpp} µm/px)")
        ny = int(np.unique(tiles.y).size)
        nx = len(tiles) // ny
        inside = (tiles.tissue_fraction >= min_tissue) if min_tissue > 0 else np.ones(len(tiles), bool)
        mask = inside.reshape(ny, nx)  # tile_grid is row-major
        stride0 = tiles.stride_px * mpp / smpp
        stages["tissue"] = time.perf_counter() - t0
        ks = tuple(range(8)) if dihedral else (0,)
        grey = getattr(getattr(model, "config", None), "in_channels", None) == 1
        native0 = handle.native_seconds()

        def read(idx: np.ndarray) -> tuple[np.ndarray, float]:
            t = time.perf_counter()
            return handle.read_tiles(tiles.x[idx], tiles.y[idx], tiles.tile_px, tiles.tile_px, mpp=mpp), \
                time.perf_counter() - t

        def encode(patches: np.ndarray) -> np.ndarray:
            """``(K, n, C)`` float32 codes of the tiles under each transform ``k``."""
            t = time.perf_counter()
            x = tensor_from_rgb8(patches, device=dev)
            if grey:  # a 1-channel encoder (NIC's digit task) reads the red channel of a grey slide
                x = x[:, :1]
            stages["transform"] += time.perf_counter() - t
            codes = []
            for k in ks:
                t = time.perf_counter()
                xk = _transform_tiles(x, k).contiguous() if k else x
                t1 = time.perf_counter()
                code = encode_images(model, xk, parts=[part], batch_size=batch_size, precision=precision)[part]
                stages["transform"] += t1 - t
                stages["forward"] += time.perf_counter() - t1
                codes.append(code.reshape(len(patches), -1))
            return np.stack(codes)

        first = np.flatnonzero(inside)[:1] if inside.any() else np.zeros(1, np.int64)
        channels = encode(read(first)[0]).shape[2]  # one tile tells the code size
        level = handle.best_level(mpp / smpp)
        step = stride0 / handle.level_downsamples[level]  # level pixels between tiles
        rows_per_read = max(1, int(_REGION[0] // step))
        cols_per_read = max(1, int(_REGION[1] // step))
        attrs = {"format": GRID_FORMAT, "mpp": mpp, "tile_px": tiles.tile_px, "stride_px": tiles.stride_px,
                 "slide_mpp": smpp, "level0_dimensions": list(tiles.level0_dimensions),
                 "min_tissue": float(min_tissue), "affine": grid_affine(stride0), "encoder": name, "part": part,
                 "weights_hash": digest, "precision": precision, "dihedral": bool(dihedral),
                 "slide": handle.name, "grid_shape": [ny, nx]}
        if dihedral:
            attrs["dihedral_shapes"] = [list(dihedral_index(k, 0, 0, (ny, nx))[2]) for k in ks]
            attrs["dihedral_index"] = [dihedral_matrix(k, (ny, nx)) for k in ks]
        with atomic_dir(out, overwrite=overwrite) as tmp:
            n_tiles = _write_grid(tmp, mask, channels, ks, attrs, rows_per_read, cols_per_read, read, encode,
                                  stages, prefetch, int(batch_size), progress)
            tw = time.perf_counter()
            manifest = grid_manifest(tmp, attrs, store=out.name)
            stages["write"] += time.perf_counter() - tw
            native1 = handle.native_seconds()
            if native0 is not None and native1 is not None:  # the native path splits reading from decoding
                nr, nd = native1[0] - native0[0], native1[1] - native0[1]
                stages["transform"] += max(0.0, stages["read"] - nr - nd)  # cutting tiles out of regions
                stages["read"], stages["decode"] = nr, nd
            else:
                stages["decode"] = None  # the backend reads and decodes in one call
            manifest.update(n_tissue_tiles=int(n_tiles), n_cells=int(ny * nx),
                            stage_seconds={k: (None if v is None else round(v, 4)) for k, v in stages.items()},
                            seconds=round(time.perf_counter() - t_start, 4), native_tiles=native0 is not None,
                            device=str(dev))
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    finally:
        if owned:
            handle.close()
    return out


def embed_slide_grid(encoder: Any, slide: Any, out: str | os.PathLike, **options: Any) -> Path:
    """:func:`compress_slide` with the encoder first (the older spelling; same store)."""
    return compress_slide(slide, encoder, out, **options)


def _prefetched(blocks: list, read: Any, enabled: bool) -> Iterator[tuple[Any, Any]]:
    """``(block, read(block's tiles))`` in order, the next read running in a thread while one is used."""
    if not enabled or len(blocks) < 2:
        for b in blocks:
            yield b, read(b[1])
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="histolatent-read") as pool:
        pending = pool.submit(read, blocks[0][1])
        for n, b in enumerate(blocks):
            result = pending.result()
            if n + 1 < len(blocks):
                pending = pool.submit(read, blocks[n + 1][1])
            yield b, result


def _write_grid(path: Path, mask: np.ndarray, channels: int, ks: tuple[int, ...], attrs: dict, rows_per_read: int,
                cols_per_read: int, read: Any, encode: Any, stages: dict, prefetch: bool, batch_size: int,
                progress: bool | None) -> int:
    """Write the store band by band: one band of codes and two read regions in memory at a time."""
    import zarr

    ny, nx = mask.shape
    band = min(ny, _CHUNK)
    root = zarr.open_group(str(path), mode="w")
    if len(ks) == 1:
        grid = root.create_array("grid", shape=(channels, ny, nx), chunks=(channels, band, nx), dtype="float16",
                                 fill_value=0)
        root.create_array("mask", shape=(ny, nx), chunks=(band, nx), dtype="bool", fill_value=False)[:] = mask
    else:
        side = max(ny, nx)
        c = min(side, _CHUNK)
        grid = root.create_array("grid", shape=(8, channels, side, side), chunks=(1, channels, c, c),
                                 dtype="float16", fill_value=0)
        masks = np.zeros((8, side, side), bool)
        for k in ks:
            mk = dihedral_transform(mask, k)
            masks[k, :mk.shape[0], :mk.shape[1]] = mk
        root.create_array("mask", shape=masks.shape, chunks=(1, side, side), dtype="bool", fill_value=False)[:] = masks
    total = int(mask.sum())
    with progress_meter(total, f"compress {Path(str(attrs.get('slide'))).name}", unit="tiles",
                        enabled=progress) as bar:
        for r0 in range(0, ny, band):
            r1 = min(ny, r0 + band)
            blocks = []
            for rs in range(r0, r1, rows_per_read):
                re = min(r1, rs + rows_per_read)
                for c0 in range(0, nx, cols_per_read):
                    sub = mask[rs:re, c0:c0 + cols_per_read]
                    ii, jj = np.nonzero(sub)
                    if len(ii):
                        blocks.append(((ii + rs, jj + c0), (ii + rs) * nx + jj + c0))
            if not blocks:
                continue
            codes = np.zeros((len(ks), channels, r1 - r0, nx), np.float32)
            pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (rows, cols, patches) not yet encoded

            for ((ii, jj), _idx), (patches, seconds) in _prefetched(blocks, read, prefetch):
                stages["read"] += seconds
                pending.append((ii, jj, patches))
                _encode_pending(pending, codes, r0, batch_size, encode, bar, final=False)
            _encode_pending(pending, codes, r0, batch_size, encode, bar, final=True)
            t = time.perf_counter()
            if len(ks) == 1:
                grid[:, r0:r1, :] = codes[0].astype(np.float16)
            else:
                for k in ks:
                    blk = dihedral_transform(codes[k], k).astype(np.float16)
                    ia, ja, _ = dihedral_index(k, r0, 0, (ny, nx))
                    ib, jb, _ = dihedral_index(k, r1 - 1, nx - 1, (ny, nx))
                    top, left = min(ia, ib), min(ja, jb)
                    grid[k, :, top:top + blk.shape[1], left:left + blk.shape[2]] = blk
            stages["write"] += time.perf_counter() - t
    root.attrs.update(attrs)
    return total


def _encode_pending(pending: list, codes: np.ndarray, r0: int, batch_size: int, encode: Any, bar: Any, *,
                    final: bool) -> None:
    """Encode the pending ``(rows, cols, patches)`` in full batches (all of them when ``final``).

    Batches then hold ``batch_size`` tiles whatever the tissue layout of the read regions;
    the tiles left over wait for the next region of the band.
    """
    n = sum(len(p[0]) for p in pending)
    take = n if final else n - n % batch_size
    if take == 0:
        return
    ii = np.concatenate([p[0] for p in pending])
    jj = np.concatenate([p[1] for p in pending])
    patches = np.concatenate([p[2] for p in pending]) if len(pending) > 1 else pending[0][2]
    codes[:, :, ii[:take] - r0, jj[:take]] = encode(patches[:take]).transpose(0, 2, 1)
    pending.clear()
    if take < n:
        pending.append((ii[take:], jj[take:], patches[take:]))
    bar.advance(take)
