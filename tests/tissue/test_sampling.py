"""Crop centres: never on background, drawn in proportion to the distance to background, and
test-time centres spread over the tissue."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from histolatent.errors import InputError
from histolatent.tissue.sampling import distance_to_background, sample_cells, spread_cells


def _blobs() -> np.ndarray:
    mask = np.zeros((12, 17), bool)  # not square
    mask[1:7, 1:8] = True
    mask[8:12, 11:17] = True  # touches the bottom and right edges of the grid
    mask[3, 3] = False  # a hole
    return mask


def test_distance_is_the_brute_force_distance_to_background_outside_included():
    mask = _blobs()
    h, w = mask.shape
    bg = [(i, j) for i in range(-1, h + 1) for j in range(-1, w + 1)
          if not (0 <= i < h and 0 <= j < w) or not mask[i, j]]
    bg = np.array(bg, dtype=float)
    want = np.zeros(mask.shape)
    for i, j in np.argwhere(mask):
        want[i, j] = np.sqrt(((bg - (i, j)) ** 2).sum(axis=1)).min()
    assert np.allclose(distance_to_background(mask), want)


def test_centres_never_fall_on_background_and_follow_the_distance():
    mask = _blobs()
    d = distance_to_background(mask)
    cells = sample_cells(mask, 60_000, np.random.default_rng(3))
    assert mask[cells[:, 0], cells[:, 1]].all()
    counts = np.zeros(mask.shape)
    np.add.at(counts, (cells[:, 0], cells[:, 1]), 1)
    tissue = mask.ravel()
    expected = d.ravel()[tissue] / d.sum() * len(cells)
    assert chisquare(counts.ravel()[tissue], expected).pvalue > 1e-3
    uniform = np.full(tissue.sum(), len(cells) / tissue.sum())  # what the test would see if they did not
    assert chisquare(counts.ravel()[tissue], uniform).pvalue < 1e-12


def test_same_seed_same_centres():
    mask = _blobs()
    a = sample_cells(mask, 20, np.random.default_rng(5))
    assert np.array_equal(a, sample_cells(mask, 20, np.random.default_rng(5)))
    assert not np.array_equal(a, sample_cells(mask, 20, np.random.default_rng(6)))
    assert np.array_equal(spread_cells(mask, 4, np.random.default_rng(5)), spread_cells(mask, 4, np.random.default_rng(5)))


def test_spread_centres_are_distinct_tissue_cells_reaching_every_blob():
    mask = _blobs()
    for seed in range(5):
        cells = spread_cells(mask, 2, np.random.default_rng(seed))
        assert mask[cells[:, 0], cells[:, 1]].all()
        blob = cells[:, 0] >= 8
        assert sorted(blob.tolist()) == [False, True]  # one centre in each blob, whichever comes first
    few = np.zeros((3, 3), bool)
    few[1, 1:] = True
    assert len(spread_cells(few, 10, np.random.default_rng(0))) == 2  # no more crops than tissue cells


def test_a_mask_without_tissue_is_an_error():
    with pytest.raises(InputError, match="no tissue"):
        sample_cells(np.zeros((3, 4), bool), 1, np.random.default_rng(0))
    with pytest.raises(InputError, match="bool"):
        distance_to_background(np.ones((3, 4)))
