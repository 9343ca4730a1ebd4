"""Nuclei coordinates: patch windows at a scale, the mask channel, and cell tables whose
``x_um`` / ``y_um`` land on the nucleus they describe, with images wider than tall and
nuclei at x != y."""

from __future__ import annotations

import numpy as np
import pytest

from histolatent.io.slide import ArraySlide
from histolatent.nuclei import cells_from_image, cells_from_slide
from histolatent.nuclei.patches import PatchSpec, extract_patch, extract_patches, patch_window
from histolatent.synth.render import render_tile


def _inside(ring: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd crossing test of points against a ring ``(N, 2)`` of (x, y)."""
    x0, y0 = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    px, py = np.asarray(px, float)[..., None], np.asarray(py, float)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    return (((y0 > py) != (y1 > py)) & (px < xc)).sum(axis=-1) % 2 == 1


def test_patch_window_puts_the_nucleus_on_the_centre_pixel():
    """Odd and even sizes, integer and fractional scales: the centre of patch pixel
    (n // 2, n // 2) is the nucleus, in continuous coordinates (x + 0.5, y + 0.5)."""
    for n, mpp, smpp in [(11, 0.75, 0.25), (10, 0.5, 0.25), (9, 0.3, 0.25), (8, 0.25, 0.25)]:
        x, y = 61.3, 37.8
        x0, y0, s0 = patch_window(x, y, PatchSpec(n, mpp), smpp)
        f = mpp / smpp
        assert s0 == pytest.approx(n * f)
        assert x0 + (n // 2 + 0.5) * f == pytest.approx(x + 0.5)
        assert y0 + (n // 2 + 0.5) * f == pytest.approx(y + 0.5)


def test_patches_at_a_coarser_scale_are_level0_block_means():
    """3 level-0 px per patch pixel, 11 px patches, nuclei at x != y on a 90 x 130 image."""
    img = np.random.default_rng(7).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    slide = ArraySlide(img, mpp=0.25)
    xy = np.array([[40.0, 61.0], [100.0, 20.0]])
    patches, kept = extract_patches(slide, xy, PatchSpec(11, 0.75))
    assert kept.tolist() == [0, 1]
    for (x, y), patch in zip(xy, patches, strict=True):
        x0, y0 = int(x) - 16, int(y) - 16  # x + 0.5 - 5.5 * 3
        ref = img[y0:y0 + 33, x0:x0 + 33].astype(float).reshape(11, 3, 11, 3, 3).mean(axis=(1, 3))
        assert np.abs(patch - ref).max() <= 0.5 + 1e-9
        assert patch[5, 5] == pytest.approx(img[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2].mean((0, 1)), abs=0.5)


def test_mask_channel_is_the_polygon_by_patch_pixel_centre():
    """An L-shaped outline (level-0 pixel centres) rasterised into a patch at 2x: a patch pixel
    is in the mask iff its centre, mapped to level 0, is inside the outline."""
    img = np.full((80, 120, 3), 200, np.uint8)
    slide = ArraySlide(img, mpp=0.25)
    x, y = 70.0, 33.0
    spec = PatchSpec(16, 0.5)
    x0, y0, _ = patch_window(x, y, spec, 0.25)
    assert (x0, y0) == (53.5, 16.5)  # 70 + 0.5 - 8.5 * 2, 33 + 0.5 - 8.5 * 2
    # patch pixel centres sit at level-0 pixel-centre x = 54 + 2j, y = 17 + 2i; the edges pass
    # half-way between them
    ell = np.array([[61, 22], [67, 22], [67, 38], [79, 38], [79, 44], [61, 44]], dtype=float)
    patch = extract_patch(slide, x, y, spec, polygon=ell.ravel(), mask=True)
    assert patch.shape == (16, 16, 4)
    ii, jj = np.mgrid[0:16, 0:16]
    want = _inside(ell, x0 + (jj + 0.5) * 2 - 0.5, y0 + (ii + 0.5) * 2 - 0.5)
    assert 20 < want.sum() < 100 and not np.array_equal(want, want.T)
    np.testing.assert_array_equal(patch[..., 3] == 255, want)


@pytest.fixture(scope="module")
def tile():
    """A 192 x 128 px lymphoid tile with its true instance map."""
    return render_tile((192, 128), mpp=0.5, seed=3, tissue="lymphoid")


def _offsets(cells, instances: np.ndarray, mpp: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each cell: the true instance at the pixel its ``x_um``, ``y_um`` point to (0 =
    background), and the cell's (x, y) minus that instance's true centroid, level-0 px."""
    col = np.rint(cells.x_um.to_numpy() / mpp).astype(int)
    row = np.rint(cells.y_um.to_numpy() / mpp).astype(int)
    assert (col >= 0).all() and (col < instances.shape[1]).all()
    assert (row >= 0).all() and (row < instances.shape[0]).all()
    hit = instances[row, col]
    dx, dy = [], []
    for x, y, k in zip(cells.x, cells.y, hit, strict=True):
        if k:
            rows, cols = np.nonzero(instances == k)
            dx.append(x - cols.mean())
            dy.append(y - rows.mean())
    return hit, np.array(dx), np.array(dy)


def test_cell_table_um_coordinates_land_on_their_nucleus(tile):
    """Measured with this tile: every cell lands on a true nucleus, median offset 0.0 px
    along x and y, median distance 0.17 px."""
    inst = tile.instances
    assert inst.shape == (128, 192)
    cells = cells_from_image(tile.rgb, mpp=0.5, slide_id="t")
    assert len(cells) > 40
    np.testing.assert_allclose(cells.x_um, cells.x * 0.5)
    np.testing.assert_allclose(cells.y_um, cells.y * 0.5)
    hit, dx, dy = _offsets(cells, inst, 0.5)
    assert (hit > 0).mean() > 0.95
    assert abs(np.median(dx)) < 0.25 and abs(np.median(dy)) < 0.25
    assert np.median(np.hypot(dx, dy)) < 0.5


def test_cells_found_at_a_coarser_processing_scale_map_back_to_level0(tile):
    """Nuclei found at 1.0 µm/px on a 0.5 µm/px image, in tiles of 64 px: x, y, x_um, y_um and
    the outlines come back in level-0 px of the image. Measured: every cell on a true
    nucleus, median offsets -0.05 / -0.07 px, median distance 0.33 px; half a processing
    pixel of error would be 0.5 level-0 px."""
    cells = cells_from_slide(tile.rgb, slide_mpp=0.5, mpp=1.0, tile_px=64, margin_um=10, tissue=False,
                             slide_id="t")
    assert len(cells) > 40 and (cells.mpp == 0.5).all()
    hit, dx, dy = _offsets(cells, tile.instances, 0.5)
    assert (hit > 0).mean() > 0.95
    assert abs(np.median(dx)) < 0.25 and abs(np.median(dy)) < 0.25
    assert np.median(np.hypot(dx, dy)) < 0.75
    # each outline, mapped to level 0 alike, holds its own centroid
    held = [_inside(p.reshape(-1, 2), np.array([x]), np.array([y]))[0]
            for p, x, y in zip(cells.polygon, cells.x, cells.y, strict=True)]
    assert np.mean(held) > 0.95
