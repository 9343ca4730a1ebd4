"""Overlay figures of nuclei on H&E: outlines, centres, ground truth."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from histolatent.errors import InputError  # noqa: E402
from histolatent.io.atomic import atomic_path  # noqa: E402


def draw_outlines(rgb: np.ndarray, labels: np.ndarray, color: tuple[int, int, int] = (255, 255, 0),
                  *, thickness: int = 1) -> np.ndarray:
    """A copy of ``rgb`` with the outline of every instance of ``labels`` painted in ``color``."""
    img = np.array(rgb, dtype=np.uint8, copy=True)
    lab = np.asarray(labels)
    if lab.shape != img.shape[:2]:
        raise InputError(f"labels: expected shape {img.shape[:2]}, got {lab.shape}")
    edge = find_boundaries(lab, mode="inner")
    if thickness > 1:
        edge = cv2.dilate(edge.astype(np.uint8), np.ones((thickness, thickness), np.uint8)).astype(bool) & (lab > 0)
    img[edge] = color
    return img


def draw_polygons(rgb: np.ndarray, polygons: list[Any], color: tuple[int, int, int] = (255, 255, 0), *,
                  offset: tuple[float, float] = (0.0, 0.0), thickness: int = 1) -> np.ndarray:
    """A copy of ``rgb`` with polygons (flat ``[x0, y0, ...]``, pixel-centre coords minus ``offset``) drawn."""
    img = np.array(rgb, dtype=np.uint8, copy=True)
    shift = 3
    pts = []
    for p in polygons:
        if p is None:
            continue
        a = np.asarray(p, dtype=np.float64).reshape(-1, 2) - np.asarray(offset, dtype=np.float64)
        pts.append(np.round(a * (1 << shift)).astype(np.int32).reshape(-1, 1, 2))
    if pts:
        cv2.polylines(img, pts, True, tuple(int(c) for c in color), thickness=thickness, lineType=cv2.LINE_AA,
                      shift=shift)
    return img


def overlay_figure(rgb: np.ndarray, path: str | os.PathLike, *, labels: np.ndarray | None = None,
                   polygons: list[Any] | None = None, points: np.ndarray | None = None,
                   truth: np.ndarray | None = None, title: str = "", crop: tuple[int, int, int, int] | None = None,
                   show_raw: bool = True, dpi: int = 110) -> Path:
    """Save a figure of nuclei over an H&E image (atomically); returns the PNG path.

    Parameters
    ----------
    rgb : ndarray, (H, W, 3) uint8
        The image; never modified.
    path : path-like
        Output PNG.
    labels : ndarray, (H, W), optional
        Predicted instances: outlines in yellow.
    polygons : list, optional
        Predicted outlines as polygons (image pixel coordinates), in yellow.
    points : ndarray, (N, 2), optional
        Detected centres (x, y): cyan dots.
    truth : ndarray, (H, W), optional
        Ground-truth instances: outlines in green.
    title : str
        Figure title.
    crop : (x, y, w, h), optional
        Zoomed window shown as an extra panel (image pixels).
    show_raw : bool
        Show the plain image as the first panel.
    """
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"rgb: expected an (H, W, 3) image, got shape {img.shape}")
    over = img
    if truth is not None:
        over = draw_outlines(over, truth, (0, 200, 0))
    if labels is not None:
        over = draw_outlines(over, labels, (255, 235, 0))
    if polygons is not None:
        over = draw_polygons(over, polygons, (255, 235, 0))
    panels = ([("image", img)] if show_raw else []) + [("nuclei", over)]
    if crop is not None:
        x, y, w, h = (int(v) for v in crop)
        panels.append(("zoom", over[y:y + h, x:x + w]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.4), squeeze=False)
    for ax, (name, im) in zip(axes[0], panels, strict=True):
        ax.imshow(im, interpolation="nearest")
        if points is not None and len(points):
            p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            if name == "zoom":
                x, y, w, h = (int(v) for v in crop)
                sel = (p[:, 0] >= x) & (p[:, 0] < x + w) & (p[:, 1] >= y) & (p[:, 1] < y + h)
                ax.plot(p[sel, 0] - x, p[sel, 1] - y, "o", ms=3.5, mfc="cyan", mec="k", mew=0.4)
            elif name == "nuclei":
                ax.plot(p[:, 0], p[:, 1], ".", ms=2.5, color="cyan")
        if name == "nuclei" and crop is not None:
            x, y, w, h = (int(v) for v in crop)
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, ec="white", lw=1.0))
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return Path(path)
