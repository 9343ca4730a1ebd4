"""The engine's one figure: the loss curves of a run (``figures/loss.png``), matplotlib Agg.

Kept in ``train`` so that the engine needs nothing from ``viz`` (which sits above it).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from histolatent.io.atomic import atomic_path

#: metrics.csv columns that are not curves
NOT_CURVES = {"step", "split", "elapsed_s", "lr"}


def loss_figure(metrics_csv: str | os.PathLike, out_png: str | os.PathLike, *, max_panels: int = 6) -> Path | None:
    """One panel per logged term (train solid, validation dashed); None when nothing was logged."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in (rows[0] if rows else {}) if k not in NOT_CURVES]
    keys = [k for k in keys if any(r.get(k) not in ("", None) for r in rows)][:max_panels]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.0), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        for split, style in (("train", "-"), ("val", "o--")):
            pts = [(int(r["step"]), float(r[k])) for r in rows if r["split"] == split and r.get(k) not in ("", None)]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=split, ms=3)
        ax.set_title(k)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(out_png)
