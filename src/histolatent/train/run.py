"""Run folders: ``config.yaml``, ``weights.safetensors`` + ``model.json``, ``checkpoints/``,
``metrics.csv``, ``figures/``. :func:`load_model` rebuilds a model with no pickle.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from histolatent import __version__
from histolatent.errors import InputError
from histolatent.io.atomic import atomic_path, write_text_atomic
from histolatent.models import RepresentationModel, create_model

WEIGHTS = "weights.safetensors"
MODEL_JSON = "model.json"
CONFIG = "config.yaml"
METRICS = "metrics.csv"


def new_run_dir(root: str | os.PathLike, model_name: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{model_name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def save_weights(model: RepresentationModel, run_dir: str | os.PathLike, *, step: int,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write ``weights.safetensors`` and ``model.json`` atomically."""
    run_dir = Path(run_dir)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(run_dir / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"model": model.registry_name, "step": str(step)})
    meta = {"name": model.registry_name, "config": model.config.to_dict(), "step": step,
            "histolatent": __version__, **(extra or {})}
    write_text_atomic(run_dir / MODEL_JSON, json.dumps(meta, indent=2) + "\n")
    return run_dir / WEIGHTS


def load_model(run_dir: str | os.PathLike, *, device: str | torch.device = "cpu") -> RepresentationModel:
    """Rebuild the model of a finished run from ``model.json`` + ``weights.safetensors`` (no pickle)."""
    run_dir = Path(run_dir)
    meta_path, w_path = run_dir / MODEL_JSON, run_dir / WEIGHTS
    if not meta_path.is_file() or not w_path.is_file():
        raise InputError(f"run {str(run_dir)!r} has no {MODEL_JSON} + {WEIGHTS}: "
                         "not a finished histolatent run (an unfinished run can be resumed with --resume)")
    meta = json.loads(meta_path.read_text())
    model = create_model(meta["name"], source=str(meta_path), **meta["config"])
    model.load_state_dict(load_file(str(w_path), device=str(device)))
    return model.to(device).eval()


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
