"""A model to apply, from a run folder or in memory, and the patch geometry it was trained on.

A run folder (``weights.safetensors`` + ``model.json`` + ``config.yaml``) knows its input:
the side in pixels is the model's ``image_size``, and the physical scale is the training
data's ``mpp`` (``data.mpp`` in ``config.yaml``). :func:`patch_geometry` reads both so that
nobody has to remember, or hard-code, the scale a model was trained at.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from histolatent.errors import InputError
from histolatent.io.image import check_mpp

__all__ = ["patch_geometry", "resolve_model", "run_data_mpp"]


def resolve_model(model_or_run: Any) -> tuple[Any, Path | None]:
    """``(model, run folder or None)`` from a run folder (loaded on the CPU) or a model."""
    if isinstance(model_or_run, (str, os.PathLike)):
        from histolatent.train import load_model

        run = Path(model_or_run)
        return load_model(run), run
    if not hasattr(model_or_run, "encode"):
        raise InputError(f"model: expected a run folder or a model with encode(), got {type(model_or_run).__name__}")
    return model_or_run, None


def run_data_mpp(run: str | os.PathLike) -> float | None:
    """The ``data.mpp`` of a run's ``config.yaml`` (µm/px of its training patches), or None."""
    from histolatent.config import load_yaml

    path = Path(run) / "config.yaml"
    if not path.is_file():
        return None
    data = load_yaml(path).get("data") or {}
    return check_mpp(data.get("mpp"), name=f"{path}: data.mpp", optional=True)


def patch_geometry(model: Any, run: str | os.PathLike | None = None, *, mpp: float | None = None,
                   size_px: int | None = None) -> tuple[int, float]:
    """``(size_px, mpp)`` of the patches a model takes: the arguments, else the model and its run.

    ``size_px`` defaults to the model's ``image_size``; ``mpp`` to the run's ``data.mpp``.

    Raises
    ------
    InputError
        When neither the argument nor the run gives a value.

    Examples
    --------
    >>> from histolatent.models import create_model
    >>> patch_geometry(create_model("autoencoder", in_channels=3, image_size=8, channels=[4]), mpp=0.5)
    (8, 0.5)
    """
    if size_px is None:
        size_px = getattr(getattr(model, "config", None), "image_size", None)
        if size_px is None:
            raise InputError("size_px: the model has no image_size; pass the patch size in pixels")
    if mpp is None and run is not None:
        mpp = run_data_mpp(run)
    if mpp is None:
        where = f"run {str(run)!r} has no data.mpp in its config.yaml" if run is not None else "the model has no run"
        raise InputError(f"mpp: {where}; pass the patch scale (µm/px) the model was trained at")
    return int(size_px), check_mpp(mpp)
