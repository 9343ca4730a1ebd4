"""Every registered model, at a tiny size: one training step through the engine's optimizer
handle, named encodings, and a bitwise save/load round trip.

A new model fails here until it gets a tiny config in ``TINY``.
"""

from __future__ import annotations

import pytest
import torch
from lightning.fabric import Fabric

from histolatent.models import list_models, load_model, model_class, save_weights
from histolatent.models.registry import create_model
from histolatent.train.optim import EngineOptimizers

_VAE = dict(image_size=32, encoder_channels=[4, 4], decoder_channels=[4, 4, 4], latent_dim=4, disc_channels=[2, 2, 3])
_MLP = dict(image_size=12, hidden=8, latent_dim=2)
TINY: dict[str, dict] = {
    "autoencoder": dict(image_size=8, channels=[4, 4], latent_dim=2),
    "vae": _VAE,
    "beta-vae": _VAE,
    "se2n-vae": _VAE,
    "infogan": dict(arch="dcgan", image_size=16, g_channels=4, d_channels=4, q_hidden=8, z_dim=4),
    "unet": dict(width=0.125, image_size=16),
    "colorizer": dict(width=4, global_dim=8, global_pool=2, image_size=32),
    "target-vae": dict(image_size=8, kernel_size=5, padding=0, channels=3, n_rotations=4, z_dim=2,
                       fourier_features=8, gen_hidden=5, gen_layers=2),
    "spatial-vae": dict(image_size=12, hidden=16, fourier_features=8, gen_hidden=8, z_dim=2),
    "mlp-vae": _MLP,
    "mlp-beta-vae": _MLP,
    "nic-vae": dict(image_size=16, channels=[4, 4], hidden=8, code_size=4, decoder_start=4, decoder_channels=[4, 4]),
    "nic-siamese": dict(image_size=16, channels=[4, 4], hidden=8, code_size=4, head_hidden=8),
    "nic-oracle": dict(image_size=16, channels=[4, 4], hidden=8, code_size=4, head_hidden=8, n_classes=3),
    "nic-bigan": dict(image_size=32, pool=2, channels=[4, 4], code_size=4, gen_start=4, gen_channels=[4, 4],
                      disc_hidden=8),
    "mean-rgb": dict(image_size=8),
    "drl": dict(image_size=16, widths=[4, 4], convs=[1, 1], local_block=2, fem_channels=2, disc_channels=[4, 4, 4],
                prior_hidden=[4]),
    "dim": dict(image_size=16, widths=[4, 4], convs=[1, 1], local_block=1, code_dim=2, mi_units=4, global_weight=0.5,
                global_hidden=4, prior_hidden=[4]),
    "slide-cnn": dict(in_channels=3, crop=12, filters=4, hidden=4),
    "vgg-classifier": dict(image_size=16, widths=[4, 4], convs=[1, 1], head="mlp", hidden=4),
    "vgg-segmenter": dict(image_size=16, widths=[4, 8], convs=[1, 1], decoder_scale=1.0),
    "vgg-vae": dict(image_size=16, widths=[4, 4], convs=[1, 1], latent_dim=3),
    "attention-mil": dict(in_channels=3, crop=6, instance_dim=4, attention_dim=3),
}
BATCH = 4


def _builtin_models() -> list[str]:
    """Registered models defined in the package (tests may register throw-away ones)."""
    return [n for n in list_models() if model_class(n).__module__.startswith("histolatent.models.")]


@pytest.fixture(scope="module")
def fabric():
    return Fabric(accelerator="cpu", devices=1, precision="32-true")


def test_every_registered_model_has_a_tiny_config():
    assert sorted(TINY) == _builtin_models()


def _encode(model, x):
    torch.manual_seed(123)  # in case an encoder draws noise: both calls draw the same
    with torch.no_grad():
        return model.encode(x)


@pytest.mark.parametrize("name", _builtin_models())
def test_one_step_named_encodings_and_a_bitwise_round_trip(name, fabric, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, **TINY[name]).to(fabric.device)
    # the optimizers exactly as the engine builds them (train/engine.py)
    raw = model.configure_optimizers()
    assert raw or not list(model.parameters()), f"{name}: a model with weights needs an optimizer"
    wrapped = fabric.setup_optimizers(*raw.values()) if raw else []  # mean-rgb learns nothing
    wrapped = wrapped if isinstance(wrapped, (list, tuple)) else [wrapped]
    handle = EngineOptimizers(fabric, dict(zip(raw, wrapped, strict=True)), grad_clip=1.0)
    batch = fabric.to_device(model.example_batch(BATCH))
    before = {id(p): p.detach().clone() for p in model.parameters()}

    model.train()
    with fabric.autocast():
        terms = model.training_step(batch, handle, 0)
    values = {k: float(torch.as_tensor(v).detach().float()) for k, v in terms.items()}
    assert values and all(torch.isfinite(torch.tensor(v)) for v in values.values()), values
    assert handle.nonfinite == []
    for opt_name, opt in raw.items():  # every optimizer of the update rule moved its weights
        params = [p for g in opt.param_groups for p in g["params"]]
        assert any(not torch.equal(p.detach(), before[id(p)]) for p in params), f"{name}: {opt_name} did not step"

    model.eval()
    x = batch["image"]
    parts = _encode(model, x)
    assert isinstance(parts, dict) and parts
    for part, value in parts.items():
        assert isinstance(part, str) and isinstance(value, torch.Tensor), part
        assert value.shape[0] == BATCH, (part, tuple(value.shape))
        assert torch.isfinite(value.float()).all(), part

    save_weights(model, tmp_path / "run", step=1)
    back = load_model(tmp_path / "run")
    assert type(back) is type(model) and back.config == model.config and not back.training
    want, got = model.state_dict(), back.state_dict()
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    again = _encode(back, x)
    assert list(again) == list(parts)
    for part in parts:
        assert torch.equal(again[part], parts[part]), part
