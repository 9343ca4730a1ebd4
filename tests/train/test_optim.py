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
