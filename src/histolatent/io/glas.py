"""The GLaS gland segmentation challenge folder (Sirinukunwattana et al. 2017).

A GLaS folder holds ``train_N.bmp`` with its annotation ``train_N_anno.bmp`` (85 training
images), ``testA_N.bmp`` / ``testA_N_anno.bmp`` (60) and ``testB_N.bmp`` / ``testB_N_anno.bmp``
(20), and ``Grade.csv`` (columns ``name`` and ``grade (GlaS)``: benign or malignant; other
columns ignored). Images are RGB at 20x (0.62 µm/px); an annotation is an instance label
image (0 background, one value per gland). :func:`glas_index` lists a folder;
:func:`read_glas_image` reads one pair; :func:`write_glas_image` writes one (SynthPath's
gland tiles, tests) atomically.

Example
-------
>>> import numpy as np, tempfile
>>> root = tempfile.mkdtemp()
>>> anno = np.zeros((8, 8), np.uint8); anno[2:5, 2:5] = 1
>>> write_glas_image(root, "train_1", np.zeros((8, 8, 3), np.uint8), anno)
>>> _ = write_glas_grades(root, {"train_1": "benign"})
>>> glas_index(root)[["name", "split", "grade"]].values.tolist()
[['train_1', 'train', 'benign']]
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from histolatent.errors import InputError
from histolatent.io.atomic import atomic_path, write_text_atomic

__all__ = ["GLAS_MPP", "glas_index", "read_glas_image", "write_glas_grades", "write_glas_image"]

#: µm per pixel of the GLaS images (20x)
GLAS_MPP = 0.62
_NAME = re.compile(r"^(train|testA|testB)_(\d+)\.bmp$")


def glas_index(root: str | os.PathLike) -> pd.DataFrame:
    """One row per image of a GLaS folder: ``name``, ``split`` (train, testA, testB), ``number``,
    ``image``, ``anno`` (paths) and ``grade`` (from Grade.csv), sorted by split and number."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"GLaS folder {str(root)!r} does not exist")
    rows = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if not m:
            continue
        anno = p.with_name(f"{p.stem}_anno.bmp")
        if not anno.is_file():
            raise InputError(f"GLaS {str(root)!r}: {p.name} has no annotation {anno.name}")
        rows.append({"name": p.stem, "split": m.group(1), "number": int(m.group(2)), "image": p, "anno": anno})
    if not rows:
        raise InputError(f"GLaS {str(root)!r}: no train_N.bmp / testA_N.bmp / testB_N.bmp images")
    grades_path = root / "Grade.csv"
    if not grades_path.is_file():
        raise InputError(f"GLaS {str(root)!r}: Grade.csv is missing")
    grades = pd.read_csv(grades_path, skipinitialspace=True)
    grades.columns = [str(c).strip() for c in grades.columns]
    col = next((c for c in grades.columns if c.lower().startswith("grade")), None)
    if "name" not in grades.columns or col is None:
        raise InputError(f"{str(grades_path)!r}: expected columns 'name' and 'grade (GlaS)', got {list(grades.columns)}")
    lookup = dict(zip(grades["name"].astype(str).str.strip(), grades[col].astype(str).str.strip(), strict=True))
    index = pd.DataFrame(rows)
    missing = sorted(set(index["name"]) - set(lookup))
    if missing:
        raise InputError(f"{str(grades_path)!r}: no grade for {', '.join(missing[:5])}")
    index["grade"] = index["name"].map(lookup)
    order = {"train": 0, "testA": 1, "testB": 2}
    return index.sort_values(["split", "number"], key=lambda s: s.map(order) if s.name == "split" else s,
                             ignore_index=True)


def read_glas_image(image: str | os.PathLike, anno: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3)`` uint8 RGB and ``(H, W)`` int32 gland instance labels."""
    try:
        rgb = np.asarray(Image.open(image).convert("RGB"))
        lab = np.asarray(Image.open(anno))
    except OSError as err:
        raise InputError(f"GLaS: cannot read {str(image)!r} / {str(anno)!r} ({err})") from None
    if lab.ndim == 3:  # an RGB-saved annotation: every channel holds the id
        lab = lab[..., 0]
    if lab.shape != rgb.shape[:2]:
        raise InputError(f"GLaS: {str(anno)!r} is {lab.shape}, its image {rgb.shape[:2]}")
    return rgb, lab.astype(np.int32)


def write_glas_image(root: str | os.PathLike, name: str, rgb: np.ndarray, instances: np.ndarray) -> None:
    """Write ``<name>.bmp`` and ``<name>_anno.bmp`` (instance ids 0..255) atomically."""
    if not _NAME.match(f"{name}.bmp"):
        raise InputError(f"GLaS name {name!r}: expected train_N, testA_N or testB_N")
    inst = np.asarray(instances)
    if inst.shape != np.asarray(rgb).shape[:2] or inst.min() < 0 or inst.max() > 255:
        raise InputError(f"instances: expected an (H, W) map of ids 0..255 the size of the image, got {inst.shape}")
    for path, arr in ((Path(root) / f"{name}.bmp", np.asarray(rgb, np.uint8)),
                      (Path(root) / f"{name}_anno.bmp", inst.astype(np.uint8))):
        with atomic_path(path) as tmp:
            Image.fromarray(arr).save(tmp, format="BMP")


def write_glas_grades(root: str | os.PathLike, grades: dict[str, str]) -> Path:
    """Write ``Grade.csv`` (``name``, ``grade (GlaS)``) atomically."""
    lines = ["name,grade (GlaS)", *(f"{k},{v}" for k, v in sorted(grades.items()))]
    return write_text_atomic(Path(root) / "Grade.csv", "\n".join(lines) + "\n")
