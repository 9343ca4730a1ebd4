"""cluster_cells / classify_images / `histolatent cluster`: InfoGAN classes of a cell table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import histolatent.embed.cluster as cluster_mod
from histolatent.embed import classify_images, cluster_cells
from histolatent.errors import InputError
from histolatent.io.tables import read_cell_table, with_physical_coordinates, write_cell_table
from histolatent.models import create_model

TINY = {"arch": "dcgan", "image_size": 16, "g_channels": 4, "d_channels": 4, "q_hidden": 8, "z_dim": 4}


@pytest.fixture
def setup(tmp_path):
    """A trained-looking InfoGAN run (data.mpp 1.0), a PNG 'slide' and its cell table naming it as source."""
    from PIL import Image

    from histolatent.config import dump_yaml
    from histolatent.train.run import save_weights

    torch.manual_seed(0)
    gan = create_model("infogan", **TINY)
    run = tmp_path / "run"
    save_weights(gan, run, step=0)
    (run / "config.yaml").write_text(dump_yaml({"model": {"name": "infogan", **TINY},
                                                "data": {"name": "synth-nuclei-crops", "size_px": 16, "mpp": 1.0}}))
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "roi.png")
    cells = with_physical_coordinates(pd.DataFrame({"x": [10.0, 25.0, 48.0, 30.0, 5.0],
                                                    "y": [12.0, 20.0, 39.0, 8.0, 30.0],
                                                    "area_um2": [30.0, 41.0, 25.0, 50.0, 33.0]}),
                                      slide_id="roi", mpp=1.0)
    write_cell_table(cells, tmp_path / "cells.parquet", metadata={"source": str(tmp_path / "roi.png")})
    return gan, run, rgb, tmp_path


def test_cluster_command_writes_a_new_table_and_geojson_and_leaves_the_input_alone(setup, cli):
    gan, run, rgb, tmp = setup
    before = (tmp / "cells.parquet").read_bytes()
    cli("cluster", str(run), "--cells", str(tmp / "cells.parquet"), "--names", "a,b,c", "--chunk-rows", "2")
    assert (tmp / "cells.parquet").read_bytes() == before
    out = read_cell_table(tmp / "cells-clusters.parquet")
    cells = read_cell_table(tmp / "cells.parquet")
    pd.testing.assert_frame_equal(out[cells.columns], cells)  # every input column kept (morphometrics too)
    assert list(out.columns[:len(cells.columns)]) == list(cells.columns) and "area_um2" in cells.columns
    q = out[[f"q_c_{j:02d}" for j in range(3)]].to_numpy()
    np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out["cluster_prob"], q.max(1), rtol=1e-6)
    assert (out["cluster"].to_numpy() == q.argmax(1)).all()
    assert out["classification"].tolist() == [["a", "b", "c"][c] for c in out["cluster"]]
    # known answer: q of the 16-px patch at 1 µm/px around each cell, mirrored at the border
    from histolatent.nuclei.patches import PatchSpec, extract_patches

    patches, _ = extract_patches(rgb, out[["x", "y"]].to_numpy(), PatchSpec(16, 1.0), edge="reflect", mpp=1.0)
    np.testing.assert_allclose(q, classify_images(gan, patches)[1], atol=1e-6)
    meta = out.attrs["histolatent"]
    assert meta["cluster_names"] == ["a", "b", "c"] and meta["patch_mpp"] == 1.0 and meta["source"].endswith("roi.png")
    fc = json.loads((tmp / "cells-clusters.geojson").read_text())
    assert len(fc["features"]) >= 1
    assert {f["properties"]["classification"]["name"] for f in fc["features"]} == set(out["classification"])


def test_table_and_geojson_are_written_both_or_neither(setup, monkeypatch):
    gan, run, rgb, tmp = setup
    table, gj = tmp / "old.parquet", tmp / "old.geojson"
    table.write_bytes(b"old table")
    gj.write_text("old geojson")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("histolatent.io.geojson_export.geojson_from_cells", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        cluster_cells(run, tmp / "cells.parquet", table, names=["a", "b", "c"])
    assert table.read_bytes() == b"old table" and gj.read_text() == "old geojson"
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".old")) == [".old.parquet.parts"]


def test_bad_inputs_fail_before_any_patch_is_read(setup, monkeypatch):
    gan, run, rgb, tmp = setup
    calls = []
    monkeypatch.setattr("histolatent.embed.cells.extract_patches", lambda *a, **k: calls.append(1))
    with pytest.raises(InputError, match="expected 3 names"):
        cluster_cells(run, tmp / "cells.parquet", names=["a", "b"])
    ae = create_model("autoencoder", in_channels=3, image_size=16, channels=[4], latent_dim=2)
    with pytest.raises(InputError, match="InfoGAN"):
        cluster_cells(ae, tmp / "cells.parquet", patch_mpp=1.0)
    with pytest.raises(InputError, match="not a cell table"):
        cluster_cells(gan, pd.DataFrame({"x": [1.0], "y": [2.0]}), tmp / "o.parquet", slides=rgb, slide_mpp=1.0,
                      patch_mpp=1.0)
    with pytest.raises(InputError, match="patch scale"):
        cluster_cells(gan, tmp / "cells.parquet")  # a model without a run: say the scale
    assert calls == [] and not (tmp / "cells-clusters.parquet").exists()
    assert cluster_mod.cluster_columns(np.array([[0.1, 0.9]]), ["x", "y"])["cluster_prob"].tolist() == [0.9]
