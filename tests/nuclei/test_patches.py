"""Nucleus-centred patches: the lazy Dataset returns the right crops; edges, masks, zarr store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from histolatent.errors import InputError
from histolatent.io.slide import ArraySlide
from histolatent.nuclei.patches import (
    PATCH_PRESETS,
    NucleusPatchDataset,
    PatchSpec,
    extract_patches,
    patch_spec,
    read_patch_store,
    write_patch_store,
)


def _image(h=80, w=100, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 250, (h, w, 3), dtype=np.uint8)


def _table(xs, ys, slide="a", polygons=None) -> pd.DataFrame:
    t = pd.DataFrame({"slide_id": slide, "x": np.asarray(xs, float), "y": np.asarray(ys, float)})
    if polygons is not None:
        t["polygon"] = polygons
    return t


def test_presets_are_the_papers():
    assert PATCH_PRESETS["se2n-vae"] == PatchSpec(68, 0.25)
    assert patch_spec("infogan-40").size_px == 40
    assert patch_spec("se2n-vae", size_px=64).mpp == 0.25
    with pytest.raises(InputError, match="preset"):
        patch_spec("nope")


def test_dataset_returns_the_right_crops():
    img = _image()
    cells = _table([30, 55, 70], [20, 40, 50])
    ds = NucleusPatchDataset(cells, {"a": img}, PatchSpec(10, 0.5), mpp=0.5, columns=["x"])
    assert len(ds) == 3
    for i, (x, y) in enumerate(zip(cells.x, cells.y, strict=True)):
        item = ds[i]
        want = img[int(y) - 5:int(y) + 5, int(x) - 5:int(x) + 5]  # pixel (x, y) is at the patch centre
        got = (item["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 10, 10)
        np.testing.assert_array_equal(got, want)
        assert int(item["index"]) == i and float(item["x"]) == x
    # works in a DataLoader with workers' pickling (handles are not pickled)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    torch.testing.assert_close(batch["image"], torch.stack([ds[i]["image"] for i in range(3)]), rtol=0, atol=0)


def test_physical_scale_resampling():
    img = _image(120, 120, seed=3)
    slide = ArraySlide(img, mpp=0.25)
    [patch], kept = extract_patches(slide, np.array([[60.5, 60.5]]), PatchSpec(20, 0.5))
    assert patch.shape == (20, 20, 3) and kept.tolist() == [0]
    # 2x coarser: each output pixel is the mean of a 2x2 block of the level-0 window [40, 80)²,
    # whose pixel (20, 20) is centred on the nucleus (60.5 + 0.5 = 40 + (10 + 0.5) * 2)
    block = img[40:80, 40:80].astype(float).reshape(20, 2, 20, 2, 3).mean(axis=(1, 3))
    assert np.abs(patch.astype(float) - block).max() <= 1.0


def test_edges_pad_reflect_skip_and_mask():
    img = _image()
    cells = _table([2, 50], [40, 40], polygons=[np.array([0, 38, 4, 38, 4, 42, 0, 42, 0, 38], float),
                                                  np.array([48, 38, 52, 38, 52, 42, 48, 42, 48, 38], float)])
    pad = NucleusPatchDataset(cells, {"a": img}, PatchSpec(10, 0.5), edge="pad", mpp=0.5)
    p0 = (pad[0]["image"].permute(1, 2, 0).numpy() * 255).round()
    assert (p0[:, :3] == 255).all()  # 3 columns left of the slide are white
    np.testing.assert_array_equal(p0[:, 3:], img[35:45, 0:7])
    ref = NucleusPatchDataset(cells, {"a": img}, PatchSpec(10, 0.5), edge="reflect", mpp=0.5)
    r0 = (ref[0]["image"].permute(1, 2, 0).numpy() * 255).round()
    np.testing.assert_array_equal(r0[:, :3], r0[:, 3:6][:, ::-1])  # mirrored at the border
    skip = NucleusPatchDataset(cells, {"a": img}, PatchSpec(10, 0.5), edge="skip", mpp=0.5, mask=True)
    assert len(skip) == 1 and int(skip[0]["index"]) == 1
    m = skip[0]["image"][3].numpy()
    assert skip[0]["image"].shape[0] == 4
    assert m[5, 5] == 1.0 and m[0, 0] == 0.0 and m.sum() == 25  # the 5x5 px square, centred
    with pytest.raises(InputError, match="polygon"):
        NucleusPatchDataset(_table([1], [1]), {"a": img}, PatchSpec(8, 0.5), mask=True, mpp=0.5)
    with pytest.raises(InputError, match="slide_id"):
        NucleusPatchDataset(_table([1], [1], slide="zz"), {"a": img}, PatchSpec(8, 0.5), mpp=0.5)


def test_zarr_patch_store_round_trip(tmp_path):
    img = _image()
    cells = _table([30, 55, 70], [20, 40, 50])
    ds = NucleusPatchDataset(cells, {"a": img}, PatchSpec(10, 0.5), mpp=0.5)
    path = write_patch_store(ds, tmp_path / "p.zarr", chunk=2)
    arr, table = read_patch_store(path)
    assert arr.shape == (3, 10, 10, 3) and arr.attrs["mpp"] == 0.5
    np.testing.assert_array_equal(arr[1], img[35:45, 50:60])
    assert table.x.tolist() == [30, 55, 70]
    with pytest.raises(InputError, match="exists"):
        write_patch_store(ds, path)
    write_patch_store(ds, path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["p.zarr"]
