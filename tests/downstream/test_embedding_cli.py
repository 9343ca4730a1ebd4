"""A trained run -> ``histolatent embed`` -> ``histolatent probe`` on a tiny SE(2,N)-VAE."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from histolatent.downstream.embedding import embed_cells, encode_patches
from histolatent.errors import InputError
from histolatent.models import create_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is fastest, and does not spin-wait on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY = dict(in_channels=1, image_size=32, encoder_channels=[4, 4], decoder_channels=[4, 4, 4], latent_dim=3,
            gamma=0.0)


def _patches(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs whose radius is the class (3 classes), at random rotations: uint8 (n, 32, 32, 1)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    yy, xx = np.mgrid[:32, :32] - 15.5
    r = 4 + 3 * y + rng.normal(0, 0.3, n)
    img = (np.hypot(yy, xx)[None] < r[:, None, None]) * 200 + rng.integers(0, 40, (n, 32, 32))
    return img[..., None].astype(np.uint8), y


def test_encode_patches_batches_and_checks_inputs():
    torch.manual_seed(0)
    m = create_model("se2n-vae", **TINY)
    p, _ = _patches(5)
    a = encode_patches(m, p, batch_size=2)
    b = encode_patches(m, p, batch_size=5, parts=["z_iso"])
    assert a["q_ori"].shape == (5, 3, 8) and set(b) == {"z_iso"}
    np.testing.assert_allclose(a["z_iso"], b["z_iso"], atol=1e-5)
    # rotating the patch leaves z_iso unchanged (end to end through the uint8 path)
    c = encode_patches(m, np.ascontiguousarray(np.rot90(p, 1, axes=(1, 2))), parts=["z_iso"])
    np.testing.assert_allclose(c["z_iso"], a["z_iso"], rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="uint8"):
        encode_patches(m, p.astype(np.float32))
    with pytest.raises(InputError, match="no encode part"):
        encode_patches(m, p, parts=["mu"])
    t = embed_cells(m, pd.DataFrame({"cell": range(5)}), p, parts=["z_iso"])
    assert list(t.columns) == ["cell", "z_iso_00", "z_iso_01", "z_iso_02"]


def test_train_embed_probe_cli(tmp_path, cli):
    from histolatent.models import PlainOptimizers
    from histolatent.train.run import save_weights

    torch.manual_seed(0)
    model = create_model("se2n-vae", **TINY)
    p, y = _patches(90, seed=1)
    opts = PlainOptimizers(model.configure_optimizers())
    model.training_step({"image": torch.from_numpy(p[:8]).permute(0, 3, 1, 2).float() / 255}, opts, 0)
    run = tmp_path / "run"
    save_weights(model, run, step=1)  # a finished run folder, as the engine leaves it
    np.save(tmp_path / "patches.npy", p)
    split = np.array(["train"] * 40 + ["val"] * 20 + ["test"] * 30)
    pd.DataFrame({"cell_id": np.arange(90), "label": y, "split": split}).to_parquet(tmp_path / "cells.parquet")
    cli("embed", str(run), "--cells", str(tmp_path / "cells.parquet"), "--patches", str(tmp_path / "patches.npy"),
        "--out", str(tmp_path / "emb.parquet"))
    emb = pd.read_parquet(tmp_path / "emb.parquet")
    assert len(emb) == 90 and "z_iso_00" in emb.columns and "q_ori_02_7" in emb.columns
    # the probe command, called in-process (one subprocess per test is enough start-up time)
    from histolatent.cli.probe import command as probe

    opts = dict(split="split", roi=None, area=None, resamples=2, seed=0)
    probe(tmp_path / "emb.parquet", label="label", features=["z_iso", "q_ori"], out=tmp_path / "probe.json", **opts)
    res = json.loads((tmp_path / "probe.json").read_text())
    assert set(res) == {"z_iso", "q_ori"} and len(res["z_iso"]["values"]) == 2
    assert 0.0 <= res["z_iso"]["mean"] <= 1.0
    with pytest.raises(InputError, match="nope"):
        probe(tmp_path / "emb.parquet", label="nope", features=["z_iso"], out=None, **opts)


def test_probe_command_aggregates_rois(tmp_path):
    from histolatent.cli.probe import command as probe
    from histolatent.embed.columns import table_from_parts

    rng = np.random.default_rng(3)
    n_roi, per = 60, 6
    roi = np.repeat(np.arange(n_roi), per)
    grade = np.repeat(rng.integers(1, 4, n_roi), per)
    split = np.repeat(np.array(["train"] * 30 + ["val"] * 12 + ["test"] * 18), per)
    area = rng.normal(40 + 15 * grade, 5)
    parts = {"z_iso": rng.normal(size=(len(roi), 4)) + 0.8 * grade[:, None], "q_ori": rng.dirichlet(np.ones(8), (len(roi), 2)),
             "z_ori": rng.random((len(roi), 2)) * 6.28}
    table_from_parts(parts, pd.DataFrame({"roi_id": roi, "grade": grade, "split": split, "area": area})).to_parquet(
        tmp_path / "cells.parquet")
    probe(tmp_path / "cells.parquet", label="grade", features=["z_iso", "mna,sdna", "z_ori"], split="split",
          roi="roi_id", area="area", resamples=2, seed=0, out=tmp_path / "r.json")
    res = json.loads((tmp_path / "r.json").read_text())
    assert set(res) == {"z_iso", "mna,sdna", "z_ori"}  # z_ori: ROI histograms, rotation-invariant probe
    assert res["z_iso"]["mean"] > 0.8 and res["mna,sdna"]["mean"] > 0.8
    assert res["z_ori"]["mean"] < 0.8  # random angles carry no grade


def test_embed_reads_patches_from_the_slide_given_by_path(tmp_path):
    """Cell tables from `histolatent nuclei` name their slide by id: `--slide` supplies the file."""
    from histolatent.cli.embed import command as embed
    from histolatent.io.tiff_writer import write_pyramidal_tiff
    from histolatent.train.run import save_weights

    torch.manual_seed(0)
    model = create_model("se2n-vae", **{**TINY, "in_channels": 3})
    save_weights(model, tmp_path / "run", step=0)
    rgb = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    write_pyramidal_tiff(tmp_path / "s.tiff", rgb, size=(128, 128), mpp=0.25, tile_px=64, compression="none")
    pd.DataFrame({"slide_id": "s", "x": [40.0, 80.0], "y": [50.0, 70.0]}).to_parquet(tmp_path / "c.parquet")
    embed(tmp_path / "run", cells=tmp_path / "c.parquet", out=tmp_path / "e.parquet", patches=None,
          slide=tmp_path / "s.tiff", mpp=0.25, parts=["z_iso"], batch_size=8, precision="fp32")
    out = pd.read_parquet(tmp_path / "e.parquet")
    assert "slide" not in out.columns and list(out.columns[:3]) == ["slide_id", "x", "y"]
    # the embedding is that of the patch read around (x, y), not of some other crop
    direct = encode_patches(model, np.ascontiguousarray(rgb[None, 50 - 16:50 + 16, 40 - 16:40 + 16]), parts=["z_iso"])
    np.testing.assert_allclose(out[[f"z_iso_{i:02d}" for i in range(3)]].to_numpy()[0], direct["z_iso"][0], atol=1e-4)
    with pytest.raises(InputError, match="--slide"):
        embed(tmp_path / "run", cells=tmp_path / "c.parquet", out=tmp_path / "f.parquet", patches=None,
              slide=tmp_path / "missing.tiff", mpp=0.25, parts=[], batch_size=8, precision="fp32")
