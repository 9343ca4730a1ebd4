"""PatchCamelyon (PCam) in its official HDF5 layout (Veeling et al. 2018).

A PCam folder holds ``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5``: each ``_x``
file one dataset ``x`` of shape ``(N, 96, 96, 3)`` uint8 (RGB patches at 10x, about
0.97 µm/px), each ``_y`` file one dataset ``y`` of shape ``(N, 1, 1, 1)`` uint8 (1: the
central 32 x 32 px hold tumour). :func:`write_pcam_split` writes the same layout (SynthPath's
PCam-like patches, tests); :class:`PCamSplit` reads one split lazily, one patch at a time, and
reopens its file in each worker process. Needs ``h5py`` (``pip install histolatent[data]``).

Example
-------
>>> import numpy as np, tempfile
>>> root = tempfile.mkdtemp()
>>> x = np.zeros((3, 96, 96, 3), np.uint8); y = np.array([0, 1, 1], np.uint8)
>>> _ = write_pcam_split(root, "valid", x, y)
>>> split = PCamSplit(root, "valid")
>>> len(split), split.labels.tolist(), split.image(2).shape
(3, [0, 1, 1], (96, 96, 3))
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from histolatent.errors import InputError
from histolatent.io.atomic import atomic_path

__all__ = ["PCAM_SPLITS", "PCamSplit", "pcam_path", "write_pcam_split"]

PCAM_SPLITS = ("train", "valid", "test")


def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - depends on the install
        raise InputError("PCam files need h5py: pip install 'histolatent[data]'") from None
    return h5py


def pcam_path(root: str | os.PathLike, split: str, kind: str) -> Path:
    """``root/camelyonpatch_level_2_split_<split>_<kind>.h5`` (``kind`` x or y)."""
    if split not in PCAM_SPLITS:
        raise InputError(f"PCam split {split!r}: expected one of {PCAM_SPLITS}")
    return Path(root) / f"camelyonpatch_level_2_split_{split}_{kind}.h5"


def write_pcam_split(root: str | os.PathLike, split: str, x: np.ndarray, y: np.ndarray) -> tuple[Path, Path]:
    """Write one split in the official layout, each file atomically; returns the x and y paths."""
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"x: expected (N, H, W, 3) uint8 patches, got {x.dtype} {x.shape}")
    if y.size != len(x) or not np.isin(y, (0, 1)).all():
        raise InputError(f"y: expected {len(x)} labels in {{0, 1}}, got shape {y.shape}")
    h5py = _h5py()
    out = []
    for kind, data in (("x", x), ("y", y.astype(np.uint8).reshape(-1, 1, 1, 1))):
        path = pcam_path(root, split, kind)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset(kind, data=data, chunks=(1, *data.shape[1:]) if kind == "x" else None)
        out.append(path)
    return out[0], out[1]


class PCamSplit:
    """One PCam split: ``labels`` ``(N,)`` uint8 in memory, ``image(i)`` ``(96, 96, 3)`` uint8 read on demand."""

    def __init__(self, root: str | os.PathLike, split: str) -> None:
        self.x_path, y_path = pcam_path(root, split, "x"), pcam_path(root, split, "y")
        for p in (self.x_path, y_path):
            if not p.is_file():
                raise InputError(f"PCam {split}: {str(p)!r} is missing (a PCam folder holds "
                                 "camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5)")
        h5py = _h5py()
        try:
            with h5py.File(y_path, "r") as f:
                y = np.asarray(f["y"][()]).reshape(-1)
            with h5py.File(self.x_path, "r") as f:
                shape, dtype = f["x"].shape, f["x"].dtype
        except (OSError, KeyError) as err:
            raise InputError(f"PCam {split}: cannot read {str(y_path)!r} / {str(self.x_path)!r} "
                             f"(datasets 'y' and 'x' expected: {err})") from None
        if len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
            raise InputError(f"{str(self.x_path)!r}: dataset 'x' must be (N, H, W, 3) uint8, got {dtype} {shape}")
        if shape[0] != len(y):
            raise InputError(f"PCam {split}: {shape[0]} patches in {self.x_path.name} but {len(y)} labels")
        if not np.isin(y, (0, 1)).all():
            raise InputError(f"{str(y_path)!r}: labels must be 0 or 1")
        self.labels = y.astype(np.uint8)
        self.shape = tuple(int(s) for s in shape)
        self._file = None

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> np.ndarray:
        if self._file is None:
            self._file = _h5py().File(self.x_path, "r")
        return np.asarray(self._file["x"][int(i)])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None}
