"""spatial-VAE and the MLP VAE / beta-VAE baselines of TARGET-VAE's Table 2."""

from __future__ import annotations

import math

import torch

from histolatent.models import PlainOptimizers, create_model

SMALL = dict(image_size=12, hidden=32, fourier_features=16, gen_hidden=16, z_dim=2)

def test_spatial_vae_api_terms_and_pose_convention():
    torch.manual_seed(0)
    m = create_model("spatial-vae", **SMALL, pool=2, in_channels=3, likelihood="gaussian").eval()
    x = torch.rand(3, 3, 12, 12)
    e = m.encode(x)
    assert e["z"].shape == (3, 2) and e["theta"].shape == (3,) and e["t"].shape == (3, 2)
    assert e["theta"].abs().max() <= math.pi
    terms = m.loss_terms(x)
    assert torch.isclose(terms["kl"], terms["kl_z"] + terms["kl_theta"] + terms["kl_t"], atol=1e-5)
    img = m.decode(e["z"])
    assert img.shape == (3, 3, 12, 12)
    torch.testing.assert_close(m.decode(e["z"], math.pi / 2), torch.rot90(img, 1, dims=(-2, -1)), atol=1e-4, rtol=0)
    fixed = create_model("spatial-vae", **SMALL, infer_rotation=False, infer_translation=False).eval()
    e = fixed.encode(torch.rand(2, 1, 12, 12))
    assert float(e["theta"].abs().max()) == 0.0 and float(e["t"].abs().max()) == 0.0


def test_baselines_train_and_beta_defaults():
    assert create_model("mlp-beta-vae").config.beta == 4.0
    assert create_model("mlp-vae").config.latent_dim == 4  # TARGET-VAE's Table 2
    torch.manual_seed(0)
    x = torch.zeros(16, 1, 12, 12)
    x[:8, :, 3:9, 5:7] = 1.0
    x[8:, :, 5:7, 3:9] = 1.0
    for name in ("mlp-vae", "spatial-vae"):
        m = create_model(name, image_size=12, hidden=32, lr=3e-3, **({"gen_hidden": 16, "fourier_features": 16}
                                                                       if name == "spatial-vae" else {}))
        opts = PlainOptimizers(m.configure_optimizers())
        first = m.training_step({"image": x}, opts, 0)["recon"].item()
        for step in range(1, 12):
            last = m.training_step({"image": x}, opts, step)["recon"].item()
        assert last < 0.9 * first, name
        assert m.encode(x)["z"].shape[0] == 16
    g = create_model("mlp-vae", image_size=12, hidden=8, likelihood="gaussian", in_channels=3, pool=2)
    assert g.decode(torch.randn(2, 4)).shape == (2, 3, 6, 6)
    assert torch.isfinite(g.loss_terms(torch.rand(2, 3, 12, 12))["loss"])
