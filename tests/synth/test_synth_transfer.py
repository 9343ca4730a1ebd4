"""SynthPath's PCam-like patches and GLaS-like gland tiles: labels and masks agree with the world."""

from __future__ import annotations

import numpy as np

from histolatent.datasets import create_dataset
from histolatent.synth import gland_masks, gland_tiles, pcam_patches, write_glas, write_pcam
from histolatent.synth.noise import seed32
from histolatent.synth.tissue import REGIONS


def test_gland_masks_keep_nests_with_a_lumen_only():
    reg = np.full((8, 12), REGIONS["stroma"], np.uint8)
    reg[1:6, 1:6] = REGIONS["epithelium"]
    reg[2:4, 2:4] = REGIONS["lumen"]       # a gland
    reg[1:4, 8:11] = REGIONS["epithelium"]  # a solid nest: not a gland
    inst, lumen = gland_masks(reg)
    assert int(inst.max()) == 1 and int((inst == 1).sum()) == 25 and not inst[1:4, 8:11].any()
    assert int(lumen.sum()) == 4


def test_pcam_patches_are_balanced_and_labelled_by_the_centre(tmp_path):
    d = pcam_patches(12, seed=1, slides=2, slide_px=768)
    assert d["x"].shape == (12, 96, 96, 3) and 3 <= int(d["y"].sum()) <= 9
    assert np.array_equal(d["y"], pcam_patches(12, seed=1, slides=2, slide_px=768)["y"])
    root = write_pcam(tmp_path / "pcam", n_train=8, n_valid=2, n_test=4, slides=1, slide_px=512)
    ds = create_dataset("pcam", split="test", root=str(root))
    assert len(ds) == 4 and ds[0]["image"].shape == (3, 96, 96)


def test_gland_tiles_write_a_glas_folder_the_reader_reads(tmp_path):
    t = gland_tiles(2, seed=0, size_px=64)
    for inst, lumen in zip(t["glands"], t["lumen"], strict=True):
        assert lumen.any() and (inst[lumen] > 0).all()  # every lumen lies inside a gland
    root = write_glas(tmp_path / "glas", n_train=2, n_test=2, size_px=64, mpp=2.0)
    ds = create_dataset("glas", split="test", root=str(root), source_mpp=2.0, mpp=2.0, tile_px=32)
    rgb, inst = ds.full(0)
    truth = gland_tiles(1, seed=seed32(0, 1), size_px=64)  # testA_1: the first tile of split 1
    assert np.array_equal(rgb, truth["rgb"][0]) and np.array_equal(inst, truth["glands"][0])
