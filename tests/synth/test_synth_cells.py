"""Cell patches and graded ROI sets: the ground truth in the table matches the pixels."""

from __future__ import annotations

import numpy as np
import pytest

from histolatent.errors import InputError
from histolatent.synth import cell_patches, roi_set


def _axis_angle(mask: np.ndarray) -> tuple[float, float, float]:
    """Displayed (counter-clockwise) major-axis angle mod pi and centroid of a mask."""
    yy, xx = np.nonzero(mask)
    cx, cy = xx.mean(), yy.mean()
    dx, dy = xx - cx, yy - cy
    mu20, mu02, mu11 = (dx * dx).mean(), (dy * dy).mean(), (dx * dy).mean()
    theta_img = 0.5 * np.arctan2(2 * mu11, mu20 - mu02)  # y down
    return float(np.mod(-theta_img, np.pi)), float(cx), float(cy)


def test_patches_shapes_determinism_and_prefix():
    a, ta = cell_patches(6, 40, 0.5, seed=4, rotate="uniform", stain_jitter=1.0)
    b, tb = cell_patches(3, 40, 0.5, seed=4, rotate="uniform", stain_jitter=1.0)
    c, tc = cell_patches(3, 40, 0.5, seed=4, rotate="uniform", stain_jitter=1.0, start=3)
    assert a.shape == (6, 40, 40, 3) and a.dtype == np.uint8
    assert a.tobytes() == np.concatenate([b, c]).tobytes()
    assert ta["orientation"].tolist() == tb["orientation"].tolist() + tc["orientation"].tolist()
    assert set(ta["type"]) <= {"epithelial", "lymphocyte", "fibroblast"}
    assert ta["site"].between(1, 4).all()


def test_orientation_and_shift_ground_truth():
    imgs, tab, masks = cell_patches(8, 68, 0.25, seed=2, rotate="uniform", translate_px=4.0, neighbours=False,
                                    types=("fibroblast",), return_masks=True)
    assert (tab["type"] == "fibroblast").all() and (tab["n_neighbours"] == 0).all()
    for k in range(len(tab)):
        ang, cx, cy = _axis_angle(masks[k])
        d = np.angle(np.exp(2j * (ang - tab["axis_angle"].iloc[k]))) / 2
        assert abs(d) < 0.15, (k, ang, tab["axis_angle"].iloc[k])
        assert abs(cx - (33.5 + tab["dx"].iloc[k])) < 1.0
        assert abs(cy - (33.5 + tab["dy"].iloc[k])) < 1.0
    np.testing.assert_allclose(np.mod(tab["orientation"], np.pi), tab["axis_angle"], atol=1e-9)
    assert tab["rotation"].between(0, 2 * np.pi).all() and tab["rotation"].std() > 0.5


def test_rotation_moves_the_nucleus_by_alpha():
    # the same nucleus unrotated and rotated: orientation differs by exactly the rotation
    _, t0 = cell_patches(4, 68, 0.25, seed=8, rotate=None, types=("epithelial",))
    _, t1 = cell_patches(4, 68, 0.25, seed=8, rotate="uniform", types=("epithelial",))
    diff = np.mod(t1["orientation"] - t0["orientation"] - t1["rotation"] + np.pi, 2 * np.pi) - np.pi
    np.testing.assert_allclose(diff, 0.0, atol=1e-9)
    assert (t0["rotation"] == 0).all()


def test_mitosis_and_grades():
    imgs, tab = cell_patches(3, 40, 0.5, seed=1, types=("mitosis",), grade=3)
    assert (tab["type"] == "mitosis").all() and (tab["grade"] == 3).all()


def test_roi_grade_widens_spread_and_raises_mitoses():
    low = roi_set(3, {1: 1.0}, 200, seed=5, roi_px=512, with_patches=False)
    high = roi_set(3, {3: 1.0}, 200, seed=5, roi_px=512, with_patches=False)
    assert (low.rois["grade"] == 1).all() and (high.rois["grade"] == 3).all()
    cl, ch = low.cells, high.cells
    assert ch["major_axis_um"].std() > 1.5 * cl["major_axis_um"].std()
    assert ch["aspect"].std() > cl["aspect"].std()
    assert high.rois["mitoses_per_mm2"].sum() > low.rois["mitoses_per_mm2"].sum()
    assert set(cl["roi_id"]) == {0, 1, 2}


def test_roi_patches_align_with_cells():
    rs = roi_set(2, (0.0, 1.0, 0.0), 6, seed=3, roi_px=384, patch_px=40)
    assert rs.patches.shape == (len(rs.cells), 40, 40, 3)
    assert (rs.cells["grade"] == 2).all()
    assert rs.roi_patches(0).shape[0] == (rs.cells["roi_id"] == 0).sum()


def test_bad_inputs():
    with pytest.raises(InputError, match="types"):
        cell_patches(1, types=("neuron",))
    with pytest.raises(InputError, match="rotate"):
        cell_patches(1, rotate="random")
    with pytest.raises(InputError, match="grades"):
        roi_set(1, (1.0, 2.0))
