"""Every benchmark trains through the engine: each one's training entry, for two steps."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import torch
from tests.conftest import REPO

from histolatent.datasets import create_dataset


def bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_se2n_vae_benchmark_trains_both_vaes_through_fit(monkeypatch):
    se2n = bench("se2n_vae")
    small = {"encoder_channels": [4, 4, 4], "decoder_channels": [4, 4, 4, 4]}  # the benchmark's loop, cheaper nets
    monkeypatch.setitem(se2n.MODELS, "vae", {**se2n.MODELS["vae"], **small})
    monkeypatch.setitem(se2n.MODELS, "se2n-vae", {**se2n.MODELS["se2n-vae"], **small, "n_rotations": 4})
    images = np.random.default_rng(0).integers(0, 256, (8, 68, 68, 3), dtype=np.uint8)
    for name in ("vae", "se2n-vae"):
        model, info = se2n.train_model(name, images, steps=2, batch=4, precision="fp32")
        assert info["steps"] == 2 and info["images_seen"] == 8 and [r["step"] for r in info["log"]] == [2]
        assert np.isfinite(info["log"][0]["loss"]) and not model.training


def test_target_vae_benchmark_trains_through_fit_with_a_time_cap():
    tv = bench("target_vae")
    x = (torch.rand(8, 1, 50, 50, generator=torch.Generator().manual_seed(0)) > 0.8).float()
    opts = {**tv.PRESETS["cpu"], **tv.TRAIN_OPTS, "n_rotations": 4, "z_dim": 2}
    _, info = tv.train("target-vae", opts, x, steps=2, batch=4, bf16=False)
    assert info["steps"] == 2 and info["stopped_by"] == "steps" and info["epochs"] == 1.0
    _, capped = tv.train("mlp-vae", {"pool": 2, "latent_dim": 4}, x, steps=50, seconds=1e-6, batch=4, bf16=False)
    assert capped["steps"] == 1 and capped["stopped_by"] == "max_seconds"


def test_infogan_benchmark_trains_a_seed_through_fit(tmp_path):
    ig = bench("infogan")
    data = {**ig.DATA, "n_train": 20, "n_val": 4, "n_test": 12}
    test = create_dataset("synth-nuclei-crops", split="test", **{k: v for k, v in data.items() if k != "name"})
    report, run, _ = ig._infogan_seed(0, 2, tmp_path, test, data=data, batch=10)
    assert json.loads((run / "model.json").read_text())["step"] == 2
    assert 0.0 <= report["accuracy"] <= 1.0 and ig._finite_run(run)


def test_nic_zoo_trains_a_shipped_config_through_fit_once_and_reuses_it(tmp_path):
    zoo = bench("nic_zoo")
    run, info = zoo.trained_encoder("nic-siamese-digits", steps=2, zoo=tmp_path)
    assert not info["reused"] and info["steps"] == 2 and (run / "weights.safetensors").is_file()
    assert "nic-digit-pairs" in (run / "config.yaml").read_text()
    again, info2 = zoo.trained_encoder("nic-siamese-digits", steps=2, zoo=tmp_path)
    assert again == run and info2["reused"]
    other, info3 = zoo.trained_encoder("nic-siamese-digits", steps=2, zoo=tmp_path, overrides={"model.code_size": 4})
    assert other != run and not info3["reused"]
    assert list(tmp_path.glob("*.partial")) == []
