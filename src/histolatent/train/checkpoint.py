"""Checkpoints: everything needed to continue a run exactly, written atomically.

Contents: step, model and optimizer/scheduler state dicts, early-stopping state. Each
step's randomness is re-derived from (seed, rank, step), so no RNG state is needed.
Loaded with ``torch.load(weights_only=True)``: no arbitrary pickle.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from histolatent.errors import InputError
from histolatent.io.atomic import atomic_path, remove_stale_temps

log = logging.getLogger(__name__)


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


def loadable_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint of a run that loads; None when there are none.

    A checkpoint that does not load (truncated by a crash, damaged) is renamed
    ``<name>.unreadable`` with a warning, and the one before it is tried. Stale temporary
    files of killed writers are removed first.

    Raises
    ------
    InputError
        There are checkpoints, but none of them loads.
    """
    folder = Path(run_dir) / "checkpoints"
    remove_stale_temps(folder)
    ckpts = sorted(folder.glob("step-*.pt")) if folder.is_dir() else []
    errors = []
    for path in reversed(ckpts):
        try:
            state = load_checkpoint(path)
            if not isinstance(state, dict) or "step" not in state or "model" not in state:
                raise InputError(f"checkpoint {str(path)!r} cannot be read: not a histolatent checkpoint")
        except InputError as err:
            errors.append(str(err))
            log.warning("%s; trying the checkpoint before it", err)
            os.replace(path, path.with_name(path.name + ".unreadable"))
            continue
        return path
    if errors:
        raise InputError(f"run {str(run_dir)!r}: no checkpoint loads ({'; '.join(errors[:3])})")
    return None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign file
        raise InputError(f"checkpoint {str(path)!r} cannot be read: {err}") from None
