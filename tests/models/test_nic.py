"""NIC encoders: shapes, the [0, 1] input / pooling / [-1, 1] contract, loss wiring against terms
computed here, and one optimiser step lowering the loss on a fixed batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from histolatent.models import PlainOptimizers, create_model

_E = dict(image_size=16, channels=[4, 8], hidden=8, code_size=5)


def _x(n=6, c=3, s=16, seed=0):
    return torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name,extra,code", [
    ("nic-vae", dict(decoder_start=4, decoder_channels=[4, 4]), 5),
    ("nic-siamese", dict(head_hidden=8), 5),
    ("nic-oracle", dict(head_hidden=8, n_classes=3), 5),
    ("nic-bigan", dict(pool=2, image_size=32, hidden=0, padding="valid", gen_start=4, gen_channels=[4, 4],
                       disc_hidden=8), 5),
])
def test_encoders_take_unit_range_nchw_and_return_z_of_code_size(name, extra, code):
    torch.manual_seed(0)
    m = create_model(name, **{**_E, **extra}).eval()
    x = _x(s=m.config.image_size)
    z = m.encode(x)["z"]
    assert z.shape == (6, code) and z.dtype == torch.float32
    with pytest.raises(ValueError, match="expected"):
        m.encode(_x(s=m.config.image_size + 2))


def test_paper_defaults_give_the_papers_shapes():
    bigan = create_model("nic-bigan")
    assert bigan.encoder.feature_shape == (128, 3, 3)  # 128 -> pool 64 -> 31 -> 15 -> 7 -> 3
    assert bigan.encoder.head[-1].in_features == 3 * 3 * 128 and bigan.encoder.head[-1].out_features == 128
    vae = create_model("nic-vae")
    assert vae.encoder.feature_shape == (512, 4, 4) and vae.encoder.head[0].out_features == 512
    digits = create_model("nic-vae", image_size=9, in_channels=1, code_size=16, channels=[32, 64], hidden=64,
                          decoder_start=128, decoder_channels=[64, 32]).eval()
    assert digits.encode(torch.rand(2, 1, 9, 9))["z"].shape == (2, 16)
    assert digits.decode(torch.zeros(2, 16)).shape == (2, 1, 9, 9)


def test_bigan_on_128_px_equals_bigan_on_the_pooled_64_px_input():
    torch.manual_seed(0)
    kw = dict(channels=[4, 4], code_size=3, gen_start=4, gen_channels=[4, 4], disc_hidden=8)
    big = create_model("nic-bigan", image_size=32, pool=2, **kw).eval()
    small = create_model("nic-bigan", image_size=16, pool=1, **kw).eval()
    small.load_state_dict(big.state_dict())
    x = _x(s=32)
    pooled = F.avg_pool2d(x, 2)
    assert torch.allclose(big.encode(x)["z"], small.encode(pooled)["z"], atol=1e-6)
    # pixels reach the network in [-1, 1]
    assert torch.allclose(big.encode(x)["z"], big.encoder(pooled * 2 - 1).float(), atol=1e-6)
    assert not torch.allclose(big.encode(x)["z"], big.encoder(pooled).float(), atol=1e-3)


def test_vae_loss_is_squared_error_plus_gamma_kl():
    torch.manual_seed(0)
    m = create_model("nic-vae", **_E, decoder_start=4, decoder_channels=[4, 4], gamma=0.3).eval()
    x, n = _x(), torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    terms = m.loss_terms(x, noise=n)
    h = m.encoder(x * 2 - 1)
    mu, logvar = h[:, :5], h[:, 5:]
    x_hat = m.decoder(mu + n * torch.exp(0.5 * logvar))
    recon = ((x_hat - (x * 2 - 1)) ** 2).mean()
    kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)).mean()
    assert torch.allclose(terms["recon"], recon, atol=1e-6) and torch.allclose(terms["kl"], kl, atol=1e-5)
    assert torch.allclose(terms["loss"], recon + 0.3 * kl, atol=1e-6)


def test_siamese_loss_is_bce_of_same_vs_different_on_the_shared_branch():
    torch.manual_seed(0)
    m = create_model("nic-siamese", **_E, head_hidden=8).train()
    x1, x2, y = _x(seed=1), _x(seed=2), torch.tensor([1, 0, 1, 0, 0, 1])
    terms = m.batch_terms({"image": x1, "image2": x2, "label": y})
    e = m.encoder(torch.cat([x1, x2]) * 2 - 1)
    p = torch.sigmoid(m.head(torch.cat([e[:6], e[6:]], 1)).view(-1))
    bce = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    assert torch.allclose(terms["loss"], bce, atol=1e-5)


def test_bigan_losses_are_the_two_sides_of_eq_12():
    torch.manual_seed(0)
    m = create_model("nic-bigan", image_size=32, pool=2, channels=[4, 4], code_size=3, gen_start=4,
                     gen_channels=[4, 4], disc_hidden=8, dropout=0.0).eval()
    x, z = _x(s=32), torch.randn(6, 3)
    t = m.bigan_terms(x, z)
    xs = F.avg_pool2d(x, 2) * 2 - 1
    dr = torch.sigmoid(m.discriminator(xs, m.encoder(xs)))
    df = torch.sigmoid(m.discriminator(m.generator(z), z))
    assert torch.allclose(t["d_loss"], -(dr.log().mean() + (1 - df).log().mean()), atol=1e-5)
    assert torch.allclose(t["ge_loss"], -((1 - dr).log().mean() + df.log().mean()), atol=1e-5)


def test_oracle_loss_is_cross_entropy_and_its_code_is_the_encoder_output():
    torch.manual_seed(0)
    m = create_model("nic-oracle", **_E, head_hidden=8, n_classes=3).eval()
    x, y = _x(), torch.tensor([0, 1, 2, 0, 1, 2])
    out = m.encode(x)
    assert torch.equal(out["z"], m.encoder(x * 2 - 1))
    assert torch.allclose(m.batch_terms({"image": x, "label": y})["loss"], F.cross_entropy(out["logits"], y))
    with pytest.raises(ValueError, match="n_classes"):
        m.batch_terms({"image": x, "label": torch.full((6,), 3)})


def _lowered(m, loss_fn, name="main"):
    opt = PlainOptimizers(m.configure_optimizers())
    before = loss_fn()
    opt.update(before, name)
    with torch.no_grad():
        after = loss_fn()
    return float(before.detach()), float(after)


@pytest.mark.parametrize("name,extra,batch", [
    ("nic-vae", dict(decoder_start=4, decoder_channels=[4, 4]), None),
    ("nic-siamese", dict(head_hidden=8, lr=1e-3), {"image2": _x(seed=2), "label": torch.tensor([1, 0] * 3)}),
    ("nic-oracle", dict(head_hidden=8, n_classes=3, lr=1e-3), {"label": torch.tensor([0, 1, 2] * 2)}),
])
def test_one_step_lowers_the_loss_on_a_fixed_batch(name, extra, batch):
    torch.manual_seed(0)
    m = create_model(name, **_E, **extra).train()
    b = {"image": _x(), **(batch or {})}
    noise = torch.randn(6, 5, generator=torch.Generator().manual_seed(3))
    fn = (lambda: m.loss_terms(b["image"], noise=noise)["loss"]) if name == "nic-vae" else \
        (lambda: m.batch_terms(b)["loss"])
    before, after = _lowered(m, fn)
    assert after < before


def test_bigan_discriminator_step_lowers_its_loss():
    torch.manual_seed(0)
    m = create_model("nic-bigan", image_size=32, pool=2, channels=[4, 4], code_size=3, gen_start=4,
                     gen_channels=[4, 4], disc_hidden=8, dropout=0.0).train()
    x, z = _x(s=32), torch.randn(6, 3)
    before, after = _lowered(m, lambda: m.bigan_terms(x, z)["d_loss"], "discriminator")
    assert after < before


def test_mean_rgb_is_the_per_channel_mean():
    m = create_model("mean-rgb", image_size=8)
    x = _x(s=8)
    assert torch.allclose(m.encode(x)["z"], x.mean(dim=(2, 3)))
    assert m.encode(x)["z"].shape == (6, 3) and list(m.parameters()) == []
