"""Pyramidal TIFF writer: round trips through openslide, tiffslide and tifffile."""

from __future__ import annotations

import numpy as np
import openslide
import pytest
import tifffile
import tiffslide

from histolatent.errors import InputError
from histolatent.io.tiff_writer import level_sizes, read_level_tiles, write_pyramidal_tiff


def _image(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) % 64) * 4], -1)
    return img.astype(np.uint8)


def test_lossless_round_trip_and_levels(tmp_path):
    img = _image(300, 530)
    p = write_pyramidal_tiff(tmp_path / "a.tiff", img, mpp=0.25, tile_px=128, compression="deflate")
    assert level_sizes(530, 300, 128) == [(530, 300), (265, 150), (132, 75), (66, 37)]
    with openslide.OpenSlide(str(p)) as s:
        assert s.level_dimensions == ((530, 300), (265, 150), (132, 75), (66, 37))
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.25)
        assert np.array_equal(np.asarray(s.read_region((0, 0), 0, (530, 300)).convert("RGB")), img)
        lvl1 = np.asarray(s.read_region((0, 0), 1, (265, 150)).convert("RGB")).astype(float)
    expect = img[:300, :530].astype(float).reshape(150, 2, 265, 2, 3).mean((1, 3))
    assert np.abs(lvl1 - expect).max() <= 1.0  # 2x2 mean, rounded
    with tifffile.TiffFile(p) as tf:
        assert len(tf.pages) == 4 and tf.pages[0].is_tiled and tf.pages[1].subfiletype == 1


def test_callable_source_jpeg_matches_decoders(tmp_path):
    img = _image(700, 900)
    calls = []

    def read(x, y, w, h):
        calls.append((x, y, w, h))
        return img[y:y + h, x:x + w]

    p = write_pyramidal_tiff(tmp_path / "b.tiff", read, size=(900, 700), mpp=0.5, tile_px=256, quality=85)
    assert len(calls) == 4 * 3 and max(c[2] for c in calls) == 256  # tile by tile
    dec = read_level_tiles(p, 0)
    with openslide.OpenSlide(str(p)) as s:
        assert np.array_equal(np.asarray(s.read_region((0, 0), 0, (900, 700)).convert("RGB")), dec)
    ts = tiffslide.TiffSlide(str(p))
    try:
        assert np.array_equal(np.asarray(ts.read_region((0, 0), 0, (900, 700)).convert("RGB")), dec)
        assert float(ts.properties["tiffslide.mpp-x"]) == pytest.approx(0.5)
    finally:
        ts.close()
    assert np.abs(dec.astype(int) - img).mean() < 4.0


def test_bigtiff_and_errors(tmp_path):
    p = write_pyramidal_tiff(tmp_path / "c.tiff", _image(64, 64), tile_px=32, bigtiff=True)
    with tifffile.TiffFile(p) as tf:
        assert tf.is_bigtiff
    with pytest.raises(InputError, match="tile_px"):
        write_pyramidal_tiff(tmp_path / "d.tiff", _image(64, 64), tile_px=30)
    with pytest.raises(InputError, match="size"):
        write_pyramidal_tiff(tmp_path / "d.tiff", lambda x, y, w, h: None)
    with pytest.raises(InputError, match="source"):
        write_pyramidal_tiff(tmp_path / "d.tiff", lambda x, y, w, h: np.zeros((1, 1, 3), np.uint8), size=(64, 64),
                             tile_px=32)
    assert not (tmp_path / "d.tiff").exists()  # a failed write leaves nothing behind
