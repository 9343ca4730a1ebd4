"""io.atomic.atomic_folder and write_image_atomic: a crash leaves the old output or the new one."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from histolatent.errors import InputError
from histolatent.io.atomic import atomic_folder, write_image_atomic


def test_a_failed_block_leaves_the_old_folder_and_no_temporary_one(tmp_path):
    with atomic_folder(tmp_path / "set") as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "set", overwrite=True) as tmp:
        (tmp / "a.txt").write_text("new")
        raise RuntimeError("crash half-way")
    assert [p.name for p in tmp_path.iterdir()] == ["set"]
    assert (tmp_path / "set" / "a.txt").read_text() == "old"
    with atomic_folder(tmp_path / "set", overwrite=True) as tmp:
        (tmp / "b.txt").write_text("new")
    assert [p.name for p in (tmp_path / "set").iterdir()] == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_an_existing_folder_is_an_error_naming_it_before_the_block_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    with atomic_folder(tmp_path / "empty") as tmp:  # an empty folder counts as absent
        (tmp / "x").write_text("1")
    ran = []
    with pytest.raises(InputError, match=r"--out: '.*empty' already exists"):
        with atomic_folder(tmp_path / "empty", name="--out"):
            ran.append(True)
    assert not ran


def test_write_image_atomic_writes_the_format_of_the_suffix(tmp_path):
    img = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    for name, fmt in (("a.png", "PNG"), ("a.tif", "TIFF"), ("a.bmp", "BMP"), ("noext", "PNG")):
        path = write_image_atomic(tmp_path / name, img)
        with Image.open(path) as im:
            assert im.format == fmt and np.array_equal(np.asarray(im), img)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bmp", "a.png", "a.tif", "noext"]
