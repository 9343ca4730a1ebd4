"""histolatent.nuclei.files: the nuclei commands as Python calls (one file in process, resumable)."""

from __future__ import annotations

import numpy as np
import pytest

from histolatent.errors import InputError
from histolatent.io.atomic import write_image_atomic
from histolatent.io.tables import read_cell_table, write_cell_table
from histolatent.nuclei import cells_from_image, read_patch_store
from histolatent.nuclei.files import (
    detect_nuclei,
    evaluate_nuclei,
    segment_nuclei,
    write_nucleus_patches,
)
from histolatent.synth import render_tile


@pytest.fixture(scope="module")
def roi(tmp_path_factory):
    tile = render_tile(160, mpp=0.5, seed=11, tissue="lymphoid")
    path = tmp_path_factory.mktemp("rois") / "roi.png"
    write_image_atomic(path, tile.rgb)
    return path, tile


def test_segment_one_file_writes_tables_and_skips_them_unless_overwrite(roi, tmp_path):
    path, tile = roi
    first = segment_nuclei(path, tmp_path, slide_mpp=0.5)
    cells = read_cell_table(tmp_path / "roi.parquet")
    assert first.status.tolist() == ["done"] and first.n_nuclei[0] == len(cells) > 5
    np.testing.assert_allclose(first.mna_um2[0], cells.area_um2.mean())
    assert (tmp_path / "roi.geojson").is_file()
    (tmp_path / "roi.geojson").unlink()
    again = segment_nuclei(path, tmp_path, slide_mpp=0.5)
    assert again.status.tolist() == ["skipped"] and again.n_nuclei[0] == first.n_nuclei[0]
    assert not (tmp_path / "roi.geojson").exists()  # skipped: nothing redone
    redo = segment_nuclei(path, tmp_path, slide_mpp=0.5, overwrite=True, geojson=False)
    assert redo.status.tolist() == ["done"] and not (tmp_path / "roi.geojson").exists()


def test_detect_passes_its_options_to_the_detector(roi, tmp_path):
    path, tile = roi
    loose = detect_nuclei(path, tmp_path / "a", slide_mpp=0.5)
    strict = detect_nuclei(path, tmp_path / "b", slide_mpp=0.5, threshold=0.3)
    assert strict.n_nuclei[0] < loose.n_nuclei[0]
    meta = read_cell_table(tmp_path / "a" / "roi.parquet").attrs["histolatent"]
    assert meta["method"] == "log" and list(meta["options"]["radius_um"]) == [3.0, 7.0]


def test_bad_arguments_fail_before_any_output(roi, tmp_path):
    path, _ = roi
    with pytest.raises(InputError, match="model"):
        segment_nuclei(path, tmp_path / "o", method="unet")
    with pytest.raises(InputError, match="method"):
        segment_nuclei(path, tmp_path / "o", method="log")
    with pytest.raises(InputError, match="slide_mpp"):
        detect_nuclei(path, tmp_path / "o", slide_mpp=500_000)
    with pytest.raises(InputError, match="no such file"):
        detect_nuclei(tmp_path / "missing.png", tmp_path / "o", slide_mpp=0.5)
    assert not (tmp_path / "o").exists()


def test_patches_find_each_slide_by_id(roi, tmp_path):
    path, tile = roi
    cells = cells_from_image(tile.rgb, mpp=0.5, slide_id="roi")
    write_cell_table(cells, tmp_path / "cells.parquet")
    store = write_nucleus_patches(tmp_path / "cells.parquet", path.parent, tmp_path / "p.zarr", size_px=24, mpp=0.5,
                                  slide_mpp=0.5, mask=True)
    patches, table = read_patch_store(store)
    assert patches.shape == (len(cells), 24, 24, 4) and table.slide_id.eq("roi").all()
    other = cells.assign(slide_id="elsewhere")
    with pytest.raises(InputError, match="elsewhere"):
        write_nucleus_patches(other, path.parent, tmp_path / "q.zarr", slide_mpp=0.5)
    with pytest.raises(InputError, match="2 slides"):
        write_nucleus_patches(cells.assign(slide_id=["a", "b"] * (len(cells) // 2) + ["a"] * (len(cells) % 2)),
                              path, tmp_path / "q.zarr", slide_mpp=0.5)


def test_evaluate_scores_each_stain_on_the_same_tissue():
    scores = evaluate_nuclei("log", tiles=1, size_px=128, stains=[0, 5], match_um=4.0)
    assert sorted(scores) == ["stain_0", "stain_5"]
    assert all(s["images"] == 1.0 and 0 < s["f1"] <= 1 for s in scores.values())
