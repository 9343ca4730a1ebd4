"""The loss figure of a run: one panel per logged term, drawn from its ``metrics.csv``.

It lives in ``train`` because the engine draws it at the end of every run (``figures/loss.png``)
and the engine may not import ``viz``, which sits above it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from histolatent.io.atomic import atomic_path  # noqa: E402

_NOT_METRICS = {"step", "split", "elapsed_s", "lr"}


def training_curves(metrics_csv: str | os.PathLike, out_png: str | os.PathLike, *, max_panels: int = 6) -> Path:
    """One panel per logged term, train and validation overlaid; returns the PNG path."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{metrics_csv}: no rows")
    keys = [k for k in rows[0].keys() if k not in _NOT_METRICS][:max_panels]
    keys = [k for k in keys if any(r.get(k) not in ("", None) for r in rows)]
    if not keys:
        raise ValueError(f"{metrics_csv}: no metric columns")
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.0), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        for split, style in (("train", "-"), ("val", "o--")):
            pts = [(int(r["step"]), float(r[k])) for r in rows if r["split"] == split and r.get(k) not in ("", None)]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, style, label=split, ms=3)
        ax.set_title(k)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(out_png)
