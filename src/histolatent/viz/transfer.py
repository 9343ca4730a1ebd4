"""Figures of DRL's transfer protocol (papers/drl_deformation-representation-learning.txt).

* :func:`low_label_figure`: accuracy against the fraction of labels (log x), one line per
  pretraining method with ± SD bars over seeds (the paper's Table III as curves).
* :func:`deformation_embedding_figure`: a 2-D t-SNE of image embeddings and the embeddings of
  their deformed copies, one panel per model, each pair joined by a line (the paper's Fig. 5).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from histolatent.errors import InputError  # noqa: E402
from histolatent.viz.save import save_png  # noqa: E402

__all__ = ["deformation_embedding_figure", "low_label_figure"]


def low_label_figure(curves: Mapping[str, Mapping[float, Sequence[float]]], path: str | os.PathLike, *,
                     ylabel: str = "test accuracy", title: str = "") -> Path:
    """``curves[method][fraction] = [score per seed]`` -> a PNG at ``path``: mean ± SD against the fraction.

    The x axis is logarithmic and labelled in percent; methods keep the order of ``curves``.
    """
    if not curves or not all(curves.values()):
        raise InputError("low_label_figure: no curves to draw")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method, by_fraction in curves.items():
        fr = sorted(by_fraction)
        mean = [float(np.mean(by_fraction[f])) for f in fr]
        sd = [float(np.std(by_fraction[f], ddof=1)) if len(by_fraction[f]) > 1 else 0.0 for f in fr]
        ax.errorbar([100 * f for f in fr], mean, yerr=sd, marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training patches (%)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_png(fig, path)


def deformation_embedding_figure(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, *,
                                 seed: int = 0, perplexity: float = 20.0) -> Path:
    """``panels[title] = (codes of images (N, d), codes of their deformed copies (N, d))`` -> a PNG.

    Each panel embeds its ``2 N`` codes with t-SNE (seeded, PCA start) and draws originals as
    dots, deformed copies as crosses, each pair joined by a grey line.
    """
    from sklearn.manifold import TSNE

    if not panels:
        raise InputError("deformation_embedding_figure: no panels")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    for ax, (title, (orig, deformed)) in zip(axes[0], panels.items(), strict=True):
        orig, deformed = np.asarray(orig, np.float64), np.asarray(deformed, np.float64)
        if orig.shape != deformed.shape or orig.ndim != 2:
            raise InputError(f"panel {title!r}: codes must be two (N, d) arrays of the same shape, got "
                             f"{orig.shape} and {deformed.shape}")
        n = len(orig)
        both = np.concatenate([orig, deformed])
        xy = TSNE(2, perplexity=min(perplexity, (2 * n - 1) / 3), init="pca", random_state=seed).fit_transform(both)
        for i in range(n):
            ax.plot(xy[[i, n + i], 0], xy[[i, n + i], 1], color="0.75", lw=0.6, zorder=1)
        ax.scatter(xy[:n, 0], xy[:n, 1], s=10, label="image", zorder=2)
        ax.scatter(xy[n:, 0], xy[n:, 1], s=14, marker="x", label="deformed copy", zorder=2)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(fontsize=8)
    return save_png(fig, path)
