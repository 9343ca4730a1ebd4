"""Aggregation of cell embeddings to regions of interest (paper 0 §5.3).

Embedding columns follow the one naming rule of :mod:`histolatent.embed.columns`.

ROI aggregation: the mean of ``mu`` / ``mu_ISO`` over the cells of an ROI; for the angular
variables the ROI-level *distribution* of ``z_ORI`` — the mean of the cells' ``Q_ORI`` (the
mixture of their posteriors) or, from angles, the per-latent histogram over ``N`` bins — an
``(M, N)`` array per ROI kept as orientation columns; the mean and standard deviation of the
nuclear area (MNA, SDNA), the hand-crafted baselines of paper 0 Figs. 6–8.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from histolatent.embed.columns import columns_from_parts, part_columns

__all__ = ["aggregate_rois", "angle_histograms"]


def angle_histograms(angles: np.ndarray, n_bins: int) -> np.ndarray:
    """Per-latent histogram of angles in [0, 2 pi) over ``n_bins`` bins: ``(n, M) -> (M, n_bins)``, rows sum to 1."""
    a = np.asarray(angles, dtype=np.float64)
    idx = np.clip((np.mod(a, 2 * math.pi) / (2 * math.pi / n_bins)).astype(int), 0, n_bins - 1)  # (n, M)
    out = np.zeros((a.shape[1], n_bins))
    for i in range(a.shape[1]):
        out[i] = np.bincount(idx[:, i], minlength=n_bins)
    return out / max(len(a), 1)


def aggregate_rois(cells: pd.DataFrame, *, roi: str = "roi_id", parts: Sequence[str] = (),
                   angle_parts: Sequence[str] = (), n_bins: int = 8, area: str | None = None,
                   keep: Sequence[str] = ()) -> pd.DataFrame:
    """One row per ROI (paper 0 §5.3).

    Parameters
    ----------
    cells : one row per cell with an ``roi`` column and embedding columns.
    parts : parts averaged over the ROI's cells: ``(M,)`` parts (``mu``, ``z_iso``) give their
        mean; orientation parts ``(M, N)`` (``q_ori``) give the mean distribution.
    angle_parts : angle parts (``z_ori`` in radians) turned into the ROI-level histogram
        ``(M, n_bins)``, stored as orientation columns ``<part>_hist_ii_j``.
    area : nuclear-area column; adds ``mna`` (mean) and ``sdna`` (standard deviation, ddof 0).
    keep : columns constant within an ROI (labels, split) copied to the output; an ROI where
        one varies raises ``ValueError``.

    Returns a new DataFrame with ``roi``, ``n_cells``, the kept columns and the aggregates.
    """
    if roi not in cells.columns:
        raise KeyError(f"cells table has no ROI column {roi!r}")
    groups = cells.groupby(roi, sort=True)
    out = pd.DataFrame({roi: list(groups.groups.keys())})
    out["n_cells"] = groups.size().to_numpy()
    for col in keep:
        nun = groups[col].nunique()
        if (nun > 1).any():
            raise ValueError(f"column {col!r} varies within ROI {nun[nun > 1].index[0]!r}")
        out[col] = groups[col].first().to_numpy()
    blocks = [out]
    for part in parts:
        cols = part_columns(cells.columns, part)
        blocks.append(groups[cols].mean().reset_index(drop=True))
    for part in angle_parts:
        cols = part_columns(cells.columns, part)
        hists = np.stack([angle_histograms(g[cols].to_numpy(), n_bins) for _, g in groups])  # (R, M, n_bins)
        blocks.append(pd.DataFrame(columns_from_parts({f"{part}_hist": hists})))
    if area is not None:
        if area not in cells.columns:
            raise KeyError(f"cells table has no area column {area!r}")
        blocks.append(pd.DataFrame({"mna": groups[area].mean().to_numpy(),
                                    "sdna": groups[area].std(ddof=0).to_numpy()}))
    return pd.concat(blocks, axis=1)
