"""Pose figures for TARGET-VAE and spatial-VAE (papers/target-vae.txt Figs. 2, 3, 8, 10). Matplotlib, Agg.

* :func:`angle_scatter` — Fig. 2: predicted vs true rotation, one colour per class.
* :func:`canonical_grid` — inputs, their reconstructions at the inferred pose, and the same
  codes rendered in the canonical pose (``theta = 0``, ``t = 0``; Fig. 10).
* :func:`latent_map` — the content codes ``z`` in 2-D (identity for ``z_dim = 2``, else PCA or
  t-SNE), coloured by class (Fig. 3).
* :func:`detection_figure` — multi-object detection on a larger canvas (Fig. 8, appendix A.4).

Inputs are numpy arrays (or tensors): images ``(N, C, H, W)`` or ``(N, H, W)`` in [0, 1]; angles
in radians. Each function writes a PNG atomically and returns its path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from histolatent.io.atomic import atomic_path

__all__ = ["angle_scatter", "canonical_grid", "detection_figure", "latent_map"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().float().cpu().numpy()
    return np.asarray(a)


def _img(a: np.ndarray) -> tuple[np.ndarray, str | None]:
    """``(C, H, W)`` or ``(H, W)`` -> something ``imshow`` draws, and its colour map."""
    a = np.clip(a, 0, 1)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        return np.transpose(a, (1, 2, 0)), None
    return a, "gray"


def _save(fig, path: str | os.PathLike) -> Path:
    plt = _plt()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def angle_scatter(true_angle, pred_angle, path: str | os.PathLike, *, labels=None, title: str = "",
                  period: float = 2 * np.pi) -> Path:
    """Predicted vs true angle (both wrapped to ``[0, period)``), coloured by ``labels`` (Fig. 2)."""
    plt = _plt()
    t = np.mod(_np(true_angle).reshape(-1), period)
    p = np.mod(_np(pred_angle).reshape(-1), period)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    if labels is None:
        ax.scatter(t, p, s=4, alpha=0.6)
    else:
        lab = _np(labels).reshape(-1)
        sc = ax.scatter(t, p, s=4, alpha=0.7, c=lab, cmap="tab10", vmin=-0.5, vmax=9.5)
        fig.colorbar(sc, ax=ax, ticks=np.unique(lab)[:10], label="class")
    ax.set_xlim(0, period)
    ax.set_ylim(0, period)
    ax.set_xlabel("true rotation (rad)")
    ax.set_ylabel("predicted rotation (rad)")
    ax.set_title(title or "predicted vs true rotation", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def canonical_grid(inputs, reconstructions, canonical, path: str | os.PathLike, *, title: str = "") -> Path:
    """Three rows: inputs, reconstructions at the inferred pose, canonical-pose renderings."""
    plt = _plt()
    rows = [_np(inputs), _np(reconstructions), _np(canonical)]
    n = min(len(r) for r in rows)
    names = ["input", "reconstruction", "canonical pose"]
    fig, axes = plt.subplots(3, n, figsize=(1.1 * n, 3.6), squeeze=False)
    for r, (row, name) in enumerate(zip(rows, names, strict=True)):
        for i in range(n):
            im, cmap = _img(row[i])
            axes[r, i].imshow(im, cmap=cmap, vmin=0, vmax=1)
            axes[r, i].set_xticks([])
            axes[r, i].set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title or "inputs, reconstructions, and the same codes in the canonical pose", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def latent_map(z, labels, path: str | os.PathLike, *, method: str = "auto", title: str = "", seed: int = 0) -> Path:
    """2-D map of codes ``z (N, D)`` coloured by ``labels``: the codes themselves if ``D = 2``,
    else PCA (``method="pca"``/"auto") or t-SNE (``"tsne"``)."""
    plt = _plt()
    z = _np(z).reshape(len(_np(z)), -1).astype(np.float64)
    lab = _np(labels).reshape(-1)
    if z.shape[1] == 2 and method in ("auto", "identity"):
        xy, axis = z, "z"
    elif method in ("auto", "pca"):
        zc = z - z.mean(0)
        _, _, vt = np.linalg.svd(zc, full_matrices=False)
        xy, axis = zc @ vt[:2].T, "PC"
    elif method == "tsne":
        from sklearn.manifold import TSNE

        xy, axis = TSNE(2, random_state=seed, init="pca").fit_transform(z), "t-SNE"
    else:
        raise ValueError(f"method must be 'auto', 'identity', 'pca' or 'tsne', got {method!r}")
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    sc = ax.scatter(xy[:, 0], xy[:, 1], s=4, c=lab, cmap="tab10", vmin=-0.5, vmax=9.5, alpha=0.8)
    fig.colorbar(sc, ax=ax, ticks=np.unique(lab)[:10], label="class")
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    ax.set_title(title or "content codes", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def detection_figure(canvas, objects: list[dict], canonical, path: str | os.PathLike, *, rendered=None,
                     truth=None, title: str = "") -> Path:
    """A canvas with its detected objects (position, arrow at the inferred angle), each object's
    code rendered in the canonical pose, and optionally the canvas re-rendered from the detections.

    ``objects``: dicts with ``position`` ``(x, y)`` px and ``theta``; ``canonical``: ``(K, C, h, w)``;
    ``truth``: optional ``(M, 2)`` true centres ``(x, y)`` px.
    """
    plt = _plt()
    canonical = _np(canonical)
    k = len(objects)
    ncols = max(k, 1) + (2 if rendered is not None else 1)
    fig, axes = plt.subplots(1, ncols, figsize=(2.0 * ncols + 1.5, 3.2), squeeze=False,
                             gridspec_kw={"width_ratios": [2.5] + ([2.5] if rendered is not None else []) + [1] * max(k, 1)})
    ax = axes[0, 0]
    im, cmap = _img(_np(canvas))
    ax.imshow(im, cmap=cmap, vmin=0, vmax=1)
    if truth is not None:
        tr = _np(truth)
        ax.plot(tr[:, 0], tr[:, 1], "c+", ms=10, mew=1.5, label="true centre")
    for j, o in enumerate(objects):
        x, y = o["position"]
        th = float(o["theta"])
        ax.plot([x], [y], "o", mfc="none", mec="r", ms=8)
        # theta is counter-clockwise as displayed (y down): direction (cos, -sin)
        ax.annotate("", xy=(x + 12 * np.cos(th), y - 12 * np.sin(th)), xytext=(x, y),
                    arrowprops=dict(arrowstyle="->", color="r", lw=1.2))
        ax.text(x + 3, y - 3, str(j), color="yellow", fontsize=8)
    ax.set_title("detections", fontsize=8)
    ax.axis("off")
    col = 1
    if rendered is not None:
        im, cmap = _img(_np(rendered))
        axes[0, 1].imshow(im, cmap=cmap, vmin=0, vmax=1)
        axes[0, 1].set_title("re-rendered from (z, theta, t)", fontsize=8)
        axes[0, 1].axis("off")
        col = 2
    for j in range(max(k, 1)):
        a = axes[0, col + j]
        if j < k:
            im, cmap = _img(canonical[j])
            a.imshow(im, cmap=cmap, vmin=0, vmax=1)
            a.set_title(f"{j}: canonical", fontsize=7)
        a.axis("off")
    fig.suptitle(title or "multi-object detection (TARGET-VAE appendix A.4)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
