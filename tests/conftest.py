"""Shared fixtures. Tests run on tiny inputs, on the CPU, without network except the
package registry used by the samples test (the same path users take)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 300, env: dict | None = None, cwd: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run ``histolatent ARGS`` in a fresh interpreter (as a user would)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "histolatent.cli.app", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=cwd or REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"histolatent {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests run tiny tensors on one torch intra-op thread: on a shared 2-core machine two
    OpenMP threads spin-wait on each other and small convolutions run up to ~10x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def sample_paths():
    """The two real samples (fetched once per machine, then cached)."""
    from histolatent import samples

    return {n: samples.path(n) for n in samples.names()}


def write_grid_store(path: Path, grid, mask, attrs: dict, *, band: int = 32) -> Path:
    """A slide grid store as :func:`histolatent.embed.grid.compress_slide` lays it out, written band by
    band: ``grid`` is a ``(C, H, W)`` array or ``rows(r0, r1) -> (C, r1 - r0, W)``, ``mask`` ``(H, W)``."""
    import numpy as np
    import zarr

    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    rows = grid if callable(grid) else (lambda r0, r1: np.asarray(grid)[:, r0:r1])
    c = rows(0, 1).shape[0]
    root = zarr.open_group(str(path), mode="w")
    arr = root.create_array("grid", shape=(c, h, w), chunks=(c, min(h, band), w), dtype="float16", fill_value=0)
    for r0 in range(0, h, band):
        arr[:, r0:r0 + band] = rows(r0, min(h, r0 + band)).astype(np.float16)
    root.create_array("mask", shape=(h, w), chunks=(min(h, band), w), dtype="bool", fill_value=False)[:] = mask
    root.attrs.update({"grid_shape": [h, w], **attrs})
    return path


@pytest.fixture
def grid_store():
    """``grid_store(path, grid, mask, attrs)``: write a slide grid store (see :func:`write_grid_store`)."""
    return write_grid_store


@pytest.fixture
def brightness_cnn():
    """``brightness_cnn()``: a slide CNN over mean-RGB grid codes whose Grad-CAM is the cells' brightness:
    a 1x1 conv averaging the three channels (its ``cam_layer``) -> global average pool -> linear (weight 1)."""
    import torch

    class Brightness(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 1, bias=False)
            self.fc = torch.nn.Linear(1, 1)
            with torch.no_grad():
                self.conv.weight.fill_(1 / 3)
                self.fc.weight.fill_(1.0)
            self.cam_layer = self.conv

        def forward(self, x):
            return self.fc(self.conv(x).mean(dim=(2, 3)))

    return Brightness
