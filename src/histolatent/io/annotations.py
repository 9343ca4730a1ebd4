"""Nucleus annotations from disk: MoNuSeg-style XML polygons and generic label images.

MoNuSeg (Kumar et al. 2017) ships each 1000x1000 H&E image (``.tif``) with an Aperio
ImageScope XML file of nucleus outlines::

    <Annotations><Annotation><Regions>
      <Region Id="1"><Vertices><Vertex X="12.5" Y="30.0"/> ...</Vertices></Region> ...

Each ``Region`` is one nucleus, in image pixels. The generic format is an image plus a
label image of the same size (PNG/TIFF, 8/16/32-bit), 0 = background, each nucleus one id.

A folder for :func:`read_annotated_folder` holds ``images/`` and either ``annotations/``
(``<stem>.xml``) or ``labels/`` (``<stem>.png|.tif``), matched by file stem.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from histolatent.errors import InputError
from histolatent.io.image import rgb8_from_any

_IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def read_monuseg_polygons(path: str | os.PathLike) -> list[np.ndarray]:
    """Nucleus outlines of a MoNuSeg / ImageScope XML file: a list of ``(N, 2)`` (x, y) float arrays."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"annotation {str(path)!r}: file does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise InputError(f"annotation {str(path)!r}: not valid XML ({err})") from None
    polys = []
    for k, region in enumerate(root.iter("Region")):
        pts = []
        for v in region.iter("Vertex"):
            try:
                pts.append((float(v.attrib["X"]), float(v.attrib["Y"])))
            except (KeyError, ValueError):
                raise InputError(f"annotation {str(path)!r}: region {k} has a vertex without numeric X/Y") from None
        if len(pts) >= 3:
            polys.append(np.asarray(pts, dtype=np.float64))
    return polys


def labels_from_polygons(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise polygons (x, y in pixels, pixel-centre convention) into an instance map.

    Polygon ``k`` gets id ``k + 1``; where polygons overlap, the later one wins.

    Returns
    -------
    ndarray of int32, ``shape``
    """
    from skimage.draw import polygon as draw_polygon

    h, w = (int(v) for v in shape)
    out = np.zeros((h, w), dtype=np.int32)
    for k, p in enumerate(polygons):
        # pixels whose centre lies in the polygon (OpenCV's fillPoly also fills every pixel its
        # outline touches: +20 % area on a nucleus of 5 px radius)
        xy = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        rr, cc = draw_polygon(xy[:, 1], xy[:, 0], shape=(h, w))
        out[rr, cc] = k + 1
    return out


def read_monuseg_xml(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Instance map ``(H, W)`` int32 of a MoNuSeg XML file for an image of ``shape`` (H, W)."""
    return labels_from_polygons(read_monuseg_polygons(path), shape)


def read_label_image(path: str | os.PathLike) -> np.ndarray:
    """Instance map from a label image (grey 8/16/32-bit; RGB colour-coded ids are mapped to 1..n).

    Returns
    -------
    ndarray of int32, (H, W)
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"label image {str(path)!r}: file does not exist")
    arr = _read_array(path, what="label image")
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr = arr[..., :3]
        code = (arr[..., 0].astype(np.int64) << 16) | (arr[..., 1].astype(np.int64) << 8) | arr[..., 2].astype(np.int64)
        ids, inv = np.unique(code, return_inverse=True)
        inv = inv.reshape(code.shape)
        if ids[0] != 0:  # no black background: every colour is a nucleus
            inv = inv + 1
        return inv.astype(np.int32)
    if arr.ndim != 2:
        raise InputError(f"label image {str(path)!r}: expected a 2-D image, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            raise InputError(f"label image {str(path)!r}: labels must be integers, got {arr.dtype}")
    if arr.min() < 0:
        raise InputError(f"label image {str(path)!r}: negative labels")
    return arr.astype(np.int32)


def _read_array(path: Path, *, what: str) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            return np.asarray(tifffile.imread(str(path)))
        except Exception as err:  # tifffile raises many types on corrupt files
            raise InputError(f"{what} {str(path)!r}: unreadable TIFF ({err})") from None
    from histolatent.io.image import open_image_file

    with open_image_file(path, what=what) as im:
        return np.asarray(im)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8 RGB (:func:`~histolatent.io.image.rgb8_from_any`'s rules)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {str(path)!r}: file does not exist")
    return rgb8_from_any(_read_array(path, what="image"), name=f"image {str(path)!r}")


def read_annotated_folder(root: str | os.PathLike, *, kind: str = "auto") -> list[tuple[str, np.ndarray, np.ndarray]]:
    """All (name, RGB image, instance map) pairs of an annotated folder.

    Parameters
    ----------
    root : path-like
        Holds ``images/`` and ``annotations/`` (MoNuSeg XML) or ``labels/`` (label images).
    kind : {"auto", "monuseg", "labels"}
        Which annotation folder to read; "auto" takes the one that exists.

    Returns
    -------
    list of (str, ndarray (H, W, 3) uint8, ndarray (H, W) int32)
        Sorted by name.
    """
    root = Path(root)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise InputError(f"annotated folder {str(root)!r}: no images/ folder")
    if kind == "auto":
        kind = "monuseg" if (root / "annotations").is_dir() else "labels" if (root / "labels").is_dir() else ""
        if not kind:
            raise InputError(f"annotated folder {str(root)!r}: neither annotations/ (XML) nor labels/ found")
    if kind not in ("monuseg", "labels"):
        raise InputError(f"kind: expected 'auto', 'monuseg' or 'labels', got {kind!r}")
    ann_dir = root / ("annotations" if kind == "monuseg" else "labels")
    if not ann_dir.is_dir():
        raise InputError(f"annotated folder {str(root)!r}: no {ann_dir.name}/ folder")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not images:
        raise InputError(f"annotated folder {str(root)!r}: images/ holds no image files")
    anns = {p.stem: p for p in ann_dir.iterdir()
            if (p.suffix.lower() == ".xml") == (kind == "monuseg") and p.is_file()}
    out = []
    missing = []
    for img_path in images:
        ann = anns.get(img_path.stem)
        if ann is None:
            missing.append(img_path.name)
            continue
        rgb = read_rgb(img_path)
        if kind == "monuseg":
            lab = read_monuseg_xml(ann, rgb.shape[:2])
        else:
            lab = read_label_image(ann)
            if lab.shape != rgb.shape[:2]:
                raise InputError(f"label image {str(ann)!r}: {lab.shape[1]}x{lab.shape[0]} px, but its image is "
                                 f"{rgb.shape[1]}x{rgb.shape[0]} px")
        out.append((img_path.stem, rgb, lab))
    if missing:
        raise InputError(f"annotated folder {str(root)!r}: no annotation in {ann_dir.name}/ for {missing[:5]}"
                         + (" …" if len(missing) > 5 else ""))
    return out
