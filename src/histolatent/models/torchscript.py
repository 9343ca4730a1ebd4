"""Encoders the user brings as TorchScript files (for example a pathology foundation model).

``model.pt`` (``torch.jit.save``) plus a JSON beside it (``model.json``, the same stem)::

    {"input_px": 224, "mpp": 0.5, "code_size": 768,
     "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}

or ``"normalization": {"range": [-1, 1]}`` (pixels mapped linearly from [0, 1]). Optional:
``"in_channels"`` (3), ``"name"``, ``"output"`` (the key of a dict output, or the index of a
tuple output; default: the output itself). :func:`load_torchscript_encoder` checks the JSON
(each problem an :class:`InputError` naming the file and the field), loads the module on
CPU in eval mode, and runs one probe forward to check the code's shape. The result has the
NIC encoders' contract: ``encode(x)`` on float ``(N, C, input_px, input_px)`` in [0, 1] returns
``{"z": (N, code_size)}``, and ``.config`` carries ``image_size``, ``mpp``, ``code_size``
so that compression reads tiles at the right scale.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from histolatent.errors import InputError

__all__ = ["TorchScriptEncoder", "TorchScriptSpec", "load_torchscript_encoder", "read_spec"]


class TorchScriptSpec:
    """The JSON record: ``image_size`` (= ``input_px``), ``mpp``, ``code_size``, ``in_channels``,
    ``mean``/``std`` (per channel, applied after scaling to [0, 1]) and ``name``."""

    def __init__(self, *, image_size: int, mpp: float, code_size: int, in_channels: int, mean: list[float],
                 std: list[float], name: str, output: str | int | None) -> None:
        self.image_size, self.mpp, self.code_size, self.in_channels = image_size, mpp, code_size, in_channels
        self.mean, self.std, self.name, self.output = mean, std, name, output

    def to_dict(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "mpp": self.mpp, "code_size": self.code_size,
                "in_channels": self.in_channels, "mean": self.mean, "std": self.std, "name": self.name,
                "output": self.output}

    def __repr__(self) -> str:
        return f"TorchScriptSpec({self.to_dict()})"


def _positive_int(spec: dict, key: str, where: str) -> int:
    v = spec.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise InputError(f"{where}: field '{key}' must be a positive integer, got {v!r}")
    return v


def _numbers(v: Any, n: int, field: str, where: str) -> list[float]:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [v] * n
    if (not isinstance(v, list) or len(v) != n
            or not all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in v)):
        raise InputError(f"{where}: field '{field}' must be a number or a list of {n} finite numbers, got {v!r}")
    return [float(a) for a in v]


def read_spec(path: str | os.PathLike) -> TorchScriptSpec:
    """Read and check the encoder JSON at ``path``."""
    p = Path(path)
    where = str(p)
    if not p.is_file():
        raise InputError(f"{where}: encoder description missing (a JSON beside the .pt file: input_px, mpp, "
                         "code_size, normalization)")
    try:
        spec = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{where}: not valid JSON ({err})") from None
    if not isinstance(spec, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(spec).__name__}")
    known = {"input_px", "mpp", "code_size", "normalization", "in_channels", "name", "output"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise InputError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    for key in ("input_px", "mpp", "code_size", "normalization"):
        if key not in spec:
            raise InputError(f"{where}: field '{key}' is missing")
    size = _positive_int(spec, "input_px", where)
    code = _positive_int(spec, "code_size", where)
    cin = _positive_int(spec, "in_channels", where) if "in_channels" in spec else 3
    mpp = spec["mpp"]
    if isinstance(mpp, bool) or not isinstance(mpp, (int, float)) or not (math.isfinite(mpp) and mpp > 0):
        raise InputError(f"{where}: field 'mpp' must be a positive number (µm per pixel), got {mpp!r}")
    norm = spec["normalization"]
    if not isinstance(norm, dict) or set(norm) not in ({"mean", "std"}, {"range"}):
        raise InputError(f"{where}: field 'normalization' must be {{\"mean\": [...], \"std\": [...]}} or "
                         f"{{\"range\": [lo, hi]}}, got {norm!r}")
    if "range" in norm:
        lo, hi = _numbers(norm["range"], 2, "normalization.range", where)
        if not hi > lo:
            raise InputError(f"{where}: field 'normalization.range' needs lo < hi, got {[lo, hi]}")
        # x' = lo + (hi - lo) x  ==  (x - mean) / std with mean = -lo / (hi - lo), std = 1 / (hi - lo)
        mean, std = [-lo / (hi - lo)] * cin, [1.0 / (hi - lo)] * cin
    else:
        mean = _numbers(norm["mean"], cin, "normalization.mean", where)
        std = _numbers(norm["std"], cin, "normalization.std", where)
        if min(std) <= 0:
            raise InputError(f"{where}: field 'normalization.std' must be > 0, got {std}")
    output = spec.get("output")
    if output is not None and (isinstance(output, bool) or not isinstance(output, (str, int))):
        raise InputError(f"{where}: field 'output' must be a key (string) or an index (integer), got {output!r}")
    name = spec.get("name", p.stem)
    if not isinstance(name, str):
        raise InputError(f"{where}: field 'name' must be a string, got {name!r}")
    return TorchScriptSpec(image_size=size, mpp=float(mpp), code_size=code, in_channels=cin, mean=mean, std=std,
                           name=name, output=output)


class TorchScriptEncoder(nn.Module):
    """A user's TorchScript module behind the ``encode(x) -> {"z": ...}`` contract."""

    registry_name = "torchscript"

    def __init__(self, module: torch.jit.ScriptModule, spec: TorchScriptSpec, *, path: Path, weights_hash: str) -> None:
        super().__init__()
        self.module = module
        self.config = spec
        self.path = path
        self.weights_hash = weights_hash
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1), persistent=False)

    def _pick(self, out: Any) -> Tensor:
        key = self.config.output
        if key is not None:
            try:
                out = out[key]
            except (KeyError, IndexError, TypeError):
                raise InputError(f"{self.path}: output {key!r} not found in the module's output "
                                 f"({type(out).__name__})") from None
        if not isinstance(out, Tensor):
            raise InputError(f"{self.path}: the module returned {type(out).__name__}; set 'output' in its JSON to "
                             "the key or index of the code tensor")
        return out

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        c = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"{self.path}: expected (N, {c.in_channels}, {c.image_size}, {c.image_size}) images in "
                             f"[0, 1], got {tuple(x.shape)}")
        xn = (x.float() - self.mean.to(x.device)) / self.std.to(x.device)
        z = self._pick(self.module(xn)).float().reshape(x.shape[0], -1)
        if z.shape[1] != c.code_size:
            raise InputError(f"{self.path}: the module returned codes of size {z.shape[1]}, its JSON says "
                             f"code_size {c.code_size}")
        return {"z": z}

    def forward(self, x: Tensor) -> Tensor:
        return self.encode(x)["z"]


def load_torchscript_encoder(path: str | os.PathLike, *, spec_path: str | os.PathLike | None = None,
                             probe: bool = True) -> TorchScriptEncoder:
    """Load ``path`` (a ``torch.jit.save`` file) and its JSON (``spec_path``, default: same stem, ``.json``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: TorchScript encoder file does not exist")
    spec = read_spec(Path(spec_path) if spec_path is not None else p.with_suffix(".json"))
    data = p.read_bytes()
    try:
        module = torch.jit.load(p, map_location="cpu")
    except Exception as err:  # noqa: BLE001  (torch raises many types for bad files)
        raise InputError(f"{p}: not a loadable TorchScript file ({type(err).__name__}: {str(err)[:200]})") from None
    module.eval()
    enc = TorchScriptEncoder(module, spec, path=p, weights_hash=hashlib.sha256(data).hexdigest())
    enc.eval()
    if probe:
        with torch.no_grad():
            try:
                enc.encode(torch.full((2, spec.in_channels, spec.image_size, spec.image_size), 0.5))
            except InputError:
                raise
            except Exception as err:  # noqa: BLE001
                raise InputError(f"{p}: probe forward on (2, {spec.in_channels}, {spec.image_size}, "
                                 f"{spec.image_size}) failed ({type(err).__name__}: {str(err)[:200]})") from None
    return enc
