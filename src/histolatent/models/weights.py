"""A trained model on disk: ``weights.safetensors`` + ``model.json``, and back, with no pickle.

``model.json`` holds the registry name, the fully resolved config and the SHA-256 of
``weights.safetensors`` (``weights_sha256``); ``weights.safetensors`` holds the state dict.
:func:`load_model` rebuilds the model from the registry and refuses anything it cannot
trust: a missing, truncated or corrupt file, weights whose bytes are not those
:func:`save_weights` wrote, a ``model.json`` that is not what :func:`save_weights` writes,
weights that do not fit the model, or weights containing NaN or inf. :func:`run_problem`
makes the same file checks without building the model (``histolatent runs list``). Every such error is an :class:`~histolatent.errors.InputError` naming the file.

These live in ``models`` (not ``train``) so that code below the engine, such as the
colouriser's normaliser, can save and load a model without importing the engine.

Example
-------
>>> import tempfile
>>> from histolatent.models import create_model, load_model, save_weights
>>> net = create_model("autoencoder", image_size=8, channels=[4], latent_dim=2)
>>> run = save_weights(net, tempfile.mkdtemp(), step=0).parent
>>> load_model(run).config == net.config
True
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from histolatent import __version__
from histolatent.errors import InputError
from histolatent.io.atomic import atomic_path, write_text_atomic
from histolatent.models.base import RepresentationModel
from histolatent.models.registry import create_model

__all__ = ["MODEL_JSON", "WEIGHTS", "copy_weights", "file_sha256", "load_model", "run_problem", "save_weights"]

WEIGHTS = "weights.safetensors"
MODEL_JSON = "model.json"


def save_weights(model: RepresentationModel, run_dir: str | os.PathLike, *, step: int,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write ``weights.safetensors`` and ``model.json`` into ``run_dir``, each atomically.

    Parameters
    ----------
    model : RepresentationModel
        A registered model; its state dict is copied to the CPU (the model is not changed).
    run_dir : path
        The run folder (created if needed).
    step : int
        The training step the weights belong to (recorded in both files).
    extra : dict, optional
        More JSON-ready keys for ``model.json``.

    Returns
    -------
    Path
        The weights file.
    """
    if not model.registry_name:
        raise InputError(f"save_weights: {type(model).__name__} is not a registered model")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(run_dir / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"model": model.registry_name, "step": str(step)})
        digest = file_sha256(tmp)
    meta = {"name": model.registry_name, "config": model.config.to_dict(), "step": step,
            "histolatent": __version__, "weights_sha256": digest, **(extra or {})}
    write_text_atomic(run_dir / MODEL_JSON, json.dumps(meta, indent=2) + "\n")
    return run_dir / WEIGHTS


def load_model(run_dir: str | os.PathLike, *, device: str | torch.device = "cpu") -> RepresentationModel:
    """Rebuild the model of a finished run from ``model.json`` + ``weights.safetensors``.

    Parameters
    ----------
    run_dir : path
        A folder written by :func:`save_weights` (every finished training run is one).
    device : str or torch.device
        Where the weights are loaded.

    Returns
    -------
    RepresentationModel
        In eval mode, on ``device``.

    Raises
    ------
    InputError
        Naming the file: not a finished run, malformed ``model.json``, an unknown model or
        bad config, a truncated or corrupt weights file, weights that do not fit the model,
        or weights containing NaN or inf.
    """
    run_dir = Path(run_dir)
    meta_path, w_path = run_dir / MODEL_JSON, run_dir / WEIGHTS
    if not meta_path.is_file() or not w_path.is_file():
        raise InputError(f"run {str(run_dir)!r} has no {MODEL_JSON} + {WEIGHTS}: "
                         "not a finished histolatent run (an unfinished run can be resumed with --resume)")
    meta = _read_meta(meta_path)
    _check_digest(w_path, meta)
    model = create_model(meta["name"], source=str(meta_path), **meta["config"])
    state = _read_weights(w_path, meta["name"], device)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:  # missing or unexpected keys, wrong shapes
        first = str(err).strip().splitlines()
        raise InputError(f"{str(w_path)!r}: the weights do not fit model {meta['name']!r} as configured in "
                         f"{MODEL_JSON} ({' '.join(first[:3])})") from None
    return model.to(device).eval()


def copy_weights(model: RepresentationModel, source: str | os.PathLike, *, prefix: str = "backbone.") -> list[str]:
    """Warm start: copy the tensors named ``prefix...`` of a trained run into ``model``, in place.

    Parameters
    ----------
    model : RepresentationModel
        The model to initialise; its other tensors are left as they are.
    source : path
        A finished run folder (its ``weights.safetensors``) or a weights file.
    prefix : str
        The part to copy: every tensor of ``model`` whose name starts with it must be in
        ``source`` with the same shape (``"backbone."``: the VGG encoder of ``drl``, ``dim``,
        ``vgg-classifier`` ...; a pretext model's other parts, such as DRL's FEM, stay behind).

    Returns
    -------
    list of str
        The names copied.

    Raises
    ------
    InputError
        Naming ``source``: not a run or weights file, unreadable, or missing or misshapen tensors.
    """
    path = Path(source)
    path = path / WEIGHTS if path.is_dir() else path
    if not path.is_file():
        raise InputError(f"init_from {str(source)!r}: no {WEIGHTS} there; not a finished histolatent run")
    meta = _read_meta(path.parent / MODEL_JSON) if (path.parent / MODEL_JSON).is_file() else None
    if meta is not None:
        _check_digest(path, meta)  # a run's weights are the bytes its model.json recorded
    state = _read_weights(path, meta["name"] if meta is not None else None, "cpu")
    want = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    if not want:
        raise InputError(f"init_from {str(source)!r}: the model has no tensors named {prefix!r}*")
    bad = [f"{k} {tuple(v.shape)} vs {tuple(state[k].shape) if k in state else 'missing'}"
           for k, v in want.items() if k not in state or state[k].shape != v.shape]
    if bad:
        shown = "; ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise InputError(f"init_from {str(source)!r}: its {prefix!r}* tensors do not fit the model ({shown}); "
                         "build the model with the same backbone options as the pretrained run")
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if k in want:
                v.copy_(state[k].to(v.device, v.dtype))
    return sorted(want)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_problem(run_dir: str | os.PathLike) -> str | None:
    """Why the weights of a run folder cannot be loaded, or None when its files check out.

    Checks what :func:`load_model` checks of the files (``model.json`` readable, the weights
    present, their SHA-256, the safetensors header) without building the model; a run with
    neither file is not finished, which is not a problem (None).
    """
    run_dir = Path(run_dir)
    meta_path, w_path = run_dir / MODEL_JSON, run_dir / WEIGHTS
    if not meta_path.exists() and not w_path.exists():
        return None
    try:
        if not meta_path.is_file():
            raise InputError(f"{MODEL_JSON} is missing")
        if not w_path.is_file():
            raise InputError(f"{WEIGHTS} is missing")
        meta = _read_meta(meta_path)
        _check_digest(w_path, meta)
        with safe_open(str(w_path), framework="pt", device="cpu") as f:
            f.keys()
    except InputError as err:
        return str(err)
    except (SafetensorError, OSError, ValueError) as err:
        return f"{str(w_path)!r}: not a readable safetensors file ({err})"
    return None


def _check_digest(path: Path, meta: dict[str, Any]) -> None:
    """Refuse weights whose bytes are not those save_weights recorded (runs from before the hash pass)."""
    want = meta.get("weights_sha256")
    if want is None:
        return
    try:
        got = file_sha256(path)
    except OSError as err:
        raise InputError(f"{str(path)!r}: cannot be read ({err})") from None
    if got != want:
        raise InputError(f"{str(path)!r}: the file is truncated or corrupt, or was changed after training (SHA-256 {got[:12]}... "
                         f"!= {want[:12]}... recorded in {MODEL_JSON})")


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{str(path)!r}: not valid JSON ({err})") from None
    except OSError as err:
        raise InputError(f"{str(path)!r}: cannot be read ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not isinstance(meta.get("config"), dict):
        raise InputError(f"{str(path)!r}: expected a mapping with a model 'name' (string) and a 'config' "
                         "(mapping), as save_weights writes")
    digest = meta.get("weights_sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64):
        raise InputError(f"{str(path)!r}: 'weights_sha256' must be a 64-character hex string, got {digest!r}")
    return meta


def _read_weights(path: Path, name: str | None, device: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            saved_for = (f.metadata() or {}).get("model")
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(f"{str(path)!r}: not a readable safetensors file (truncated or corrupt: {err})") from None
    if name is not None and saved_for is not None and saved_for != name:
        raise InputError(f"{str(path)!r}: the weights are of model {saved_for!r}, but {MODEL_JSON} says {name!r}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise InputError(f"{str(path)!r}: weights contain NaN or inf ({shown}); the run diverged or the "
                         "file is damaged")
    return state
