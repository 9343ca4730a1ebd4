"""Paper 0's baseline VAE / beta-VAE, the Eq. 6 discriminator and the pure loss functions."""

from __future__ import annotations

import pytest
import torch

from histolatent.losses.feature_matching import discriminator_bce, feature_reconstruction_loss
from histolatent.losses.kl import kl_normal_standard
from histolatent.losses.likelihood import gaussian_nll
from histolatent.models import PlainOptimizers, create_model, list_models
from histolatent.models.discriminator import SE2NDiscriminator, valid_conv_sizes


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is fastest, and does not spin-wait on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY = dict(image_size=32, encoder_channels=[4, 4], decoder_channels=[4, 4, 4], latent_dim=6,
            disc_channels=[2, 2, 3])


def _images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_registered_names():
    assert {"vae", "beta-vae", "se2n-vae"} <= set(list_models())
    assert create_model("beta-vae", **TINY).config.beta == 4.0
    assert create_model("vae", **TINY).config.beta == 1.0


def test_paper_sizes():
    assert valid_conv_sizes(68, 3, 5) == ([64, 28, 10], [32, 14, 5], 5)
    assert valid_conv_sizes(32, 2, 5) == ([28, 10], [14, 5], 5)
    with pytest.raises(ValueError, match="image_size 64"):
        valid_conv_sizes(64, 3, 5)
    m = create_model("vae", gamma=0.0).eval()
    with torch.no_grad():
        x = torch.rand(1, 3, 68, 68)
        assert m.encode(x)["mu"].shape == (1, 64)
        assert m(x).shape == (1, 3, 68, 68)


def _blobs(n: int, seed: int = 0) -> torch.Tensor:
    """Coloured Gaussian blobs at random places: structured images a VAE can learn quickly."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    c = 8 + 16 * torch.rand(n, 2, generator=g)
    blob = torch.exp(-((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2) / 30.0)
    return blob[:, None] * torch.rand(n, 3, 1, 1, generator=g)


def test_vae_training_decreases_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    m = create_model("vae", **TINY, gamma=0.0, lr=3e-3)
    opts = PlainOptimizers(m.configure_optimizers())
    x = _blobs(8)
    first = m.training_step({"image": x}, opts, 0)["recon"]
    for step in range(1, 20):
        last = m.training_step({"image": x}, opts, step)["recon"]
    assert float(last) < 0.8 * float(first)


def test_vae_with_discriminator_alternates_updates():
    torch.manual_seed(1)
    m = create_model("vae", **TINY)
    opts = PlainOptimizers(m.configure_optimizers())
    assert isinstance(opts["disc"], torch.optim.SGD) and isinstance(opts["main"], torch.optim.AdamW)
    assert opts["disc"].defaults["momentum"] == 0.9
    d0 = [p.detach().clone() for p in m.discriminator.parameters()]
    out = m.training_step({"image": _images(2)}, opts, 0)
    assert {"loss", "recon", "kl", "feat_recon", "disc"} <= set(out)
    assert any(not torch.equal(a, b) for a, b in zip(d0, m.discriminator.parameters(), strict=True))
    m.eval()
    e = m.encode(_images(3))
    assert set(e) == {"z", "mu", "logvar"} and e["z"].shape == (3, 6)
    torch.testing.assert_close(e["z"], e["mu"])
    assert m.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 32, 32)
    assert set(m.validation_step({"image": _images(2)})) == {"loss", "recon", "kl"}


def test_discriminator_is_rotation_invariant_and_returns_block_features():
    torch.manual_seed(2)
    d = SE2NDiscriminator(3, 32, [2, 2, 3], n_rotations=8).eval()
    x = _images(2)
    with torch.no_grad():
        a, feats = d(x)
        b, _ = d(torch.rot90(x, 1, dims=(-2, -1)))
    assert a.shape == (2,) and len(feats) == 3 and feats[0].shape == (2, 2, 8, 28, 28)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_kl_normal_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(4, 5), torch.ones(4, 5))
    torch.testing.assert_close(kl_normal_standard(mu, logvar), torch.distributions.kl_divergence(q, p).sum(-1))


def test_gaussian_nll_feature_loss_and_bce():
    x = torch.zeros(2, 3, 4, 4)
    y = torch.ones(2, 3, 4, 4)
    torch.testing.assert_close(gaussian_nll(y, x), torch.full((2,), 24.0))
    torch.testing.assert_close(gaussian_nll(y, x, sigma=0.5), torch.full((2,), 96.0))
    fm = feature_reconstruction_loss([x, x[:, :1]], [y, y[:, :1]])
    torch.testing.assert_close(fm, torch.full((2,), 24.0 + 8.0))
    with pytest.raises(ValueError, match="shapes differ"):
        feature_reconstruction_loss([x], [y[:, :1]])
    perfect = discriminator_bce(torch.full((3,), 20.0), torch.full((3,), -20.0))
    assert float(perfect) < 1e-6
    assert float(discriminator_bce(torch.zeros(3), torch.zeros(3))) == pytest.approx(0.6931, abs=1e-4)
