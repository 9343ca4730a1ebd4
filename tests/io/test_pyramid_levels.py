"""Every level of a pyramid, through every backend, equals level 0 resampled.

The slides here are wider than tall, their content differs along x and y, and the regions
read start at x != y with w != h: a swapped x/y, a dropped downsample or an off-by-one
corner moves the pixels read and fails. The reference is brute force: level-k pixel
``(i, j)`` of a file written by :mod:`histolatent.io.tiff_writer` is the mean of the
level-0 block ``[i * 2**k, (i + 1) * 2**k) x [j * 2**k, (j + 1) * 2**k)`` (repeated 2x2
means, each rounded, hence a tolerance of about one grey level per level).
"""

from __future__ import annotations

import numpy as np
import pytest

from histolatent.io.slide import OpenSlideSlide, TiffSlideSlide, open_slide
from histolatent.io.tiff_writer import read_level_tiles, write_pyramidal_tiff

BACKENDS = {"openslide": OpenSlideSlide, "tiffslide": TiffSlideSlide}


def _image(h: int, w: int) -> np.ndarray:
    """Red ramps along x, green along y, blue a pattern of both with different periods."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx // 3 + 2 * (yy // 5)) % 50 * 5], -1)
    return img.astype(np.uint8)


def _block_mean(img: np.ndarray, k: int, x: int, y: int, w: int, h: int) -> np.ndarray:
    """Level-k pixels [y, y+h) x [x, x+w) as means of k x k level-0 blocks (brute force)."""
    return img[y * k:(y + h) * k, x * k:(x + w) * k].astype(float).reshape(h, k, w, k, 3).mean((1, 3))


def _level_reference(img: np.ndarray, k: int, u: float, v: float, w: int, h: int) -> np.ndarray:
    """Level-k pixels of a region whose corner is at fractional level coordinates ``(u, v)``:
    the bilinear blend of the block means around it (beyond the image: white)."""
    x0, y0 = int(np.floor(u)), int(np.floor(v))
    tx, ty = u - x0, v - y0
    lh, lw = img.shape[0] // k, img.shape[1] // k
    pad = np.full((lh + 1, lw + 1, 3), 255.0)
    pad[:lh, :lw] = _block_mean(img, k, 0, 0, lw, lh)
    b = pad[y0:y0 + h + 1, x0:x0 + w + 1]
    return (1 - ty) * ((1 - tx) * b[:-1, :-1] + tx * b[:-1, 1:]) + ty * ((1 - tx) * b[1:, :-1] + tx * b[1:, 1:])


def _corner(slide, level: int, x: int, y: int) -> tuple[float, float]:
    """Where a backend reads level pixel ``(x, y)`` from. OpenSlide takes a level-0 corner and
    divides it by the level's downsample: with a non-integer downsample the integer nearest
    ``x * ds`` lands a fraction of a pixel off ``x``, and OpenSlide interpolates there.
    tiffslide truncates ``corner / ds``, so an exact corner exists and must be found."""
    ds = slide.level_downsamples[level]
    if isinstance(slide, OpenSlideSlide):
        return round(x * ds) / ds, round(y * ds) / ds
    return float(x), float(y)


@pytest.fixture(scope="module")
def odd_pyramid(tmp_path_factory):
    """530 x 300 px, lossless, 5 levels: halving odd sizes makes the reported downsamples
    non-integer (4.0076, 8.069, 16.36), as on scanner files."""
    img = _image(300, 530)
    path = write_pyramidal_tiff(tmp_path_factory.mktemp("pyr") / "odd.tiff", img, mpp=0.25, tile_px=64,
                                compression="deflate")
    return path, img


@pytest.fixture(scope="module")
def even_pyramid(tmp_path_factory):
    """512 x 320 px at 0.25 µm/px, lossless: every level is exactly 2**k coarser."""
    img = _image(320, 512)
    path = write_pyramidal_tiff(tmp_path_factory.mktemp("pyr") / "even.tiff", img, mpp=0.25, tile_px=64,
                                compression="deflate")
    return path, img


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_read_level_is_level0_block_means_at_every_level(odd_pyramid, backend):
    path, img = odd_pyramid
    with BACKENDS[backend](path) as slide:
        assert slide.level_dimensions == ((530, 300), (265, 150), (132, 75), (66, 37), (33, 18))
        assert slide.level_count == 5
        for level in range(slide.level_count):
            k = 2**level
            lw, lh = slide.level_dimensions[level]
            # regions at x != y, w != h, away from the origin, and the whole level
            for x, y, w, h in [(lw // 5 + 1, lh // 3 + 2, lw // 2, lh // 3), (lw // 2, 1, lw // 3, lh - 2),
                               (0, 0, lw, lh)]:
                got = slide.read_level(level, x, y, w, h)
                assert got.shape == (h, w, 3)
                ref = _level_reference(img, k, *_corner(slide, level, x, y), w, h)
                err = np.abs(got.astype(float) - ref)
                assert err.max() <= 0.5 * level + 1.0, (backend, level, (x, y, w, h), err.max())


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_read_level_outside_the_level_is_white(odd_pyramid, backend):
    path, img = odd_pyramid
    with BACKENDS[backend](path) as slide:
        lw, lh = slide.level_dimensions[2]
        got = slide.read_level(2, lw - 10, lh - 4, 30, 12)  # 10 x 4 px inside, the rest outside
        assert (got[4:] == 255).all() and (got[:, 10:] == 255).all()
        ref = _level_reference(img, 4, *_corner(slide, 2, lw - 10, lh - 4), 10, 4)
        assert np.abs(got[:4, :10].astype(float) - ref).max() <= 2.0


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_read_at_every_level_scale_equals_level0_resampled(even_pyramid, backend):
    """``read(x, y, w, h, mpp=0.25 * k)`` at a corner x != y equals k x k means of level 0,
    whichever level the reader picks (it picks the level of that scale)."""
    path, img = even_pyramid
    with BACKENDS[backend](path) as slide:
        assert slide.level_downsamples == (1.0, 2.0, 4.0, 8.0)
        for k in (1, 2, 4, 8):
            x, y = 3 * 16, 7 * 8  # level-0 corner, a multiple of every k
            w, h = 96 // k + 5, 64 // k + 2
            got = slide.read(x, y, w, h, mpp=0.25 * k)
            assert got.shape == (h, w, 3)
            assert slide.best_level(k) == int(np.log2(k))
            ref = img[y:y + h * k, x:x + w * k].astype(float).reshape(h, k, w, k, 3).mean((1, 3))
            err = np.abs(got.astype(float) - ref)
            assert err.max() <= 0.5 * np.log2(k) + 0.5, (backend, k, err.max())
        # a scale between levels: 3x coarser than level 0 is level 1 (2x) shrunk by 1.5 by
        # area weights; on the linear ramps (red along x, green along y) that is exactly the
        # mean of 3 x 3 level-0 blocks
        x, y, w, h = 6 * 8, 6 * 14, 40, 22
        got = slide.read(x, y, w, h, mpp=0.75).astype(float)[..., :2]
        ref = img[y:y + 3 * h, x:x + 3 * w, :2].astype(float).reshape(h, 3, w, 3, 2).mean((1, 3))
        assert np.abs(got - ref).max() <= 1.5


def test_native_jpeg_tiles_at_every_level_equal_the_decoded_pages(tmp_path):
    """A JPEG pyramid (YCbCr, as scanners write) goes through the native-tile path at every
    level; each level's regions are the file's own decoded pixels and level 0 resampled.
    (Sizes that halve exactly: with non-integer downsamples OpenSlide interpolates, its pixels
    differ from the native ones and the slide keeps such levels on the OpenSlide path.)"""
    img = _image(320, 512)
    path = write_pyramidal_tiff(tmp_path / "jpeg.tiff", img, mpp=0.5, tile_px=64, quality=95)
    with open_slide(path) as fast, open_slide(path, native=False) as slow:
        assert fast.native_levels == list(range(fast.level_count)) and slow.native_levels == []
        for level in range(fast.level_count):
            page = read_level_tiles(path, level)
            lh, lw = page.shape[:2]
            assert fast.level_dimensions[level] == (lw, lh)
            x, y, w, h = lw // 3 + 3, lh // 5 + 1, lw // 2 + 1, lh // 3
            got = fast.read_level(level, x, y, w, h)
            np.testing.assert_array_equal(got, page[y:y + h, x:x + w])
            np.testing.assert_array_equal(got, slow.read_level(level, x, y, w, h))
            # JPEG (4:2:0) blurs the blue pattern by several grey levels; still, the block means
            # at (x, y) fit better than those one pixel off in any direction
            k = 2**level
            err = {(dx, dy): np.abs(got.astype(float) - _block_mean(img, k, x + dx, y + dy, w, h)).mean()
                   for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
            assert min(err, key=err.get) == (0, 0), (level, err)
