"""Haematoxylin channel, LoG detection (µm radii) and watershed separation of touching nuclei."""

from __future__ import annotations

import numpy as np
import pytest

from histolatent.errors import InputError
from histolatent.nuclei import detect_log, haematoxylin_from_rgb, segment_watershed
from histolatent.nuclei.unet import classes_from_instances, instances_from_probabilities
from histolatent.stain import hed_from_rgb, rgb_from_od
from histolatent.stain.optical_density import HE_RUIFROK


def _discs(shape, centres, radii, value=0.6):
    h = np.zeros(shape, np.float32)
    lab = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for k, ((x, y), r) in enumerate(zip(centres, radii, strict=True)):
        m = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
        h[m] = value
        lab[m] = k + 1
    return h, lab


def _he_rgb(h: np.ndarray, eosin: float = 0.15) -> np.ndarray:
    """An H&E image whose haematoxylin concentration is ``h`` (Ruifrok vectors)."""
    c = np.stack([h, np.full_like(h, eosin)], axis=-1)
    return rgb_from_od(c @ HE_RUIFROK)


def test_haematoxylin_matches_colour_deconvolution_and_keeps_input():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    before = rgb.copy()
    h = haematoxylin_from_rgb(rgb)
    np.testing.assert_allclose(h, hed_from_rgb(rgb)[..., 0], atol=1e-5)
    assert np.array_equal(rgb, before)
    h_img, _ = _discs((40, 40), [(20, 20)], [8], value=0.5)
    np.testing.assert_allclose(haematoxylin_from_rgb(_he_rgb(h_img)), h_img, atol=0.02)


def test_log_finds_known_blobs_with_radii_in_um():
    centres = [(30, 30), (90, 40), (50, 95)]
    radii_px = [6, 10, 14]  # 3, 5, 7 µm at 0.5 µm/px
    h, _ = _discs((130, 130), centres, radii_px)
    det = detect_log(h, mpp=0.5, radius_um=(2.5, 8.0), num_scales=9, foreground=False)
    assert len(det) == 3
    found = det.sort_values("x").reset_index(drop=True)
    want = sorted(zip(centres, radii_px, strict=True))
    for (x, y), r in want:
        row = found.iloc[np.argmin(np.hypot(found.x - x, found.y - y))]
        assert np.hypot(row.x - x, row.y - y) <= 1.0
        assert row.radius_um == pytest.approx(r * 0.5, rel=0.25)


def test_log_is_mpp_aware():
    # the same 5 µm nucleus imaged at 0.25 and 0.5 µm/px is found with the same radius in µm
    h_fine, _ = _discs((120, 120), [(60, 60)], [20])
    h_coarse, _ = _discs((60, 60), [(30, 30)], [10])
    a = detect_log(h_fine, mpp=0.25, radius_um=(3, 7), num_scales=9, foreground=False)
    b = detect_log(h_coarse, mpp=0.5, radius_um=(3, 7), num_scales=9, foreground=False)
    assert len(a) == len(b) == 1
    assert a.radius_um[0] == pytest.approx(b.radius_um[0])
    # a blob far below the radius range is not a nucleus
    tiny, _ = _discs((60, 60), [(30, 30)], [1])
    assert len(detect_log(tiny, mpp=0.5, radius_um=(3, 7), foreground=False)) == 0
    with pytest.raises(InputError, match="mpp"):
        detect_log(h_fine, mpp=-1)


def test_watershed_separates_touching_discs():
    h, truth = _discs((80, 100), [(38, 40), (60, 40)], [12, 12])  # centres 22 px apart, radius 12: touching
    rgb = _he_rgb(h)
    lab = segment_watershed(rgb, mpp=0.5, stain_matrix="ruifrok")
    assert lab.max() == 2
    for k in (1, 2):  # each true disc is mostly one segment
        ids, counts = np.unique(lab[truth == k], return_counts=True)
        assert counts.max() / (truth == k).sum() > 0.9
    lab_d = segment_watershed(rgb, mpp=0.5, markers="distance", stain_matrix="ruifrok")
    assert lab_d.max() == 2


def test_three_class_target_and_instances_back():
    _, truth = _discs((60, 80), [(25, 30), (45, 30)], [10, 10])  # overlapping: the second wins
    cls = classes_from_instances(truth)
    assert set(np.unique(cls)) == {0, 1, 2}
    assert ((cls == 2) & (truth == 0)).sum() == 0  # the boundary is inside nuclei
    # brute force: a nucleus pixel is boundary iff a 4-neighbour has another label (background
    # or the other nucleus, so the pixels where the two touch are boundary on both sides)
    pad = np.pad(truth, 1, mode="edge")
    differs = np.zeros(truth.shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        differs |= pad[dy:dy + truth.shape[0], dx:dx + truth.shape[1]] != truth
    want = np.where(truth > 0, np.where(differs, 2, 1), 0)
    np.testing.assert_array_equal(cls, want)
    touch = (truth == 1) & (np.roll(truth, -1, axis=1) == 2)  # nucleus 1 pixels left of nucleus 2
    assert touch.sum() >= 1 and (cls[touch] == 2).all()  # the discs meet at (30, 34)-(30, 35)
    prob = np.stack([(cls == 0), (cls == 1), (cls == 2)]).astype(np.float32)
    inst = instances_from_probabilities(prob, mpp=0.5)
    assert inst.max() == 2
    for k in (1, 2):
        ids, counts = np.unique(inst[truth == k], return_counts=True)
        assert counts.max() / (truth == k).sum() > 0.9
