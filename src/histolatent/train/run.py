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

from histolatent.models.weights import MODEL_JSON, WEIGHTS, load_model, run_problem, save_weights

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
    """Model, status, step and last metrics of a run folder; never raises on a damaged run.

    ``status`` is ``finished`` (weights verified), ``broken`` (``problem`` says why: a bad
    ``model.json``, missing, truncated or changed weights, an unreadable metrics file),
    ``resumable`` (checkpoints, no weights yet) or ``empty``.
    """
    run_dir = Path(run_dir)
    problem = run_problem(run_dir)
    meta: dict[str, Any] = {}
    if problem is None and (run_dir / MODEL_JSON).is_file():
        meta = json.loads((run_dir / MODEL_JSON).read_text(encoding="utf-8"))
    ckpts = sorted((run_dir / "checkpoints").glob("step-*.pt")) if (run_dir / "checkpoints").is_dir() else []
    try:
        rows = read_metrics(run_dir)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        rows, problem = [], problem or f"{METRICS} cannot be read ({err})"
    last_train = next((r for r in reversed(rows) if r.get("split") == "train"), {})
    last_val = next((r for r in reversed(rows) if r.get("split") == "val"), {})
    status = "broken" if problem else "finished" if meta else ("resumable" if ckpts else "empty")
    return {
        "run": str(run_dir),
        "model": meta.get("name", "?"),
        "status": status,
        "problem": problem or "",
        "step": meta.get("step", _ckpt_step(ckpts[-1]) if ckpts else 0),
        "train": _metric_values(last_train),
        "val": _metric_values(last_val),
    }


def _ckpt_step(path: Path) -> int:
    try:
        return int(path.stem.split("-")[1])
    except (IndexError, ValueError):
        return 0


def _metric_values(row: dict) -> dict[str, str]:
    """The numeric metrics of a metrics.csv row (a damaged cell is left out)."""
    out = {}
    for k, v in row.items():
        if k in ("split", "lr") or k is None or v in ("", None):
            continue
        try:
            float(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


def list_runs(root: str | os.PathLike = "runs") -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / CONFIG).is_file())
