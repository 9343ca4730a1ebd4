"""Stain normalisation of files and slides (histolatent.stain.slide / .files): one estimate per slide."""

from __future__ import annotations

import numpy as np
import pytest

from histolatent.errors import InputError
from histolatent.io.atomic import write_image_atomic
from histolatent.io.slide import open_slide
from histolatent.stain import MacenkoNormalizer, ReinhardNormalizer
from histolatent.stain.files import compare_normalizers, fit_normalizer, normalize_path, read_image
from histolatent.stain.slide import normalize_slide, source_tiles
from histolatent.synth import render_tile, write_slide


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("slide") / "s.tiff"
    write_slide(path, size=(512, 256), tile_px=64, lesion=None, seed=1, stain=3)
    return path


def test_source_tiles_are_stained_whole_tiles_spread_over_the_slide(slide_path):
    from histolatent.stain.optical_density import tissue_pixel_mask

    with open_slide(slide_path) as s:
        picked = source_tiles(s, tile_px=64, n_tiles=6)
        assert 1 < len(picked) <= 6 and len(set(picked)) == len(picked)
        for x, y in picked:
            assert x % 64 == 0 and y % 64 == 0 and x + 64 <= 512 and y + 64 <= 256
            assert tissue_pixel_mask(s.read_level(0, x, y, 64, 64)).mean() > 0.1
        assert source_tiles(s, tile_px=1024) == []  # no whole tile fits


def test_normalize_slide_uses_one_estimate_and_leaves_the_normalizer_as_it_was(slide_path, tmp_path):
    from histolatent.stain.optical_density import tissue_pixel_mask

    norm = MacenkoNormalizer().fit(render_tile(128, seed=2).rgb)
    out = normalize_slide(norm, slide_path, tmp_path / "n.tiff", tile_px=64, quality=95)
    assert norm.source_ is None and (norm.n_transformed, norm.n_skipped) == (32, 0)
    # the same result as normalising the whole level 0 at once under the pooled estimate
    with open_slide(slide_path) as s:
        tiles = [s.read_level(0, x, y, 64, 64) for x, y in source_tiles(s, tile_px=64)]
        whole = s.read_level(0, 0, 0, 512, 256)
    expected = MacenkoNormalizer().fit(render_tile(128, seed=2).rgb).fix_source(tiles).transform(whole)
    with open_slide(out) as o:
        got = o.read_level(0, 0, 0, 512, 256)
        assert o.mpp == 0.5 and o.level_count > 1
    assert np.abs(got.astype(int) - expected).mean() < 2.0  # JPEG noise only
    stained = tissue_pixel_mask(whole)
    assert np.abs(got.astype(int) - whole)[stained].mean() > 5.0  # and it did change the colours


def test_normalize_slide_checks_arguments_before_writing(slide_path, tmp_path):
    norm = ReinhardNormalizer().fit(render_tile(64, seed=2).rgb)
    with pytest.raises(InputError, match="tile_px"):
        normalize_slide(norm, slide_path, tmp_path / "n.tiff", tile_px=50)
    with pytest.raises(InputError, match="slide_mpp"):
        normalize_slide(norm, slide_path, tmp_path / "n.tiff", slide_mpp=1e6)
    assert list(tmp_path.iterdir()) == []


def test_fit_apply_and_compare_on_files(tmp_path):
    write_image_atomic(tmp_path / "target.png", render_tile(96, seed=5).rgb)
    (tmp_path / "in").mkdir()
    write_image_atomic(tmp_path / "in" / "a.png", render_tile(64, seed=2, stain=4).rgb)
    write_image_atomic(tmp_path / "in" / "glass.jpg", np.full((32, 32, 3), 250, np.uint8))
    norm = fit_normalizer([tmp_path / "target.png"], method="reinhard", out=tmp_path / "r.json")
    r = normalize_path(tmp_path / "r.json", tmp_path / "in", tmp_path / "out")
    assert (r.kind, r.n_transformed, r.n_skipped) == ("folder", 1, 1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "glass.png"]
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "a.png"),
                                  norm.transform(read_image(tmp_path / "in" / "a.png")))
    with pytest.raises(InputError, match="bad option"):
        fit_normalizer(tmp_path / "target.png", method="macenko", params={"nope": 1})
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        normalize_path(norm, tmp_path / "empty", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_compare_normalizers_scores_against_the_truth():
    from histolatent.synth import stain_pair

    pair = stain_pair(seed=3, size_px=96)
    outputs, table = compare_normalizers(pair.source, pair.target, methods=["macenko", "reinhard"],
                                         truth=pair.target, params={"macenko": {"alpha": 1.5}})
    assert list(table) == ["macenko", "reinhard", "unnormalised"] and set(outputs) == {"macenko", "reinhard"}
    for m in ("macenko", "reinhard"):
        assert table[m]["euclidean"] < table["unnormalised"]["euclidean"]
