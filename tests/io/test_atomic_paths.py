"""Outputs that belong together (a table and its GeoJSON; a zarr folder): all or none."""

from __future__ import annotations

import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from histolatent.errors import InputError
from histolatent.io.atomic import atomic_dir, atomic_paths
from histolatent.io.tables import concat_parquet


def test_atomic_paths_commit_all_or_restore_all(tmp_path, monkeypatch):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    with atomic_paths(a, b) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    # the second rename fails: the first target gets its old contents back
    real = os.replace

    def second_fails(src, dst):
        if str(dst) == str(b) and ".tmp" in str(src):
            raise OSError("disk gone")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OSError, match="disk gone"):
        with atomic_paths(a, b) as (ta, tb):
            ta.write_text("newer a")
            tb.write_text("newer b")
    monkeypatch.undo()
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]  # no temporary left


def test_atomic_dir_replaces_only_a_complete_folder(tmp_path):
    out = tmp_path / "s.zarr"
    with atomic_dir(out) as tmp:
        (tmp / "x").write_text("1")
    with pytest.raises(InputError, match="exists"):
        with atomic_dir(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "x").write_text("2")
            raise RuntimeError
    assert (out / "x").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_concat_parquet_keeps_order_and_sets_metadata(tmp_path):
    parts = []
    for k in range(3):
        parts.append(tmp_path / f"p{k}.parquet")
        pq.write_table(pa.table({"i": [2 * k, 2 * k + 1]}), parts[-1])
    out = concat_parquet(parts, tmp_path / "all.parquet", metadata={"kind": "cells"})
    t = pq.read_table(out)
    assert t["i"].to_pylist() == list(range(6)) and t.schema.metadata[b"histolatent"] == b'{"kind": "cells"}'
    pq.write_table(pa.table({"j": [0]}), tmp_path / "other.parquet")
    with pytest.raises(InputError, match="columns differ"):
        concat_parquet([parts[0], tmp_path / "other.parquet"], tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_outputs_get_the_mode_a_plain_open_would_give(tmp_path, umask):

    from histolatent.io.atomic import atomic_folder, atomic_path, atomic_paths, current_umask

    old = os.umask(umask)
    try:
        assert current_umask() == umask
        with open(tmp_path / "plain.txt", "w") as f:  # the reference: what open() and mkdir() give
            f.write("x")
        (tmp_path / "plain-dir").mkdir()
        with atomic_path(tmp_path / "one.txt") as tmp:
            tmp.write_text("x")
        with atomic_paths(tmp_path / "a.txt", tmp_path / "b.bin") as (a, b):
            a.write_text("x")
            b.write_bytes(b"x")
        with atomic_folder(tmp_path / "out") as folder:
            (folder / "inside.txt").write_text("x")
    finally:
        os.umask(old)

    def mode(p):
        return stat.S_IMODE((tmp_path / p).stat().st_mode)

    assert mode("plain.txt") == 0o666 & ~umask and mode("plain-dir") == 0o777 & ~umask
    for name in ("one.txt", "a.txt", "b.bin", "out/inside.txt"):
        assert mode(name) == mode("plain.txt"), name
    assert mode("out") == mode("plain-dir")
