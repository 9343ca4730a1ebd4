"""A patch store read back holds every patch, the mask channel, its geometry and the cell table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from histolatent.io.slide import ArraySlide
from histolatent.io.tables import with_physical_coordinates
from histolatent.nuclei.patches import (
    NucleusPatchDataset,
    PatchSpec,
    extract_patch,
    read_patch_store,
    write_patch_store,
)


def test_patch_store_round_trip_with_masks_and_skipped_edges(tmp_path):
    rng = np.random.default_rng(4)
    img = rng.integers(0, 250, (70, 110, 3), dtype=np.uint8)
    sq = lambda x, y: np.array([x - 2, y - 1, x + 3, y - 1, x + 3, y + 2, x - 2, y + 2, x - 2, y - 1], float)  # noqa: E731
    xs, ys = [30.0, 3.0, 80.0, 55.0, 20.0], [20.0, 40.0, 45.0, 33.0, 52.0]  # the second is at the edge
    cells = with_physical_coordinates(pd.DataFrame({
        "x": xs, "y": ys, "cell_id": np.arange(5, dtype=np.int64), "area_um2": [1.5, 2.0, np.nan, 3.25, 4.0],
        "classification": ["a", "b", "a", "c", "b"], "polygon": [sq(x, y) for x, y in zip(xs, ys, strict=True)]}),
        slide_id="s", mpp=0.5)
    spec = PatchSpec(12, 1.0)  # 2 level-0 px per patch pixel
    ds = NucleusPatchDataset(cells, {"s": img}, spec, edge="skip", mask=True, mpp=0.5)
    assert ds.rows.tolist() == [0, 2, 3, 4]
    path = write_patch_store(ds, tmp_path / "p.zarr", chunk=3)  # chunks of 3: a full and a partial one
    arr, table = read_patch_store(path)
    assert arr.shape == (4, 12, 12, 4) and arr.dtype == np.uint8
    assert dict(arr.attrs) == {"mpp": 1.0, "size_px": 12, "edge": "skip", "mask": True, "layout": "NHWC",
                               "channels": ["R", "G", "B", "mask"]}
    slide = ArraySlide(img, mpp=0.5)
    for k, r in enumerate(ds.rows):
        want = extract_patch(slide, xs[r], ys[r], spec, polygon=cells.polygon[r], mask=True)
        np.testing.assert_array_equal(arr[k], want)
        assert 4 <= (want[..., 3] == 255).sum() <= 9  # the 5 x 3 px square at half the resolution
    kept = cells.iloc[ds.rows].reset_index(drop=True)
    pd.testing.assert_frame_equal(table.drop(columns="polygon"), kept.drop(columns="polygon"), check_dtype=True)
    for a, b in zip(table.polygon, kept.polygon, strict=True):
        np.testing.assert_array_equal(a, b)
