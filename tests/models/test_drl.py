"""DRL: the loss against a direct computation of Eqs. 4, 6, 8, 10, 11 and the prior term, the
update rule, the paper's defaults, the encoder's parts, and a short run through the engine."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from histolatent.config import ConfigError
from histolatent.models import PlainOptimizers, create_model, load_model
from histolatent.nn.deform import elastic_deform, sigma_px
from histolatent.nn.fem import fem_dilations

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = dict(image_size=16, widths=[4, 6], convs=[1, 1], local_block=2, fem_channels=3, disc_channels=[5, 4, 4],
            prior_hidden=[6], deform_sigma=(0.1, 0.2), deform_alpha=1.0)


def _images(n=4, s=16, seed=0, coarse=4):
    """Smooth random images in [0, 1] (white noise would make deformations trivial to spot)."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, s // coarse, s // coarse, generator=g), size=(s, s), mode="bilinear",
                         align_corners=False)


def _sp(v: float) -> float:
    return math.log1p(math.exp(v))


def _direct_terms(m, x, seed):
    """Eqs. 4/6 (LSH), 8/10 (GCH), 11 and DIM's prior term, assembled by hand from the model's layers."""
    c = m.config
    n, s = x.shape[0], c.image_size
    g = torch.Generator().manual_seed(seed)
    sigma = sigma_px(n, s, c.deform_sigma, generator=g)
    x_hat, _ = elastic_deform(x, sigma=sigma, alpha=c.deform_alpha * s, generator=g)

    def local(img):
        h = img * 2 - 1
        for block in m.backbone.blocks[: c.local_block]:
            h = block(h)
        return h

    e, e_hat = local(x), local(x_hat)  # separate passes: the model is in eval mode

    def enhance(h):
        if c.fem:
            return torch.cat([conv(h) for conv in m.enhance.branches], dim=1)
        return F.normalize(h.mean(dim=(2, 3)), dim=1)[:, :, None, None].expand_as(h)

    f, f_hat = enhance(e), enhance(e_hat)
    t_pos = m.discriminator.net(torch.cat([e, f], 1))[:, 0]  # (N, M, M)
    t_neg = m.discriminator.net(torch.cat([e_hat, f], 1))[:, 0]  # the deformed image's X_enc, the original's F
    cells = [(i, a, b) for i in range(n) for a in range(t_pos.shape[1]) for b in range(t_pos.shape[2])]
    lsh = sum(_sp(-float(t_pos[k])) + _sp(float(t_neg[k])) for k in cells) / len(cells)
    fg = [F.normalize(v, dim=0) for v in f.mean(dim=(2, 3))]
    fh = [F.normalize(v, dim=0) for v in f_hat.mean(dim=(2, 3))]

    def kern(a, b):
        return math.exp(float(a @ b) / c.gch_temperature)

    if c.gch == "hard":
        gch = sum(-math.log(kern(fg[i], fh[i]) / sum(kern(fg[i], fh[j]) for j in range(n))) for i in range(n)) / n
    elif c.gch == "soft":
        soft = [sum(kern(fg[i], fh[j]) * fh[j] for j in range(n)) / sum(kern(fg[i], fh[j]) for j in range(n))
                for i in range(n)]
        gch = sum(-math.log(kern(fg[i], soft[i]) / sum(kern(fg[j], soft[i]) for j in range(n))) for i in range(n)) / n
    else:
        gch = 0.0
    code = f.mean(dim=(2, 3))
    prior = sum(_sp(-float(t)) for t in m.prior(torch.sigmoid(code))) / n
    loss = lsh + c.gch_weight * gch + c.prior_weight * prior
    return {"lsh": lsh, "gch": gch, "prior": prior, "loss": loss}


@pytest.mark.parametrize("variant", [dict(), dict(gch="soft"), dict(gch="none"), dict(fem=False),
                                     dict(gch="soft", gch_temperature=0.5, fem=False)])
def test_loss_is_the_sum_of_its_terms_computed_directly(variant):
    torch.manual_seed(0)
    m = create_model("drl", **{**TINY, **variant}).eval()
    x = _images()
    with torch.no_grad():
        fast = m.loss_terms(x, generator=torch.Generator().manual_seed(3))
        want = _direct_terms(m, x, 3)
    assert ("gch" in fast) == (m.config.gch != "none")
    for k, v in want.items():
        if k in fast:
            assert float(fast[k]) == pytest.approx(v, rel=1e-4, abs=1e-5), k
    assert fast["code"].shape == (4, m.enhance.out_channels if m.config.fem else 6)


def test_one_step_lowers_the_encoder_terms_and_the_prior_discriminator_loss():
    torch.manual_seed(0)
    m = create_model("drl", **TINY, lr=3e-3, prior_lr=3e-3)
    opts = PlainOptimizers(m.configure_optimizers())
    batch = {"image": _images(8)}

    def terms():
        torch.manual_seed(11)  # the same deformations each time (torch's global generator)
        with torch.no_grad():
            t = m.loss_terms(batch["image"])
            return {"lsh": float(t["lsh"]), "gch": float(t["gch"]), "disc": float(m.prior_step_loss(t["code"]))}

    before = terms()
    prior_before = [p.detach().clone() for p in m.prior.parameters()]
    torch.manual_seed(11)
    logged = m.training_step(batch, opts, 0)
    after = terms()
    assert after["lsh"] < before["lsh"] and after["gch"] < before["gch"]
    assert logged["lsh"] == pytest.approx(before["lsh"], rel=1e-5)  # the step logs the terms it descended
    assert after["disc"] < before["disc"]
    assert any(not torch.equal(a, b) for a, b in zip(prior_before, m.prior.parameters(), strict=True))
    assert set(logged) == {"loss", "lsh", "lsh_acc", "gch", "gch_acc", "prior", "prior_disc"}


def test_the_discriminator_learns_to_tell_an_image_from_its_deformed_copy():
    torch.manual_seed(0)
    m = create_model("drl", **{**TINY, "widths": [8, 8], "disc_channels": [16, 8, 8], "gch": "none",
                               "prior_weight": 0.0, "lr": 1e-2})
    opts = PlainOptimizers(m.configure_optimizers())
    batch = {"image": _images(8, seed=1, coarse=2)}
    first = m.training_step(batch, opts, 0)
    for step in range(1, 50):
        last = m.training_step(batch, opts, step)
    assert float(first["lsh_acc"]) < 0.7 and float(last["lsh_acc"]) > 0.9
    assert float(last["lsh"]) < 0.5 * float(first["lsh"])


def test_validation_draws_the_same_deformations_every_time():
    torch.manual_seed(0)
    m = create_model("drl", **TINY).eval()
    batch = {"image": _images(4)}
    a, b = m.validation_step(batch), m.validation_step(batch)
    assert all(torch.equal(a[k], b[k]) for k in a) and "code" not in a


def test_same_seed_same_weights_on_cpu():
    def run():
        torch.manual_seed(5)
        m = create_model("drl", **TINY)
        opts = PlainOptimizers(m.configure_optimizers())
        for step in range(2):
            m.training_step({"image": _images(4)}, opts, step)
        return m.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_paper_defaults_and_fem_rates():
    c = create_model("drl").config
    assert (c.widths, c.convs) == ([64, 128, 256, 512, 512], [2, 2, 4, 4, 4])  # VGG-19
    assert (c.lr, c.gch, c.gch_weight, c.gch_temperature, c.fem) == (1e-4, "hard", 0.5, 1.0, True)
    assert (c.deform_sigma, c.deform_alpha, c.disc_channels, c.prior_weight) == ((0.03, 0.05), 2.0, [512, 256, 256], 0.1)
    assert c.image_size == 96 and c.local_size == 6
    for local_block, size in ((2, 64), (3, 32), (4, 16)):  # GLaS 256 px crops: Table II's M = 64, 32, 16
        m = create_model("drl", image_size=256, local_block=local_block, widths=[2, 2, 2, 2, 2], convs=[1] * 5,
                         fem_channels=1, disc_channels=[2, 2, 2], prior_hidden=[2])
        assert m.config.local_size == size and m.enhance.dilations == fem_dilations(size)


@pytest.mark.parametrize("bad, match", [(dict(local_block=3), "local_block"), (dict(image_size=18), "divisible"),
                                        (dict(deform_sigma=(0.05, 0.03)), "deform_sigma"),
                                        (dict(disc_kernel=2), "odd")])
def test_bad_configs_are_refused(bad, match):
    with pytest.raises(ConfigError, match=match):
        create_model("drl", **{**TINY, **bad})


def test_encode_parts_and_feature_maps():
    torch.manual_seed(0)
    m = create_model("drl", **TINY).eval()
    x = _images(3)
    with torch.no_grad():
        parts, maps = m.encode(x), m.feature_maps(x)
    assert {k: tuple(v.shape) for k, v in parts.items()} == {"z": (3, 6), "conv1": (3, 4), "conv2": (3, 6),
                                                             "f_global": (3, 2 * 3)}
    assert {k: tuple(v.shape) for k, v in maps.items()} == {"conv1": (3, 4, 8, 8), "conv2": (3, 6, 4, 4)}
    torch.testing.assert_close(parts["z"], maps["conv2"].mean(dim=(2, 3)))
    torch.testing.assert_close(parts["f_global"].norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match=r"\(N, 3, 16, 16\)"):
        m.encode(torch.rand(2, 3, 8, 8))


def test_cpu_config_trains_through_the_engine_and_lowers_the_loss(tmp_path):
    from histolatent.train import fit

    tiny = ["model.image_size=16", "model.widths=[4,8]", "model.convs=[1,1]", "model.local_block=2",
            "model.fem_channels=4", "model.disc_channels=[8,8,8]", "model.prior_hidden=[8]", "model.lr=3e-3",
            "data.tile_px=16", "data.slides=2", "data.slide_px=256", "data.n=256", "data.n_eval=8",
            "train.steps=16", "train.batch_size=4", "train.val_every=0", "train.checkpoint_every=0",
            "train.progress=false"]
    run = fit(CONFIGS / "drl-cpu.yaml", out=tmp_path / "run", overrides=tiny)
    trained = load_model(run)
    torch.manual_seed(0)  # the engine's seed before it builds the model: the initial weights
    initial = create_model("drl", **trained.config.to_dict())
    x = _images(8, seed=4)

    def loss(m):
        m.train()  # batch statistics for both
        with torch.no_grad():
            return float(m.loss_terms(x, generator=torch.Generator().manual_seed(0))["loss"])

    assert trained.config.mpp == 0.972 and trained.config.image_size == 16
    assert loss(trained) < loss(initial) - 0.05
