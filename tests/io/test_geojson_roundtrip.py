"""GeoJSON and polygon coordinates, with shapes that tell x from y.

An L-shaped nucleus away from the image centre, in an image wider than tall, goes
mask -> cell table -> GeoJSON file -> read back the way QuPath reads it (x is the column;
pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``) -> rasterised, and must give the source
mask back pixel for pixel. The rasteriser of reference is a brute-force crossing-number
test of every pixel centre, written here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from histolatent.io.annotations import labels_from_polygons, read_monuseg_xml
from histolatent.io.geojson import read_geojson_polygons
from histolatent.io.geojson_export import geojson_from_cells, write_geojson
from histolatent.io.tables import with_physical_coordinates
from histolatent.nuclei.morphometrics import measure_nuclei
from histolatent.tissue.mask import mask_from_geojson

H, W = 40, 64


def inside(ring: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd crossing test of points ``(px, py)`` against a closed or open ring ``(N, 2)`` of (x, y)."""
    ring = np.asarray(ring, dtype=np.float64)
    x0, y0 = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    px, py = np.asarray(px, float)[..., None], np.asarray(py, float)[..., None]
    crosses = (y0 > py) != (y1 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    return (crosses & (px < xc)).sum(axis=-1) % 2 == 1


def qupath_raster(rings: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre ``(j + 0.5, i + 0.5)`` (QuPath's pixel corners) lies in a ring."""
    ii, jj = np.mgrid[0:shape[0], 0:shape[1]]
    out = np.zeros(shape, bool)
    for ring in rings:
        out |= inside(ring, jj + 0.5, ii + 0.5)
    return out


def l_mask() -> np.ndarray:
    """An L lying on its back (a long foot to the right), off the centre of a 40 x 64 image."""
    m = np.zeros((H, W), bool)
    m[8:30, 41:47] = True   # the upright: 22 rows x 6 columns
    m[24:30, 41:60] = True  # the foot: 6 rows x 19 columns
    return m


@pytest.fixture
def cells():
    t = measure_nuclei(l_mask().astype(np.int32) * 3, mpp=0.5)
    return with_physical_coordinates(t.drop(columns="label"), slide_id="s", mpp=0.5)


def test_l_shape_through_geojson_file_rasterises_back_to_the_source_mask(cells, tmp_path):
    src = l_mask()
    path = write_geojson(cells, tmp_path / "cells.geojson")
    data = json.loads(path.read_text())
    [feature] = data["features"]
    ring = np.array(feature["geometry"]["coordinates"][0])  # [[x, y], ...] as QuPath reads it
    # the ring spans the L's columns along x and its rows along y (corners in QuPath pixels)
    assert ring[:, 0].min() == pytest.approx(41, abs=0.5) and ring[:, 0].max() == pytest.approx(60, abs=0.5)
    assert ring[:, 1].min() == pytest.approx(8, abs=0.5) and ring[:, 1].max() == pytest.approx(30, abs=0.5)
    np.testing.assert_array_equal(qupath_raster([ring], (H, W)), src)
    # the package's own reader and its GeoJSON rasteriser (tissue masks) agree
    [(exterior, holes)] = read_geojson_polygons(path)
    assert holes == []
    np.testing.assert_array_equal(qupath_raster([exterior], (H, W)), src)
    np.testing.assert_array_equal(mask_from_geojson(path, (W, H)).mask, src)


def test_points_export_is_the_centroid_in_qupath_pixels(cells):
    src = l_mask()
    rows, cols = np.nonzero(src)
    fc = geojson_from_cells(cells, geometry="points")
    [[px, py]] = fc["features"][0]["geometry"]["coordinates"]
    assert px == pytest.approx(cols.mean() + 0.5, abs=1e-3) and py == pytest.approx(rows.mean() + 0.5, abs=1e-3)


def test_cell_table_polygon_is_in_pixel_centre_coordinates(cells):
    """The table's own polygon (pixel centres: pixel (i, j) at x = j, y = i) covers the mask's
    pixel centres and no others."""
    ring = cells.polygon.iloc[0].reshape(-1, 2)
    ii, jj = np.mgrid[0:H, 0:W]
    np.testing.assert_array_equal(inside(ring, jj, ii), l_mask())


def test_geojson_rasterised_at_a_coarser_non_square_scale(tmp_path):
    """A slide 1000 x 301 px rasterised to at most 100 px: mask pixels 10 x 10.03 level-0 px.
    Each mask pixel is tissue iff its centre, mapped to level 0, lies in the polygon. (The
    bottom edge, y = 275.4, passes between the centre of mask row 27, y = 275.9, and where
    it would be with square 10 x 10 mask pixels, y = 275.0.)"""
    Wl, Hl = 1000, 301
    ring = [[612.3, 41.7], [688.9, 41.7], [688.9, 233.1], [905.6, 233.1], [905.6, 275.4], [612.3, 275.4],
            [612.3, 41.7]]  # an L, x from 612 to 906 and y from 42 to 275, in the slide's right half
    hole = [[630.2, 150.6], [660.4, 150.6], [660.4, 190.9], [630.2, 190.9], [630.2, 150.6]]
    (tmp_path / "l.geojson").write_text(json.dumps({"type": "Feature", "properties": {},
                                                    "geometry": {"type": "Polygon", "coordinates": [ring, hole]}}))
    tm = mask_from_geojson(tmp_path / "l.geojson", (Wl, Hl), max_px=100)
    h, w = tm.mask.shape
    assert (w, h) == (100, 30)
    sx, sy = Wl / w, Hl / h
    assert tm.downsample == pytest.approx((sx, sy)) and sx != sy
    ii, jj = np.mgrid[0:h, 0:w]
    cx, cy = (jj + 0.5) * sx, (ii + 0.5) * sy  # mask pixel centres in level-0 (QuPath) coordinates
    want = inside(np.array(ring), cx, cy) & ~inside(np.array(hole), cx, cy)
    assert want.sum() > 100 and want[:, :50].sum() == 0  # a non-trivial, off-centre shape
    np.testing.assert_array_equal(tm.mask, want)


def test_monuseg_polygons_rasterise_in_pixel_centre_coordinates(tmp_path):
    """MoNuSeg / ImageScope vertices are pixel centres (pixel (i, j) at X = j, Y = i). An L
    with vertices between pixel centres rasterises to the pixels whose centre it holds."""
    ell = np.array([[40.5, 6.5], [46.5, 6.5], [46.5, 21.5], [57.5, 21.5], [57.5, 27.5], [40.5, 27.5]])
    square = np.array([[3.5, 30.5], [9.5, 30.5], [9.5, 38.5], [3.5, 38.5]])  # bottom-left corner
    lab = labels_from_polygons([ell, square], (H, W))
    ii, jj = np.mgrid[0:H, 0:W]
    want = np.where(inside(ell, jj, ii), 1, 0) + np.where(inside(square, jj, ii), 2, 0)
    np.testing.assert_array_equal(lab, want)
    xml = "<Annotations><Annotation><Regions>" + "".join(
        "<Region><Vertices>" + "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in p) + "</Vertices></Region>"
        for p in (ell, square)) + "</Regions></Annotation></Annotations>"
    (tmp_path / "a.xml").write_text(xml)
    np.testing.assert_array_equal(read_monuseg_xml(tmp_path / "a.xml", (H, W)), want)
