"""Slides: backends, physical-scale reads, native JPEG tiles identical to OpenSlide, errors."""

from __future__ import annotations

import numpy as np
import openslide
import pytest
import tifffile

from histolatent.errors import InputError
from histolatent.io.slide import ArraySlide, OpenSlideSlide, TiffSlideSlide, open_slide

APERIO_DESC = "Aperio Image Library v12.0.0\n{w}x{h} [0,0 {w}x{h}] (128x128) JPEG/RGB Q=90|AppMag = 20|MPP = 0.5"


def _gradient(h: int = 300, w: int = 400) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w)[None, :].astype(np.uint8)
    img[..., 1] = np.linspace(0, 255, h)[:, None].astype(np.uint8)
    img[..., 2] = (np.arange(w)[None, :] // 7 % 2 * 120 + np.arange(h)[:, None] // 5 % 2 * 60 + 30).astype(np.uint8)
    return img


@pytest.fixture(scope="module")
def tiny_svs(tmp_path_factory):
    """A 400 x 300 Aperio-style SVS: RGB (not YCbCr) JPEG tiles of 128 px, 0.5 um/px."""
    path = tmp_path_factory.mktemp("svs") / "tiny.svs"
    tifffile.imwrite(path, _gradient(), tile=(128, 128), description=APERIO_DESC.format(w=400, h=300),
                     metadata=None, photometric="rgb", compression="jpeg",
                     compressionargs={"level": 90, "outcolorspace": "RGB"})
    return path


def test_aperio_native_tiles_identical_to_openslide(tiny_svs):
    with open_slide(tiny_svs) as slide:
        assert isinstance(slide, OpenSlideSlide)
        assert slide.native_levels == [0], "RGB JPEG tiles should use the fast path"
        assert slide.mpp == pytest.approx(0.5)
        osr = openslide.OpenSlide(str(tiny_svs))
        rng = np.random.default_rng(0)
        for _ in range(12):  # regions across tile borders, partly outside the slide
            x, y = int(rng.integers(-50, 380)), int(rng.integers(-50, 280))
            w, h = int(rng.integers(1, 260)), int(rng.integers(1, 200))
            ours = slide.read(x, y, w, h)
            ref = np.asarray(osr.read_region((x, y), 0, (w, h)))
            inside = ref[..., 3] == 255
            assert ours.shape == (h, w, 3) and ours.dtype == np.uint8
            assert np.array_equal(ours[inside], ref[..., :3][inside])
            assert (ours[~inside] == 255).all()
        osr.close()


def test_real_svs_native_path_pixel_identical(sample_paths):
    path = sample_paths["cmu-small-region"]
    osr = openslide.OpenSlide(str(path))
    with open_slide(path) as fast, open_slide(path, native=False) as slow:
        assert fast.native_levels == [0] and slow.native_levels == []
        for x, y in [(0, 0), (237, 481), (1900, 2700), (1000, 1000)]:
            a = fast.read(x, y, 256, 256)
            assert np.array_equal(a, slow.read(x, y, 256, 256))
            assert np.array_equal(a, np.asarray(osr.read_region((x, y), 0, (256, 256)))[..., :3])
    osr.close()


def test_read_at_mpp_resamples_the_right_area(tiny_svs):
    """Every channel, at a corner x != y: the green ramp and the blue checks vary along y,
    so a vertical offset shows as much as a horizontal one."""
    from scipy.ndimage import map_coordinates

    with open_slide(tiny_svs) as slide:
        full = slide.read_level(0, 0, 0, 400, 300).astype(float)  # the decoded level 0
        x, y = 36, 90
        half = slide.read(x, y, 120, 70, mpp=1.0)  # twice coarser: 2 x 2 level-0 px per pixel
        assert half.shape == (70, 120, 3)
        ref = full[y:y + 140, x:x + 240].reshape(70, 2, 120, 2, 3).mean(axis=(1, 3))
        assert np.abs(half - ref).max() <= 1.0
        for dx, dy in [(0, 1), (0, -1), (1, 0), (-1, 0)]:  # one level-0 pixel off is far off
            off = full[y + dy:y + dy + 140, x + dx:x + dx + 240].reshape(70, 2, 120, 2, 3).mean(axis=(1, 3))
            assert np.abs(half - off).max() > 20
        # finer than level 0: bilinear enlargement; output pixel (i, j) samples level 0 at
        # (y + (i + 0.5) / 2 - 0.5, x + (j + 0.5) / 2 - 0.5), pixel-centre coordinates
        x, y = 100, 60
        up = slide.read(x, y, 64, 48, mpp=0.25)
        assert up.shape == (48, 64, 3)
        ii, jj = np.mgrid[0:48, 0:64]
        coords = [y + (ii + 0.5) / 2 - 0.5, x + (jj + 0.5) / 2 - 0.5]
        ref = np.stack([map_coordinates(full[..., c], coords, order=1) for c in range(3)], -1)
        inner = (slice(1, -1), slice(1, -1))  # the border pixels extrapolate the region read
        assert np.abs(up[inner] - ref[inner]).max() <= 1.0


def test_thumbnail_and_context_manager(tiny_svs):
    slide = open_slide(tiny_svs)
    with slide:
        thumb = slide.thumbnail(100)
        full = slide.read_level(0, 0, 0, 400, 300).astype(float)
    assert thumb.shape == (75, 100, 3)  # 400 x 300 -> longest side 100: 4 level-0 px per pixel
    assert np.abs(thumb - full.reshape(75, 4, 100, 4, 3).mean(axis=(1, 3))).max() <= 1.0
    with pytest.raises(InputError, match="closed"):
        slide.read(0, 0, 10, 10)


def test_array_slide_needs_mpp_for_physical_reads_and_keeps_input():
    img = _gradient(64, 80)
    before = img.copy()
    slide = open_slide(img)
    assert isinstance(slide, ArraySlide)
    assert np.array_equal(slide.read(0, 0, 80, 64), img)
    with pytest.raises(InputError, match="mpp"):
        slide.read(0, 0, 10, 10, mpp=1.0)
    tile = open_slide(img, mpp=0.5).read(10, 10, 20, 20, mpp=1.0)
    assert tile.shape == (20, 20, 3)
    tile[:] = 0  # the result is a new array
    assert np.array_equal(img, before)


@pytest.mark.parametrize("kind", ["grey", "rgba", "uint16", "float"])
def test_array_slide_input_types(kind):
    base = _gradient(20, 30)
    img = {"grey": base[..., 0], "rgba": np.dstack([base, np.full(base.shape[:2], 255, np.uint8)]),
           "uint16": base.astype(np.uint16) * 257, "float": base / 255.0}[kind]
    out = ArraySlide(img).read(0, 0, 30, 20)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    expect = np.repeat(base[..., :1], 3, axis=2) if kind == "grey" else base
    assert np.abs(out.astype(int) - expect).max() <= 1


def test_png_file_and_ome_tiff(tmp_path):
    from PIL import Image

    img = _gradient(40, 50)
    Image.fromarray(img).save(tmp_path / "a.png")
    with open_slide(tmp_path / "a.png", mpp=0.25) as s:
        assert s.mpp == 0.25 and np.array_equal(s.read(0, 0, 50, 40), img)
    tifffile.imwrite(tmp_path / "b.ome.tif", img, photometric="rgb", ome=True)
    with open_slide(tmp_path / "b.ome.tif") as s:
        assert isinstance(s, TiffSlideSlide)
        assert np.array_equal(s.read(0, 0, 50, 40), img)


def test_clear_errors(tmp_path, tiny_svs):
    with pytest.raises(InputError, match="does not exist"):
        open_slide(tmp_path / "missing.svs")
    (tmp_path / "empty.svs").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        open_slide(tmp_path / "empty.svs")
    (tmp_path / "junk.svs").write_bytes(b"this is not a slide" * 10)
    with pytest.raises(InputError, match="not a supported"):
        open_slide(tmp_path / "junk.svs")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(InputError, match="bad.png"):
        open_slide(tmp_path / "bad.png")
    data = tiny_svs.read_bytes()
    (tmp_path / "cut.svs").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated|corrupt"):
        with open_slide(tmp_path / "cut.svs") as s:
            s.read(0, 0, 400, 300)
    corrupt = bytearray(data)
    tif = tifffile.TiffFile(tiny_svs)
    off = int(tif.pages[0].dataoffsets[0])
    tif.close()
    corrupt[off + 20: off + 400] = b"\xff" * 380  # garbage inside the first JPEG tile
    (tmp_path / "corrupt.svs").write_bytes(bytes(corrupt))
    with open_slide(tiny_svs) as s:
        clean = s.read(128, 128, 200, 150)
    for native in ("auto", False):  # the native JPEG path and OpenSlide's
        with open_slide(tmp_path / "corrupt.svs", native=native) as s:
            assert s.native_levels == ([0] if native else [])
            # the other tiles are intact (read first: an OpenSlide handle stays failed after an error)
            np.testing.assert_array_equal(s.read(128, 128, 200, 150), clean)
            with pytest.raises(InputError, match="corrupt"):  # libjpeg: "Bogus DQT index"
                s.read(0, 0, 128, 128)
    with pytest.raises(InputError, match="mpp: expected"):
        open_slide(tiny_svs, mpp=-1)
