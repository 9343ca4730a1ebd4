"""The authors' Keras BiGAN encoder layout read into nic-bigan, checked against a numpy forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histolatent.errors import InputError

h5py = pytest.importorskip("h5py")

from histolatent.models.keras_nic import load_keras_bigan_encoder  # noqa: E402


def _write(path, rng, channels=(4, 5), cin=3, side=16, code=6):
    """A Keras-2-style file: conv/BN pairs (kernels (kh, kw, in, out)), then dense on an HWC flatten."""
    layers, weights = [], {}
    c = cin
    s = side
    for i, ch in enumerate(channels):
        weights[f"conv2d_{i + 1}"] = {"kernel:0": rng.normal(0, 0.3, (3, 3, c, ch)), "bias:0": rng.normal(0, 0.1, ch)}
        weights[f"batch_normalization_{i + 1}"] = {
            "gamma:0": rng.uniform(0.5, 1.5, ch), "beta:0": rng.normal(0, 0.1, ch),
            "moving_mean:0": rng.normal(0, 0.2, ch), "moving_variance:0": rng.uniform(0.5, 2, ch)}
        layers += [f"conv2d_{i + 1}", f"leaky_re_lu_{i + 1}", f"batch_normalization_{i + 1}"]
        c, s = ch, (s - 3) // 2 + 1
    weights["dense_1"] = {"kernel:0": rng.normal(0, 0.1, (s * s * c, code)), "bias:0": rng.normal(0, 0.1, code)}
    layers += ["flatten_1", "dense_1"]
    with h5py.File(path, "w") as f:
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [n.encode() for n in ["input_1", *layers]]
        for name in ["input_1", *layers]:
            lg = g.create_group(name)
            for k, v in weights.get(name, {}).items():
                lg.create_dataset(f"{name}/{k}", data=np.asarray(v, np.float32))
    return weights


def _numpy_forward(weights, x_hwc, n_conv):
    """Keras semantics: valid 3x3 stride-2 conv, LeakyReLU 0.2, BN (eps 1e-3), HWC flatten, dense."""
    h = x_hwc
    for i in range(n_conv):
        k, b = weights[f"conv2d_{i + 1}"]["kernel:0"], weights[f"conv2d_{i + 1}"]["bias:0"]
        s = (h.shape[0] - 3) // 2 + 1
        out = np.zeros((s, s, k.shape[3]))
        for y in range(s):
            for x in range(s):
                out[y, x] = np.tensordot(h[2 * y:2 * y + 3, 2 * x:2 * x + 3], k, axes=3) + b
        out = np.where(out > 0, out, 0.2 * out)
        bn = weights[f"batch_normalization_{i + 1}"]
        h = (out - bn["moving_mean:0"]) / np.sqrt(bn["moving_variance:0"] + 1e-3) * bn["gamma:0"] + bn["beta:0"]
    d = weights["dense_1"]
    return h.reshape(-1) @ d["kernel:0"] + d["bias:0"]


def test_keras_encoder_matches_a_numpy_forward_pass(tmp_path):
    rng = np.random.default_rng(0)
    weights = _write(tmp_path / "enc.h5", rng)
    model = load_keras_bigan_encoder(tmp_path / "enc.h5", image_size=32, pool=2)
    assert model.config.code_size == 6 and model.config.channels == [4, 5]
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = model.encode(x)["z"].numpy()
    pooled = torch.nn.functional.avg_pool2d(x, 2).numpy() * 2 - 1  # the model's own input convention
    for i in range(2):
        want = _numpy_forward(weights, pooled[i].transpose(1, 2, 0).astype(np.float64), 2)
        np.testing.assert_allclose(z[i], want, rtol=1e-4, atol=1e-4)


def test_wrong_geometry_and_layout_are_input_errors(tmp_path):
    _write(tmp_path / "enc.h5", np.random.default_rng(0))
    with pytest.raises(InputError, match="dense layer takes"):
        load_keras_bigan_encoder(tmp_path / "enc.h5", image_size=64, pool=2)
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_group("model_weights").create_dataset("dense_1/dense_1/kernel:0", data=np.zeros((4, 2), np.float32))
    with pytest.raises(InputError, match="expected n x"):
        load_keras_bigan_encoder(tmp_path / "bad.h5")
    (tmp_path / "junk.h5").write_bytes(b"nope")
    with pytest.raises(InputError, match="not an HDF5"):
        load_keras_bigan_encoder(tmp_path / "junk.h5")
