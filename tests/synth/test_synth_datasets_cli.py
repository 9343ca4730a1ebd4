"""Training datasets, CLI folders with manifests, and the realism detector."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from typer.testing import CliRunner

from histolatent.datasets import create_dataset
from histolatent.synth import render_tile
from histolatent.synth.figures import detect_nuclei, he_concentrations


def test_synth_digits_dataset_items_are_pure():
    a = create_dataset("synth-digits", split="test", seed=1, mode="N", n_eval=20)
    b = create_dataset("synth-digits", split="test", seed=1, mode="N", n_eval=20)
    it = a[7]
    assert it["image"].shape == (1, 50, 50) and it["image"].dtype == torch.float32
    assert it["label"].dtype == torch.int64 and it["shift"].shape == (2,)
    assert torch.equal(it["image"], b[7]["image"]) and float(it["angle"]) == float(b[7]["angle"])
    c = create_dataset("synth-digits", split="test", seed=2, mode="N", n_eval=20)
    assert not torch.equal(it["image"], c[7]["image"])


def test_synth_digits_dataset_mnist_source_matches_rotated_digits(sample_paths):
    import numpy as np
    import pytest

    from histolatent.errors import InputError
    from histolatent.synth.digits import rotated_digits

    d = create_dataset("synth-digits", split="test", seed=4, mode="U", n_eval=6, digit_source="mnist-5k")
    x, t = rotated_digits(6, "U", "test", seed=4, source="mnist-5k")
    for i in range(6):
        assert np.array_equal(d[i]["image"][0].numpy(), x[i]) and int(d[i]["label"]) == t["label"].iloc[i]
    with pytest.raises(InputError, match="data.digit_source"):
        create_dataset("synth-digits", split="test", n_eval=2, digit_source="mnist")


def test_synth_cells_dataset_items():
    d = create_dataset("synth-cells", split="train", seed=0, n=5, size=40, mpp=0.5, types=["lymphocyte", "fibroblast"])
    it = d[4]
    assert it["image"].shape == (3, 40, 40) and 0 <= float(it["image"].min()) and float(it["image"].max()) <= 1
    assert int(it["label"]) in (0, 1) and it["shift"].dtype == torch.float32
    again = create_dataset("synth-cells", split="train", seed=0, n=5, size=40, mpp=0.5,
                           types=["lymphocyte", "fibroblast"])[4]
    assert torch.equal(it["image"], again["image"])


def test_cli_cells_and_digits_write_manifests(tmp_path):
    from histolatent.cli.synth import app

    runner = CliRunner()
    r = runner.invoke(app, ["cells", "--out", str(tmp_path / "c"), "--n", "5", "--preset", "infogan-40", "--rotate",
                            "--masks"])
    assert r.exit_code == 0, r.output
    table = pd.read_parquet(tmp_path / "c" / "manifest.parquet")
    doc = json.loads((tmp_path / "c" / "manifest.json").read_text())
    images = np.load(tmp_path / "c" / "images.npy")
    assert images.shape == (5, 40, 40, 3) and len(table) == 5 and doc["n_items"] == 5
    assert np.load(tmp_path / "c" / "masks.npy").shape == (5, 40, 40)
    assert {"type", "orientation", "dx", "dy", "site"} <= set(table.columns)
    r = runner.invoke(app, ["digits", "--out", str(tmp_path / "d"), "--n", "7", "--mode", "N"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_parquet(tmp_path / "d" / "manifest.parquet")) == 7
    r = runner.invoke(app, ["digits", "--out", str(tmp_path / "d"), "--n", "7"])
    assert r.exit_code != 0  # refuses to overwrite
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_realism_detector_is_calibrated_on_ground_truth():
    t = render_tile(384, 0.5, seed=21, tissue="tumour")
    found = len(detect_nuclei(t.rgb, 0.5))
    assert 0.7 * len(t.nuclei) < found < 1.3 * len(t.nuclei)
    c = he_concentrations(t.rgb)
    assert c.shape[1] == 2 and np.median(c[:, 0]) > 0.1 and np.median(c[:, 1]) > 0.05
