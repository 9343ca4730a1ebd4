"""Tissue masks: detection on synthetic thumbnails with known tissue, pen marks, user masks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from histolatent.errors import InputError
from histolatent.tissue import TissueMask, mask_from_geojson, mask_from_image, pen_mask, tissue_mask


def _thumbnail(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Glass (bright, unsaturated, noisy) with a pink/purple disc of known extent."""
    rng = np.random.default_rng(seed)
    h, w = 120, 160
    img = np.clip(rng.normal(240, 3, (h, w, 3)), 0, 255)
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - 60) ** 2 + (xx - 70) ** 2 < 40**2
    tissue_col = np.where(rng.random((h, w, 1)) < 0.3, [110, 60, 150], [230, 140, 190])
    img[disc] = np.clip(tissue_col[disc] + rng.normal(0, 8, (disc.sum(), 3)), 0, 255)
    return img.astype(np.uint8), disc


def test_detects_known_tissue_and_leaves_input_alone():
    img, truth = _thumbnail()
    before = img.copy()
    mask = tissue_mask(img)
    assert np.array_equal(img, before)
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.97


def test_pen_marks_removed_by_hue_only_when_asked():
    img, truth = _thumbnail(1)
    img[10:110, 140:150] = (40, 160, 60)  # a green pen stroke on glass, well away from tissue
    assert tissue_mask(img)[10:110, 140:150].mean() > 0.9
    cleaned = tissue_mask(img, remove_pen=True)
    assert cleaned[10:110, 140:150].mean() < 0.05
    assert (cleaned & truth).sum() / truth.sum() > 0.95
    assert not pen_mask(np.array([[[110, 60, 150], [230, 140, 190]]], np.uint8)).any()  # H&E hues


def test_blank_and_black_thumbnails_have_no_tissue():
    assert not tissue_mask(np.full((50, 60, 3), 245, np.uint8)).any()
    assert not tissue_mask(np.zeros((50, 60, 3), np.uint8)).any()


def test_physical_morphology_sizes_drop_specks():
    img, _ = _thumbnail(2)
    img[5:8, 5:8] = (120, 60, 150)  # a 3x3 speck
    assert not tissue_mask(img, mpp=8.0)[5:8, 5:8].any()  # 9 px * 64 um^2 < 2e4 um^2


def test_user_png_and_geojson_masks(tmp_path):
    from PIL import Image

    m = np.zeros((50, 100), np.uint8)
    m[10:40, 20:60] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    tm = mask_from_image(tmp_path / "m.png", (1000, 500))
    assert tm.downsample == (10.0, 10.0) and tm.mask.sum() == 30 * 40
    with pytest.raises(InputError, match="aspect"):
        mask_from_image(tmp_path / "m.png", (1000, 1000))
    square = [[100, 100], [500, 100], [500, 400], [100, 400], [100, 100]]
    hole = [[200, 200], [300, 200], [300, 300], [200, 300], [200, 200]]
    gj = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square, hole]}, "properties": {}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}, "properties": {}}]}
    (tmp_path / "a.geojson").write_text(json.dumps(gj))
    gm = mask_from_geojson(tmp_path / "a.geojson", (1000, 500), max_px=100)
    area = gm.mask.sum() * 100  # level-0 px per mask px
    assert abs(area - (400 * 300 - 100 * 100)) / (400 * 300 - 100 * 100) < 0.08
    assert not gm.mask[25, 25]  # inside the hole
    (tmp_path / "bad.geojson").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        mask_from_geojson(tmp_path / "bad.geojson", (10, 10))
    (tmp_path / "ring.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}))
    with pytest.raises(InputError, match=">= 3"):
        mask_from_geojson(tmp_path / "ring.geojson", (10, 10))


def test_tissue_mask_object_validates():
    with pytest.raises(InputError):
        TissueMask(np.zeros((0, 3), bool), (10, 10))
    tm = TissueMask(np.ones((4, 4), bool), (40, 20))
    assert tm.downsample == (10.0, 5.0) and tm.tissue_fraction == 1.0
