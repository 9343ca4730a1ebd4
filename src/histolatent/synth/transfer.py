"""SynthPath data for DRL's transfer protocol: PCam-like patches and GLaS-like gland tiles.

papers/drl_deformation-representation-learning.txt evaluates on PCam (classification) and GLaS
(gland segmentation); neither can be downloaded here, so SynthPath makes both with their
ground truth, and writes them in the real data sets' layouts so that one protocol reads either.

* :func:`pcam_patches` / :func:`write_pcam`: ``patch_px`` (96) patches at ``mpp`` (0.972, PCam's
  10x) from SynthPath slides, each with a lesion (tumour tissue of grade 1-3 in normal
  breast-like tissue); label 1 when the central ``centre_px`` (32) px hold any lesion pixel
  (PCam's rule). Centres are drawn half inside the lesion and half in other tissue, so the
  classes are about balanced, as in PCam; the label is then read from the lesion itself.
* :func:`gland_tiles` / :func:`write_glas`: tiles of gland-rich tissue (benign: grade 0;
  malignant: grade 2-3, larger irregular nests), with gland instances and lumen from
  :func:`~histolatent.synth.tissue.gland_masks`.

Every split draws its own slides / worlds from ``(seed, split)``: splits share no tissue.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from histolatent.errors import InputError
from histolatent.io.atomic import write_text_atomic
from histolatent.io.glas import write_glas_grades, write_glas_image
from histolatent.io.pcam import write_pcam_split
from histolatent.synth.noise import Grid, seed32
from histolatent.synth.render import render_region, render_tile
from histolatent.synth.slide import random_lesion, slide_masks, slide_world
from histolatent.synth.stain import as_scanner, rgb_from_concentrations, site_stain
from histolatent.synth.tissue import TissueSpec, World

__all__ = ["gland_tiles", "pcam_patches", "write_glas", "write_pcam"]

_MASK_STEP = 8  # lesion / tissue masks at 8 px per cell when choosing centres


def pcam_patches(n: int, *, seed: int = 0, slides: int = 4, slide_px: int = 2048, mpp: float = 0.972,
                 patch_px: int = 96, centre_px: int = 32, positive_share: float = 0.5) -> dict[str, np.ndarray]:
    """``{"x": (n, P, P, 3) uint8, "y": (n,) uint8, "slide": (n,) int64}``, shuffled.

    >>> d = pcam_patches(4, slides=1, slide_px=512)
    >>> d["x"].shape, d["y"].dtype.name
    ((4, 96, 96, 3), 'uint8')
    """
    if n < 1 or slides < 1 or not 0 <= positive_share <= 1 or not 0 < centre_px <= patch_px:
        raise InputError(f"pcam_patches: n {n} and slides {slides} must be >= 1, positive_share in [0, 1], "
                         f"0 < centre_px <= patch_px (got {positive_share}, {centre_px}, {patch_px})")
    if slide_px < 2 * patch_px:
        raise InputError(f"slide_px {slide_px}: must be at least twice patch_px {patch_px}")
    size = (slide_px, slide_px)
    xs, ys, ss = [], [], []
    counts = np.full(slides, n // slides)
    counts[: n % slides] += 1
    scanner = as_scanner(None)
    half, c0 = patch_px // 2, (patch_px - centre_px) // 2
    for s in range(slides):
        wseed = seed32(seed, 0x9CA, s)
        lesion = random_lesion(wseed, size, mpp, p_present=1.0, radius_fraction=(0.12, 0.25))
        world = slide_world(wseed, size, mpp, lesion, "normal")
        stain = site_stain(1 + seed32(wseed, 0x57) % 100_000)
        les, tis = slide_masks(world, size, mpp, mpp * _MASK_STEP)
        margin = -(-half // _MASK_STEP)
        inner = np.zeros_like(tis)
        inner[margin:-margin, margin:-margin] = True
        rng = np.random.default_rng(seed32(wseed, 0x9A7))
        n_pos = int(round(counts[s] * positive_share))
        for want, k in ((les & inner, n_pos), (tis & ~les & inner, counts[s] - n_pos)):
            cells = np.argwhere(want)
            if k and not len(cells):
                raise InputError(f"pcam_patches: slide {s} has no {'lesion' if want is les else 'tissue'} cells; "
                                 "use larger slides")
            for r, c in cells[rng.integers(len(cells), size=k)]:
                cx = int(c * _MASK_STEP + rng.integers(_MASK_STEP))
                cy = int(r * _MASK_STEP + rng.integers(_MASK_STEP))
                x0, y0 = min(max(cx - half, 0), slide_px - patch_px), min(max(cy - half, 0), slide_px - patch_px)
                reg = render_region(world, Grid(x0 * mpp, y0 * mpp, patch_px, patch_px, mpp))
                rgb = rgb_from_concentrations(reg.concentrations, stain, scanner, mpp=mpp,
                                              rng=np.random.default_rng(seed32(wseed, 0x711E, x0, y0)))
                centre = Grid((x0 + c0) * mpp, (y0 + c0) * mpp, centre_px, centre_px, mpp)
                xs.append(rgb)
                ys.append(int((world.lesion.membership(centre) >= 0.5).any()))
                ss.append(s)
    order = np.random.default_rng(seed32(seed, 0x5F1)).permutation(n)
    return {"x": np.stack(xs)[order], "y": np.asarray(ys, np.uint8)[order], "slide": np.asarray(ss, np.int64)[order]}


def write_pcam(root: str | os.PathLike, *, n_train: int = 2048, n_valid: int = 256, n_test: int = 512,
               seed: int = 0, slides: int = 4, **options) -> Path:
    """A PCam-layout folder of SynthPath patches (:func:`pcam_patches`; ``options`` go there).

    Split ``k`` (train, valid, test) renders slides of seed ``seed32(seed, k)``. Also writes
    ``synth.json`` (the parameters and each split's positive share). Returns ``root``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    info = {"seed": seed, "slides": slides, **options, "splits": {}}
    for k, (split, n) in enumerate((("train", n_train), ("valid", n_valid), ("test", n_test))):
        d = pcam_patches(n, seed=seed32(seed, k), slides=slides, **options)
        write_pcam_split(root, split, d["x"], d["y"])
        info["splits"][split] = {"n": n, "positive_share": float(d["y"].mean())}
    write_text_atomic(root / "synth.json", json.dumps(info, indent=2) + "\n")
    return root


def _gland_world(seed: int, malignant: bool) -> World:
    rng = np.random.default_rng(seed32(seed, 0x61A))
    if malignant:
        spec = TissueSpec(epithelium=0.45, glands=0.7, lymphoid=0.03, fat=0.0, grade=int(rng.integers(2, 4)),
                          nest_um=float(rng.uniform(90, 120)))
    else:
        spec = TissueSpec(epithelium=0.4, glands=0.9, lymphoid=0.03, fat=0.0, grade=0,
                          nest_um=float(rng.uniform(70, 90)))
    return World(seed=int(seed), tissue=spec)


def gland_tiles(n: int, *, seed: int = 0, size_px: int = 128, mpp: float = 2.0) -> dict[str, list]:
    """``{"rgb": [(S, S, 3) uint8], "glands": [(S, S) int32], "lumen": [(S, S) bool],
    "grade": ["benign" | "malignant"]}``; tile ``i`` is malignant when ``i`` is odd.

    >>> t = gland_tiles(2, size_px=64)
    >>> t["rgb"][0].shape, t["grade"]
    ((64, 64, 3), ['benign', 'malignant'])
    """
    if n < 1:
        raise InputError(f"gland_tiles: n must be >= 1, got {n}")
    out: dict[str, list] = {"rgb": [], "glands": [], "lumen": [], "grade": []}
    for i in range(n):
        wseed = seed32(seed, 0x6A5, i)
        world = _gland_world(wseed, malignant=bool(i % 2))
        tile = render_tile(size_px, mpp=mpp, world=world, stain=1 + seed32(wseed, 0x57) % 100_000)
        out["rgb"].append(tile.rgb)
        out["glands"].append(tile.glands)
        out["lumen"].append(tile.lumen)
        out["grade"].append("malignant" if i % 2 else "benign")
    return out


def write_glas(root: str | os.PathLike, *, n_train: int = 64, n_test: int = 32, seed: int = 0,
               size_px: int = 128, mpp: float = 2.0) -> Path:
    """A GLaS-layout folder of SynthPath gland tiles (``train_N``, ``testA_N``, Grade.csv).

    Read it with ``glas`` at ``source_mpp = mpp``; ``synth.json`` records the parameters.
    Returns ``root``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    grades = {}
    for k, (prefix, n) in enumerate((("train", n_train), ("testA", n_test))):
        t = gland_tiles(n, seed=seed32(seed, k), size_px=size_px, mpp=mpp)
        for i in range(n):
            name = f"{prefix}_{i + 1}"
            if t["glands"][i].max() > 255:
                raise InputError(f"write_glas: {name} has more than 255 glands; use smaller tiles")
            write_glas_image(root, name, t["rgb"][i], t["glands"][i])
            grades[name] = t["grade"][i]
    write_glas_grades(root, grades)
    info = {"seed": seed, "n_train": n_train, "n_test": n_test, "size_px": size_px, "mpp": mpp}
    write_text_atomic(root / "synth.json", json.dumps(info, indent=2) + "\n")
    return root
