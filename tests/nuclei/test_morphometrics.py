"""Morphometrics of digitised ellipses against the formulas; MNA / SDNA aggregates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.measure import perimeter_crofton

from histolatent.errors import InputError
from histolatent.nuclei import aggregate_nuclei, crofton_perimeters, measure_nuclei


def ellipse(shape, cx, cy, a, b, theta):
    """Pixels inside an ellipse of semi-axes a > b whose major axis points at ``theta``
    radians counter-clockwise from +x as displayed (y down)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    dx, dy = xx - cx, yy - cy
    u = dx * np.cos(theta) - dy * np.sin(theta)  # along the major axis
    v = dx * np.sin(theta) + dy * np.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def ramanujan(a, b):
    h = ((a - b) / (a + b)) ** 2
    return np.pi * (a + b) * (1 + 3 * h / (10 + np.sqrt(4 - 3 * h)))


@pytest.mark.parametrize("theta", [0.0, 0.4, 1.2, 2.5])
def test_ellipse_matches_formulas(theta):
    a, b, mpp = 20.0, 10.0, 0.5
    lab = ellipse((90, 100), 50.3, 44.6, a, b, theta).astype(np.int32) * 7  # any id
    t = measure_nuclei(lab, mpp=mpp)
    assert len(t) == 1 and t.label[0] == 7
    r = t.iloc[0]
    assert r.x == pytest.approx(50.3, abs=0.1) and r.y == pytest.approx(44.6, abs=0.1)
    assert r.area_um2 == pytest.approx(np.pi * a * b * mpp**2, rel=0.02)
    assert r.major_axis_um == pytest.approx(2 * a * mpp, rel=0.02)
    assert r.minor_axis_um == pytest.approx(2 * b * mpp, rel=0.02)
    assert r.eccentricity == pytest.approx(np.sqrt(1 - (b / a) ** 2), abs=0.01)
    assert np.angle(np.exp(2j * (r.orientation - theta))) / 2 == pytest.approx(0.0, abs=0.02)
    assert 0.0 <= r.orientation < np.pi
    assert r.perimeter_um == pytest.approx(ramanujan(a, b) * mpp, rel=0.03)
    assert 0.95 < r.solidity <= 1.0
    assert r.circularity == pytest.approx(4 * np.pi * np.pi * a * b / ramanujan(a, b) ** 2, rel=0.05)
    poly = r.polygon.reshape(-1, 2)
    assert np.array_equal(poly[0], poly[-1]) and len(poly) >= 8
    x, y = poly[:, 0], poly[:, 1]
    assert 0.5 * np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]) == pytest.approx(np.pi * a * b, rel=0.05)


def test_disc_and_haematoxylin_statistics():
    lab = ellipse((40, 40), 20, 20, 8, 8, 0).astype(np.int32)
    h = np.where(lab > 0, 0.4, 0.0).astype(np.float32)
    h[20, 20] = 1.4
    t = measure_nuclei(lab, mpp=1.0, haematoxylin=h, origin=(100.0, 50.0))
    r = t.iloc[0]
    assert r.eccentricity == pytest.approx(0.0, abs=0.02)
    n = lab.sum()
    assert r.h_mean == pytest.approx((0.4 * (n - 1) + 1.4) / n)
    assert r.h_sd == pytest.approx(np.std(h[lab > 0]), rel=1e-6)
    assert r.x == pytest.approx(120.0) and r.y == pytest.approx(70.0)
    assert np.all(r.polygon.reshape(-1, 2).min(axis=0) > [100, 50])
    assert measure_nuclei(np.zeros((5, 5), np.int32), mpp=0.5).empty
    with pytest.raises(InputError, match="labels"):
        measure_nuclei(np.zeros((5, 5), np.float32), mpp=0.5)


def test_crofton_perimeters_equal_skimage_per_label():
    rng = np.random.default_rng(1)
    lab = np.zeros((60, 60), np.int32)
    lab[5:20, 5:30] = 1
    lab[18:40, 25:50] = 2  # touches label 1
    lab[45:55, 10:14] = 4  # id 3 absent
    lab[rng.random(lab.shape) < 0.03] = 0  # holes and ragged edges
    per = crofton_perimeters(lab)
    for k in (1, 2, 4):
        assert per[k] == pytest.approx(perimeter_crofton(lab == k, directions=4))
    assert per[3] == 0.0


def test_aggregate_mna_sdna():
    cells = pd.DataFrame({"slide_id": ["a", "a", "a", "b"], "area_um2": [10.0, 20.0, 30.0, 40.0],
                          "eccentricity": [0.1, 0.2, 0.3, 0.4]})
    agg = aggregate_nuclei(cells, by="slide_id", tissue_area_um2={"a": 1e6, "b": 2e6}).set_index("slide_id")
    assert agg.loc["a", "n_nuclei"] == 3
    assert agg.loc["a", "mna_um2"] == pytest.approx(20.0)
    assert agg.loc["a", "sdna_um2"] == pytest.approx(10.0)  # ddof = 1
    assert np.isnan(agg.loc["b", "sdna_um2"])
    assert agg.loc["a", "mean_eccentricity"] == pytest.approx(0.2)
    assert agg.loc["b", "density_per_mm2"] == pytest.approx(0.5)
    assert aggregate_nuclei(cells, by=None).mna_um2[0] == pytest.approx(25.0)
    with pytest.raises(InputError, match="area_um2"):
        aggregate_nuclei(cells.drop(columns="area_um2"))
