"""One-to-one point matching and detection scores, against a brute-force search."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from histolatent.metrics.detection import detection_scores, match_points


def _brute(p: np.ndarray, t: np.ndarray, d: float) -> tuple[int, float]:
    """(size, total distance) of the largest one-to-one matching within ``d`` of least total distance."""
    best = (0, 0.0)
    n, m = len(p), len(t)
    for k in range(min(n, m), 0, -1):
        found = None
        for ps in itertools.combinations(range(n), k):
            for ts in itertools.permutations(range(m), k):
                dist = np.linalg.norm(p[list(ps)] - t[list(ts)], axis=1)
                if (dist <= d).all() and (found is None or dist.sum() < found - 1e-12):
                    found = dist.sum()
        if found is not None:
            return k, float(found)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_matching_is_the_largest_then_the_closest(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 6, 2)
    # an anisotropic cloud (wide in x, narrow in y) so that swapping x and y changes the answer
    p = rng.uniform(0, 1, (n, 2)) * [12.0, 3.0]
    t = rng.uniform(0, 1, (m, 2)) * [12.0, 3.0]
    d = 2.5
    pairs = match_points(p, t, d)
    size, total = _brute(p, t, d)
    assert len(pairs) == size
    assert np.linalg.norm(p[pairs[:, 0]] - t[pairs[:, 1]], axis=1).sum() == pytest.approx(total)
    assert len(set(pairs[:, 0])) == len(pairs) == len(set(pairs[:, 1]))  # one-to-one
    assert (np.diff(pairs[:, 0]) > 0).all()  # sorted by the prediction's index


def test_distance_is_euclidean_inclusive_and_zero_distance_pairs_count():
    t = np.array([[10.0, 10.0], [30.0, 10.0], [50.0, 10.0]])
    p = np.array([[10.0, 13.0], [34.0, 10.0], [50.0, 10.0]])  # 3 px in y, 4 px in x, 0 px
    assert match_points(p, t, 3.0).tolist() == [[0, 0], [2, 2]]  # exactly 3 matches (inclusive)
    assert match_points(p, t, 4.0).tolist() == [[0, 0], [1, 1], [2, 2]]
    assert match_points(p, t, 2.9).tolist() == [[2, 2]]
    diag = np.array([[13.0, 14.0]])  # 5 px away from t[0] along a 3-4-5 diagonal
    assert match_points(diag, t, 5.0).tolist() == [[0, 0]] and len(match_points(diag, t, 4.99)) == 0


def test_a_star_takes_its_closest_point():
    t = np.array([[0.0, 0.0]])
    p = np.array([[0.0, 2.0], [1.0, 0.0], [0.0, -1.5]])
    assert match_points(p, t, 3.0).tolist() == [[1, 0]]
    assert match_points(t, p, 3.0).tolist() == [[0, 1]]


def test_scores_from_counts():
    t = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [30.0, 0.0]])
    p = np.array([[0.0, 1.0], [10.0, 0.5], [50.0, 50.0]])  # 2 hits, 1 false positive, 2 misses
    s = detection_scores(p, t, 2.0)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 2)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert s["mean_distance"] == pytest.approx(0.75)
    empty = detection_scores(np.zeros((0, 2)), np.zeros((0, 2)), 2.0)
    assert (empty["precision"], empty["recall"], empty["f1"]) == (1.0, 1.0, 1.0) and np.isnan(empty["mean_distance"])
    miss = detection_scores(np.zeros((0, 2)), t, 2.0)
    assert (miss["tp"], miss["fn"], miss["precision"], miss["recall"], miss["f1"]) == (0, 4, 1.0, 0.0, 0.0)
    false = detection_scores(p, np.zeros((0, 2)), 2.0)
    assert (false["fp"], false["precision"], false["recall"], false["f1"]) == (3, 0.0, 1.0, 0.0)


def test_bad_inputs_name_themselves():
    ok = np.zeros((2, 2))
    with pytest.raises(ValueError, match="pred: expected an"):
        match_points(np.zeros((2, 3)), ok, 1.0)
    with pytest.raises(ValueError, match="true: contains NaN"):
        match_points(ok, np.array([[0.0, np.nan]]), 1.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="max_distance"):
            match_points(ok, ok, bad)
