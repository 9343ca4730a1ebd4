"""``histolatent compress``: every option reaches compress_cohort; a real run on a run folder; the figure."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tests.conftest import run_cli
from typer.testing import CliRunner


def test_every_option_is_parsed_and_passed(tmp_path, monkeypatch):
    import typer

    import histolatent.embed.cohort as cohort
    from histolatent.cli import compress

    seen = {}

    def fake(slides, encoder, out, **kw):
        import pandas as pd

        seen.update(slides=slides, encoder=encoder, out=out, **kw)
        return pd.DataFrame([{"slide_id": "a", "status": "done"}])

    monkeypatch.setattr(cohort, "compress_cohort", fake)
    app = typer.Typer()
    app.command()(compress.command)
    a, b = tmp_path / "a.svs", tmp_path / "b.svs"
    res = CliRunner().invoke(app, [str(a), str(b), "--encoder", "run1", "--out", str(tmp_path / "g"),
                                   "--scheduler", "tcp://h:1", "--workers", "3", "--mpp", "1.5", "--tile-px", "64",
                                   "--stride-px", "32", "--dihedral", "--precision", "bf16", "--batch-size", "7",
                                   "--min-tissue", "0.25", "--slide-mpp", "0.3", "--device", "cpu", "--overwrite",
                                   "--figures"])
    assert res.exit_code == 0, res.output
    from histolatent.viz.nic import write_grid_figure

    want = dict(slides=[a, b], encoder="run1", out=tmp_path / "g", scheduler="tcp://h:1", workers=3, mpp=1.5,
                tile_px=64, stride_px=32, dihedral=True, precision="bf16", batch_size=7, min_tissue=0.25,
                slide_mpp=0.3, device="cpu", overwrite=True, figure=write_grid_figure)
    assert seen == want
    res = CliRunner().invoke(app, [str(a), "--encoder", "r", "--out", str(tmp_path / "g")])
    assert seen["figure"] is None and seen["dihedral"] is False and seen["stride_px"] is None
    assert seen["scheduler"] is None and seen["mpp"] == 0.5 and seen["tile_px"] == 128


@pytest.mark.slow
def test_cli_compresses_a_folder_with_a_run_and_draws_the_figure(tmp_path):
    import torch

    from histolatent.models import create_model, save_weights

    torch.manual_seed(0)
    run = tmp_path / "run"
    save_weights(create_model("autoencoder", in_channels=3, image_size=32, channels=[4], latent_dim=5), run, step=0)
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(np.repeat(np.repeat(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), 8, 0), 8, 1)).save(
        src / "a.png")
    (src / "broken.png").write_bytes(b"junk")
    out = tmp_path / "grids"
    proc = run_cli("compress", str(src), "--encoder", str(run), "--out", str(out), "--scheduler", "inline",
                   "--tile-px", "32", "--slide-mpp", "0.5", "--min-tissue", "0", "--figures", check=False)
    assert proc.returncode == 1, proc.stderr  # one slide failed
    assert "broken" in proc.stdout and "1/2 slides compressed" in proc.stdout
    from histolatent.embed.grid import read_slide_grid, verify_grid

    grid, mask, attrs = read_slide_grid(out / "a.zarr")
    assert grid.shape == (5, 3, 4) and attrs["encoder"] == "autoencoder" and verify_grid(out / "a.zarr") is None
    png = np.asarray(Image.open(out / "a.png"))
    assert png.shape[0] > 100 and png.shape[1] > 400  # two panels: thumbnail | PCA


def test_pca_colours_follow_the_codes():
    from histolatent.viz.nic import grid_pca_rgb

    rng = np.random.default_rng(0)
    g = rng.normal(size=(8, 4, 6)).astype(np.float16)
    g[:, :, :3] += 5 * np.arange(8)[:, None, None]  # the left half differs along one direction
    m = np.ones((4, 6), bool)
    m[0, 5] = False
    rgb = grid_pca_rgb(g, m)
    assert rgb.shape == (4, 6, 3) and (rgb[0, 5] == 1).all()
    left, right = rgb[:, :3, 0].mean(), rgb[:, 3:5, 0].mean()
    assert abs(left - right) > 0.8  # PC 1 separates the halves


@pytest.mark.slow
def test_demo_compression_stage(tmp_path):
    from histolatent.demo import DemoContext
    from histolatent.demo.nic import compression

    section = compression(DemoContext(tmp_path, quick=True))
    assert section.error is None and section.figures[0][0].is_file()
    assert "grid 3x16x16" in section.text and {r["stage"] for r in section.tables[0][1]} >= {"read", "forward"}
