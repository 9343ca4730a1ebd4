"""grid-crops: a crop is the zero-padded slice of the grid around a tissue centre drawn in
proportion to the distance to background; items are pure functions of (seed, split, index);
bad inputs are refused at entry, naming them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import chisquare

from histolatent.datasets import create_dataset
from histolatent.datasets.grid_crops import fold_splits, slide_partitions
from histolatent.errors import ConfigError, InputError
from histolatent.io.grids import GridStore, dihedral_transform, write_slide_grid
from histolatent.tissue.sampling import distance_to_background

R = 6


def _cohort(root, n=4, c=3, shape=(7, 11), labels=None, seed=0):
    """``n`` random grids of ``shape`` (not square) and their labels table; returns its path."""
    rng = np.random.default_rng(seed)
    ids = [f"s{i}" for i in range(n)]
    for sid in ids:
        mask = rng.random(shape) < 0.6
        mask[shape[0] // 2, shape[1] // 2] = True
        grid = rng.normal(size=(c, *shape)).astype(np.float16).astype(np.float32) * mask
        write_slide_grid(root / f"{sid}.zarr", grid, mask)
    table = pd.DataFrame({"slide_id": ids, "label": labels if labels is not None else [i % 2 for i in range(n)]})
    table.to_csv(root / "labels.csv", index=False)
    return root / "labels.csv"


def _crops(root, split="train", seed=0, **kw):
    opts = dict(root=str(root), labels=str(root / "labels.csv"), crop=R, samples_per_slide=50, eval_crops=4,
                splits={"train": ["s0", "s1", "s2", "s3"], "val": ["s1", "s3"]})
    return create_dataset("grid-crops", split=split, seed=seed, **{**opts, **kw})


def _padded_slice(store: GridStore, r: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The R x R crop centred at (r, c) cut from the whole grid padded by hand."""
    h, w = store.shape
    grid = np.zeros((store.channels, h + 2 * R, w + 2 * R), np.float32)
    mask = np.zeros((h + 2 * R, w + 2 * R), bool)
    grid[:, R:R + h, R:R + w] = store.window(0, 0, h, w)
    mask[R:R + h, R:R + w] = store.mask()
    top, left = r - R // 2 + R, c - R // 2 + R
    return grid[:, top:top + R, left:left + R], mask[top:top + R, left:left + R]


def test_a_crop_is_the_slice_of_the_grid_around_its_centre(tmp_path):
    _cohort(tmp_path)
    ds = _crops(tmp_path, dihedral=False)
    edge = 0
    for i in range(40):
        item = ds[i]
        s, r, c, k = ds.locate(i)
        assert k == 0 and item["slide"] == s and item["centre"].tolist() == [r, c]
        want, want_mask = _padded_slice(ds.stores[s], r, c)
        assert item["image"].dtype == torch.float32 and item["image"].shape == (3, R, R)
        assert np.array_equal(item["image"].numpy(), want) and np.array_equal(item["mask"].numpy(), want_mask)
        assert item["label"] == float(int(ds.slide_ids[s][1:]) % 2)
        edge += not want_mask.any(axis=1).all()  # crops that leave the grid are zero-padded
    assert edge > 0


def test_dihedral_crops_are_the_eight_transforms_of_the_slice(tmp_path):
    _cohort(tmp_path)
    ds = _crops(tmp_path)
    seen = set()
    for i in range(80):
        s, r, c, k = ds.locate(i)
        want, want_mask = _padded_slice(ds.stores[s], r, c)
        item = ds[i]
        assert np.array_equal(item["image"].numpy(), dihedral_transform(want, k))
        assert np.array_equal(item["mask"].numpy(), dihedral_transform(want_mask, k))
        seen.add(k)
    assert seen == set(range(8))


def test_centres_are_tissue_and_follow_the_distance_to_background(tmp_path):
    _cohort(tmp_path, n=4)
    ds = _crops(tmp_path, samples_per_slide=3000)
    counts = {s: np.zeros(ds.stores[s].shape) for s in range(4)}
    for i in range(len(ds)):
        s, r, c, _ = ds.locate(i)
        counts[s][r, c] += 1
    for s, n in counts.items():
        mask = ds.stores[s].mask()
        assert n[~mask].sum() == 0
        d = distance_to_background(mask)[mask]
        assert chisquare(n[mask], d / d.sum() * n.sum()).pvalue > 1e-3


def test_items_are_a_pure_function_of_seed_split_and_index(tmp_path):
    _cohort(tmp_path)
    a, b, c = _crops(tmp_path, seed=1), _crops(tmp_path, seed=1), _crops(tmp_path, seed=2)
    for i in (0, 7, 33):
        x, y = a[i], b[i]
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert any(a.locate(i) != c.locate(i) for i in range(20))
    assert [a.locate(i) for i in range(5)] == [a.locate(i) for i in range(5)]  # no hidden state between calls


def test_eval_crops_are_spread_untransformed_and_fixed(tmp_path):
    _cohort(tmp_path)
    val = _crops(tmp_path, split="val")
    assert len(val) == 2 * 4 and val.slide_ids == ["s1", "s3"]
    for s in range(2):
        cells = [val.locate(s * 4 + j) for j in range(4)]
        assert {c[0] for c in cells} == {s} and {c[3] for c in cells} == {0}
        assert len({(c[1], c[2]) for c in cells}) == 4  # distinct centres
        assert all(val.stores[s].mask()[c[1], c[2]] for c in cells)
    again = _crops(tmp_path, split="val")
    assert [val.locate(i) for i in range(8)] == [again.locate(i) for i in range(8)]


def test_a_dihedral_store_gives_crops_of_its_transformed_grids(tmp_path):
    from histolatent.embed.grid import compress_slide
    from histolatent.tissue.mask import TissueMask

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (5 * 8, 7 * 8, 3), dtype=np.uint8)  # 5 x 7 tiles of 8 px
    tissue = TissueMask(rng.random((5, 7)) < 0.7, (7 * 8, 5 * 8))
    compress_slide(image, lambda x: x.mean(dim=(2, 3)), tmp_path / "s0.zarr", tile_px=8, mpp=1.0, slide_mpp=1.0,
                   tissue=tissue, dihedral=True, progress=False)
    pd.DataFrame({"slide_id": ["s0"], "label": [1]}).to_csv(tmp_path / "labels.csv", index=False)
    ds = _crops(tmp_path, splits={"train": ["s0"]})
    store = ds.stores[0]
    assert store.dihedral and store.shape == (5, 7)
    ks = set()
    for i in range(40):
        s, r, c, k = ds.locate(i)
        assert store.mask(k)[r, c]
        item = ds[i]
        assert np.array_equal(item["image"].numpy(), store.window(r - R // 2, c - R // 2, R, R, k=k))
        # mean RGB does not see rotations: grid k is grid 0 transformed, so the crop is too
        g0 = dihedral_transform(store.window(0, 0, 5, 7, k=0), k)  # anchored top-left in its 7 x 7 frame
        assert np.allclose(store.window(0, 0, *g0.shape[1:], k=k), g0, atol=1e-3)
        ks.add(k)
    assert len(ks) > 4


def test_default_splits_are_fold_zero_of_stratified_partitions_or_the_split_column(tmp_path):
    _cohort(tmp_path, n=8)
    opts = dict(root=str(tmp_path), labels=str(tmp_path / "labels.csv"), crop=R)
    parts = slide_partitions([f"s{i}" for i in range(8)], [i % 2 for i in range(8)], n=4, seed=0)
    want = fold_splits(parts, 0)
    got = {sp: create_dataset("grid-crops", split=sp, **opts).slide_ids for sp in ("train", "val", "test")}
    assert got == want and len(want["train"]) == 4
    table = pd.read_csv(tmp_path / "labels.csv")
    table["split"] = ["train"] * 5 + ["val", "test", "test"]
    table.to_csv(tmp_path / "labels.csv", index=False)
    assert create_dataset("grid-crops", split="test", **opts).slide_ids == ["s6", "s7"]


def test_partitions_cover_every_slide_once_balanced_by_label():
    ids = [f"x{i}" for i in range(23)]
    y = [int(i < 9) for i in range(23)]
    parts = slide_partitions(ids, y, n=4, seed=3)
    flat = [s for p in parts for s in p]
    assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))
    assert {len(p) for p in parts} <= {5, 6}
    pos = [sum(y[ids.index(s)] for s in p) for p in parts]
    assert max(pos) - min(pos) <= 1
    assert slide_partitions(ids[::-1], y[::-1], n=4, seed=3) == parts  # the order given does not matter
    assert slide_partitions(ids, y, n=4, seed=4) != parts


def test_bad_inputs_are_refused_at_entry_naming_them(tmp_path):
    _cohort(tmp_path)
    with pytest.raises(InputError, match=r"no label for slide\(s\) \['s9'\]"):
        _crops(tmp_path, splits={"train": ["s0", "s9"]})
    pd.DataFrame({"slide_id": ["s0", "s1", "s2", "s3", "s9"], "label": [0, 1, 0, 1, 1]}).to_csv(
        tmp_path / "labels.csv", index=False)
    with pytest.raises(InputError, match=r"no grid store s9\.zarr"):
        _crops(tmp_path, splits={"train": ["s0", "s9"]})
    with pytest.raises(InputError, match=r"no label for the grid"):  # default split: every store needs a label
        pd.DataFrame({"slide_id": ["s0", "s1"], "label": [0, 1]}).to_csv(tmp_path / "labels.csv", index=False)
        create_dataset("grid-crops", root=str(tmp_path), labels=str(tmp_path / "labels.csv"), crop=R)
    _cohort(tmp_path / "b", labels=[0.0, 0.5, 1.0, 0.2])
    with pytest.raises(InputError, match="binary"):
        _crops(tmp_path / "b")
    assert len(_crops(tmp_path / "b", task="regression")) == 200
    man = tmp_path / "b" / "s2.zarr" / "manifest.json"
    doc = json.loads(man.read_text())
    doc["checksum"] = "0" * 64
    man.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"s2\.zarr.*checksum"):
        _crops(tmp_path / "b", task="regression")
    (tmp_path / "b" / "s2.zarr" / "manifest.json").unlink()
    with pytest.raises(InputError, match=r"s2\.zarr.*no manifest"):
        _crops(tmp_path / "b", task="regression")
    with pytest.raises(ConfigError, match="crop"):
        _crops(tmp_path, crop=0)


def test_a_batch_is_its_items_one_by_one_and_trim_keeps_every_tissue_cell(tmp_path):
    _cohort(tmp_path, shape=(5, 7))
    for split in ("train", "val"):
        ds, trimmed = _crops(tmp_path, split=split, crop=9), _crops(tmp_path, split=split, crop=9, trim=True)
        idx = list(range(0, len(ds), 3))[:16]
        batch, cut = ds.__getitems__(idx), trimmed.__getitems__(idx)
        for i, item in zip(idx, batch, strict=True):
            assert all(torch.equal(item[k], ds[i][k]) for k in item)
        # trim: one box for the whole batch, inside the crop, holding every cell of every item
        h, w = cut[0]["mask"].shape
        assert h <= 9 and w <= 9 and all(x["image"].shape == (3, h, w) for x in cut)
        rows, cols = np.nonzero(np.any([b["mask"].numpy() for b in batch], axis=0))
        assert rows.max() - rows.min() < h and cols.max() - cols.min() < w
        one = trimmed.__getitems__([idx[1]])[0]["mask"].shape  # a lone crop: at most its 5 x 7 grid
        assert tuple(one) in ((5, 7), (7, 5)) or (one[0] <= 7 and one[1] <= 7 and min(one) <= 5)
        for full, small in zip(batch, cut, strict=True):
            assert int(full["mask"].sum()) == int(small["mask"].sum()) > 0
            assert torch.equal(full["image"][:, full["mask"]].sort(dim=1).values,
                               small["image"][:, small["mask"]].sort(dim=1).values)


def test_attention_mil_gives_the_same_output_on_a_trimmed_batch(tmp_path):
    from histolatent.models import create_model

    _cohort(tmp_path, shape=(5, 7))
    ds, trimmed = _crops(tmp_path, crop=9), _crops(tmp_path, crop=9, trim=True)
    torch.manual_seed(0)
    mil = create_model("attention-mil", in_channels=3, crop=9, instance_dim=8, attention_dim=4).eval()
    idx = list(range(12))
    full = torch.utils.data.default_collate(ds.__getitems__(idx))
    cut = torch.utils.data.default_collate(trimmed.__getitems__(idx))
    with torch.no_grad():
        a, b = mil(full["image"], full["mask"])["logits"], mil(cut["image"], cut["mask"])["logits"]
    assert torch.allclose(a, b, atol=1e-6)
