"""Checkpoints: everything needed to continue a run exactly, written atomically.

Contents: step, model and optimizer/scheduler state dicts, early-stopping state. Each
step's randomness is re-derived from (seed, rank, step), so no RNG state is needed.
Loaded with ``torch.load(weights_only=True)``: no arbitrary pickle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from histolatent.errors import InputError
from histolatent.io.atomic import atomic_path


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}.pt"


def save_checkpoint(run_dir: str | os.PathLike, step: int, state: dict[str, Any], *, keep: int) -> Path:
    path = checkpoint_path(run_dir, step)
    with atomic_path(path) as tmp:
        torch.save({"step": step, **state}, tmp)
    for old in sorted(path.parent.glob("step-*.pt"))[:-keep]:
        old.unlink()
    return path


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    ckpts = sorted((Path(run_dir) / "checkpoints").glob("step-*.pt"))
    return ckpts[-1] if ckpts else None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign file
        raise InputError(f"checkpoint {str(path)!r} cannot be read: {err}") from None
