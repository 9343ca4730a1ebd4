"""Write cell tables as GeoJSON that QuPath imports (File > Import objects, or drag and drop).

Each nucleus becomes a ``Feature`` of a ``FeatureCollection``:

.. code-block:: json

    {"type": "Feature", "id": "<uuid>",
     "geometry": {"type": "Polygon", "coordinates": [[[x, y], ...]]},
     "properties": {"objectType": "detection",
                    "classification": {"name": "Nucleus", "color": [r, g, b]},
                    "measurements": {"area_um2": 42.1, ...}}}

which is QuPath's own GeoJSON layout (``objectType``, ``classification``, ``measurements``).
Coordinates are level-0 pixels with QuPath's convention that pixel ``(i, j)`` covers
``[j, j + 1) x [i, i + 1)``: the cell table's pixel-centre coordinates are shifted by
``+0.5``. Exterior rings are closed and follow the right-hand rule of RFC 7946.
Points (``geometry="points"``) are written as one ``MultiPoint`` annotation per class,
as QuPath exports point annotations.

Regions (:func:`geojson_from_polygons`, e.g. the outlines of a heatmap's hot cells) are
polygons with holes, written as given: their outlines lie on pixel edges, so no shift.
Holes wind against their exterior.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histolatent.errors import InputError
from histolatent.io.atomic import write_text_atomic

#: Columns exported as QuPath measurements by default (those present in the table).
DEFAULT_MEASUREMENTS = ("area_um2", "perimeter_um", "major_axis_um", "minor_axis_um", "eccentricity",
                        "orientation", "solidity", "circularity", "h_mean", "h_sd", "score")

_PALETTE = [(200, 0, 0), (0, 150, 255), (0, 180, 60), (230, 160, 0), (150, 60, 200), (0, 200, 200),
            (240, 100, 170), (120, 120, 120)]

_NS = uuid.UUID("6a1f3d1e-8f0b-4a53-9b0c-3c2f0f6e1a77")


def _finite(v: Any) -> Any:
    """JSON-safe scalar: numpy -> python, NaN/inf -> None."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _ring(flat: Any, shift: float, *, hole: bool = False) -> list[list[float]]:
    """A closed ring of ``(x, y)`` positions: an exterior with positive shoelace area, a hole negative."""
    a = np.asarray(flat, dtype=np.float64).reshape(-1, 2) + shift
    if len(a) and not np.array_equal(a[0], a[-1]):
        a = np.vstack([a, a[:1]])
    x, y = a[:, 0], a[:, 1]
    if (0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1])) < 0) != hole:  # right-hand rule
        a = a[::-1]
    return np.round(a, 3).tolist()


def _class_colors(names: list[str], colors: dict[str, tuple[int, int, int]] | None) -> dict[str, list[int]]:
    out = {}
    for k, n in enumerate(sorted(set(names))):
        c = (colors or {}).get(n, _PALETTE[k % len(_PALETTE)])
        out[n] = [int(v) for v in c]
    return out


def geojson_from_cells(cells: pd.DataFrame, *, geometry: str = "polygon", classification: str | None = None,
                       default_class: str = "Nucleus", measurements: list[str] | tuple[str, ...] | None = None,
                       colors: dict[str, tuple[int, int, int]] | None = None,
                       object_type: str = "detection") -> dict[str, Any]:
    """A GeoJSON ``FeatureCollection`` of a cell table (QuPath layout, see the module docstring).

    Parameters
    ----------
    cells : pandas.DataFrame
        Cell table with ``x``, ``y`` (level-0 px) and, for polygons, ``polygon``. Not modified.
    geometry : {"polygon", "points"}
        Outlines (one detection per nucleus) or centroids (one MultiPoint per class).
    classification : str, optional
        Column holding each nucleus's class name (default: ``classification`` if present,
        else ``default_class`` for all).
    measurements : list of str, optional
        Columns written as measurements (default: :data:`DEFAULT_MEASUREMENTS` present).
    colors : dict, optional
        RGB colour per class name.
    object_type : {"detection", "annotation", "cell"}
        QuPath object type of polygon features.

    Returns
    -------
    dict
        ``{"type": "FeatureCollection", "features": [...]}``.
    """
    if geometry not in ("polygon", "points"):
        raise InputError(f"geometry: expected 'polygon' or 'points', got {geometry!r}")
    if object_type not in ("detection", "annotation", "cell"):
        raise InputError(f"object_type: expected 'detection', 'annotation' or 'cell', got {object_type!r}")
    for c in ("x", "y"):
        if c not in cells.columns:
            raise InputError(f"cells: missing column '{c}'")
    if classification is None and "classification" in cells.columns:
        classification = "classification"
    if classification is not None and classification not in cells.columns:
        raise InputError(f"classification: column {classification!r} is not in the table")
    names = (cells[classification].astype(str).tolist() if classification else [default_class] * len(cells))
    palette = _class_colors(names, colors)
    if measurements is None:
        measurements = [c for c in DEFAULT_MEASUREMENTS if c in cells.columns]
    else:
        bad = [c for c in measurements if c not in cells.columns]
        if bad:
            raise InputError(f"measurements: columns {bad} are not in the table")
    features: list[dict[str, Any]] = []
    if geometry == "points":
        xy = cells[["x", "y"]].to_numpy(dtype=np.float64) + 0.5
        for n in sorted(set(names)):
            sel = np.array([v == n for v in names], dtype=bool)
            features.append({"type": "Feature", "id": str(uuid.uuid5(_NS, f"points:{n}")),
                             "geometry": {"type": "MultiPoint", "coordinates": np.round(xy[sel], 3).tolist()},
                             "properties": {"objectType": "annotation",
                                            "classification": {"name": n, "color": palette[n]}}})
        return {"type": "FeatureCollection", "features": features}
    if "polygon" not in cells.columns:
        raise InputError("cells: no 'polygon' column; segment the nuclei, or export geometry='points'")
    sid = cells["slide_id"].astype(str).tolist() if "slide_id" in cells.columns else [""] * len(cells)
    cid = cells["cell_id"].tolist() if "cell_id" in cells.columns else list(range(len(cells)))
    meas = {c: cells[c].to_numpy() for c in measurements}
    for i, poly in enumerate(cells["polygon"].tolist()):
        if poly is None or len(poly) < 8:
            continue
        props: dict[str, Any] = {"objectType": object_type,
                                 "classification": {"name": names[i], "color": palette[names[i]]}}
        if measurements:
            props["measurements"] = {c: _finite(meas[c][i]) for c in measurements}
        features.append({"type": "Feature", "id": str(uuid.uuid5(_NS, f"{sid[i]}:{cid[i]}")),
                         "geometry": {"type": "Polygon", "coordinates": [_ring(poly, 0.5)]},
                         "properties": props})
    return {"type": "FeatureCollection", "features": features}


def write_geojson(cells: pd.DataFrame, path: str | os.PathLike, **options: Any) -> Path:
    """Write :func:`geojson_from_cells` of ``cells`` to ``path`` atomically; returns the path."""
    return write_feature_collection(geojson_from_cells(cells, **options), path)


def write_feature_collection(fc: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a GeoJSON object to ``path`` atomically (compact JSON, no NaN); returns the path."""
    return write_text_atomic(path, json.dumps(fc, separators=(",", ":"), allow_nan=False))


def geojson_from_polygons(polygons: Sequence[tuple[Any, Sequence[Any]]], *, classification: str = "Region",
                          color: tuple[int, int, int] = (200, 0, 0), measurements: Sequence[dict] | None = None,
                          object_type: str = "annotation", id_prefix: str = "region") -> dict[str, Any]:
    """A GeoJSON ``FeatureCollection`` of polygons with holes, in QuPath's layout.

    Parameters
    ----------
    polygons : sequence of (exterior, holes)
        Level-0 ``(x, y)`` rings as ``(N, 2)`` arrays (x is the column, QuPath's convention),
        written as given (no half-pixel shift): region outlines lie on pixel edges.
    classification, color
        QuPath class name and its RGB colour, the same for every polygon.
    measurements : sequence of dict, optional
        One ``{name: number}`` per polygon, shown as QuPath measurements.
    object_type : {"annotation", "detection"}
        QuPath object type.
    id_prefix : str
        Feature ids are UUIDs derived from ``id_prefix`` and the polygon's index (stable).

    Examples
    --------
    >>> square = np.array([[0, 0], [4, 0], [4, 4], [0, 4]])
    >>> fc = geojson_from_polygons([(square, [])], measurements=[{"n_cells": 1}])
    >>> fc["features"][0]["geometry"]["coordinates"][0]
    [[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0], [0.0, 0.0]]
    >>> validate_feature_collection(fc)
    []
    """
    if object_type not in ("detection", "annotation"):
        raise InputError(f"object_type: expected 'annotation' or 'detection', got {object_type!r}")
    if measurements is not None and len(measurements) != len(polygons):
        raise InputError(f"measurements: expected one per polygon ({len(polygons)}), got {len(measurements)}")
    features = []
    for k, (exterior, holes) in enumerate(polygons):
        props: dict[str, Any] = {"objectType": object_type,
                                 "classification": {"name": classification, "color": [int(v) for v in color]}}
        if measurements is not None:
            props["measurements"] = {name: _finite(v) for name, v in measurements[k].items()}
        rings = [_ring(exterior, 0.0)] + [_ring(h, 0.0, hole=True) for h in holes]
        features.append({"type": "Feature", "id": str(uuid.uuid5(_NS, f"{id_prefix}:{k}")),
                         "geometry": {"type": "Polygon", "coordinates": rings}, "properties": props})
    return {"type": "FeatureCollection", "features": features}


def validate_feature_collection(obj: Any) -> list[str]:
    """Problems that make ``obj`` an invalid GeoJSON FeatureCollection of polygons / points.

    Checks (RFC 7946): the ``FeatureCollection`` / ``Feature`` structure, geometry types,
    positions of two finite numbers, linear rings closed with at least four positions.

    Returns
    -------
    list of str
        Empty when valid.
    """
    errs: list[str] = []
    if not isinstance(obj, dict) or obj.get("type") != "FeatureCollection":
        return ["top level is not a FeatureCollection"]
    feats = obj.get("features")
    if not isinstance(feats, list):
        return ["'features' is not a list"]

    def pos_ok(p: Any) -> bool:
        return (isinstance(p, list) and len(p) >= 2
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in p[:2]))

    for k, f in enumerate(feats):
        if not isinstance(f, dict) or f.get("type") != "Feature":
            errs.append(f"feature {k}: not a Feature")
            continue
        if "properties" not in f:
            errs.append(f"feature {k}: no 'properties' member")
        g = f.get("geometry")
        if not isinstance(g, dict):
            errs.append(f"feature {k}: no geometry")
            continue
        t, coords = g.get("type"), g.get("coordinates")
        if t == "Polygon":
            if not isinstance(coords, list) or not coords:
                errs.append(f"feature {k}: Polygon without rings")
                continue
            for r, ring in enumerate(coords):
                if not isinstance(ring, list) or len(ring) < 4 or not all(pos_ok(p) for p in ring):
                    errs.append(f"feature {k}: ring {r} needs >= 4 positions of finite numbers")
                elif ring[0] != ring[-1]:
                    errs.append(f"feature {k}: ring {r} is not closed")
        elif t in ("Point",):
            if not pos_ok(coords):
                errs.append(f"feature {k}: bad Point position")
        elif t == "MultiPoint":
            if not isinstance(coords, list) or not all(pos_ok(p) for p in coords):
                errs.append(f"feature {k}: bad MultiPoint positions")
        else:
            errs.append(f"feature {k}: unsupported geometry type {t!r}")
    return errs
