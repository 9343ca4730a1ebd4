"""A run that crashes and is resumed ends exactly where an uninterrupted run ends, with every
shipped LR schedule; each DDP rank draws its own reproducible randomness.

The interruption is a model that raises at a chosen step, after a checkpoint and after a few
more logged steps (work that is lost, as after a kill); the resume then continues from the
checkpoint. Weights, the optimizer and scheduler state of the last checkpoint, and the LR and
loss of every logged step must equal those of a straight run, bit for bit.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from lightning.fabric import Fabric
from safetensors.torch import load_file

from histolatent.models import register_model
from histolatent.models.autoencoder import Autoencoder, AutoencoderConfig
from histolatent.train import fit, read_metrics
from histolatent.train.checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint
from histolatent.train.engine import seed_step

STEPS, CKPT, CRASH = 12, 6, 8  # checkpoint after step 6; steps 7 and 8 are done, logged and lost


class _Crash(RuntimeError):
    pass


class CrashConfig(AutoencoderConfig):
    crash_at: int | None = None  # 0-based step index at which training_step raises


@register_model("test-crash-autoencoder")
class CrashAutoencoder(Autoencoder):
    """The reference autoencoder, dying at step ``crash_at`` (as a killed process would)."""

    Config = CrashConfig

    def training_step(self, batch, optimizers, step):
        if step == self.config.crash_at:
            raise _Crash(f"crash at step {step}")
        return super().training_step(batch, optimizers, step)


MODEL = {"name": "test-crash-autoencoder", "in_channels": 3, "image_size": 16, "channels": [4, 8], "latent_dim": 2,
         "batch_norm": False}

#: every shipped schedule (train.scheduler.name), with and without warmup; the LR must move
SCHEDULES = {
    "none": {"name": "none"},
    "none-warmup": {"name": "none", "warmup_steps": 10},
    "cosine": {"name": "cosine"},
    "cosine-warmup": {"name": "cosine", "warmup_steps": 10},
    "step": {"name": "step", "step_size": 3, "gamma": 0.5},
    "step-warmup": {"name": "step", "step_size": 3, "gamma": 0.5, "warmup_steps": 10},
    # an LR of 1e-6 leaves the validation loss flat: the LR halves after every two validations,
    # so the count of bad validations at the checkpoint matters after the resume (early stopping,
    # which never triggers here, counts them too)
    "plateau": {"name": "plateau", "patience": 1, "factor": 0.5},
}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)


def _config(schedule: dict, crash_at: int | None) -> dict:
    plateau = schedule["name"] == "plateau"
    return {"model": {**MODEL, "crash_at": crash_at, **({"lr": 1e-6} if plateau else {})},
            "train": {"steps": STEPS, "batch_size": 8, "seed": 5, "log_every": 1, "checkpoint_every": CKPT,
                      "keep_checkpoints": 5, "val_every": 1 if plateau else 0, "progress": False,
                      "scheduler": schedule,
                      "early_stopping": {"patience": 50, "min_delta": 1.0} if plateau else None}}


def _same(a, b, where: str = "") -> None:
    """Recursive equality of state dicts: tensors bitwise, everything else by ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, sorted(a), sorted(b))
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def _rows(run) -> list[tuple]:
    return [(r["step"], r["split"], r["lr"], r["loss"]) for r in read_metrics(run)]


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
def test_crash_and_resume_equals_a_straight_run_with_every_schedule(kind, images, tmp_path):
    schedule = SCHEDULES[kind]
    val = {"val_data": images[:16]} if schedule["name"] == "plateau" else {}
    straight = fit(_config(schedule, None), data=images, out=tmp_path / "straight", **val)

    crashed = tmp_path / "crashed"
    with pytest.raises(_Crash):
        fit(_config(schedule, CRASH), data=images, out=crashed, **val)
    assert latest_checkpoint(crashed) == checkpoint_path(crashed, CKPT)
    assert not (crashed / "weights.safetensors").exists()
    assert max(int(r["step"]) for r in read_metrics(crashed)) == CRASH  # lost steps were logged
    fit(resume=crashed, data=images, overrides=["model.crash_at=null"], **val)

    a, b = load_file(str(straight / "weights.safetensors")), load_file(str(crashed / "weights.safetensors"))
    _same(a, b, "weights")
    end_a, end_b = load_checkpoint(checkpoint_path(straight, STEPS)), load_checkpoint(checkpoint_path(crashed, STEPS))
    for key in ("optimizers", "schedulers", "best", "bad"):
        _same(end_a[key], end_b[key], key)
    rows = _rows(straight)
    assert _rows(crashed) == rows
    assert [int(r[0]) for r in rows if r[1] == "train"] == list(range(1, STEPS + 1))
    lrs = [float(r[2]) for r in rows if r[1] == "train"]
    if kind != "none":  # the schedule moves the LR on both sides of the checkpoint
        assert len(set(lrs[:CKPT])) > 1 and len(set(lrs[CKPT:])) > 1, lrs


# -- per-rank seeds ---------------------------------------------------------------------------------
def _draws(seed: int, rank: int, step: int) -> tuple:
    seed_step(seed, rank, step)
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_step_seeds_differ_between_ranks_and_steps_and_repeat_exactly():
    """torch, numpy and random are all seeded from (seed, rank, step)."""
    seen = {}
    for rank in range(4):
        for step in (0, 1, 500):
            d = _draws(7, rank, step)
            assert d == _draws(7, rank, step)  # reproducible
            for lib in range(3):
                assert d[lib] not in [v[lib] for v in seen.values()], (rank, step, lib)
            seen[(rank, step)] = d
    assert _draws(7, 1, 0) != _draws(8, 1, 0)


class RecordConfig(AutoencoderConfig):
    pass


@register_model("test-draw-recorder")
class DrawRecorder(Autoencoder):
    """Records the first random number of each training step (what dropout or sampling would use)."""

    Config = RecordConfig
    draws: list[tuple[int, float]] = []

    def training_step(self, batch, optimizers, step):
        DrawRecorder.draws.append((step, float(torch.rand(()))))
        return super().training_step(batch, optimizers, step)


def _rank_run(monkeypatch, images, tmp_path, rank: int) -> list[tuple[int, float]]:
    """Train as DDP rank ``rank`` would (without launching processes) and return its draws."""
    monkeypatch.setattr(Fabric, "global_rank", property(lambda self: rank))
    DrawRecorder.draws = []
    cfg = {"model": {**MODEL, "name": "test-draw-recorder"}, "train": {"steps": 3, "batch_size": 8, "seed": 2,
                                                                       "progress": False}}
    fit(cfg, data=images, out=tmp_path / f"rank{rank}")
    return list(DrawRecorder.draws)


def test_the_engine_seeds_each_rank_with_its_own_rank(monkeypatch, images, tmp_path):
    r0 = _rank_run(monkeypatch, images, tmp_path, 0)
    r1 = _rank_run(monkeypatch, images, tmp_path, 1)
    assert [s for s, _ in r0] == [s for s, _ in r1] == [0, 1, 2]
    assert all(a != b for (_, a), (_, b) in zip(r0, r1, strict=True)), (r0, r1)
    for rank, draws in ((0, r0), (1, r1)):
        for step, value in draws:
            seed_step(2, rank, step)
            assert float(torch.rand(())) == value
    assert _rank_run(monkeypatch, images, tmp_path, 1) == r1
