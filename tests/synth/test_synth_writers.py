"""SynthPath folder writers (histolatent.synth.writers): same seed, same bytes; files hold what they say."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

import histolatent.synth.writers as writers
from histolatent.errors import InputError
from histolatent.synth import (
    cell_patches,
    render_tile,
    write_cells,
    write_digits,
    write_nic,
    write_rois,
    write_slides,
    write_stain_pairs,
    write_tiles,
)
from histolatent.synth.noise import seed32

#: The smallest useful call of every writer (each well under a second).
TINY = {
    "cells": (write_cells, dict(n=3, size_px=24, mpp=0.5, rotate=True, masks=True, stain_jitter=0.5)),
    "tiles": (write_tiles, dict(n=2, size_px=48, concentrations=True)),
    "rois": (write_rois, dict(n_rois=2, cells_per_roi=2, roi_px=96, patch_px=24)),
    "stain-pairs": (write_stain_pairs, dict(n=2, size_px=48, concentrations=True, target=2)),
    "slides": (write_slides, dict(n=2, size=(128, 64), tile_px=64)),
    "nic": (write_nic, dict(n=2, size=200)),
    "digits": (write_digits, dict(n=3, mode="N")),
}


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _png(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1]


@pytest.mark.parametrize("kind", sorted(TINY))
def test_same_seed_same_bytes_and_another_seed_other_bytes(kind, tmp_path):
    write, kw = TINY[kind]
    a = _files(write(tmp_path / "a", seed=5, **kw))
    b = _files(write(tmp_path / "b", seed=5, **kw))
    c = _files(write(tmp_path / "c", seed=6, **kw))
    assert a == b
    assert {"manifest.json", "manifest.parquet"} <= set(a) and set(c) == set(a)
    assert any(a[k] != c[k] for k in a if k != "manifest.json")
    doc = json.loads(a["manifest.json"])
    assert doc["kind"] in (kind, "digits") and doc["params"]["seed"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temporary folders left


def test_cell_chunks_do_not_change_the_patches(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "CELL_CHUNK", 2)
    out = write_cells(tmp_path / "c", n=5, preset="infogan-40", size_px=24, types=["lymphocyte"], seed=3)
    images, table = cell_patches(5, 24, 0.5, 3, types=["lymphocyte"])
    np.testing.assert_array_equal(np.load(out / "images.npy"), images)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "manifest.parquet"), table.reset_index(drop=True))
    assert not (out / "masks.npy").exists()


def test_tile_files_hold_the_tile_of_their_seed(tmp_path):
    out = write_tiles(tmp_path / "t", n=2, size_px=48, mpp=0.5, tissue="tumour", stain=3, seed=7)
    man = pd.read_parquet(out / "manifest.parquet")
    for i in range(2):
        assert man.seed[i] == seed32(7, 0x711E, i)
        t = render_tile(48, 0.5, man.seed[i], 3, "tumour")
        np.testing.assert_array_equal(_png(out / man.image[i]), t.rgb)
        np.testing.assert_array_equal(np.load(out / man.labels[i])["instances"], t.instances)
        assert man.n_nuclei[i] == len(t.nuclei)
    nuclei = pd.read_parquet(out / "nuclei.parquet")
    assert nuclei.tile_id.value_counts().sort_index().tolist() == man.n_nuclei.tolist()


def test_slide_seeds_and_lesion_forms(tmp_path):
    two = pd.read_parquet(write_slides(tmp_path / "two", n=2, size=(128, 64), tile_px=64, seed=4) / "manifest.parquet")
    assert two.seed.tolist() == [seed32(4, 0x511D, 0), seed32(4, 0x511D, 1)]
    one = write_slides(tmp_path / "one", size=(128, 64), tile_px=64, lesion="0.5,0.5,20,3", seed=4)
    row = pd.read_parquet(one / "manifest.parquet").iloc[0]
    assert (row.seed, row.label, row.grade) == (4, 1, 3)
    assert json.loads((one / "manifest.json").read_text())["params"]["lesion"] == "0.5,0.5,20,3"
    none = pd.read_parquet(write_slides(tmp_path / "none", size=(128, 64), tile_px=64, lesion="none") / "manifest.parquet")
    assert none.label.tolist() == [0] and none.lesion.isna().all()


@pytest.mark.parametrize(("write", "kw", "match"), [
    (write_cells, dict(preset="big"), "preset"),
    (write_cells, dict(n=0), "n"),
    (write_cells, dict(mpp=-1.0), "mpp"),
    (write_tiles, dict(tissue="bone"), "tissue"),
    (write_rois, dict(grades=("a", 1, 1)), "grades"),
    (write_slides, dict(lesion="0.5,0.5"), "lesion"),
    (write_nic, dict(split="holdout"), "split"),
    (write_digits, dict(mode="X"), "mode"),
    (write_digits, dict(source="mnist"), "source"),
])
def test_bad_arguments_raise_before_any_output(write, kw, match, tmp_path):
    with pytest.raises(InputError, match=match):
        write(tmp_path / "out", **kw)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_kept_unless_overwrite(tmp_path):
    write_digits(tmp_path / "d", n=2)
    with pytest.raises(InputError, match="already exists"):
        write_digits(tmp_path / "d", n=3)
    assert len(pd.read_parquet(tmp_path / "d" / "manifest.parquet")) == 2
    write_digits(tmp_path / "d", n=3, overwrite=True)
    assert len(pd.read_parquet(tmp_path / "d" / "manifest.parquet")) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_slide_folders_hold_slides_labels_and_masks_apart(tmp_path):
    out = write_slides(tmp_path / "s", n=2, size=(128, 64), tile_px=64, seed=4)
    from histolatent.io.cohort import list_inputs

    assert [p.name for p in list_inputs(out)] == ["slide_0000.tiff", "slide_0001.tiff"]  # a cohort finds the slides only
    man = pd.read_parquet(out / "manifest.parquet")
    labels = pd.read_csv(out / "labels.csv")
    assert labels.slide_id.tolist() == ["slide_0000", "slide_0001"]  # the grid names compress_cohort gives
    assert labels.label.tolist() == man.label.tolist() and labels.grade.tolist() == man.grade.tolist()
    for row in man.itertuples():
        assert (out / row.lesion_mask).is_file() and (out / row.tissue_mask).is_file()
        assert row.lesion_mask.startswith("masks/")
