"""A trained run -> ``histolatent embed`` -> ``histolatent probe`` on a tiny SE(2,N)-VAE."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from histolatent.embed import encode_images
from histolatent.errors import InputError
from histolatent.models import create_model


def test_train_embed_probe_cli(tmp_path, cli, tiny_se2n, discs):
    from histolatent.models import PlainOptimizers
    from histolatent.train.run import save_weights

    torch.manual_seed(0)
    model = create_model("se2n-vae", **tiny_se2n)
    p, y = discs(90, seed=1)
    opts = PlainOptimizers(model.configure_optimizers())
    model.training_step({"image": torch.from_numpy(p[:8]).permute(0, 3, 1, 2).float() / 255}, opts, 0)
    run = tmp_path / "run"
    save_weights(model, run, step=1)  # a finished run folder, as the engine leaves it
    np.save(tmp_path / "patches.npy", p)
    split = np.array(["train"] * 40 + ["val"] * 20 + ["test"] * 30)
    pd.DataFrame({"cell_id": np.arange(90), "label": y, "split": split}).to_parquet(tmp_path / "cells.parquet")
    cli("embed", str(run), "--cells", str(tmp_path / "cells.parquet"), "--patches", str(tmp_path / "patches.npy"),
        "--out", str(tmp_path / "emb.parquet"), "--chunk-rows", "32")
    emb = pd.read_parquet(tmp_path / "emb.parquet")
    assert len(emb) == 90 and "z_iso_00" in emb.columns and "q_ori_02_7" in emb.columns
    np.testing.assert_allclose(emb[["z_iso_00", "z_iso_01", "z_iso_02"]].to_numpy(),
                               encode_images(model, p)["z_iso"], atol=1e-5)
    # the probe command, called in-process (one subprocess per test is enough start-up time)
    from histolatent.cli.probe import command as probe

    opts = dict(split="split", roi=None, area=None, resamples=2, seed=0)
    probe(tmp_path / "emb.parquet", label="label", features=["z_iso", "q_ori"], out=tmp_path / "probe.json", **opts)
    res = json.loads((tmp_path / "probe.json").read_text())
    assert set(res) == {"z_iso", "q_ori"} and len(res["z_iso"]["values"]) == 2
    # the disc's radius is the class: z_iso separates it (measured mAUC 1.0; chance is 0.5), and
    # the command's numbers are probe_table's on the same table with the same options
    assert res["z_iso"]["mean"] > 0.95 and res["z_iso"]["mean"] == pytest.approx(np.mean(res["z_iso"]["values"]))
    from histolatent.downstream.probes import probe_table

    ref = probe_table(tmp_path / "emb.parquet", label="label", features=["z_iso", "q_ori"], n_resamples=2, seed=0)
    for part in ("z_iso", "q_ori"):
        assert res[part]["values"] == pytest.approx(list(ref[part].values)), part
    with pytest.raises(InputError, match="nope"):
        probe(tmp_path / "emb.parquet", label="nope", features=["z_iso"], out=None, **opts)


def test_embed_reads_patches_from_the_slide_given_by_path_at_the_runs_mpp(tmp_path, tiny_se2n):
    """Cell tables from `histolatent nuclei` name their slide by id: `--slide` supplies the file;
    the patch scale comes from the run's data.mpp, not from a default."""
    from histolatent.cli.embed import command as embed
    from histolatent.config import dump_yaml
    from histolatent.io.tiff_writer import write_pyramidal_tiff
    from histolatent.train.run import save_weights

    torch.manual_seed(0)
    model = create_model("se2n-vae", **{**tiny_se2n, "in_channels": 3})
    save_weights(model, tmp_path / "run", step=0)
    (tmp_path / "run" / "config.yaml").write_text(dump_yaml({"data": {"name": "synth-cells", "mpp": 0.5}}))
    rgb = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    write_pyramidal_tiff(tmp_path / "s.tiff", rgb, size=(128, 128), mpp=0.5, tile_px=64, compression="none")
    pd.DataFrame({"slide_id": "s", "x": [40.0, 80.0], "y": [50.0, 70.0]}).to_parquet(tmp_path / "c.parquet")
    opts = dict(patches=None, slide_mpp=None, parts=["z_iso"], edge="pad", chunk_rows=8, batch_size=8,
                precision="fp32")
    embed(tmp_path / "run", cells=tmp_path / "c.parquet", out=tmp_path / "e.parquet", slide=tmp_path / "s.tiff",
          mpp=None, **opts)
    out = pd.read_parquet(tmp_path / "e.parquet")
    assert list(out.columns) == ["slide_id", "x", "y", "z_iso_00", "z_iso_01", "z_iso_02"]
    # the embedding is that of the 32-px patch around (x, y) at the slide's own scale
    direct = encode_images(model, np.ascontiguousarray(rgb[None, 50 - 16:50 + 16, 40 - 16:40 + 16]), parts=["z_iso"])
    np.testing.assert_allclose(out[[f"z_iso_{i:02d}" for i in range(3)]].to_numpy()[0], direct["z_iso"][0], atol=1e-4)
    with pytest.raises(InputError, match="missing.tiff"):
        embed(tmp_path / "run", cells=tmp_path / "c.parquet", out=tmp_path / "f.parquet",
              slide=tmp_path / "missing.tiff", mpp=None, **opts)
