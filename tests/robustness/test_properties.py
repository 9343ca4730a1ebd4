"""Property tests (hypothesis): for any image-like array a user might pass — any of the usual
shapes and dtypes, values anywhere in their range, NaN, inf — and for any 2 x 3 stain matrix,
the API raises an InputError or returns a result of the promised kind; never anything else.

Examples are derandomised (the same ones every run, as every random thing here has a seed).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from histolatent.errors import InputError
from tests.robustness.test_api_bad_inputs import (
    FUZZ_TARGETS,
    check_input_error_or_valid,
    fitted_normaliser,
)

SHAPES = [(8, 8), (8, 8, 3), (8, 8, 4), (8, 8, 1), (8, 8, 2), (1, 1, 3), (0, 8, 3), (8,), (2, 8, 8, 3), (16, 12, 3)]
DTYPES = [np.uint8, np.uint16, np.int8, np.int32, np.float32, np.float64, np.bool_]

images = st.tuples(st.sampled_from(SHAPES), st.sampled_from(DTYPES)).flatmap(
    lambda sd: hnp.arrays(sd[1], sd[0], elements=None if sd[1] is not np.float32 else
                          st.floats(width=32, allow_nan=True, allow_infinity=True)))
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.parametrize("target", FUZZ_TARGETS)
def test_any_array_gives_an_input_error_or_a_valid_result(target, good):
    fitted = fitted_normaliser(target, good)

    @SETTINGS
    @given(arr=images)
    def check(arr):
        check_input_error_or_valid(target, fitted, arr)

    check()


@SETTINGS
@given(matrix=hnp.arrays(np.float64, (2, 3), elements=st.floats(-1e3, 1e3)
                         | st.sampled_from([0.0, np.nan, np.inf, 1e-300])))
@example(matrix=np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]]))  # H&E: the accepted path always runs
def test_any_stain_matrix_is_refused_or_normalises_to_valid_pixels(matrix):
    from histolatent.stain import MacenkoNormalizer

    data = {"method": "macenko", "version": 1, "params": {},
            "state": {"stain_matrix": matrix.tolist(), "max_concentrations": [1.0, 1.0]}}
    try:
        norm = MacenkoNormalizer.from_dict(data)
    except InputError:
        assert not (np.isfinite(matrix).all() and (matrix >= 0).all() and np.linalg.matrix_rank(matrix) == 2
                    and (np.abs(matrix) > 1e-6).any(axis=1).all()), f"a usable stain matrix refused: {matrix}"
        return
    # accepted: finite, non-negative, independent rows; and it normalises to valid pixels
    assert np.isfinite(matrix).all() and np.linalg.matrix_rank(matrix) == 2
    rng = np.random.default_rng(0)
    out = norm.transform(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
