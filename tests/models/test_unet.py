"""The nuclei U-Net (paper 4, §3.2): architecture, loss decreases, stain jitter, data set, engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histolatent.datasets import create_dataset
from histolatent.errors import InputError
from histolatent.models import PlainOptimizers, create_model
from histolatent.nuclei.unet import predict_probabilities, segment_unet
from histolatent.train import RunConfig, fit, load_model


def test_paper_architecture_at_full_width():
    net = create_model("unet")  # width 1: 32 -> 512 channels, 144 px -> 9 x 9 at the bottom
    assert net.config.channels() == [32, 64, 128, 256, 512]
    assert len(net.down) == 4 and len(net.up) == 4
    convs = [m for m in net.down[0] if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3), (3, 3)]
    feats = net.encode(torch.rand(1, 3, 144, 144))["features"]
    assert feats.shape == (1, 512, 9, 9)
    # the CPU scaling keeps the architecture, only the widths change
    small = create_model("unet", width=0.25)
    assert small.config.channels() == [8, 16, 32, 64, 128]
    x = torch.rand(2, 3, 48, 48)
    assert small(x).shape == (2, 3, 48, 48)
    assert small.encode(x)["z"].shape == (2, 128)
    assert small.predict(torch.rand(1, 3, 37, 50)).shape == (1, 3, 37, 50)  # any size
    with pytest.raises(ValueError, match="divisible"):
        small(torch.rand(1, 3, 40, 40))


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    net = create_model("unet", width=0.125, lr=1e-2, augment=False)
    opt = PlainOptimizers(net.configure_optimizers())
    x = torch.rand(2, 3, 32, 32)
    y = (x[:, 0] > 0.5).long() + (x[:, 1] > 0.8).long()  # a learnable pixel rule
    first = net.training_step({"image": x, "target": y}, opt, 0)["loss"].item()
    for step in range(1, 10):
        last = net.training_step({"image": x, "target": y}, opt, step)["loss"].item()
    assert last < 0.8 * first


def test_stain_augmentation_is_drawn_from_the_step_rng():
    net = create_model("unet", width=0.125, stain_augment=0.3, augment=False)
    x = torch.rand(2, 3, 16, 16)
    y = torch.zeros(2, 16, 16, dtype=torch.long)
    before = x.clone()
    torch.manual_seed(5)
    a, _ = net._augment(x, y)
    torch.manual_seed(5)
    b, _ = net._augment(x, y)
    torch.manual_seed(6)
    c, _ = net._augment(x, y)
    assert torch.equal(x, before) and torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a, x) and float(a.min()) >= 0 and float(a.max()) <= 1


def test_synth_dataset_items(tmp_path):
    ds = create_dataset("nuclei-synth", split="val", tiles=4, tile_px=64, size=48, crops_per_tile=2)
    assert len(ds) == 2  # val holds tiles // 4 tiles
    item = ds[1]
    assert item["image"].shape == (3, 48, 48) and item["image"].dtype == torch.float32
    assert item["target"].shape == (48, 48) and item["target"].dtype == torch.int64
    assert set(item["target"].unique().tolist()) <= {0, 1, 2}
    again = create_dataset("nuclei-synth", split="val", tiles=4, tile_px=64, size=48, crops_per_tile=2)
    assert torch.equal(again[1]["image"], item["image"])  # a pure function of (seed, index)


def test_trains_through_the_engine_and_segments(tmp_path):
    cfg = RunConfig(model={"name": "unet", "width": 0.125, "image_size": 32},
                    data={"name": "nuclei-synth", "tiles": 2, "tile_px": 64, "size": 32, "crops_per_tile": 2},
                    train={"steps": 2, "batch_size": 2, "progress": False, "precision": "bf16-mixed"})
    run = fit(cfg, out=tmp_path / "run")
    net = load_model(run)
    rgb = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="load the run first"):  # nuclei never loads weights itself
        predict_probabilities(rgb, run, mpp=0.25)
    prob = predict_probabilities(rgb, net, mpp=0.25, tile_px=48, overlap_px=8)  # resampled to 0.5 and back
    assert prob.shape == (3, 70, 90)
    np.testing.assert_allclose(prob.sum(axis=0), 1.0, atol=1e-3)
    labels = segment_unet(rgb, net, mpp=0.5, tile_px=32, overlap_px=8)
    assert labels.shape == (70, 90) and labels.dtype == np.int32


def test_folder_dataset_reads_user_annotations(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for k in range(3):
        lab = np.zeros((64, 64), np.uint16)
        lab[10:30, 10:30] = 1
        lab[35:50, 20 + k:40 + k] = 2
        Image.fromarray(np.full((64, 64, 3), 180, np.uint8)).save(tmp_path / "images" / f"im{k}.png")
        Image.fromarray(lab).save(tmp_path / "labels" / f"im{k}.png")
    ds = create_dataset("nuclei-folder", split="train", root=str(tmp_path), mpp=0.25, target_mpp=0.5, size=24,
                        crops_per_image=2)
    assert len(ds) == 2 * 2  # 2 of 3 images in train, 2 crops each
    item = ds[0]
    assert item["image"].shape == (3, 24, 24) and item["target"].shape == (24, 24)
    assert ds.images[0].shape == (32, 32, 3)  # 0.25 -> 0.5 µm/px
    assert set(np.unique(ds.targets[0])) == {0, 1, 2}
