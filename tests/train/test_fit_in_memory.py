"""fit() on data held in memory, the time budget, and progress in the run's train.log."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from histolatent.config import ConfigError
from histolatent.errors import InputError
from histolatent.io.image import tensor_from_rgb8
from histolatent.train import fit, load_model, read_metrics
from histolatent.train.config import SchedulerConfig
from histolatent.train.optim import build_scheduler

MODEL = {"name": "autoencoder", "in_channels": 3, "image_size": 16, "channels": [4, 8], "latent_dim": 2,
         "batch_norm": False}


def config(**train) -> dict:
    return {"model": dict(MODEL), "train": {"steps": 12, "batch_size": 8, "seed": 1, "log_every": 4,
                                            "progress": False, **train}}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)


def weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "weights.safetensors"))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Items(Dataset):
    """The same items as an image array, through a user's own Dataset."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": tensor_from_rgb8(self.images[i])[0]}


def test_arrays_in_run_out_same_as_a_dataset_and_recorded(tmp_path, images):
    before = images.copy()
    run = fit(config(), data=images, out=tmp_path / "arrays")
    assert np.array_equal(images, before)
    via_ds = fit(config(), data=Items(images), out=tmp_path / "dataset")
    via_dict = fit(config(), data={"image": images, "label": np.arange(40)}, out=tmp_path / "dict")
    assert same(weights(run), weights(via_ds)) and same(weights(run), weights(via_dict))
    recorded = (run / "config.yaml").read_text()
    assert "name: in-memory" in recorded and "items: 40" in recorded and "sha256:" in recorded
    assert load_model(run).encode(torch.rand(2, 3, 16, 16))["z"].shape == (2, 2)
    # float (N, C, H, W) input is the model input as it is: the same numbers give the same run
    as_float = fit(config(), data=tensor_from_rgb8(images), out=tmp_path / "float")
    assert same(weights(run), weights(as_float))


def test_bad_in_memory_inputs_name_the_input(tmp_path, images):
    with pytest.raises(InputError, match=r"data\['label'\]: 39 items, but the other arrays have 40"):
        fit(config(), data={"image": images, "label": np.arange(39)}, out=tmp_path / "a")
    with pytest.raises(InputError, match=r"data\['image'\]: a float image array must be \(N, C, H, W\)"):
        fit(config(), data=np.zeros((4, 16, 16), np.float32), out=tmp_path / "b")
    with pytest.raises(InputError, match="also names the dataset 'digits'"):
        fit({**config(), "data": {"name": "digits"}}, data=images, out=tmp_path / "c")
    with pytest.raises(InputError, match="validation needs val_data="):
        fit(config(val_every=4), data=images, out=tmp_path / "d")
    with pytest.raises(InputError, match="fewer than one global batch"):
        fit(config(), data=images[:4], out=tmp_path / "e")
    run = fit(config(val_every=6), data=images, val_data=images[:16], out=tmp_path / "v")
    assert [r["step"] for r in read_metrics(run) if r["split"] == "val"] == ["6", "12"]


def test_resume_of_an_in_memory_run_needs_the_same_data(tmp_path, images):
    run = fit(config(steps=8), data=images, out=tmp_path / "r")
    with pytest.raises(ConfigError, match="trained on data held in memory"):
        fit(resume=run, overrides=["train.steps=12"])
    other = images.copy()
    other[0, 0, 0, 0] ^= 1
    with pytest.raises(InputError, match="not the data run .* was trained on \\(sha256"):
        fit(resume=run, data=other, overrides=["train.steps=12"])
    fit(resume=run, data=images, overrides=["train.steps=12"])
    straight = fit(config(), data=images, out=tmp_path / "s")
    assert same(weights(run), weights(straight))


def test_max_seconds_stops_after_the_step_that_crosses_it_and_the_run_resumes_exactly(tmp_path, images):
    run = fit(config(max_seconds=1e-6), data=images, out=tmp_path / "t")
    meta = json.loads((run / "model.json").read_text())
    assert meta["step"] == 1 and meta["stopped_by"] == "max_seconds" and meta["max_seconds"] == 1e-6
    assert [r["step"] for r in read_metrics(run)] == ["1"]  # the last step is logged
    load_model(run)
    with pytest.raises(InputError, match="already used .* train.max_seconds"):
        fit(resume=run, data=images)
    fit(resume=run, data=images, overrides=["train.max_seconds=null"])
    assert json.loads((run / "model.json").read_text())["stopped_by"] == "steps"
    straight = fit(config(), data=images, out=tmp_path / "s")
    assert same(weights(run), weights(straight))


def test_progress_lines_reach_train_log(tmp_path, images):
    run = fit(config(progress_every_s=0), data=images, out=tmp_path / "p")
    lines = (run / "train.log").read_text().splitlines()
    steps = [ln for ln in lines if "train autoencoder: " in ln and " steps (" in ln]
    assert len(steps) >= 12, lines[:5]
    assert "1/12 steps (8 %)" in steps[0] and "ETA" in steps[0] and "loss=" in steps[0]
    assert "12/12 steps (100 %)" in steps[-1]
    assert any("stopped at step 12 (steps)" in ln for ln in lines)


class Slow(Items):
    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        time.sleep(0.01)
        return super().__getitem__(i)


def test_data_wait_is_measured_and_recorded(tmp_path, images):
    run = fit(config(steps=4), data=Slow(images), out=tmp_path / "slow")
    timing = json.loads((run / "model.json").read_text())["timing"]
    assert timing["steps"] == 4 and timing["data_s"] >= 4 * 8 * 0.01
    assert timing["data_fraction"] > 0.3  # 80 ms of sleep per batch against a tiny model's step


def test_cosine_over_time_follows_the_clock_and_needs_a_budget():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    now = [0.0]
    sched = build_scheduler(opt, SchedulerConfig(name="cosine", horizon="time"), 1000, max_seconds=10.0,
                            clock=lambda: now[0])
    now[0] = 5.0  # half the time, 1 step of 1000: the schedule is half-way
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    now[0] = 20.0
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match="horizon=time needs a time budget"):
        build_scheduler(opt, SchedulerConfig(name="cosine", horizon="time"), 1000)
    with pytest.raises(ConfigError, match=r"train.scheduler.horizon=time needs train.max_seconds"):
        fit(config(scheduler={"name": "cosine", "horizon": "time"}), data=np.zeros((8, 16, 16, 3), np.uint8))
