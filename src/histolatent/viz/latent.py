"""Latent-space figures of the VAEs of paper 0 (Figs. 2–3) and reconstructions. Matplotlib, Agg.

* :func:`orientation_shift_rows` — Fig. 2(a): ``z_ISO`` fixed, every ``z_ORI`` shifted by
  ``k 2 pi / N`` (a cycle shift): the decoded cell turns.
* :func:`iso_variation_rows` — Fig. 2(b): ``z_ORI`` fixed, ``z_ISO`` moved along its most used
  latent direction: the cell changes without turning.
* :func:`interpolation_grid` — Fig. 3: ``z_ISO`` interpolated along the horizontal axis, ``z_ORI``
  (shortest arcs) along the vertical axis, between two real cells (framed in the corners).
* :func:`reconstruction_grid` — originals over reconstructions, for any model with ``forward``.

Models: anything with ``encode(x) -> {"z_iso", "z_ori", ...}`` and ``decode(z_iso, z_ori)``
(the SE(2,N)-VAE). Images are ``(B, C, H, W)`` float tensors in [0, 1].
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["interpolation_grid", "iso_variation_rows", "orientation_shift_rows", "reconstruction_grid"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _hwc(x: Tensor) -> np.ndarray:
    a = x.detach().float().clamp(0, 1).cpu().numpy()
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))


def _grid_figure(rows: list[list[Tensor]], path: str | os.PathLike, *, title: str = "",
                 col_labels: list[str] | None = None, frames: dict[tuple[int, int], str] | None = None,
                 cell_in: float = 0.9) -> Path:
    plt = _plt()
    n_r, n_c = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_r, n_c, figsize=(cell_in * n_c, cell_in * n_r + (0.4 if title else 0)),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_c):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(row):
                img = _hwc(row[j])
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            color = (frames or {}).get((i, j))
            for s in ax.spines.values():
                s.set_visible(color is not None)
                if color is not None:
                    s.set_color(color)
                    s.set_linewidth(3)
            if i == 0 and col_labels and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=7)
    top = 1.0
    if title:
        top = 1.0 - 0.3 / fig.get_size_inches()[1]
        fig.suptitle(title, fontsize=9, y=0.995)
    fig.tight_layout(pad=0.2, rect=(0, 0, 1, top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@torch.no_grad()
def orientation_shift_rows(model, x: Tensor, path: str | os.PathLike, *, steps: int | None = None) -> Path:
    """Fig. 2(a): per input row, the original then decodes with ``z_ORI + k 2 pi / steps``, ``k = 0..steps-1``.

    ``steps`` defaults to the model's ``N`` (one step = one orientation of the group).
    """
    model.eval()
    n = steps or model.config.n_rotations
    e = model.encode(x)
    rows = []
    for b in range(x.shape[0]):
        zi, zo = e["z_iso"][b:b + 1], e["z_ori"][b:b + 1]
        dec = [model.decode(zi, zo + 2 * math.pi * k / n)[0] for k in range(n)]
        rows.append([x[b], *dec])
    labels = ["input"] + [f"+{round(360 * k / n)}°" for k in range(n)]
    return _grid_figure(rows, path, title="z_ORI cycle-shifted, z_ISO fixed", col_labels=labels)


@torch.no_grad()
def iso_variation_rows(model, x: Tensor, path: str | os.PathLike, *, n: int = 8, span: float = 2.5,
                       dim: int | None = None) -> Path:
    """Fig. 2(b): ``z_ORI`` fixed, one ``z_ISO`` coordinate swept over ``mu ± span`` (in prior units).

    ``dim`` defaults to the coordinate whose posterior means vary most over ``x`` (the most used).
    """
    model.eval()
    e = model.encode(x)
    zi = e["z_iso"]
    d = int(zi.var(dim=0).argmax()) if dim is None else dim
    offsets = torch.linspace(-span, span, n)
    rows = []
    for b in range(x.shape[0]):
        z = zi[b:b + 1].repeat(n, 1)
        z[:, d] = offsets.to(z)
        dec = model.decode(z, e["z_ori"][b:b + 1].repeat(n, 1))
        rows.append([x[b], *dec])
    labels = ["input"] + [f"{float(o):+.1f}" for o in offsets]
    return _grid_figure(rows, path, title=f"z_ISO[{d}] varied, z_ORI fixed", col_labels=labels)


@torch.no_grad()
def interpolation_grid(model, x_a: Tensor, x_b: Tensor, path: str | os.PathLike, *, n: int = 6) -> Path:
    """Fig. 3: ``z_ISO`` linearly interpolated left to right, ``z_ORI`` (shortest arcs) top to bottom.

    The top-left decode is cell ``a`` (framed blue), the bottom-right cell ``b`` (framed green);
    the originals are shown in an extra first column of the first and last rows.
    """
    model.eval()
    ea, eb = model.encode(x_a[None]), model.encode(x_b[None])
    t = torch.linspace(0, 1, n)
    d_ori = torch.remainder(eb["z_ori"] - ea["z_ori"] + math.pi, 2 * math.pi) - math.pi  # shortest arcs
    rows = []
    for i in range(n):
        zo = (ea["z_ori"] + t[i] * d_ori).repeat(n, 1)
        zi = ea["z_iso"] + t[:, None].to(ea["z_iso"]) * (eb["z_iso"] - ea["z_iso"])
        dec = list(model.decode(zi, zo))
        first = x_a if i == 0 else (x_b if i == n - 1 else torch.ones_like(x_a))
        rows.append([first, *dec])
    frames = {(0, 0): "tab:blue", (0, 1): "tab:blue", (n - 1, 0): "tab:green", (n - 1, n): "tab:green"}
    return _grid_figure(rows, path, title="z_ISO interpolated (→), z_ORI interpolated (↓)", frames=frames)


@torch.no_grad()
def reconstruction_grid(models: dict[str, torch.nn.Module], x: Tensor, path: str | os.PathLike) -> Path:
    """Columns of inputs and, below, each model's reconstruction (``model(x)``), one row per model."""
    rows = [list(x)]
    for m in models.values():
        m.eval()
        rows.append(list(m(x)))
    path = _grid_figure(rows, path, title="inputs (top) and reconstructions: " + ", ".join(models))
    return path
