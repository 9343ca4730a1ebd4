"""Synthetic H&E images with known stain vectors (Beer-Lambert in log10 OD)."""

from __future__ import annotations

import numpy as np
import pytest

#: Known unit stain rows (H, E) used to render test images.
H_TRUE = np.array([0.65, 0.70, 0.29])
E_TRUE = np.array([0.07, 0.99, 0.11])
S_TRUE = np.stack([H_TRUE / np.linalg.norm(H_TRUE), E_TRUE / np.linalg.norm(E_TRUE)])


def render_he(stains: np.ndarray = S_TRUE, *, size: int = 64, seed: int = 0, background: float = 0.3,
              scale: tuple[float, float] = (0.6, 0.35), bg_level: float = 255.0) -> np.ndarray:
    """``(size, size, 3)`` uint8: nuclei (mostly H), stroma (mostly E) and glass."""
    rng = np.random.default_rng(seed)
    n = size * size
    kind = rng.choice(3, size=n, p=[0.3, 0.7 - background, background])
    c = np.zeros((n, 2))
    c[kind == 0, 0] = rng.uniform(0.3, 1.0, (kind == 0).sum()) * scale[0] * 2
    c[kind == 0, 1] = rng.uniform(0.0, 0.2, (kind == 0).sum()) * scale[1]
    c[kind == 1, 1] = rng.uniform(0.3, 1.0, (kind == 1).sum()) * scale[1] * 2
    c[kind == 1, 0] = rng.uniform(0.0, 0.2, (kind == 1).sum()) * scale[0]
    od = c @ stains
    rgb = (bg_level + 1) * 10.0 ** (-od) - 1 + rng.normal(0, 0.5, (n, 3))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(size, size, 3)


@pytest.fixture
def he_pair():
    """(source, target): the same kind of tissue under two different stains."""
    s_src = np.array([[0.55, 0.78, 0.30], [0.20, 0.90, 0.38]])
    s_src /= np.linalg.norm(s_src, axis=1, keepdims=True)
    return render_he(s_src, seed=1, scale=(0.8, 0.5)), render_he(S_TRUE, seed=2, size=96)


@pytest.fixture(name="render_he")
def _render_he_fixture():
    """The :func:`render_he` function."""
    return render_he


@pytest.fixture
def s_true():
    return S_TRUE.copy()
