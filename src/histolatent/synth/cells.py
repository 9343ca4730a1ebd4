"""Nucleus-centred cell patches and graded ROI sets, with ground truth.

- :func:`cell_patches`: one nucleus of a chosen type at the centre of each patch (its
  type, true orientation in the patch, shift from the centre, stain site, grade), as
  the single-cell data of papers/se2n-vae_orientation-disentangled.txt (68 x 68 px at
  ~0.25 µm/px) and papers/stain-normalization_infogan-nuclei.txt (40 x 40 crops). Options
  rotate the patch uniformly and translate the nucleus (TARGET-VAE style, N(0, s^2) px),
  and remove the neighbours.
- :func:`roi_set`: regions of tumour with a pleomorphism grade 1–3 (paper 0's grading
  task): the grade widens the spread of epithelial size, shape and intensity and raises
  the number of mitoses per area; every epithelial nucleus of an ROI is a cell row.

Patch ``i`` is a pure function of ``(seed, i)``: ``cell_patches(10, seed=s)`` equals the
first ten of ``cell_patches(20, seed=s)``, and ``start`` renders any slice of the sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import pandas as pd

from histolatent.errors import InputError
from histolatent.io.image import check_mpp
from histolatent.synth.noise import Grid, hash_uniform, seed32
from histolatent.synth.nuclei import MAX_RADIUS_UM, nucleus_params, sample_nuclei, subset
from histolatent.synth.render import render_region, render_tile
from histolatent.synth.stain import Scanner, Stain, as_scanner, rgb_from_concentrations, site_stain
from histolatent.synth.tissue import PRESETS, TYPE_IDS, TYPES, TissueSpec, World, as_tissue

#: The tissue each nucleus type is drawn in.
_CONTEXT = {"epithelial": "tumour", "mitosis": "tumour", "lymphocyte": "lymphoid", "fibroblast": "stroma"}
_SEARCH_UM = 140.0


def _check_types(types: Sequence[str]) -> tuple[str, ...]:
    if isinstance(types, str):
        types = (types,)
    types = tuple(types)
    if not types:
        raise InputError("types: expected at least one nucleus type")
    bad = [t for t in types if t not in TYPE_IDS]
    if bad:
        raise InputError(f"types: unknown nucleus type(s) {bad}; known: {', '.join(TYPES)}")
    return types


def _centre_nucleus(world: World, kind: str, key: int) -> tuple[dict, int] | None:
    """Sample nuclei around a random world location and pick one of ``kind`` near its centre.

    Returns (nuclei around it, index of the chosen one) or None if none of that kind is near.
    """
    for attempt in range(12):
        ox = (hash_uniform(key, np.int64(attempt), 0) - 0.5) * 2e5
        oy = (hash_uniform(key, np.int64(attempt), 1) - 0.5) * 2e5
        h = _SEARCH_UM / 2
        nuc = sample_nuclei(world, ox - h, oy - h, ox + h, oy + h)
        want = TYPE_IDS["epithelial"] if kind == "mitosis" else TYPE_IDS[kind]
        cand = np.flatnonzero(nuc["type_id"] == want)
        if len(cand) == 0:
            continue
        d = np.hypot(nuc["x_um"][cand] - ox, nuc["y_um"][cand] - oy)
        cand = cand[d < h - 2 * MAX_RADIUS_UM]
        if len(cand) == 0:
            continue
        i = int(cand[np.argmin(np.hypot(nuc["x_um"][cand] - ox, nuc["y_um"][cand] - oy))])
        return nuc, i
    return None


def _make_mitotic(nuc: dict, i: int, key: int, spec: TissueSpec) -> dict:
    """Replace nucleus ``i`` by a mitotic figure (same place, its own random draw)."""
    u = hash_uniform(key, np.int64(0x3117), np.arange(64))[None, :]
    p = nucleus_params("epithelial", u, spec.pleo, spec.grade, 1.0, nuc["theta"][i:i + 1])
    out = {k: v.copy() for k, v in nuc.items()}
    for k, v in p.items():
        out[k][i] = v[0]
    return out


@dataclass(frozen=True)
class _Patch:
    image: np.ndarray
    mask: np.ndarray
    row: dict


def _one_patch(i: int, *, seed: int, size: int, mpp: float, types: tuple[str, ...], probs: np.ndarray,
               rotate: str | None, translate_px: float, neighbours: bool, stain_jitter: float, sites: int,
               grade: int | None, scanner: Scanner, tissue: TissueSpec | None) -> _Patch:
    key = seed32(seed, 0xCE11, i)
    u = hash_uniform(key, np.arange(8))
    kind = types[int(np.searchsorted(np.cumsum(probs), u[0] * probs.sum(), side="right").clip(0, len(types) - 1))]
    g = int(grade) if grade is not None else 1 + int(u[1] * 3)
    spec = tissue if tissue is not None else PRESETS[_CONTEXT[kind]]
    if kind in ("epithelial", "mitosis") or tissue is not None:
        spec = replace(spec, grade=g if spec.grade != 0 or grade is not None else spec.grade)
    world = World(seed=key, tissue=spec)
    found = _centre_nucleus(world, kind, key)
    if found is None:
        raise InputError(f"types: could not place a {kind!r} nucleus in tissue {spec} (patch {i})")
    nuc, j = found
    if kind == "mitosis":
        nuc = _make_mitotic(nuc, j, key, spec)
    xc, yc = float(nuc["x_um"][j]), float(nuc["y_um"][j])
    alpha = float(2 * np.pi * u[2]) if rotate == "uniform" else 0.0
    n1 = np.sqrt(-2 * np.log1p(-u[3] * 0.999999))
    dx = float(translate_px * n1 * np.cos(2 * np.pi * u[4]))
    dy = float(translate_px * n1 * np.sin(2 * np.pi * u[4]))
    # render a window centred exactly on the nucleus, big enough for any rotation/shift
    half = int(np.ceil((size / 2) * (np.sqrt(2) if rotate else 1.0) + max(abs(dx), abs(dy)))) + 3
    win = 2 * half
    grid = Grid(xc - half * mpp, yc - half * mpp, win, win, mpp)
    reach = MAX_RADIUS_UM + half * mpp
    near = (np.abs(nuc["x_um"] - xc) < reach) & (np.abs(nuc["y_um"] - yc) < reach)
    if not neighbours:
        near = np.zeros_like(near)
    near[j] = True
    # the centre nucleus is drawn first so that it is never covered by a neighbour
    order = np.concatenate([[j], np.flatnonzero(near & (np.arange(len(near)) != j))])
    reg = render_region(world, grid, nuclei=subset(nuc, order))
    centre_id = 1 if len(reg.nuclei) and int(reg.nuclei["instance_id"].iloc[0]) == 1 else 0
    c_src = half - 0.5  # pixel-index coordinate of the nucleus centre in the window
    c_dst = (size - 1) / 2.0
    m = cv2.getRotationMatrix2D((c_src, c_src), float(np.rad2deg(alpha)), 1.0)
    m[:, 2] += (c_dst + dx - c_src, c_dst + dy - c_src)
    conc = cv2.warpAffine(reg.concentrations, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)
    inst = cv2.warpAffine(reg.instances.astype(np.float32), m, (size, size), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = inst == centre_id if centre_id else np.zeros((size, size), dtype=bool)
    site = 0 if stain_jitter == 0 or sites <= 0 else 1 + int(u[5] * sites)
    st = site_stain(site, strength=stain_jitter) if site else Stain()
    rng = np.random.default_rng(seed32(key, 0x5CA))
    image = rgb_from_concentrations(conc, st, scanner, mpp=mpp, rng=rng)
    theta = float(nuc["theta"][j])
    row = {
        "index": i, "type": TYPES[int(nuc["type_id"][j]) - 1], "type_id": int(nuc["type_id"][j]),
        "orientation": float(np.mod(theta + alpha, 2 * np.pi)),
        "axis_angle": float(np.mod(theta + alpha, np.pi)), "rotation": alpha, "dx": dx, "dy": dy,
        "site": site, "grade": spec.grade if kind in ("epithelial", "mitosis") else 0,
        "pleomorphism": float(nuc["pleomorphism"][j]) if kind in ("epithelial", "mitosis") else 0.0,
        "major_axis_um": 2 * float(nuc["a"][j]), "minor_axis_um": 2 * float(nuc["b"][j]),
        "area_um2": float(mask.sum()) * mpp * mpp, "n_neighbours": int(len(order) - 1),
        "world_seed": key, "x_um": xc, "y_um": yc,
    }
    return _Patch(image=image, mask=mask, row=row)


def cell_patches(n: int, size_px: int = 68, mpp: float = 0.25, seed: int = 0, *, rotate: str | None = None,
                 translate_px: float = 0.0, neighbours: bool = True,
                 types: Sequence[str] = ("epithelial", "lymphocyte", "fibroblast"),
                 type_probs: Sequence[float] | None = None, stain_jitter: float = 0.0, sites: int = 4,
                 grade: int | None = None, scanner: Scanner | dict | bool | None = None,
                 tissue: TissueSpec | str | dict | None = None, start: int = 0,
                 return_masks: bool = False):
    """Nucleus-centred patches with ground truth.

    Parameters
    ----------
    n : int
        Number of patches.
    size_px : int
        Patch side (px); presets in :data:`histolatent.io.image.PATCH_PRESETS` (68 @ 0.25 µm/px, 40 @ 0.5 µm/px).
    mpp : float
        Microns per pixel.
    seed : int
        Patch ``i`` depends only on ``(seed, start + i)``.
    rotate : {"uniform", None}
        "uniform" rotates each patch by alpha ~ U(0, 2 pi) about the nucleus.
    translate_px : float
        Standard deviation (px) of a normal shift of the nucleus from the patch centre.
    neighbours : bool
        False removes every other nucleus (the tissue around stays).
    types : sequence of str
        Nucleus types to draw (epithelial, lymphocyte, fibroblast, mitosis), uniformly
        unless ``type_probs`` is given.
    stain_jitter : float
        0 = reference stain for all; > 0: each patch comes from one of ``sites`` sites whose
        stains are perturbed with this strength (see :func:`~histolatent.synth.stain.site_stain`).
    grade : int or None
        Tumour grade (1–3) of epithelial/mitotic patches; None draws it per patch.
    scanner : Scanner, dict, None or False
        Acquisition effects (default blur + noise, no JPEG).
    tissue : TissueSpec, str or dict, optional
        Context tissue for every type (default: tumour for epithelial/mitosis, lymphoid for
        lymphocytes, stroma for fibroblasts).
    start : int
        Index of the first patch.
    return_masks : bool
        Also return the centre nucleus' mask, (N, H, W) bool.

    Returns
    -------
    images : ndarray, (N, size_px, size_px, 3) uint8
    table : pandas.DataFrame
        ``index``, ``type``, ``type_id``, ``orientation`` (true body angle of the nucleus in
        the patch, radians in [0, 2 pi), counter-clockwise as displayed), ``axis_angle``
        (mod pi), ``rotation`` (alpha applied), ``dx``, ``dy`` (px, nucleus centre minus
        patch centre, x right / y down), ``site``, ``grade``, ``pleomorphism``,
        ``major_axis_um``, ``minor_axis_um``, ``area_um2``, ``n_neighbours``, ``world_seed``.
    masks : ndarray, (N, size_px, size_px) bool
        Only with ``return_masks=True``.
    """
    n = int(n)
    if n < 0:
        raise InputError(f"n: expected >= 0 patches, got {n}")
    size = int(size_px)
    if not (8 <= size <= 1024):
        raise InputError(f"size_px: expected 8..1024, got {size_px}")
    mpp = check_mpp(mpp)
    if rotate not in (None, "uniform", "none"):
        raise InputError(f"rotate: expected 'uniform' or None, got {rotate!r}")
    rotate = None if rotate == "none" else rotate
    if not (0.0 <= float(translate_px) <= size):
        raise InputError(f"translate_px: expected 0..size_px, got {translate_px}")
    types = _check_types(types)
    probs = np.ones(len(types)) if type_probs is None else np.asarray(type_probs, dtype=np.float64)
    if probs.shape != (len(types),) or (probs < 0).any() or probs.sum() <= 0:
        raise InputError(f"type_probs: expected {len(types)} non-negative weights, got {type_probs!r}")
    if grade is not None and grade not in (0, 1, 2, 3):
        raise InputError(f"grade: expected 1, 2, 3 or None, got {grade!r}")
    if stain_jitter < 0:
        raise InputError(f"stain_jitter: expected >= 0, got {stain_jitter}")
    sc = as_scanner(scanner)
    spec = None if tissue is None else as_tissue(tissue)
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=bool) if return_masks else None
    rows = []
    for k in range(n):
        p = _one_patch(int(start) + k, seed=int(seed), size=size, mpp=mpp, types=types, probs=probs, rotate=rotate,
                       translate_px=float(translate_px), neighbours=bool(neighbours), stain_jitter=float(stain_jitter),
                       sites=int(sites), grade=grade, scanner=sc, tissue=spec)
        images[k] = p.image
        if masks is not None:
            masks[k] = p.mask
        rows.append(p.row)
    table = pd.DataFrame(rows, columns=_PATCH_COLUMNS)
    table["mpp"] = mpp
    table["size_px"] = size
    return (images, table, masks) if return_masks else (images, table)


_PATCH_COLUMNS = ["index", "type", "type_id", "orientation", "axis_angle", "rotation", "dx", "dy", "site", "grade",
                  "pleomorphism", "major_axis_um", "minor_axis_um", "area_um2", "n_neighbours", "world_seed",
                  "x_um", "y_um"]


@dataclass(frozen=True)
class RoiSet:
    """Graded tumour ROIs and their epithelial cells.

    Attributes
    ----------
    rois : pandas.DataFrame
        ``roi_id``, ``grade`` (1–3), ``pleomorphism``, ``n_cells``, ``n_epithelial``,
        ``n_mitoses``, ``epithelium_mm2``, ``mitoses_per_mm2``, ``world_seed``, ``mpp``,
        ``size_px``.
    cells : pandas.DataFrame
        One row per cell patch: ``roi_id``, ``grade``, ``cell_id`` and the nucleus
        columns of :class:`~histolatent.synth.render.SynthTile` (``type``, ``x``, ``y``,
        ``orientation``, ``major_axis_um``, ``area_um2``, ...).
    patches : ndarray or None
        (N, patch_px, patch_px, 3) uint8, rows aligned with ``cells``.
    """

    rois: pd.DataFrame
    cells: pd.DataFrame
    patches: np.ndarray | None

    def roi_patches(self, roi_id: int) -> np.ndarray:
        """The patches of one ROI."""
        if self.patches is None:
            raise InputError("roi_patches: this RoiSet was made with with_patches=False")
        return self.patches[(self.cells["roi_id"] == roi_id).to_numpy()]


def roi_set(n_rois: int, grades: Sequence[float] | dict[int, float] = (1 / 3, 1 / 3, 1 / 3), cells_per_roi: int = 40,
            seed: int = 0, *, roi_px: int = 768, mpp: float = 0.25, patch_px: int = 68, with_patches: bool = True,
            stain: Stain | int | None = None, scanner: Scanner | dict | bool | None = None,
            types: Sequence[str] = ("epithelial", "mitosis")) -> RoiSet:
    """ROIs of tumour with grades 1–3 and their cells (paper 0's pleomorphism task).

    Parameters
    ----------
    n_rois : int
        Number of ROIs.
    grades : sequence of 3 floats or dict {grade: probability}
        Grade distribution (probabilities of grades 1, 2, 3).
    cells_per_roi : int
        Cells (nucleus-centred patches) kept per ROI (fewer if the ROI has fewer).
    seed : int
        ROI ``r`` depends only on ``(seed, r)``.
    roi_px : int
        ROI side in px (at ``mpp``); 768 px at 0.25 µm/px = 192 µm.
    patch_px : int
        Side of the cell patches cropped around each nucleus' centroid (no resampling).
    types : sequence of str
        Nucleus types that count as cells (default: epithelial incl. mitoses).
    """
    n_rois = int(n_rois)
    if n_rois < 0:
        raise InputError(f"n_rois: expected >= 0, got {n_rois}")
    if isinstance(grades, dict):
        probs = np.array([float(grades.get(g, 0.0)) for g in (1, 2, 3)])
    else:
        probs = np.asarray(grades, dtype=np.float64)
    if probs.shape != (3,) or (probs < 0).any() or probs.sum() <= 0:
        raise InputError(f"grades: expected 3 non-negative probabilities (grades 1, 2, 3), got {grades!r}")
    if cells_per_roi < 1:
        raise InputError(f"cells_per_roi: expected >= 1, got {cells_per_roi}")
    if not (patch_px < roi_px):
        raise InputError(f"patch_px: must be smaller than roi_px ({roi_px}), got {patch_px}")
    types = _check_types(types)
    type_ids = [TYPE_IDS[t] for t in types]
    mpp = check_mpp(mpp)
    cum = np.cumsum(probs / probs.sum())
    roi_rows, cell_tables, patches = [], [], []
    half = patch_px // 2
    for r in range(n_rois):
        key = seed32(seed, 0x201, r)
        grade = 1 + int(np.searchsorted(cum, hash_uniform(key, np.int64(0)), side="right").clip(0, 2))
        spec = replace(PRESETS["tumour"], grade=grade, epithelium=0.7)
        tile = render_tile(roi_px, mpp, key, stain, spec, scanner=scanner)
        nuc = tile.nuclei
        ok = nuc["type_id"].isin(type_ids) & ~nuc["truncated"]
        ok &= (nuc["x"] >= half) & (nuc["x"] < roi_px - half) & (nuc["y"] >= half) & (nuc["y"] < roi_px - half)
        cand = nuc[ok]
        pick = np.argsort(hash_uniform(key, np.asarray(cand["gid"].to_numpy()) & 0x7FFFFFFF, 1))[:cells_per_roi]
        cells = cand.iloc[np.sort(pick)].copy()
        cells["roi_id"] = r
        cells["grade"] = grade
        cells = cells[["roi_id", "grade"] + [c for c in cells.columns if c not in ("roi_id", "grade")]]
        cell_tables.append(cells)
        if with_patches:
            for _, c in cells.iterrows():
                cx, cy = int(round(c["x"])), int(round(c["y"]))
                patches.append(tile.rgb[cy - half:cy - half + patch_px, cx - half:cx - half + patch_px].copy())
        epi_px = int(np.count_nonzero(tile.regions == 2))
        n_mit = int((nuc["type"] == "mitosis").sum())
        area_mm2 = epi_px * (mpp * 1e-3) ** 2
        roi_rows.append({"roi_id": r, "grade": grade, "pleomorphism": spec.pleo, "n_cells": len(cells),
                         "n_epithelial": int(nuc["type"].isin(["epithelial", "mitosis"]).sum()), "n_mitoses": n_mit,
                         "epithelium_mm2": area_mm2, "mitoses_per_mm2": n_mit / area_mm2 if area_mm2 > 0 else 0.0,
                         "world_seed": key, "mpp": mpp, "size_px": roi_px})
    rois = pd.DataFrame(roi_rows, columns=["roi_id", "grade", "pleomorphism", "n_cells", "n_epithelial", "n_mitoses",
                                           "epithelium_mm2", "mitoses_per_mm2", "world_seed", "mpp", "size_px"])
    if cell_tables:
        cells = pd.concat(cell_tables, ignore_index=True)
    else:
        cells = pd.DataFrame(columns=["roi_id", "grade"])
    cells.insert(2, "cell_id", np.arange(len(cells)))
    arr = np.stack(patches) if with_patches and patches else (
        np.zeros((0, patch_px, patch_px, 3), np.uint8) if with_patches else None)
    return RoiSet(rois=rois, cells=cells, patches=arr)


__all__ = ["RoiSet", "cell_patches", "roi_set"]
