"""Shared by the embed tests: one torch thread, and a tiny SE(2,N)-VAE with disc patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is fastest, and does not spin-wait on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_se2n() -> dict:
    """Options of a tiny grey SE(2,N)-VAE on 32-px patches (3 latents, 8 orientations)."""
    return dict(in_channels=1, image_size=32, encoder_channels=[4, 4], decoder_channels=[4, 4, 4], latent_dim=3,
                gamma=0.0)


def _discs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    yy, xx = np.mgrid[:32, :32] - 15.5
    r = 4 + 3 * y + rng.normal(0, 0.3, n)
    img = (np.hypot(yy, xx)[None] < r[:, None, None]) * 200 + rng.integers(0, 40, (n, 32, 32))
    return img[..., None].astype(np.uint8), y


@pytest.fixture
def discs():
    """``discs(n, seed)``: bright discs whose radius is the class (3 classes) on noise:
    uint8 ``(n, 32, 32, 1)`` and the classes."""
    return _discs
