"""Synthetic compressed slides: verified stores, lesions inside tissue carrying the tumour code,
labels that say what the grids hold; same seed, same bytes."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from histolatent.io.grids import read_slide_grid, verify_grid
from histolatent.synth import grid_slide, write_grids
from histolatent.synth.grids import lesion_direction


def test_a_slide_holds_its_lesion_in_tissue_along_the_tumour_code():
    for seed in range(6):
        s = grid_slide(seed, size=(16, 20), channels=5, lesion=True, strength=3.0)
        h, w = s.mask.shape
        assert 12 <= h <= 16 and 15 <= w <= 20 and s.grid.shape == (5, h, w)
        assert s.label == 1 and s.lesion.any() and not s.lesion[~s.mask].any()
        assert np.all(s.grid[:, ~s.mask] == 0)
        proj = np.tensordot(lesion_direction(5), s.grid, axes=1)  # the code along the tumour direction
        assert proj[s.lesion].mean() - proj[s.mask & ~s.lesion].mean() > 2.0
        assert np.isclose(s.lesion_fraction, s.lesion.sum() / s.mask.sum())
    none = grid_slide(0, size=(16, 20), channels=5, lesion=False)
    assert none.label == 0 and not none.lesion.any() and none.lesion_fraction == 0


def test_write_grids_writes_a_cohort_ready_for_training(tmp_path):
    out = write_grids(tmp_path / "g", n=4, size=(10, 14), channels=3, seed=2)
    labels = pd.read_csv(out / "labels.csv")
    assert labels.columns.tolist() == ["slide_id", "label", "lesion_fraction"]
    assert labels["label"].tolist() == [0, 1, 0, 1]
    for row in labels.itertuples():
        store = out / f"{row.slide_id}.zarr"
        assert verify_grid(store) is None
        grid, mask, attrs = read_slide_grid(store)
        lesion = np.asarray(Image.open(out / f"{row.slide_id}_lesion.png")) > 0
        assert lesion.shape == mask.shape and (lesion.any() == bool(row.label)) and not lesion[~mask].any()
        assert attrs["encoder"] == "synth-grids"
    again = write_grids(tmp_path / "h", n=4, size=(10, 14), channels=3, seed=2)
    a, _, _ = read_slide_grid(out / "slide_0003.zarr")
    b, _, _ = read_slide_grid(again / "slide_0003.zarr")
    assert np.array_equal(a, b)
