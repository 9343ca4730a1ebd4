"""Cell embeddings as table columns, and their aggregation to regions of interest (paper 0 §5.3).

Column naming (DESIGN "Tables"): a part of shape ``(n, M)`` becomes ``part_00 .. part_{M-1}``;
an orientation part of shape ``(n, M, N)`` (e.g. ``q_ori``, SO(2,N) vectors) becomes
``part_00_0 .. part_{M-1}_{N-1}``; a part of shape ``(n,)`` is the column ``part``.

ROI aggregation: the mean of ``mu`` / ``mu_ISO`` over the cells of an ROI; for the angular
variables the ROI-level *distribution* of ``z_ORI`` — the mean of the cells' ``Q_ORI`` (the
mixture of their posteriors) or, from angles, the per-latent histogram over ``N`` bins — an
``(M, N)`` array per ROI kept as orientation columns; the mean and standard deviation of the
nuclear area (MNA, SDNA), the hand-crafted baselines of paper 0 Figs. 6–8.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["aggregate_rois", "angle_histograms", "columns_from_parts", "part_array", "part_columns",
           "table_from_parts"]

_IDX = re.compile(r"^(?P<part>.+?)_(?P<i>\d+)(?:_(?P<j>\d+))?$")


def columns_from_parts(parts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{"z_iso": (n, M), "q_ori": (n, M, N), ...}`` -> ``{"z_iso_00": (n,), ..., "q_ori_00_0": (n,), ...}``."""
    out: dict[str, np.ndarray] = {}
    n = None
    for name, arr in parts.items():
        a = np.asarray(arr)
        if n is None:
            n = a.shape[0]
        if a.shape[0] != n:
            raise ValueError(f"part {name!r} has {a.shape[0]} rows, expected {n}")
        if a.ndim == 1:
            out[name] = a
        elif a.ndim == 2:
            w = max(2, len(str(a.shape[1] - 1)))
            out.update({f"{name}_{i:0{w}d}": a[:, i] for i in range(a.shape[1])})
        elif a.ndim == 3:
            w = max(2, len(str(a.shape[1] - 1)))
            out.update({f"{name}_{i:0{w}d}_{j}": a[:, i, j] for i in range(a.shape[1]) for j in range(a.shape[2])})
        else:
            raise ValueError(f"part {name!r} has shape {a.shape}; expected (n,), (n, M) or (n, M, N)")
    return out


def table_from_parts(parts: Mapping[str, np.ndarray], base: pd.DataFrame | None = None) -> pd.DataFrame:
    """A new DataFrame: ``base``'s columns (not modified) followed by the embedding columns."""
    cols = pd.DataFrame(columns_from_parts(parts))
    if base is None:
        return cols
    if len(base) != len(cols):
        raise ValueError(f"base table has {len(base)} rows but the parts have {len(cols)}")
    return pd.concat([base.reset_index(drop=True), cols], axis=1)


def part_columns(columns: Iterable[str], part: str) -> list[str]:
    """The columns of ``part`` in index order (``part_00, part_01, ...`` or ``part_00_0, ...``)."""
    found = []
    for c in columns:
        m = _IDX.match(str(c))
        if m and m["part"] == part:
            found.append((int(m["i"]), -1 if m["j"] is None else int(m["j"]), str(c)))
    if not found:
        cols = list(columns)
        if part in cols:
            return [part]
        raise KeyError(f"no columns for part {part!r} (expected {part}_00, {part}_00_0 or {part})")
    kinds = {j < 0 for _, j, _ in found}
    if len(kinds) > 1:
        raise ValueError(f"part {part!r} mixes (M,) and (M, N) column names")
    return [c for _, _, c in sorted(found)]


def part_array(table: pd.DataFrame, part: str) -> np.ndarray:
    """The array of ``part``: ``(n,)``, ``(n, M)`` or ``(n, M, N)`` for orientation parts."""
    cols = part_columns(table.columns, part)
    x = table[cols].to_numpy(dtype=np.float64)
    if cols == [part]:
        return x[:, 0]
    m = _IDX.match(cols[-1])
    if m["j"] is not None:
        n_i, n_j = int(m["i"]) + 1, int(m["j"]) + 1
        if n_i * n_j != len(cols):
            raise ValueError(f"part {part!r}: {len(cols)} columns do not form an (M, N) grid")
        return x.reshape(len(table), n_i, n_j)
    return x


def is_orientation_part(table: pd.DataFrame, part: str) -> bool:
    """Whether ``part`` is stored as ``(M, N)`` orientation columns."""
    cols = part_columns(table.columns, part)
    m = _IDX.match(cols[0])
    return bool(m and m["j"] is not None)


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
