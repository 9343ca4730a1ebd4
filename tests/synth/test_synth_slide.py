"""Slides: a written pyramidal TIFF reads back through openslide and tiffslide."""

from __future__ import annotations

import numpy as np
import openslide
import tiffslide

from histolatent.io.tiff_writer import read_level_tiles
from histolatent.synth import Lesion, write_slide
from histolatent.synth.slide import slide_reader, slide_world
from histolatent.synth.stain import Scanner, Stain


def test_slide_reads_back_pixel_identical(tmp_path):
    size = (1280, 768)
    les = Lesion(center=(0.45, 0.5), radius_um=120.0, grade=3)
    truth = write_slide(tmp_path / "s.tiff", size, 0.5, les, seed=4, tile_px=256, quality=90)
    assert truth.label == 1 and truth.grade == 3 and truth.lesion_mask.any()
    assert (truth.lesion_mask <= truth.tissue_mask).all()
    decoded = read_level_tiles(truth.path, 0)  # the JPEG-decoded tiles
    with openslide.OpenSlide(str(truth.path)) as s:
        assert s.dimensions == size
        assert abs(float(s.properties["openslide.mpp-x"]) - 0.5) < 1e-6
        assert s.level_count >= 3 and s.level_dimensions[1] == (640, 384)
        os_px = np.asarray(s.read_region((0, 0), 0, size).convert("RGB"))
    ts = tiffslide.TiffSlide(str(truth.path))
    try:
        assert ts.dimensions == size and abs(float(ts.properties["tiffslide.mpp-x"]) - 0.5) < 1e-6
        assert ts.level_count == len(ts.level_dimensions) >= 3
        ts_px = np.asarray(ts.read_region((0, 0), 0, size).convert("RGB"))
    finally:
        ts.close()
    assert np.array_equal(os_px, decoded) and np.array_equal(ts_px, decoded)
    # and what was decoded is what was generated, up to JPEG
    world = slide_world(4, size, 0.5, les)
    gen = slide_reader(world, 0.5, Stain(), Scanner())(0, 0, size[0], 256)
    err = np.abs(decoded[:256].astype(int) - gen.astype(int))
    assert err.mean() < 3.0


def test_slide_without_lesion_and_determinism(tmp_path):
    a = write_slide(tmp_path / "a.tiff", (512, 512), 0.5, None, seed=2, tile_px=256)
    write_slide(tmp_path / "b.tiff", (512, 512), 0.5, None, seed=2, tile_px=256)
    assert a.label == 0 and a.grade == 0 and not a.lesion_mask.any()
    assert (tmp_path / "a.tiff").read_bytes() == (tmp_path / "b.tiff").read_bytes()
