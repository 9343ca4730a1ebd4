"""The optimizer handle: clipping bounds the update; non-finite losses never touch weights."""

from __future__ import annotations

import torch
from lightning.fabric import Fabric

from histolatent.train.optim import EngineOptimizers


def _setup(clip):
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    fabric = Fabric(accelerator="cpu", devices=1)
    opt = fabric.setup_optimizers(torch.optim.SGD(model.parameters(), lr=1.0))
    return model, EngineOptimizers(fabric, {"main": opt}, grad_clip=clip)


def _flat(model):
    return torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])


def test_gradient_clipping_bounds_the_sgd_step():
    x = torch.randn(32, 8) * 10
    for clip, bounded in ((0.01, True), (None, False)):
        model, opts = _setup(clip)
        before = _flat(model)
        opts.update(model(x).pow(2).mean(), "main")
        step = (_flat(model) - before).norm().item()
        assert (step <= 0.01 + 1e-6) == bounded, (clip, step)


def test_non_finite_loss_skips_the_update_and_is_recorded():
    model, opts = _setup(None)
    before = _flat(model)
    opts.update(model(torch.randn(4, 8)).sum() * float("inf"), "main")
    assert torch.equal(before, _flat(model))
    assert opts.nonfinite and opts.nonfinite[0][0] == "main"


def test_schedule_options_that_the_engine_would_ignore_are_refused():
    """plateau and early stopping act at validations, and plateau has no warmup: a config that
    asks for them without validations (or for a plateau warmup) would be silently ignored."""
    import pytest

    from histolatent.config import ConfigError, validate
    from histolatent.train.config import TrainConfig

    def check(**train):
        return validate(TrainConfig, train, source="<t>", prefix="train")

    with pytest.raises(ConfigError, match="plateau.*warmup_steps"):
        check(val_every=5, scheduler={"name": "plateau", "warmup_steps": 10})
    with pytest.raises(ConfigError, match="plateau.*train.val_every"):
        check(scheduler={"name": "plateau"})
    with pytest.raises(ConfigError, match="early_stopping.*train.val_every"):
        check(early_stopping={"patience": 3})
    assert check(val_every=5, scheduler={"name": "plateau"}, early_stopping={"patience": 3}).val_every == 5
    assert check(scheduler={"name": "cosine", "warmup_steps": 10}).scheduler.warmup_steps == 10
