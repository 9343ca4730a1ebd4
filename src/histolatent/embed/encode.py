"""A trained model applied to a batch of images: named parts as arrays, in bounded memory.

:func:`encode_images` is the one loop that runs ``model.encode`` over images: it converts
one batch at a time through the image-input policy (:func:`histolatent.io.image.tensor_from_rgb8`),
so a memory-mapped array of a million patches costs one batch of float memory, and returns
each part as a numpy array (floating parts as float32). :func:`weights_hash` names the exact
weights a result was computed with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from histolatent.errors import InputError
from histolatent.io.image import tensor_from_rgb8

__all__ = ["PRECISIONS", "encode_images", "module_device", "weights_hash"]

#: Numeric precisions of the forward pass: float32, or bfloat16 autocast (CPU and CUDA).
PRECISIONS = ("fp32", "bf16")


def module_device(module: Any) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module without any)."""
    for t in (*module.parameters(), *module.buffers()) if isinstance(module, torch.nn.Module) else ():
        return t.device
    return torch.device("cpu")


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 (hex, first 16 characters) of a module's state: names, dtypes, shapes and bytes.

    Two modules with the same hash hold bitwise the same weights and buffers. A model that
    knows its own identity (a ``weights_hash`` string attribute, as a user's TorchScript
    encoder has: the hash of its file, code included) gives that instead.

    >>> from histolatent.models import create_model
    >>> a = create_model("autoencoder", in_channels=3, image_size=8, channels=[4], latent_dim=2)
    >>> weights_hash(a) == weights_hash(a) and len(weights_hash(a)) == 16
    True
    """
    own = getattr(module, "weights_hash", None)
    if isinstance(own, str) and own:
        return own[:16]
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")


def _batch_tensor(images: Any, lo: int, hi: int, *, channels: int | None, device: torch.device) -> torch.Tensor:
    """Rows ``lo:hi`` of ``images`` as float ``(b, C, H, W)`` in [0, 1] on ``device``."""
    if isinstance(images, torch.Tensor):
        return images[lo:hi].to(device=device, dtype=torch.float32)
    batch = np.asarray(images[lo:hi])
    if not batch.flags.writeable:  # memory-mapped: torch wants memory it may own
        batch = batch.copy()
    x = tensor_from_rgb8(batch, device=device)  # (b, 3, H, W); grey input is replicated
    if channels == 1:
        return x[:, :1]  # the grey channel back (rgb8_from_any copied it to R, G and B)
    return x


def _check_images(images: Any, model: Any) -> tuple[int | None, int]:
    """Validate the layout before any work; returns (the model's input channels, the number of images)."""
    cfg = getattr(model, "config", None)
    channels = getattr(cfg, "in_channels", None)
    size = getattr(cfg, "image_size", None)
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise InputError(f"images: expected a float (N, C, H, W) tensor, got shape {tuple(images.shape)}")
        c, hw = images.shape[1], tuple(images.shape[2:])
    else:
        if not hasattr(images, "shape") or not hasattr(images, "dtype"):
            images = np.asarray(images)
        if len(images.shape) != 4:
            raise InputError(f"images: expected a (N, H, W, C) array, got shape {tuple(images.shape)}")
        c, hw = images.shape[3], tuple(images.shape[1:3])
        if channels == 1 and c != 1:
            raise InputError(f"images: the model takes 1-channel images, got {c} channels")
        c = channels if channels == 1 else 3
    if channels is not None and c != channels:
        raise InputError(f"images: the model takes {channels}-channel images, got {c} channels")
    if size is not None and hw != (size, size):
        raise InputError(f"images are {hw[0]}x{hw[1]} px but the model takes {size}x{size}")
    return channels, int(images.shape[0])


@torch.no_grad()
def encode_images(model: Any, images: Any, *, parts: Sequence[str] | None = None, batch_size: int = 256,
                  precision: str = "fp32", strict: bool = True,
                  encode_kwargs: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """``model.encode`` over ``images`` in batches; the named parts as numpy arrays.

    Parameters
    ----------
    model : RepresentationModel
        Any model with ``encode(x) -> dict[str, Tensor]``; run in eval mode (its mode is
        restored afterwards) on its own device.
    images : array or Tensor
        ``(N, H, W, C)`` images under the image-input policy (uint8 RGB; grey, RGBA, uint16
        and floats in [0, 1] are converted), numpy or memory-mapped (read one batch at a
        time); or a float ``(N, C, H, W)`` tensor in [0, 1], used as it is.
    parts : sequence of str, optional
        The parts to keep (default: all that ``encode`` returns).
    batch_size : int
        Images per forward pass.
    precision : {"fp32", "bf16"}
        ``"bf16"`` runs the forward pass under bfloat16 autocast; parts come back as float32.
    strict : bool
        Raise if a requested part is missing (default); otherwise leave it out.
    encode_kwargs : mapping, optional
        Keyword arguments of ``model.encode`` (e.g. ``{"average_phases": True}``).

    Returns
    -------
    dict of str to numpy.ndarray
        ``(N, ...)`` per part: floating parts as float32, others (indices) as they are.

    Raises
    ------
    InputError
        Images of the wrong layout, size or channels, an unknown precision, or a missing
        part (before the second batch is read).

    Examples
    --------
    >>> import numpy as np
    >>> from histolatent.models import create_model
    >>> model = create_model("autoencoder", in_channels=3, image_size=8, channels=[4], latent_dim=2)
    >>> out = encode_images(model, np.zeros((5, 8, 8, 3), np.uint8), batch_size=2)
    >>> {k: v.shape for k, v in out.items()}
    {'z': (5, 2)}
    """
    _check_precision(precision)
    if int(batch_size) < 1:
        raise InputError(f"batch_size: expected >= 1, got {batch_size}")
    channels, n = _check_images(images, model)
    device = module_device(model)
    was_training = bool(getattr(model, "training", False))
    model.eval()
    out: dict[str, list[np.ndarray]] = {}
    try:
        for lo in range(0, n, batch_size):
            x = _batch_tensor(images, lo, min(n, lo + batch_size), channels=channels, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                enc = model.encode(x, **(encode_kwargs or {}))
            if lo == 0 and parts is not None and strict and (missing := set(parts) - set(enc)):
                raise InputError(f"model has no encode part(s) {sorted(missing)}; it gives {sorted(enc)}")
            for k, v in enc.items():
                if parts is None or k in parts:
                    v = v.detach()
                    out.setdefault(k, []).append((v.float() if v.is_floating_point() else v).cpu().numpy())
    finally:
        model.train(was_training)
    return {k: np.concatenate(v) for k, v in out.items()}
