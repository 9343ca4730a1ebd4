"""NIC patch and pair data sets: deterministic per seed, tissue only, and the paper's pair proportions."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from histolatent.datasets import create_dataset
from histolatent.errors import ConfigError, InputError

SMALL = dict(slides=3, slide_px=1024, tile_px=64, mpp=1.0, n=400, n_eval=40, block=8, window=4)


@pytest.fixture(scope="module")
def patches():
    return create_dataset("nic-patches", split="train", seed=0, **SMALL)


@pytest.fixture(scope="module")
def pairs():
    return create_dataset("nic-pairs", split="train", seed=0, **{**SMALL, "n": 4000})


def _tissue_fraction(world, x0, y0, px, mpp):
    from histolatent.synth.noise import Grid

    return float((world.section.membership(Grid(x0 * mpp, y0 * mpp, px, px, mpp)) >= 0.5).mean())


def test_items_are_a_pure_function_of_seed_split_and_index(patches):
    again = create_dataset("nic-patches", split="train", seed=0, **SMALL)
    other = create_dataset("nic-patches", split="train", seed=1, **SMALL)
    for i in (0, 9, 123):
        a, b = patches[i], again[i]
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(patches[9]["image"], other[9]["image"])
    a = patches[5]
    assert a["image"].shape == (3, 64, 64) and a["image"].dtype == torch.float32
    assert 0 <= float(a["image"].min()) and float(a["image"].max()) <= 1
    val = create_dataset("nic-patches", split="val", seed=0, **SMALL)
    assert val.source.worlds[0].seed != patches.source.worlds[0].seed  # splits never share tissue


def test_patches_come_from_tissue_cells_only_and_blocks_share_a_window(patches):
    src = patches.source
    seen = [patches.locate(i) for i in range(0, 400, 3)]
    for s, gx, gy in seen:
        frac = _tissue_fraction(src.worlds[s], gx * 64, gy * 64, 64, 1.0)
        assert frac >= 0.5, (s, gx, gy, frac)  # min_tissue 0.6 on a 16x coarser mask
        assert (gx, gy) in src.slides[s].index
    block = [patches.locate(i) for i in range(8, 16)]
    assert len({(s, gx // 4, gy // 4) for s, gx, gy in block}) == 1


def test_synth_labels_follow_the_slide_preset_and_the_lesion(patches):
    from histolatent.datasets.nic_patches import TISSUE_CLASSES

    for i in range(0, 400, 25):
        item = patches[i]
        s = int(item["slide"])
        assert int(item["label"]) in (patches.source.classes[s], TISSUE_CLASSES.index("tumour"))
        assert 0 <= int(item["region"]) <= 5


def test_pairs_same_half_neighbours_three_quarters_of_the_different(pairs):
    kinds = Counter()
    for i in range(4000):
        kind, s, gx, gy, s2, gx2, gy2 = pairs.locate(i)
        kinds[kind] += 1
        if kind == 0:
            assert (s, gx, gy) == (s2, gx2, gy2)
        elif kind == 1:
            assert s == s2 and max(abs(gx - gx2), abs(gy - gy2)) == 1  # adjacent, not overlapping
            assert (gx2, gy2) in pairs.source.slides[s].index
        else:
            assert s2 != s
    diff = kinds[1] + kinds[2]
    assert abs(kinds[0] / 4000 - 0.5) < 0.03
    assert abs(kinds[1] / diff - 0.75) < 0.03


def test_a_same_pair_is_one_location_under_two_augmentations(pairs):
    i = next(i for i in range(100) if pairs.locate(i)[0] == 0)
    item = pairs[i]
    assert float(item["label"]) == 1.0 and not torch.equal(item["image"], item["image2"])
    clean = create_dataset("nic-pairs", split="train", seed=0, augment=False, **{**SMALL, "n": 4000})
    c = clean[i]
    assert torch.equal(c["image"], c["image2"])
    j = next(j for j in range(100) if pairs.locate(j)[0] == 1)
    assert float(clean[j]["label"]) == 0.0 and not torch.equal(clean[j]["image"], clean[j]["image2"])


@pytest.fixture(scope="module")
def slide_folder(tmp_path_factory):
    from histolatent.synth.slide import write_slide

    root = tmp_path_factory.mktemp("slides")
    truth = write_slide(root / "a.tiff", size=(1024, 1024), mpp=1.0, lesion=None, seed=3, tile_px=256)
    (root / "notes.txt").write_text("not a slide")
    return root, truth


def test_folder_source_reads_tissue_cells_only(slide_folder):
    root, truth = slide_folder
    ds = create_dataset("nic-patches", split="train", seed=0, origin="folder", root=str(root), tile_px=64, mpp=1.0,
                        n=60, block=4, augment=False)
    reads = []
    orig = ds.source.patch
    ds.source.patch = lambda s, gx, gy: (reads.append((gx, gy)), orig(s, gx, gy))[1]
    items = [ds[i] for i in range(60)]
    assert items[0]["image"].shape == (3, 64, 64) and int(items[0]["label"]) == -1
    f = truth.mask_mpp / truth.mpp
    for gx, gy in reads:
        m = truth.tissue_mask[int(gy * 64 / f):int((gy + 1) * 64 / f), int(gx * 64 / f):int((gx + 1) * 64 / f)]
        assert m.mean() >= 0.5, (gx, gy)
    again = create_dataset("nic-patches", split="train", seed=0, origin="folder", root=str(root), tile_px=64,
                           mpp=1.0, n=60, block=4, augment=False)
    assert torch.equal(again[7]["image"], items[7]["image"])
    # a single slide: "other slide" pairs fall back to a distant cell of the same slide
    p = create_dataset("nic-pairs", split="train", seed=0, origin="folder", root=str(root), tile_px=64, mpp=1.0,
                       n=400, augment=False)
    others = [p.locate(i) for i in range(400) if p.locate(i)[0] == 2]
    assert others and all(max(abs(o[2] - o[5]), abs(o[3] - o[6])) >= 4 for o in others)


def test_folder_errors_name_the_input(tmp_path):
    with pytest.raises(InputError, match="data.root"):
        create_dataset("nic-patches", origin="folder")
    with pytest.raises(InputError, match="no slide files"):
        create_dataset("nic-patches", origin="folder", root=str(tmp_path))


def test_digit_patches_are_9px_mnist_digits():
    ds = create_dataset("nic-digit-patches", split="train", seed=0, n=50, p_empty=0.2)
    items = [ds[i] for i in range(50)]
    assert items[0]["image"].shape == (1, 9, 9)
    labels = np.array([int(it["label"]) for it in items])
    assert set(labels) <= set(range(11)) and (labels == 10).any() and (labels < 10).sum() > 25
    assert all(float(it["image"].sum()) == 0 for it in items if int(it["label"]) == 10)
    again = create_dataset("nic-digit-patches", split="train", seed=0, n=50, p_empty=0.2)
    assert torch.equal(again[3]["image"], items[3]["image"])


def test_a_digit_batch_is_its_items_one_by_one():
    ds = create_dataset("nic-digit-patches", split="train", seed=1, n=80, p_empty=0.3)
    idx = [7, 3, 60, 11, 42, 0, 79, 5, 18, 33]
    batch = ds.__getitems__(idx)
    assert any(int(b["label"]) == 10 for b in batch) and any(int(b["label"]) < 10 for b in batch)
    for i, item in zip(idx, batch, strict=True):
        assert torch.equal(item["image"], ds[i]["image"]) and int(item["label"]) == int(ds[i]["label"])
    plain = create_dataset("nic-digit-patches", split="train", seed=1, n=80, p_empty=0.3, augment=False)
    moved = [i for i in idx if int(ds[i]["label"]) < 10 and not torch.equal(ds[i]["image"], plain[i]["image"])]
    assert len(moved) == sum(int(ds[i]["label"]) < 10 for i in idx)  # every digit is augmented


def test_prerendered_windows_give_the_same_items_and_pairs(patches, pairs):
    small = {**SMALL, "slides": 2, "slide_px": 512}
    for name, ref in (("nic-patches", None), ("nic-pairs", None)):
        ref = create_dataset(name, split="train", seed=0, **small)
        pre = create_dataset(name, split="train", seed=0, prerender=True, prerender_workers=2, **small)
        assert pre.source._all and not pre.source._cache
        for i in range(0, 200, 7):
            a, b = ref[i], pre[i]
            assert all(torch.equal(a[k], b[k]) for k in a)
        assert not pre.source._cache  # every window came from the prerender
    with pytest.raises(InputError, match="prerender"):
        create_dataset("nic-patches", split="train", seed=0, origin="folder", root=".", prerender=True)


def test_digit_pairs_are_one_digit_twice_or_two_digits():
    ds = create_dataset("nic-digit-pairs", split="train", seed=0, n=200)
    items = [ds[i] for i in range(200)]
    same = np.array([float(it["label"]) for it in items]) == 1
    assert 60 < same.sum() < 140 and items[0]["image2"].shape == (1, 9, 9)
    # "same" keeps the digit (augmented twice: the views differ), "different" takes another source digit
    assert all(int(it["digit"]) == int(it["digit2"]) for it, s in zip(items, same, strict=True) if s)
    assert all(not torch.equal(it["image"], it["image2"]) for it in items)
    val = create_dataset("nic-digit-pairs", split="val", seed=0, n_eval=100)
    vs = [val[i] for i in range(100)]
    assert all(torch.equal(it["image"], it["image2"]) for it in vs if float(it["label"]) == 1)  # no augmentation
    assert not any(torch.equal(it["image"], it["image2"]) for it in vs if float(it["label"]) == 0)
    with pytest.raises(ConfigError, match="p_empty"):
        create_dataset("nic-digit-pairs", p_empty=0.1)
    batch = ds.__getitems__([5, 1, 77])  # what the data loader asks for: the same pairs
    assert all(all(torch.equal(b[k], ds[i][k]) for k in b) for i, b in zip([5, 1, 77], batch, strict=True))


def _shifted(digit: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``digit`` (P, P) moved by (dy, dx) pixels inside its P x P frame, zeros shifted in (brute force)."""
    p = digit.shape[-1]
    out = torch.zeros_like(digit)
    for y in range(p):
        for x in range(p):
            if 0 <= y - dy < p and 0 <= x - dx < p:
                out[y, x] = digit[y - dy, x - dx]
    return out


def test_lattice_cells_hold_their_digit_off_centre_and_fragments_of_others():
    kw = dict(split="val", seed=2, n_eval=60)  # val: no augmentation, so the digit itself is known
    plain = create_dataset("nic-digit-patches", **kw)
    alone = create_dataset("nic-digit-patches", lattice=True, neighbours=0.0, **kw)
    crowded = create_dataset("nic-digit-patches", lattice=True, neighbours=4.0, **kw)
    offsets, extra = set(), 0
    for i in range(60):
        digit, cell, busy = plain[i]["image"][0], alone[i]["image"][0], crowded[i]["image"][0]
        assert int(alone[i]["label"]) == int(plain[i]["label"]) == int(crowded[i]["label"])
        # the cell is the item's own digit moved so that its centre stays in the cell: |shift| <= P // 2
        found = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5) if torch.equal(cell, _shifted(digit, dy, dx))]
        assert found, f"item {i}: the cell is no shift of its digit"
        offsets.update(found[:1])
        # neighbours are max-composited over it: never darker, and brighter somewhere in some cells
        assert bool((busy >= cell).all())
        extra += int(bool((busy > cell).any()))
    dys, dxs = {d[0] for d in offsets}, {d[1] for d in offsets}
    assert min(dys) < 0 < max(dys) and min(dxs) < 0 < max(dxs)  # both directions on both axes
    assert extra > 20  # with 4 neighbours expected, most cells show a fragment
    batch = crowded.__getitems__([9, 2, 41])
    assert all(torch.equal(b["image"], crowded[i]["image"]) for i, b in zip([9, 2, 41], batch, strict=True))


def test_lattice_pairs_share_their_cell_when_same():
    val = create_dataset("nic-digit-pairs", split="val", seed=0, n_eval=80, lattice=True, neighbours=2.0)
    items = [val[i] for i in range(80)]
    same = [it for it in items if float(it["label"]) == 1]
    diff = [it for it in items if float(it["label"]) == 0]
    assert same and diff
    assert all(torch.equal(it["image"], it["image2"]) for it in same)  # one cell, no augmentation on val
    assert not any(torch.equal(it["image"], it["image2"]) for it in diff)
