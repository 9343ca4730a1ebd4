"""Files of a SynthPath data set folder: lossless PNGs and the manifest.

The folder writers of :mod:`histolatent.synth.writers` build each folder under a temporary
name (:func:`histolatent.io.atomic.atomic_folder`) and rename it into place when complete,
so a crash leaves no half-written data set. Every folder holds
``manifest.parquet`` (one row per item and its ground truth) and ``manifest.json``
(what was generated, with which parameters, and the same rows).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd


def write_png(path: Path, image: np.ndarray) -> None:
    """Lossless PNG of an RGB uint8 (H, W, 3), grey (H, W) uint8 or uint16 image."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., ::-1]  # OpenCV writes BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:  # pragma: no cover
        raise RuntimeError(f"PNG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    return v


def write_manifest(folder: Path, table: pd.DataFrame, *, kind: str, params: dict[str, Any],
                   extra: dict[str, Any] | None = None) -> None:
    """``manifest.parquet`` (the table) and ``manifest.json`` (kind, params, extra, rows)."""
    table = table.reset_index(drop=True)
    table.to_parquet(folder / "manifest.parquet", index=False)
    doc = {"kind": kind, "generator": "histolatent.synth", "params": _plain(params), "n_items": len(table),
           "columns": list(map(str, table.columns)), **_plain(extra or {}),
           "items": json.loads(table.to_json(orient="records"))}
    (folder / "manifest.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
