"""Colourisation network (paper 4, Sec. 3.1): architecture, loss, pseudo-classes, normaliser."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histolatent.errors import InputError
from histolatent.models import create_model
from histolatent.models.base import PlainOptimizers
from histolatent.models.colorizer import grey_descriptors, grey_from_rgb
from histolatent.stain import StainNormalizer, create_normalizer
from histolatent.train.colorizer import ColorizationNormalizer

TINY = {"width": 4, "global_dim": 8, "global_pool": 2, "image_size": 32, "optimizer": "adam", "lr": 3e-3}


def test_paper_shapes():
    net = create_model("colorizer")  # paper defaults: width 64, 224 px in
    assert net.config.optimizer == "adadelta" and net.config.lr == 1.0 and net.config.rho == 0.9
    grey = torch.rand(1, 1, 224, 224)
    with torch.no_grad():
        mid, z, logits = net.eval()._features(grey)
        ab, _ = net(grey)
    assert mid.shape == (1, 256, 28, 28) and z.shape == (1, 256) and logits.shape == (1, 4)
    assert ab.shape == (1, 2, 224, 224)
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in [*net.low.modules(), *net.mid.modules()])
    assert n_convs == 8 and sum(isinstance(m, torch.nn.Conv2d) for m in net.glob_conv.modules()) == 4


def test_training_step_lowers_loss_and_output_keeps_lightness():
    torch.manual_seed(0)
    net = create_model("colorizer", **TINY)
    opt = PlainOptimizers(net.configure_optimizers())
    x = torch.rand(8, 3, 32, 32) * 0.3 + torch.tensor([0.8, 0.4, 0.6])[None, :, None, None]
    batch = {"image": x, "label": torch.arange(8) % 4}
    first = net.loss(batch)["loss"].item()
    for step in range(30):
        terms = net.training_step(batch, opt, step)
    assert terms["loss"].item() < first and {"mse", "ce"} <= set(terms)
    net.eval()
    grey = grey_from_rgb(x)
    rgb = net.colorize(grey[:, :, :30, :27])  # any size: padded to a multiple of 8 and cropped
    assert rgb.shape == (8, 3, 30, 27) and rgb.min() >= 0 and rgb.max() <= 1
    assert torch.allclose(grey_from_rgb(rgb), grey[:, :, :30, :27], atol=0.02)  # L* is the input's
    assert set(net.encode(x)) == {"z", "class_logits"}


def test_pseudo_classes_online_kmeans_separate_groups():
    net = create_model("colorizer", **{**TINY, "n_classes": 2})
    dark = torch.full((4, 1, 16, 16), 0.2) + torch.rand(4, 1, 16, 16) * 0.05
    light = torch.full((4, 1, 16, 16), 0.9) + torch.rand(4, 1, 16, 16) * 0.05
    labels = net.pseudo_labels(torch.cat([dark, light]))
    assert labels[:4].unique().numel() == 1 and labels[4:].unique().numel() == 1
    assert labels[0] != labels[4] and bool(net.centroids_ready)
    assert grey_descriptors(dark).shape == (4, 20)
    loss = net.loss({"image": torch.rand(2, 3, 16, 16)})  # no labels: pseudo-classes
    assert torch.isfinite(loss["loss"])


def test_normalizer_fit_transform_and_json_round_trip(tmp_path, render_he_small):
    src, tgt = render_he_small
    norm = create_normalizer("colorizer", steps=15, crop_px=32, batch_size=8, model=TINY, seed=1)
    assert isinstance(norm, ColorizationNormalizer)
    before = src.copy()
    out = norm.fit(tgt).transform(src)
    assert out.shape == src.shape and out.dtype == np.uint8 and np.array_equal(src, before)
    assert norm.history_[-1]["loss"] < norm.history_[0]["loss"]
    t = norm.transform(torch.from_numpy(src).permute(2, 0, 1)[None])
    assert np.abs(t[0].permute(1, 2, 0).numpy().astype(int) - out).max() <= 1
    for odd in (np.zeros((1, 1, 3), np.uint8), src[..., 0], np.dstack([src, src[..., :1]]),
                src.astype(np.uint16) * 257, np.full((9, 13, 3), 255, np.uint8)):
        res = norm.transform(odd)  # grey in is this method's natural input; 1 px is padded
        assert res.dtype == np.uint8 and res.shape[:2] == odd.shape[:2] and np.isfinite(res).all()
    back = StainNormalizer.from_dict(norm.to_dict())  # weights embedded (no run folder)
    assert np.array_equal(back.transform(src), out)
    back.lightness = "moments"  # stained pixels get the target's L* mean and spread
    assert back.transform(src).shape == src.shape and back.grey_moments_.shape == (2,)
    with pytest.raises(InputError, match="lightness"):
        ColorizationNormalizer(lightness="bright")
    saved = create_normalizer("colorizer", steps=5, crop_px=32, batch_size=8, model=TINY,
                              out=str(tmp_path / "run")).fit(tgt)
    assert (tmp_path / "run" / "weights.safetensors").is_file()
    again = ColorizationNormalizer(run=str(tmp_path / "run"))
    assert np.array_equal(again.transform(src), saved.transform(src))


def test_engine_trains_colorizer_on_target_style_tiles(tmp_path):
    from histolatent.train import RunConfig, fit

    cfg = RunConfig(model={"name": "colorizer", **TINY},
                    data={"name": "nuclei-synth", "size": 32, "tile_px": 64, "tiles": 2, "crops_per_tile": 2,
                          "stains": "reference"},
                    train={"steps": 3, "batch_size": 4, "progress": False, "log_every": 1})
    run = fit(cfg, out=tmp_path / "run")
    norm = ColorizationNormalizer(run=str(run))
    out = norm.transform(np.full((24, 24, 3), 200, np.uint8))
    assert out.shape == (24, 24, 3)


def _he(stains: np.ndarray, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    nuclei = (np.sin(xx / 3.0 + seed) * np.cos(yy / 4.0) > 0.6).astype(float)
    c = np.stack([0.2 + 0.8 * nuclei, 0.5 * (1 - nuclei) + 0.1], -1) + rng.normal(0, 0.03, (size, size, 2))
    rgb = 256 * 10.0 ** (-(np.clip(c, 0, None) @ stains)) - 1
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


@pytest.fixture
def render_he_small():
    s_tgt = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]])
    s_src = np.array([[0.55, 0.78, 0.30], [0.20, 0.90, 0.38]])
    return _he(s_src / np.linalg.norm(s_src, axis=1, keepdims=True), 40, 1), \
        _he(s_tgt / np.linalg.norm(s_tgt, axis=1, keepdims=True), 64, 2)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions on a shared 2-core machine run faster on one thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
