"""NIC digit images and TARGET-VAE rotated digits."""

from __future__ import annotations

import cv2
import numpy as np
import openslide
import pytest

from histolatent.errors import InputError
from histolatent.synth import (
    multi_digit_canvas,
    nic_image,
    nic_slide,
    rotated_digits,
    split_indices,
)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_nic_label_is_tilted_rectangle_class(seed):
    img = nic_image(seed, 720)
    rects = img.rectangles.set_index("kind")
    assert img.label == rects.loc["tilted", "cls"]
    assert rects.loc["tilted", "angle_deg"] in (45.0, 135.0)
    assert rects.loc["non_tilted", "angle_deg"] in (0.0, 90.0)
    d = img.digits
    assert len(d) == round(0.002 * 720 * 720)
    assert (d.loc[d["region"] == 2, "cls"] == img.label).all()
    assert (d.loc[d["region"] == 1, "cls"] == rects.loc["non_tilted", "cls"]).all()
    assert set(np.unique(img.mask)) <= {0, 1, 2} and (img.mask == 2).any()
    assert img.image.shape == (720, 720) and img.image.dtype == np.uint8


def test_nic_deterministic_balanced_and_split():
    a, b = nic_image(5, 360, label=7), nic_image(5, 360, label=7)
    assert a.label == 7 and a.image.tobytes() == b.image.tobytes()
    train = set(split_indices("train"))
    assert set(nic_image(1, 360, split="test").digits["source_index"]).isdisjoint(train)


def test_nic_slide_reads_back(tmp_path):
    img = nic_slide(tmp_path / "nic.tiff", 2, 512, quality=100)
    s = openslide.OpenSlide(str(tmp_path / "nic.tiff"))
    assert s.dimensions == (512, 512)
    got = np.asarray(s.read_region((0, 0), 0, (512, 512)).convert("RGB"))[..., 0].astype(int)
    assert np.abs(got - img.image).mean() < 3.0
    s.close()


def test_rotated_digits_distributions_and_splits():
    x, t = rotated_digits(2000, "N", "train", seed=0)
    assert x.shape == (2000, 50, 50) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert 0.7 < t["angle"].std() < 0.87  # N(0, pi^2/16): sd pi/4 = 0.785
    assert 4.5 < t["dx"].std() < 5.5 and 4.5 < t["dy"].std() < 5.5
    _, u = rotated_digits(2000, "U", "train", seed=0)
    assert u["angle"].between(0, 2 * np.pi).all() and abs(u["angle"].mean() - np.pi) < 0.15
    _, te = rotated_digits(500, "U", "test", seed=0)
    assert set(te["source_index"]).isdisjoint(set(t["source_index"]))
    a, ta = rotated_digits(5, "U", "test", seed=3)
    b, tb = rotated_digits(3, "U", "test", seed=3, start=2)
    assert a[2:].tobytes() == b.tobytes()


def test_rotated_digit_transform_is_the_recorded_one():
    x, t = rotated_digits(50, "U", "train", seed=1, translate_std=3.0)
    yy, xx = np.indices((50, 50))
    for k in range(50):
        w = x[k]
        cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
        # the ink's centre moves with the translation (the digit's own centre of mass is near the middle)
        assert abs(cx - 24.5 - t["dx"].iloc[k]) < 4.5 and abs(cy - 24.5 - t["dy"].iloc[k]) < 4.5


def test_mnist_source_is_real_mnist_with_disjoint_splits(sample_paths):
    from histolatent.synth.digits import rerender_digits, source_digits, transform_digit

    imgs, labels = source_digits("mnist-5k")
    assert imgs.shape == (5000, 28, 28) and imgs.dtype == np.float32
    assert np.bincount(labels).tolist() == [500] * 10
    # MNIST centres 20 x 20 digits by their centre of mass in a 28 x 28 box: the 4-px border holds little ink
    border = imgs.copy()
    border[:, 4:24, 4:24] = 0
    assert border.sum() < 0.05 * imgs.sum()
    x, t = rotated_digits(300, "U", "train", seed=0, source="mnist-5k")
    _, te = rotated_digits(300, "U", "test", seed=0, source="mnist-5k")
    assert (t["source"] == "mnist-5k").all() and set(te["source_index"]).isdisjoint(set(t["source_index"]))
    assert (t["label"].to_numpy() == labels[t["source_index"]]).all()
    head = t.iloc[:20]
    # re-rendered at the recorded angles: the same images; upright: the digit with rotation 0, same shift
    assert np.array_equal(rerender_digits(head, head["angle"], "mnist-5k"), x[:20])
    up = rerender_digits(head, None, "mnist-5k")
    for k, (s, dx, dy) in enumerate(head[["source_index", "dx", "dy"]].itertuples(index=False)):
        assert np.allclose(up[k], np.clip(transform_digit(imgs[s], 0.0, dx, dy), 0, 1))
    many = rerender_digits(head, np.zeros((20, 3)), "mnist-5k")
    assert many.shape == (20, 3, 50, 50) and np.array_equal(many[:, 2], up)
    # rotating back by the recorded angle about the shifted centre recovers the upright digit
    for k in range(20):
        c = 49 / 2
        m = cv2.getRotationMatrix2D((c + head["dx"].iloc[k], c + head["dy"].iloc[k]),
                                    -np.rad2deg(head["angle"].iloc[k]), 1.0)
        back = cv2.warpAffine(x[k], m, (50, 50), flags=cv2.INTER_LINEAR)
        assert np.corrcoef(back.ravel(), up[k].ravel())[0, 1] > 0.9
    with pytest.raises(InputError, match="source"):
        rotated_digits(1, "U", source="emnist")


def test_multi_digit_canvas():
    c, t = multi_digit_canvas(3, seed=2)
    assert c.shape == (3, 150, 150)
    for k in range(3):
        pts = t[t["canvas"] == k][["x", "y"]].to_numpy()
        assert 2 <= len(pts) <= 5
        d = np.abs(pts[:, None] - pts[None]).max(-1) + np.eye(len(pts)) * 99
        assert d.min() >= 30  # no overlap
    with pytest.raises(InputError, match="mode"):
        rotated_digits(1, "X")


def test_nic_image_from_mnist_digits_pastes_the_area_downsampled_test_digits(sample_paths):
    from histolatent.synth.digits import source_digits

    img = nic_image(3, 360, fraction=0.001, split="test", digit_source="mnist-5k")
    imgs, labels = source_digits("mnist-5k")
    test = set(split_indices("test", source="mnist-5k"))
    assert set(img.digits["source_index"]) <= test and len(test) == 750
    assert (labels[img.digits["source_index"]] == img.digits["cls"]).all()
    # a digit no other digit overlaps is the source digit area-averaged to 9 x 9
    d = img.digits
    for r in d.itertuples():
        others = d[(abs(d.x - r.x) < 9) & (abs(d.y - r.y) < 9)]
        if len(others) == 1:
            want = np.rint(cv2.resize(imgs[r.source_index], (9, 9), interpolation=cv2.INTER_AREA) * 255)
            np.testing.assert_array_equal(img.image[r.y:r.y + 9, r.x:r.x + 9], want.clip(0, 255).astype(np.uint8))
            break
    else:
        pytest.fail("every digit overlaps another")
    assert nic_image(3, 360, fraction=0.001).image.tobytes() != img.image.tobytes()  # sklearn stays the default
