"""Figures of the nuclei InfoGAN (paper 4, §4.2): class grids, training diagnostics, overlays.

* :func:`class_grid_figure` — Fig. 7C/D: generated nuclei, one row per fixed noise ``z``,
  one column per class ``c`` (columns framed in the class colour).
* :func:`class_grids_over_training` — the same grid for every checkpoint of a run (the
  generated cells per class at intervals during training).
* :func:`wgan_curves` — the Wasserstein estimate, gradient penalty, critic gradient norm and
  MI term from a run's ``metrics.csv``.
* :func:`confusion_figure` — the confusion matrix (rows = true class).
* :func:`cluster_overlay` — Fig. 7B: an image with each nucleus marked in its class colour.

Matplotlib with the Agg backend; every function writes a PNG atomically and returns its path.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from histolatent.io.atomic import atomic_path

__all__ = ["CLASS_COLORS", "class_grid_figure", "class_grids_over_training", "cluster_overlay", "confusion_figure",
           "wgan_curves"]

#: Colours of classes 0.. (paper 4 Fig. 7: epithelial red, lymphocyte blue, fibroblast green).
CLASS_COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    plt = _plt()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def _draw_grid(axes, grid: torch.Tensor, labels: list[str], colors: list[str]) -> None:
    """Fill ``axes`` (rows, K) with ``grid`` (rows, K, C, H, W); frame columns in class colours."""
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax = axes[i, j]
            ax.imshow(_hwc(grid[i, j]))
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_color(colors[j % len(colors)])
                s.set_linewidth(2.5)
            if i == 0:
                ax.set_title(labels[j], fontsize=7, color=colors[j % len(colors)])


def class_grid_figure(model: Any, path: str | os.PathLike, *, n_rows: int = 6, seed: int = 0,
                      class_names: list[str] | None = None, title: str = "") -> Path:
    """Fig. 7C/D: rows = fixed ``z`` (``seed``), columns = class ``c``; uses ``model.class_grid``."""
    plt = _plt()
    model.eval()
    grid = model.class_grid(n_rows, seed=seed)  # (rows, K, C, H, W)
    k = grid.shape[1]
    labels = class_names or [f"c = {j}" for j in range(k)]
    fig, axes = plt.subplots(n_rows, k, figsize=(0.9 * k + 0.2, 0.9 * n_rows + 0.5), squeeze=False)
    _draw_grid(axes, grid, labels, CLASS_COLORS)
    fig.suptitle(title or "generated nuclei: rows = z, columns = c", fontsize=8)
    fig.tight_layout(pad=0.3)
    return _save(fig, path)


def class_grids_over_training(run_dir: str | os.PathLike, path: str | os.PathLike, *, n_rows: int = 3,
                              seed: int = 0, max_panels: int = 6) -> Path:
    """Class grids (same ``z``) for the run's checkpoints, left to right in training order.

    Keep enough checkpoints (``train.keep_checkpoints``) to see the progression; the final
    weights are added as the last panel.
    """
    from histolatent.train import load_model
    from histolatent.train.checkpoint import load_checkpoint

    plt = _plt()
    run_dir = Path(run_dir)
    model = load_model(run_dir)
    final = {k: v.clone() for k, v in model.state_dict().items()}
    ckpts = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    states: list[tuple[str, dict]] = []
    for ck in ckpts:
        st = load_checkpoint(ck)
        states.append((f"step {st['step']}", st["model"]))
    final_step = int(_json(run_dir / "model.json").get("step", 0))
    if not states or states[-1][0] != f"step {final_step}":
        states.append((f"step {final_step}", final))
    if len(states) > max_panels:
        keep = np.unique(np.linspace(0, len(states) - 1, max_panels).round().astype(int))
        states = [states[i] for i in keep]
    k = model.config.n_classes
    fig, axes = plt.subplots(n_rows, k * len(states), figsize=(0.75 * k * len(states) + 0.3, 0.8 * n_rows + 0.6),
                             squeeze=False)
    for p, (label, state) in enumerate(states):
        model.load_state_dict(state)
        model.eval()
        grid = model.class_grid(n_rows, seed=seed)
        _draw_grid(axes[:, p * k:(p + 1) * k], grid, [f"{label}\nc={j}" if j == 0 else f"c={j}" for j in range(k)],
                   CLASS_COLORS)
    fig.suptitle("generated nuclei per class during training (same z in every panel)", fontsize=8)
    fig.tight_layout(pad=0.3)
    return _save(fig, path)


def _json(path: Path) -> dict:
    import json

    return json.loads(path.read_text()) if path.is_file() else {}


def wgan_curves(metrics_csv: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Wasserstein estimate, gradient penalty, critic gradient norm and MI term vs step."""
    plt = _plt()
    with open(metrics_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f)]
    panels = [("wasserstein", "Wasserstein estimate E[D(x)] - E[D(G)]"), ("gp", "gradient penalty"),
              ("grad_norm", "critic gradient norm at x_hat"), ("mi_nll", "MI term: NLL of c (nats)")]
    panels = [(k, t) for k, t in panels if any(r.get(k) not in (None, "") for r in rows)]
    if not panels:
        raise ValueError(f"{metrics_csv}: no WGAN-GP columns")
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 2.8), squeeze=False)
    for ax, (k, title) in zip(axes[0], panels, strict=True):
        for split, style in (("train", "-"), ("val", "o--")):
            pts = [(int(r["step"]), float(r[k])) for r in rows if r["split"] == split and r.get(k) not in (None, "")]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, style, ms=3, label=split)
        if k == "grad_norm":
            ax.axhline(1.0, color="k", lw=0.6, ls=":")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi=110)


def confusion_figure(cm: np.ndarray, path: str | os.PathLike, *, class_names: list[str] | None = None,
                     title: str = "") -> Path:
    """Confusion matrix (rows = true class, columns = matched cluster), counts and row fractions."""
    plt = _plt()
    cm = np.asarray(cm)
    n = cm.shape[0]
    names = class_names or [str(i) for i in range(n)]
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 * n + 1.6, 1.0 * n + 1.0))
    ax.imshow(frac, cmap="Purples", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{cm[i, j]}\n{frac[i, j]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), names, fontsize=7, rotation=30)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted (matched cluster)", fontsize=8)
    ax.set_ylabel("true class", fontsize=8)
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def cluster_overlay(image: np.ndarray, x: np.ndarray, y: np.ndarray, classes: np.ndarray,
                    path: str | os.PathLike, *, radius_px: float | np.ndarray = 6.0,
                    class_names: list[str] | None = None, title: str = "") -> Path:
    """Fig. 7B: ``image`` (H, W, 3) uint8 with a circle per nucleus at (x, y) px in its class colour."""
    plt = _plt()
    from matplotlib.patches import Circle

    img = np.asarray(image)
    h, w = img.shape[:2]
    scale = 9.0 / max(h, w)
    fig, ax = plt.subplots(figsize=(w * scale + 0.2, h * scale + 0.5))
    ax.imshow(img)
    r = np.broadcast_to(np.asarray(radius_px, dtype=float), np.shape(x))
    classes = np.asarray(classes, dtype=int)
    for xi, yi, ri, ci in zip(np.asarray(x), np.asarray(y), r, classes, strict=True):
        ax.add_patch(Circle((xi, yi), ri, fill=False, lw=1.2, color=CLASS_COLORS[ci % len(CLASS_COLORS)]))
    k = int(classes.max(initial=-1)) + 1
    names = class_names or [f"class {j}" for j in range(k)]
    for j in range(k):
        ax.plot([], [], "o", mfc="none", color=CLASS_COLORS[j % len(CLASS_COLORS)],
                label=f"{names[j]} ({int((classes == j).sum())})")
    ax.legend(fontsize=7, loc="upper right", framealpha=0.8)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout(pad=0.2)
    return _save(fig, path, dpi=110)
