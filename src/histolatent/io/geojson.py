"""Read polygons from GeoJSON (QuPath / ASAP-style annotation exports).

Coordinates are level-0 pixels ``(x, y)``. ``Polygon`` and ``MultiPolygon`` geometries are
read, from a ``FeatureCollection``, a list of features, a single ``Feature`` or a bare
geometry; other geometry types (points, lines) are ignored and counted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from histolatent.errors import InputError

#: One polygon: the exterior ring ``(N, 2)`` and its holes (each ``(M, 2)``), in level-0 px.
Polygon = tuple[np.ndarray, list[np.ndarray]]


def read_geojson_polygons(path: str | os.PathLike) -> list[Polygon]:
    """All polygons of a GeoJSON file.

    Returns
    -------
    list of (exterior, holes)
        ``exterior`` is a float64 ``(N, 2)`` array of ``(x, y)`` vertices; ``holes`` a list
        of such arrays.

    Raises
    ------
    InputError
        Missing file, invalid JSON, not GeoJSON, or malformed coordinates (the message
        names the file and the feature).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"GeoJSON {str(path)!r}: file does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"GeoJSON {str(path)!r}: not valid JSON ({err})") from None
    return polygons_from_geojson(data, source=str(path))


def polygons_from_geojson(data: Any, *, source: str = "<geojson>") -> list[Polygon]:
    """Polygons of an already-parsed GeoJSON object (see :func:`read_geojson_polygons`)."""
    geometries: list[tuple[str, Any]] = []
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        items = data.get("features")
        if not isinstance(items, list):
            raise InputError(f"GeoJSON {source}: 'features' must be a list")
    elif isinstance(data, dict) and "type" in data:
        items = [data]
    else:
        raise InputError(f"GeoJSON {source}: expected a FeatureCollection, Feature or geometry")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InputError(f"GeoJSON {source}: feature {i} is not an object")
        geom = item.get("geometry") if item.get("type") == "Feature" else item
        if geom is None:
            continue
        if not isinstance(geom, dict) or "type" not in geom:
            raise InputError(f"GeoJSON {source}: feature {i} has no valid geometry")
        if geom["type"] == "GeometryCollection":
            geometries += [(f"{i}.{j}", g) for j, g in enumerate(geom.get("geometries", []))]
        else:
            geometries.append((str(i), geom))
    out: list[Polygon] = []
    for label, geom in geometries:
        kind, coords = geom.get("type"), geom.get("coordinates")
        if kind == "Polygon":
            out.append(_polygon(coords, source, label))
        elif kind == "MultiPolygon":
            if not isinstance(coords, list):
                raise InputError(f"GeoJSON {source}: feature {label}: MultiPolygon coordinates must be a list")
            out += [_polygon(c, source, f"{label}[{j}]") for j, c in enumerate(coords)]
    return out


def _ring(coords: Any, source: str, label: str) -> np.ndarray:
    try:
        ring = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"GeoJSON {source}: feature {label}: ring is not a list of [x, y]") from None
    if ring.ndim != 2 or ring.shape[1] < 2 or len(ring) < 3:
        raise InputError(f"GeoJSON {source}: feature {label}: a ring needs >= 3 [x, y] points, "
                         f"got shape {ring.shape}")
    if not np.isfinite(ring).all():
        raise InputError(f"GeoJSON {source}: feature {label}: non-finite coordinates")
    return ring[:, :2]


def _polygon(coords: Any, source: str, label: str) -> Polygon:
    if not isinstance(coords, list) or not coords:
        raise InputError(f"GeoJSON {source}: feature {label}: Polygon needs a list of rings")
    rings = [_ring(r, source, label) for r in coords]
    return rings[0], rings[1:]
