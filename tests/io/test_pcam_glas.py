"""The PCam and GLaS readers on tiny files written by hand in exactly the official layouts."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from histolatent.datasets import create_dataset
from histolatent.errors import InputError
from histolatent.io.glas import glas_index, read_glas_image
from histolatent.io.pcam import PCamSplit


def _pcam_by_hand(root, split, x, y):
    """The official files: one dataset 'x' (N, 96, 96, 3) uint8 and one 'y' (N, 1, 1, 1) uint8."""
    with h5py.File(root / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
        f.create_dataset("x", data=x)
    with h5py.File(root / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
        f.create_dataset("y", data=y.reshape(-1, 1, 1, 1))


def test_pcam_reader_reads_the_official_layout_and_cuts_a_stratified_fraction(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 96, 96, 3), dtype=np.uint8)
    y = np.array([1] * 10 + [0] * 30, np.uint8)
    for split in ("train", "valid", "test"):
        _pcam_by_hand(tmp_path, split, x, y)
    s = PCamSplit(tmp_path, "test")
    assert len(s) == 40 and np.array_equal(s.image(7), x[7]) and np.array_equal(s.labels, y)
    ds = create_dataset("pcam", split="test", root=str(tmp_path))
    item = ds[3]
    assert item["image"].shape == (3, 96, 96) and int(item["label"]) == 1
    assert np.allclose(item["image"].permute(1, 2, 0).numpy() * 255, x[3])
    quarter = create_dataset("pcam", split="train", root=str(tmp_path), label_fraction=0.2, label_seed=4)
    assert len(quarter) == 8 and int(quarter.labels.sum()) == 2  # 2 of 10 positives, 6 of 30 negatives
    again = create_dataset("pcam", split="train", root=str(tmp_path), label_fraction=0.2, label_seed=4)
    other = create_dataset("pcam", split="train", root=str(tmp_path), label_fraction=0.2, label_seed=5)
    assert np.array_equal(quarter.indices, again.indices) and not np.array_equal(quarter.indices, other.indices)
    # the test split is never cut
    assert len(create_dataset("pcam", split="test", root=str(tmp_path), label_fraction=0.2)) == 40


def test_pcam_reader_names_what_is_wrong(tmp_path):
    with pytest.raises(InputError, match="split_train_x.h5"):
        PCamSplit(tmp_path, "train")
    _pcam_by_hand(tmp_path, "train", np.zeros((3, 96, 96, 3), np.uint8), np.array([0, 1], np.uint8))
    with pytest.raises(InputError, match="3 patches .* but 2 labels"):
        PCamSplit(tmp_path, "train")


def _glas_by_hand(root):
    """train_1/2, testA_1, testB_1 (.bmp + _anno.bmp) and Grade.csv as the challenge ships them."""
    rows = ["name,Patient ID,grade (GlaS),grade (Sirinukunwattana et al. 2015)"]
    for k, (name, grade) in enumerate((("train_1", "benign"), ("train_2", " malignant"), ("testA_1", "benign"),
                                       ("testB_1", "malignant"))):
        rgb = np.full((20, 30, 3), 40 * k, np.uint8)
        anno = np.zeros((20, 30), np.uint8)
        anno[2:8, 3:9] = 1
        anno[10:18, 12:25] = 2 + k
        Image.fromarray(rgb).save(root / f"{name}.bmp")
        Image.fromarray(anno).save(root / f"{name}_anno.bmp")
        rows.append(f"{name},{k},{grade},adenomatous")
    (root / "Grade.csv").write_text("\n".join(rows) + "\n")


def test_glas_reader_lists_reads_and_crops_the_challenge_folder(tmp_path):
    _glas_by_hand(tmp_path)
    index = glas_index(tmp_path)
    assert index["name"].tolist() == ["train_1", "train_2", "testA_1", "testB_1"]
    assert index["grade"].tolist() == ["benign", "malignant", "benign", "malignant"]
    rgb, inst = read_glas_image(index["image"][1], index["anno"][1])
    assert rgb.shape == (20, 30, 3) and int(rgb[0, 0, 0]) == 40
    assert sorted(np.unique(inst).tolist()) == [0, 1, 3] and int((inst == 3).sum()) == 8 * 13
    test = create_dataset("glas", split="test", root=str(tmp_path), tile_px=16, crops_per_image=2)
    assert len(test.index) == 2 and len(test) == 4
    item = test[0]
    assert item["image"].shape == (3, 16, 16) and set(np.unique(item["target"].numpy())) <= {0, 1}
    half = create_dataset("glas", split="train", root=str(tmp_path), label_fraction=0.5, tile_px=16)
    assert len(half.index) == 2  # one image of each grade (at least one per class)
    small = create_dataset("glas", split="train", root=str(tmp_path), source_mpp=0.62, mpp=1.24, tile_px=8)
    img, lab = small.full(0)
    assert img.shape == (10, 15, 3) and lab.shape == (10, 15)


def test_glas_reader_names_what_is_wrong(tmp_path):
    _glas_by_hand(tmp_path)
    (tmp_path / "train_2_anno.bmp").unlink()
    with pytest.raises(InputError, match="train_2.bmp has no annotation"):
        glas_index(tmp_path)
    (tmp_path / "train_2.bmp").unlink()
    (tmp_path / "Grade.csv").write_text("name,grade (GlaS)\ntrain_1,benign\n")
    with pytest.raises(InputError, match="no grade for testA_1"):
        glas_index(tmp_path)
