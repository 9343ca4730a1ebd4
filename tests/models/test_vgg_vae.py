"""DRL's VAE baseline on the VGG backbone: it learns to reconstruct what it is shown, its shipped
CPU config trains through the engine, and its encoder is what fine-tuning starts from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from histolatent.models import PlainOptimizers, create_model, load_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = dict(image_size=16, widths=[8, 8], convs=[1, 1], latent_dim=8, recon_sigma=0.1)


def _patterns(n: int, seed: int) -> torch.Tensor:
    """``n`` different images: a coloured square on a coloured ground, at its own place."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, 3, 16, 16), np.float32)
    for i in range(n):
        x[i] = rng.uniform(0.1, 0.4, 3)[:, None, None]
        r, c = rng.integers(0, 9, 2)
        x[i, :, r:r + 7, c:c + 7] = rng.uniform(0.6, 0.9, 3)[:, None, None]
    return torch.from_numpy(x)


def test_training_on_a_fixed_batch_lowers_the_reconstruction_error():
    torch.manual_seed(0)
    m = create_model("vgg-vae", **TINY, lr=3e-3)
    x = _patterns(8, seed=1)
    opts = PlainOptimizers(m.configure_optimizers())

    def mse():
        m.eval()
        with torch.no_grad():
            err = float(((m(x) - x) ** 2).mean())
        m.train()
        return err

    before = mse()
    for step in range(150):
        m.training_step({"image": x}, opts, step)
    after = mse()
    mean_image = float(((x - x.mean(0, keepdim=True)) ** 2).mean())  # what a code that ignores x achieves
    assert after < 0.5 * before, (before, after)
    assert after < 0.7 * mean_image, (after, mean_image)  # it reconstructs each image, not the average
    enc = m.eval().encode(x)
    assert enc["z"].shape == (8, 8) and enc["conv1"].shape == (8, 8) and enc["conv2"].shape == (8, 8)
    assert torch.equal(enc["z"], enc["mu"])


def test_rejects_images_of_another_size():
    m = create_model("vgg-vae", **TINY)
    with pytest.raises(ValueError, match="expected"):
        m.loss_terms(torch.rand(2, 3, 32, 32))


def test_finetune_starts_from_the_vae_backbone(tmp_path):
    from histolatent.downstream.finetune import finetune
    from histolatent.io.pcam import write_pcam_split
    from histolatent.train import fit

    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("valid", 4), ("test", 4)):
        _ = write_pcam_split(tmp_path, split, rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8), np.arange(n) % 2)
    tiny = ["model.image_size=16", "model.widths=[4,8]", "model.convs=[1,1]", "model.latent_dim=4",
            "data.tile_px=16", "data.slides=1", "data.slide_px=256", "data.n=64", "data.n_eval=8",
            "data.prerender=false", "train.num_workers=0",
            "train.steps=3", "train.batch_size=4", "train.val_every=0", "train.checkpoint_every=0",
            "train.progress=false"]
    run = fit(CONFIGS / "vae-vgg-cpu.yaml", out=tmp_path / "vae", overrides=tiny)
    vae = load_model(run)
    assert vae.registry_name == "vgg-vae"
    r = finetune(run, labels=1.0, data=tmp_path, steps=1, batch_size=4, lr=1e-12, out=tmp_path / "ft")
    clf = load_model(r.run)
    want = {k: v for k, v in vae.backbone.state_dict().items() if v.ndim == 4}
    got = clf.backbone.state_dict()
    assert want and all(torch.allclose(got[k], v, atol=1e-6) for k, v in want.items())
    torch.manual_seed(5)  # a fresh encoder of the same shape differs: the equality above is the copy
    fresh = create_model("vgg-vae", **vae.config.to_dict()).backbone.state_dict()
    assert not all(torch.allclose(fresh[k], v, atol=1e-6) for k, v in want.items())
