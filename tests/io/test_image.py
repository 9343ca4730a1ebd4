"""The one image-input policy (histolatent.io.image): every rule, with values that show it."""

import warnings

import numpy as np
import pytest
import torch

from histolatent.errors import InputError
from histolatent.io.image import check_mpp, rgb8_from_any, rgb8_from_tensor, tensor_from_rgb8


def test_grey_alpha_and_dtypes_map_to_known_rgb():
    grey = np.array([[0, 255], [10, 20]], np.uint8)
    assert rgb8_from_any(grey)[1, 0].tolist() == [10, 10, 10]
    rgba = np.array([[[200, 100, 0, 255], [200, 100, 0, 0], [0, 0, 0, 51]]], np.uint8)
    out = rgb8_from_any(rgba)
    assert out[0, 0].tolist() == [200, 100, 0]          # opaque: unchanged
    assert out[0, 1].tolist() == [255, 255, 255]        # transparent: white glass
    assert out[0, 2].tolist() == [204, 204, 204]        # 20 % black over white
    assert rgb8_from_any(np.full((1, 1, 3), 65535, np.uint16)).tolist() == [[[255, 255, 255]]]
    assert rgb8_from_any(np.full((1, 1, 3), 0.2, np.float64))[0, 0, 0] == 51
    assert rgb8_from_any(np.ones((1, 2), bool)).tolist() == [[[255] * 3] * 2]


def test_float_outside_unit_range_is_an_error_not_white():
    with pytest.raises(InputError, match=r"must lie in \[0, 1\].*0\.\.200"):
        rgb8_from_any(np.full((4, 4, 3), 200.0), name="tile")
    with pytest.raises(InputError, match="tile: contains NaN"):
        rgb8_from_any(np.full((4, 4, 3), np.nan), name="tile")
    with pytest.raises(InputError, match="unsupported dtype int32"):
        rgb8_from_any(np.zeros((4, 4, 3), np.int32))
    with pytest.raises(InputError, match="channels"):
        rgb8_from_any(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(InputError, match="shape"):
        rgb8_from_any(np.zeros((2, 4, 4, 3), np.uint8))  # a batch only with batch=True


def test_never_mutates_and_copies_only_when_needed():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert rgb8_from_any(rgb) is rgb
    rgba = np.zeros((2, 3, 4), np.uint8)
    before = rgba.copy()
    rgb8_from_any(rgba)
    np.testing.assert_array_equal(rgba, before)
    view = np.zeros((4, 4, 3), np.uint8)[::2]           # not contiguous: a contiguous copy
    assert rgb8_from_any(view).flags.c_contiguous


def test_tensor_round_trip_is_exact_and_batched():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    x = tensor_from_rgb8(batch)
    assert x.shape == (2, 3, 5, 7) and x.dtype == torch.float32
    assert float(x[1, 2, 4, 6]) == pytest.approx(batch[1, 4, 6, 2] / 255.0)
    np.testing.assert_array_equal(rgb8_from_tensor(x), batch)
    np.testing.assert_array_equal(rgb8_from_tensor(x[0]), batch[0])
    assert tensor_from_rgb8(batch[0]).shape == (1, 3, 5, 7)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), 1e9, "abc", None, True])
def test_check_mpp_rejects_with_the_inputs_name(bad):
    with pytest.raises(InputError, match="--mpp"):
        check_mpp(bad, name="--mpp")


def test_check_mpp_accepts_the_range_and_optional_none():
    assert check_mpp("0.25") == 0.25
    assert check_mpp(256) == 256.0
    assert check_mpp(None, optional=True) is None


def test_tensor_from_a_read_only_array_warns_nothing_and_leaves_the_array_alone():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)  # not square: H and W must not swap
    frozen = image.copy()
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "not writable" warning would raise here
        x = tensor_from_rgb8(frozen)
    assert x.shape == (1, 3, 5, 7)
    assert torch.equal(x[0, :, 2, 6], torch.from_numpy(image[2, 6].astype(np.float32)) / 255.0)
    x.add_(1.0)  # the tensor is new memory: writing it never reaches the frozen array
    np.testing.assert_array_equal(frozen, image)
