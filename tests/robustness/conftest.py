"""Tiny good inputs (built once per session) that the robustness tests spoil one way at a time,
and the in-process CLI runner they share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@dataclass
class Good:
    """Paths of small valid inputs, shared read-only by every robustness test."""

    root: Path
    png: Path  # a 64 x 64 H&E-like ROI
    stain: Path  # a fitted Macenko normaliser
    reinhard: Path  # a fitted Reinhard normaliser
    run: Path  # a finished autoencoder run (8 px patches at 0.5 µm/px), not trained
    cells: Path  # a cell table of that ROI (3 cells)
    probe: Path  # a table with embedding columns, a label and train/val/test splits
    config: Path  # a run config for `train`


@pytest.fixture(scope="session")
def good(tmp_path_factory) -> Good:
    from histolatent.io.atomic import write_image_atomic
    from histolatent.io.tables import write_cell_table
    from histolatent.models import create_model, save_weights
    from histolatent.stain import create_normalizer

    root = tmp_path_factory.mktemp("good")
    rng = np.random.default_rng(0)
    rgb = np.full((64, 64, 3), 235, np.uint8)
    rgb[8:56, 8:56] = (150, 80, 160)  # haematoxylin-ish
    rgb[20:44, 20:44] = (220, 120, 170)  # eosin-ish
    rgb = np.clip(rgb.astype(int) + rng.integers(-12, 13, rgb.shape), 0, 255).astype(np.uint8)
    png = write_image_atomic(root / "roi.png", rgb)
    stain = create_normalizer("macenko").fit(rgb).save(root / "macenko.json")
    reinhard = create_normalizer("reinhard").fit(rgb).save(root / "reinhard.json")
    run = root / "run"
    save_weights(create_model("autoencoder", in_channels=3, image_size=8, channels=[4], latent_dim=2), run, step=0)
    (run / "config.yaml").write_text("model: {name: autoencoder}\ndata: {mpp: 0.5}\n")
    xy = pd.DataFrame({"slide_id": ["roi"] * 3, "x": [20.0, 32.0, 40.0], "y": [20.0, 30.0, 44.0], "mpp": [0.5] * 3})
    cells = write_cell_table(xy.assign(x_um=xy.x * 0.5, y_um=xy.y * 0.5), root / "cells.parquet",
                             metadata={"source": str(png)})
    n = 30
    table = pd.DataFrame({"z_00": rng.normal(size=n), "z_01": rng.normal(size=n), "label": np.arange(n) % 2,
                          "split": ["train", "val", "test"] * (n // 3)})
    probe = root / "probe.parquet"
    table.to_parquet(probe)
    config = root / "tiny.yaml"
    config.write_text(json.dumps({"model": {"name": "autoencoder", "in_channels": 3, "image_size": 8,
                                            "channels": [4], "latent_dim": 2},
                                  "data": {"name": "digits", "size": 8}, "train": {"steps": 2, "batch_size": 4}}))
    return Good(root, png, stain, reinhard, run, cells, probe, config)


@pytest.fixture
def cli(capsys):
    """Run ``histolatent ARGS`` in this process; returns ``(exit code, stdout, stderr)``."""
    from histolatent.cli.app import run

    def call(*args: str) -> tuple[int, str, str]:
        code = run([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err
    return call
