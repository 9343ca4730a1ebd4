"""Run folders: ``config.yaml``, ``weights.safetensors`` + ``model.json``, ``checkpoints/``,
``metrics.csv``, ``figures/``.

The weights files are written and read by :mod:`histolatent.models.weights`
(:func:`save_weights`, :func:`load_model`, re-exported here and from :mod:`histolatent.train`),
so that code below the engine can load a model without importing it.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from histolatent.models.weights import MODEL_JSON, WEIGHTS, load_model, save_weights

__all__ = ["CONFIG", "METRICS", "MODEL_JSON", "WEIGHTS", "list_runs", "load_model", "new_run_dir",
           "read_metrics", "run_summary", "save_weights"]

CONFIG = "config.yaml"
METRICS = "metrics.csv"


def new_run_dir(root: str | os.PathLike, model_name: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{model_name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, str]]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / MODEL_JSON).read_text()) if (run_dir / MODEL_JSON).is_file() else {}
    ckpts = sorted((run_dir / "checkpoints").glob("step-*.pt")) if (run_dir / "checkpoints").is_dir() else []
    rows = read_metrics(run_dir)
    last_train = next((r for r in reversed(rows) if r["split"] == "train"), {})
    last_val = next((r for r in reversed(rows) if r["split"] == "val"), {})
    return {
        "run": str(run_dir),
        "model": meta.get("name", "?"),
        "status": "finished" if meta else ("resumable" if ckpts else "empty"),
        "step": meta.get("step", int(ckpts[-1].stem.split("-")[1]) if ckpts else 0),
        "train": {k: v for k, v in last_train.items() if k not in ("split", "lr") and v != ""},
        "val": {k: v for k, v in last_val.items() if k not in ("split", "lr") and v != ""},
    }


def list_runs(root: str | os.PathLike = "runs") -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / CONFIG).is_file())
