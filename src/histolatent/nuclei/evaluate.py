"""Scoring nucleus finders against ground truth (SynthPath tiles or the user's annotations).

Per image: the pixel metrics of Yuan & Suh's (2018) segmentation table (sensitivity,
specificity, Dice, Jaccard of the nucleus foreground), the aggregated Jaccard index (AJI,
Kumar et al. 2017) of the instances, and object-level precision / recall / F1 of the
nucleus centres matched one-to-one within ``match_um`` (default 4 µm, about the radius of
the smallest nuclei). Summaries pool the detection counts over images and average the
pixel metrics and AJI per image.

Held-out SynthPath tiles use world seeds from 9,000,000 up, disjoint from every split of
the ``nuclei-synth`` training data set (seeds below 3,000,000 per ``split_seed``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from histolatent.errors import InputError
from histolatent.io.image import check_mpp
from histolatent.metrics.detection import detection_scores
from histolatent.metrics.segmentation import aggregated_jaccard_index, pixel_scores

#: First world seed of held-out evaluation tiles.
HELDOUT_SEED = 9_000_000
#: A stain site never drawn by the training data (sites 1..100,000): the held-out lab.
HELDOUT_SITE = 7_777_777
TISSUES = ("breast", "tumour", "normal", "lymphoid", "stroma")


def heldout_tiles(n: int, *, size_px: int = 256, mpp: float = 0.5, stain: Any = 0, offset: int = 0,
                  tissues: tuple[str, ...] = TISSUES) -> list[Any]:
    """``n`` SynthPath tiles never seen in training (tile ``i`` has world seed ``HELDOUT_SEED + offset + i``).

    ``stain`` is a site id, a :class:`~histolatent.synth.stain.Stain` or an OD matrix; the
    same tissue is rendered for the same ``offset + i`` whatever the stain.
    """
    from histolatent.synth.render import render_tile

    if int(n) < 1:
        raise InputError(f"n: expected >= 1 tiles, got {n}")
    return [render_tile(size_px, mpp=mpp, seed=HELDOUT_SEED + offset + i, stain=stain,
                        tissue=tissues[(offset + i) % len(tissues)]) for i in range(int(n))]


def centroids(labels: np.ndarray) -> np.ndarray:
    """``(N, 2)`` (x, y) centroids of the instances of a label map, in increasing label order."""
    lab = np.asarray(labels)
    flat = lab.ravel()
    n = int(flat.max()) if flat.size else 0
    if n == 0:
        return np.zeros((0, 2))
    area = np.bincount(flat, minlength=n + 1).astype(np.float64)
    ys, xs = np.divmod(np.arange(flat.size), lab.shape[1])
    sx = np.bincount(flat, xs.astype(np.float64), n + 1)
    sy = np.bincount(flat, ys.astype(np.float64), n + 1)
    ok = np.flatnonzero(area[1:]) + 1
    return np.column_stack([sx[ok] / area[ok], sy[ok] / area[ok]])


def score_segmentation(pred: np.ndarray, true: np.ndarray, *, mpp: float, match_um: float = 4.0) -> dict[str, float]:
    """Pixel metrics, AJI and centroid detection counts of one predicted instance map."""
    mpp = check_mpp(mpp)
    out = pixel_scores(pred, true)
    out["aji"] = aggregated_jaccard_index(pred, true)
    det = detection_scores(centroids(pred), centroids(true), match_um / mpp)
    out.update({"tp": det["tp"], "fp": det["fp"], "fn": det["fn"], "object_f1": det["f1"]})
    return out


def score_detection(points: np.ndarray, true: np.ndarray, *, mpp: float, match_um: float = 4.0) -> dict[str, float]:
    """Detection counts, precision, recall, F1 of centres against a true instance map."""
    mpp = check_mpp(mpp)
    return detection_scores(points, centroids(true), match_um / mpp)


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Pooled detection P/R/F1 and per-image means of the pixel metrics and AJI."""
    df = pd.DataFrame(rows)
    out: dict[str, float] = {"images": float(len(df))}
    if {"tp", "fp", "fn"} <= set(df.columns):
        tp, fp, fn = (float(df[c].sum()) for c in ("tp", "fp", "fn"))
        out.update({"precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / (tp + fn) if tp + fn else 1.0,
                    "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0})
    for c in ("sensitivity", "specificity", "dice", "jaccard", "aji"):
        if c in df.columns:
            out[c] = float(df[c].mean())
    if "seconds" in df.columns:
        out["seconds"] = float(df["seconds"].sum())
    return out


def evaluate_method(images: Iterable[tuple[np.ndarray, np.ndarray]], *, mpp: float, method: str = "watershed",
                    model: Any = None, match_um: float = 4.0, transform: Any = None,
                    **options: Any) -> tuple[pd.DataFrame, dict[str, float]]:
    """Score a nucleus finder on (RGB, true instances) pairs.

    Parameters
    ----------
    images : iterable of (ndarray (H, W, 3), ndarray (H, W))
        Images and their true instance maps.
    mpp : float
        Microns per pixel of the images.
    method : {"log", "watershed", "unet"}
    model
        A U-Net model for ``"unet"`` (load a run folder with :func:`histolatent.models.load_model`).
    transform : callable, optional
        Applied to each RGB image first (e.g. a stain normaliser's ``transform``).
    **options
        Passed to the finder.

    Returns
    -------
    per_image : pandas.DataFrame
    summary : dict
        See :func:`summarise`.
    """
    from histolatent.nuclei.pipeline import METHODS, segment_image

    if method not in METHODS:
        raise InputError(f"method: expected one of {METHODS}, got {method!r}")
    net = None
    if method == "unet":
        from histolatent.nuclei.unet import check_segmenter

        if model is None:
            raise InputError("method 'unet' needs a model")
        net = check_segmenter(model)
    rows = []
    for k, (rgb, truth) in enumerate(images):
        img = transform(rgb) if transform is not None else rgb
        t0 = time.perf_counter()
        if method == "log":
            from histolatent.nuclei.detect import detect_log

            det = detect_log(img, mpp=mpp, **options)
            secs = time.perf_counter() - t0
            row = score_detection(det[["x", "y"]].to_numpy(), truth, mpp=mpp, match_um=match_um)
        else:
            lab = segment_image(img, mpp=mpp, method=method, model=net, **options)
            secs = time.perf_counter() - t0
            row = score_segmentation(lab, truth, mpp=mpp, match_um=match_um)
        row.update({"image": k, "seconds": secs})
        rows.append(row)
    return pd.DataFrame(rows), summarise(rows)
