"""Image and slide pipelines, tiled without double counting; the Dask cohort resumes; the CLI runs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tests.conftest import run_cli

from histolatent.errors import InputError
from histolatent.io.geojson_export import validate_feature_collection
from histolatent.io.tables import read_cell_table
from histolatent.nuclei import cells_from_image, cells_from_slide, run_cohort
from histolatent.nuclei.evaluate import evaluate_method, heldout_tiles, score_segmentation
from histolatent.synth.render import render_tile


@pytest.fixture(scope="module")
def tile():
    return render_tile(384, mpp=0.5, seed=11, tissue="lymphoid")


def test_cells_from_image_counts_the_nuclei(tile):
    cells = cells_from_image(tile.rgb, mpp=0.5, slide_id="t")
    n_true = len(tile.nuclei)
    assert 0.8 * n_true <= len(cells) <= 1.2 * n_true
    assert {"slide_id", "cell_id", "x", "y", "mpp", "x_um", "y_um", "area_um2", "polygon", "h_mean"} <= set(cells)
    np.testing.assert_allclose(cells.x_um, cells.x * 0.5)
    assert cells.area_um2.between(6, 500).all()
    log = cells_from_image(tile.rgb, mpp=0.5, method="log")
    assert "polygon" not in log and 0.8 * n_true <= len(log) <= 1.2 * n_true
    with pytest.raises(InputError, match="model"):
        cells_from_image(tile.rgb, mpp=0.5, method="unet")


def test_slide_tiles_find_each_nucleus_once(tile):
    whole = cells_from_image(tile.rgb, mpp=0.5)
    tiled = cells_from_slide(tile.rgb, slide_mpp=0.5, tile_px=128, margin_um=20, tissue=False, slide_id="t")
    assert tiled.attrs["histolatent"]["tile_px"] == 128
    # every nucleus of the untiled run is found once by the tiled run, at the same place
    d = np.hypot(tiled.x.to_numpy()[:, None] - whole.x.to_numpy()[None], tiled.y.to_numpy()[:, None] - whole.y.to_numpy()[None])
    assert abs(len(tiled) - len(whole)) <= 0.05 * len(whole)
    assert (d.min(axis=0) < 2.0).mean() > 0.9
    assert (np.sort(d, axis=0)[1] > 4.0).all()  # no nucleus found twice
    # at another resolution, coordinates stay level-0 px
    coarse = cells_from_slide(tile.rgb, slide_mpp=0.5, mpp=1.0, tile_px=256, tissue=False)
    assert coarse.mpp.iloc[0] == 0.5 and coarse.x.max() > 300


def test_cohort_on_dask_is_resumable(tmp_path, tile):
    src = tmp_path / "rois"
    src.mkdir()
    Image.fromarray(tile.rgb[:192, :192]).save(src / "a.png")
    Image.fromarray(tile.rgb[192:, 192:]).save(src / "b.png")
    out = tmp_path / "out"
    first = run_cohort(src, out, slide_mpp=0.5, n_workers=2, processes=False, progress=False)
    assert first.status.tolist() == ["done", "done"] and (first.n_nuclei > 5).all()
    a = read_cell_table(out / "a.parquet")
    assert a.slide_id.iloc[0] == "a" and len(a) == first.n_nuclei[0]
    import json

    assert validate_feature_collection(json.loads((out / "a.geojson").read_text())) == []
    (out / "b.parquet").unlink()  # as if the task for b had died
    again = run_cohort(src, out, slide_mpp=0.5, n_workers=1, processes=False, progress=False)
    assert again.set_index("slide_id").status.to_dict() == {"a": "skipped", "b": "done"}
    assert again.n_nuclei.tolist() == first.n_nuclei.tolist()
    assert (out / "summary.csv").read_text().startswith("slide_id,")


def test_evaluate_on_heldout_tiles():
    tiles = heldout_tiles(2, size_px=128, mpp=0.5)
    per, summary = evaluate_method([(t.rgb, t.instances) for t in tiles], mpp=0.5, method="watershed")
    # measured: dice 0.89 / 0.94, AJI 0.78, pooled detection F1 0.93 (precision 1.0, recall 0.875)
    assert len(per) == 2 and summary["images"] == 2
    assert summary["dice"] == pytest.approx(per["dice"].mean()) and summary["aji"] == pytest.approx(per["aji"].mean())
    tp, fp, fn = per["tp"].sum(), per["fp"].sum(), per["fn"].sum()
    assert summary["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert summary["dice"] > 0.85 and summary["aji"] > 0.7 and summary["f1"] > 0.85
    # the truth scores 1 against itself
    perfect = score_segmentation(tiles[0].instances, tiles[0].instances, mpp=0.5)
    assert perfect["dice"] == perfect["aji"] == perfect["object_f1"] == 1.0 and perfect["fp"] == perfect["fn"] == 0


def test_cli_segment(tmp_path, tile):
    img = tmp_path / "roi.png"
    Image.fromarray(tile.rgb[:160, :160]).save(img)
    run_cli("nuclei", "segment", str(img), "--slide-mpp", "0.5", "--out", str(tmp_path / "o"))
    cells = read_cell_table(tmp_path / "o" / "roi.parquet")
    assert len(cells) > 5 and (tmp_path / "o" / "roi.geojson").is_file()
    with pytest.raises(InputError, match="mpp"):  # a PNG carries no mpp: a clear error
        cells_from_slide(img)
