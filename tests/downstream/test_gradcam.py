"""Grad-CAM (downstream/gradcam.py): the definition on a hand-set CNN, windows against the whole
grid, and memory bounded by the window on the grid of a 100k x 100k-pixel slide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from histolatent.downstream.gradcam import grad_cam, grid_heatmap, window_spans
from histolatent.errors import InputError

KERNELS = np.array([  # (out 3, in 2, 3, 3): a horizontal gradient, a centre tap, a diagonal mix
    [[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]]],
    [[[0, 0, 0], [0, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, -1, 0], [0, 0, 0]]],
    [[[1, 0, 0], [0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0.5]]],
], dtype=np.float32)
BIAS = np.array([0.1, -0.2, 0.0], np.float32)
HEAD = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, -1.0]], np.float32)  # two classes


class ConvGapLinear(torch.nn.Module):
    """One 3x3 conv (the cam layer) -> global average pool -> linear: Grad-CAM's simplest case."""

    def __init__(self, classes: int = 1) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.fc = torch.nn.Linear(3, classes)
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(KERNELS))
            self.conv.bias.copy_(torch.from_numpy(BIAS))
            self.fc.weight.copy_(torch.from_numpy(HEAD[:classes]))
            self.fc.bias.fill_(0.3)
        self.cam_layer = self.conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def numpy_grad_cam(x: np.ndarray, head_row: np.ndarray) -> np.ndarray:
    """Grad-CAM from its definition, for ConvGapLinear: A = conv(x); y = w . mean(A) + b, so
    dy/dA_k(ij) = w_k / (H W) everywhere, alpha_k = w_k / (H W), cam = max(0, sum_k alpha_k A_k)."""
    c, h, w = x.shape
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    act = np.zeros((3, h, w))
    for k in range(3):
        for i in range(h):
            for j in range(w):
                act[k, i, j] = BIAS[k] + np.sum(KERNELS[k] * pad[:, i:i + 3, j:j + 3])
    alpha = head_row / (h * w)
    return np.maximum(0.0, np.tensordot(alpha, act, axes=1))


def test_grad_cam_equals_the_definition_on_a_hand_set_cnn():
    x = np.random.default_rng(0).normal(size=(2, 5, 7)).astype(np.float32)  # non-square
    got = grad_cam(ConvGapLinear(), torch.from_numpy(x)[None])[0].numpy()
    want = numpy_grad_cam(x, HEAD[0])
    assert got.shape == (5, 7)
    assert (want == 0).any() and (want > 0).any()  # the ReLU matters here
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # two classes: target picks the row of the head that is explained
    two = ConvGapLinear(classes=2)
    np.testing.assert_allclose(grad_cam(two, torch.from_numpy(x), target=1)[0].numpy(), numpy_grad_cam(x, HEAD[1]),
                               rtol=1e-5, atol=1e-7)


def test_logits_shapes_and_batches_agree():
    class Flat(ConvGapLinear):
        def forward(self, x):
            return super().forward(x)[:, 0]  # (N,) instead of (N, 1)

    x = torch.from_numpy(np.random.default_rng(1).normal(size=(3, 2, 6, 4)).astype(np.float32))
    batch = grad_cam(ConvGapLinear(), x)
    np.testing.assert_allclose(grad_cam(Flat(), x).numpy(), batch.numpy(), rtol=1e-6)
    np.testing.assert_allclose(grad_cam(ConvGapLinear(), x[1:2])[0].numpy(), batch[1].numpy(), rtol=1e-6)


def test_grad_cam_leaves_the_model_as_it_was():
    model = ConvGapLinear()
    model.train()
    x = torch.ones(1, 2, 4, 4)
    grad_cam(model, x)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    by_name = grad_cam(model, x, layer="conv")
    np.testing.assert_array_equal(by_name.numpy(), grad_cam(model, x).numpy())
    with pytest.raises(InputError, match="no cam_layer"):
        grad_cam(torch.nn.Sequential(torch.nn.Conv2d(2, 1, 1), torch.nn.Flatten()), x)
    with pytest.raises(InputError, match="no submodule"):
        grad_cam(model, x, layer="nope")


@pytest.mark.parametrize("n,window,overlap,align", [(10, 6, 2, 1), (53, 16, 6, 1), (37, 20, 10, 2), (8, 8, 3, 1),
                                                    (100, 33, 9, 4)])
def test_window_spans_cover_with_margins(n, window, overlap, align):
    spans = window_spans(n, window, overlap, align)
    assert spans[0][0] == 0 and spans[-1][1] == n and spans[0][2] == 0 and spans[-1][3] == n
    for (a, b, c0, c1), nxt in zip(spans, spans[1:] + [None], strict=True):
        assert a % align == 0 and a <= c0 < c1 <= b
        assert b - a <= window + align - 1
        if nxt is not None:
            assert c1 == nxt[2]  # cores tile [0, n)
            assert b - nxt[0] >= overlap  # neighbours share the overlap
            assert c1 - nxt[0] >= overlap // 2 and b - c1 >= overlap // 2  # the core keeps its margins


class TwoConv(torch.nn.Module):
    """conv(stride s) -> ReLU -> conv (the cam layer) -> global average pool -> linear.

    Receptive-field radius of the cam layer: 1 + s cells; its stride: s."""

    def __init__(self, stride: int = 1, channels: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.c1 = torch.nn.Conv2d(channels, 6, 3, padding=1, stride=stride)
        self.c2 = torch.nn.Conv2d(6, 5, 3, padding=1)
        self.fc = torch.nn.Linear(5, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.cam_layer = self.c2

    def forward(self, x):
        return self.fc(self.c2(torch.relu(self.c1(x))).mean(dim=(2, 3)))


@pytest.mark.parametrize("stride,overlap", [(1, 6), (2, 10)])
def test_windowed_heatmap_equals_the_whole_grid_when_the_receptive_field_fits(stride, overlap):
    # margin = overlap // 2 must reach the receptive-field radius (1 + s) plus one stride (upsampling)
    assert overlap // 2 >= (1 + stride) + stride
    g = np.random.default_rng(3).normal(size=(4, 37, 53)).astype(np.float32)
    model = TwoConv(stride)
    whole = grad_cam(model, torch.from_numpy(g)[None])[0].numpy()
    assert whole.max() > 0
    windowed = grid_heatmap(model, g, window=16, overlap=overlap, normalize=False, progress=False)
    assert len(window_spans(37, 16, overlap, stride)) > 2  # really windowed, on both axes
    np.testing.assert_allclose(windowed, whole, rtol=1e-4, atol=1e-6 * whole.max())
    # too little overlap: cells near the seams see zero padding instead of their neighbours
    short = grid_heatmap(model, g, window=16, overlap=2 * stride, normalize=False, progress=False)
    assert np.abs(short - whole).max() > 1e-2 * whole.max()


def test_grid_store_mask_zeroes_background_and_normalises(tmp_path, grid_store):
    g = np.random.default_rng(4).normal(size=(4, 20, 30)).astype(np.float32)
    mask = np.ones((20, 30), bool)
    mask[:, :7] = False
    mask[15:, 20:] = False
    store = grid_store(tmp_path / "s.zarr", g, mask, {"affine": [[64.0, 0, 0], [0, 64.0, 0], [0, 0, 1]]})
    model = TwoConv()
    heat = grid_heatmap(model, store, window=12, overlap=6, progress=False)
    assert heat.dtype == np.float32 and heat.shape == (20, 30)
    assert (heat[~mask] == 0).all() and heat.max() == pytest.approx(1.0) and (heat >= 0).all()
    ref = grad_cam(model, torch.from_numpy(g.astype(np.float16).astype(np.float32))[None])[0].numpy()
    ref[~mask] = 0
    np.testing.assert_allclose(heat, ref / ref.max(), atol=1e-5)
    assert np.array_equal(grid_heatmap(model, store, window=12, overlap=6, progress=False), heat)  # deterministic


def test_a_model_with_several_outputs_needs_a_target_for_windows():
    g = np.zeros((2, 12, 12), np.float32)
    with pytest.raises(InputError, match="target"):
        grid_heatmap(ConvGapLinear(classes=2), g, window=8, overlap=2, progress=False)
    assert grid_heatmap(ConvGapLinear(classes=2), g + 1, window=8, overlap=2, target=1, progress=False).shape == (12, 12)


#: A 100,000 x 100,000-pixel slide at 128-px tiles: 782 x 782 cells (8 channels).
BIG = 782


def test_memory_is_bounded_by_the_window_on_a_100k_slide_grid(tmp_path, grid_store):
    rng = np.random.default_rng(5)
    store = grid_store(tmp_path / "big.zarr", lambda r0, r1: rng.normal(size=(8, r1 - r0, BIG)),
                       np.ones((BIG, BIG), bool), {"affine": [[128.0, 0, 0], [0, 128.0, 0], [0, 0, 1]]}, band=64)
    small = grid_store(tmp_path / "small.zarr", np.ones((8, 40, 40)), np.ones((40, 40), bool), {})
    script = textwrap.dedent(f"""
        import json, time, torch
        torch.set_num_threads(1)
        from histolatent.downstream.gradcam import grid_heatmap

        class Tiny(torch.nn.Module):
            def __init__(self):
                super().__init__()
                torch.manual_seed(0)
                self.c1 = torch.nn.Conv2d(8, 8, 3, padding=1)
                self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1)
                self.fc = torch.nn.Linear(8, 1)
                self.cam_layer = self.c2
            def forward(self, x):
                return self.fc(self.c2(torch.relu(self.c1(x))).mean(dim=(2, 3)))

        model = Tiny()
        grid_heatmap(model, {str(small)!r}, window=32, overlap=8, progress=False)  # imports, first allocations

        def status(key):  # kB -> bytes
            line = next(x for x in open("/proc/self/status") if x.startswith(key + ":"))
            return int(line.split()[1]) * 1024

        open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS
        before = status("VmRSS")
        t = time.perf_counter()
        heat = grid_heatmap(model, {str(store)!r}, window=128, overlap=8, progress=False)
        seconds = time.perf_counter() - t
        peak = status("VmHWM")
        print(json.dumps({{"delta": peak - before, "seconds": seconds, "shape": heat.shape,
                           "max": float(heat.max()), "nonzero": float((heat > 0).mean())}}))
    """)
    # peak RSS of this grid_heatmap call alone: VmHWM reset just before it (ru_maxrss would carry over
    # the pytest parent's RSS through fork). One malloc arena: zarr decodes chunks in helper threads,
    # and freed memory kept in their own arenas is allocator slack, not the heatmap's working set
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["shape"] == [BIG, BIG] and got["max"] == pytest.approx(1.0) and got["nonzero"] > 0.1
    # the whole grid at once in float32: input and three activation maps of 8 channels, kept for
    # the backward pass, and as many gradients: 2 x 4 x 8 x 782^2 x 4 bytes = 156 MB
    whole_grid_bytes = 2 * 4 * 8 * BIG * BIG * 4
    assert got["delta"] < 40 * 2**20, got  # about 16 MB: the output (2.4 MB), the mask, windows; whole: 119 MB
    assert got["delta"] < whole_grid_bytes / 4
