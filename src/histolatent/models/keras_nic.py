"""The NIC authors' released BiGAN encoders (Keras 2 HDF5) as ``nic-bigan`` models.

Their repository (MIT licence) ships ``encoder_bigan.h5`` and ``encoder_multitask-4.h5``
(../shared/REFERENCES.md): input 64 x 64 x 3 in [-1, 1] (128-px patches at 0.5 µm/px,
average-pooled x2), 4 x [conv 128 3x3 stride 2 "valid", LeakyReLU 0.2, BatchNorm (eps 1e-3)],
flatten in HWC order, dense 128. :func:`load_keras_bigan_encoder` reads such a file with
h5py — ``model_weights/<layer>/.../kernel:0`` ``(kh, kw, in, out)``, ``bias:0``, ``gamma:0``,
``beta:0``, ``moving_mean:0``, ``moving_variance:0``, layers in the order of the group's
``layer_names`` attribute — and returns a :class:`~histolatent.models.nic_bigan.NICBiGAN`
whose encoder holds them (its generator and discriminator are left at their initial
weights: only ``encode`` is meaningful). Conv kernels become ``(out, in, kh, kw)``; the
dense kernel's rows are reordered from HWC to torch's CHW flatten.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import torch

from histolatent.errors import InputError
from histolatent.models.nic_bigan import NICBiGAN
from histolatent.models.registry import create_model

__all__ = ["load_keras_bigan_encoder", "read_keras_layers"]


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def read_keras_layers(path: str | os.PathLike) -> list[tuple[str, dict[str, np.ndarray]]]:
    """``[(layer name, {"kernel": ..., "bias": ..., "gamma": ...}), ...]`` of the layers with weights, in order."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: Keras weights file does not exist")
    try:
        f = h5py.File(p, "r")
    except OSError as err:
        raise InputError(f"{p}: not an HDF5 file ({err})") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in root.attrs.get("layer_names", [])]
        names = names or sorted(root.keys(), key=_natural)
        out = []
        for name in names:
            if name not in root:
                continue
            weights: dict[str, np.ndarray] = {}

            def visit(key: str, obj, weights=weights) -> None:
                if isinstance(obj, h5py.Dataset):
                    weights[key.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(obj[()], dtype=np.float32)

            root[name].visititems(visit)
            if weights:
                out.append((name, weights))
    return out


def load_keras_bigan_encoder(path: str | os.PathLike, *, image_size: int = 128, pool: int = 2,
                             mpp: float = 0.5) -> NICBiGAN:
    """A ``nic-bigan`` model whose encoder carries the weights of a Keras BiGAN encoder file."""
    p = Path(path)
    layers = read_keras_layers(p)
    convs = [(n, w) for n, w in layers if "kernel" in w and w["kernel"].ndim == 4]
    dense = [(n, w) for n, w in layers if "kernel" in w and w["kernel"].ndim == 2]
    bns = [(n, w) for n, w in layers if "moving_mean" in w]
    if not convs or len(dense) != 1 or len(bns) != len(convs):
        raise InputError(f"{p}: expected n x [conv, batch norm] then one dense layer (the NIC BiGAN encoder), "
                         f"found {len(convs)} conv, {len(bns)} batch-norm and {len(dense)} dense layers")
    channels = [int(w["kernel"].shape[3]) for _, w in convs]
    if any(w["kernel"].shape[:2] != (3, 3) for _, w in convs):
        raise InputError(f"{p}: expected 3x3 conv kernels, got {[w['kernel'].shape[:2] for _, w in convs]}")
    in_channels = int(convs[0][1]["kernel"].shape[2])
    kd = dense[0][1]["kernel"]
    code = int(kd.shape[1])
    model = create_model("nic-bigan", image_size=image_size, pool=pool, mpp=mpp, in_channels=in_channels,
                         channels=channels, code_size=code, hidden=0, padding="valid")
    c, h, w = model.encoder.feature_shape
    if kd.shape[0] != c * h * w:
        side = math.isqrt(kd.shape[0] // channels[-1]) if kd.shape[0] % channels[-1] == 0 else None
        raise InputError(f"{p}: the dense layer takes {kd.shape[0]} inputs, but image_size={image_size} / pool={pool} "
                         f"gives {c}x{h}x{w} = {c * h * w}" + (f" (the file expects {side}x{side} maps)" if side else ""))

    convs_t = [m for m in model.encoder.convs if isinstance(m, torch.nn.Conv2d)]
    bns_t = [m for m in model.encoder.convs if isinstance(m, torch.nn.BatchNorm2d)]
    for (_, wc), (_, wb), conv, bn in zip(convs, bns, convs_t, bns_t, strict=True):
        conv.weight.data.copy_(torch.from_numpy(wc["kernel"].transpose(3, 2, 0, 1).copy()))
        conv.bias.data.copy_(torch.from_numpy(wc["bias"]) if "bias" in wc else torch.zeros(conv.out_channels))
        n = bn.num_features
        bn.weight.data.copy_(torch.from_numpy(wb["gamma"]) if "gamma" in wb else torch.ones(n))
        bn.bias.data.copy_(torch.from_numpy(wb["beta"]) if "beta" in wb else torch.zeros(n))
        bn.running_mean.copy_(torch.from_numpy(wb["moving_mean"]))
        bn.running_var.copy_(torch.from_numpy(wb["moving_variance"]))
    lin = model.encoder.head[-1]
    hwc = kd.reshape(h, w, c, code).transpose(2, 0, 1, 3).reshape(c * h * w, code)  # rows HWC -> CHW
    lin.weight.data.copy_(torch.from_numpy(hwc.T.copy()))
    lin.bias.data.copy_(torch.from_numpy(dense[0][1]["bias"]) if "bias" in dense[0][1] else torch.zeros(code))

    return model.eval()
