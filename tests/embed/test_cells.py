"""embed_cells: known patches, bounded memory, resume after a crash, atomic output, inputs checked first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import histolatent.embed.cells as cells_mod
from histolatent.embed import embed_cells, encode_images
from histolatent.embed.cells import parts_folder
from histolatent.errors import InputError
from histolatent.io.slide import ArraySlide
from histolatent.models import create_model


def _model(size: int = 16):
    torch.manual_seed(0)
    return create_model("autoencoder", in_channels=3, image_size=size, channels=[4], latent_dim=3)


def _run(tmp_path, model, mpp: float | None):
    """A finished run folder, as the engine leaves it (weights, model.json, config.yaml)."""
    from histolatent.config import dump_yaml
    from histolatent.train.run import save_weights

    run = tmp_path / "run"
    save_weights(model, run, step=0)
    data = {"name": "synth-nuclei-crops"} | ({"mpp": mpp} if mpp is not None else {})
    (run / "config.yaml").write_text(dump_yaml({"model": {"name": "autoencoder"}, "data": data}))
    return run


def _image(h: int = 90, w: int = 120, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _cells(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"cell_id": np.arange(n), "x": rng.uniform(10, 110, n).round(), "y": rng.uniform(10, 80, n).round(),
                         "area_um2": rng.uniform(20, 60, n)})


class _Counter:
    """Wraps a function of embed.cells and records the number of rows of each call."""

    def __init__(self, monkeypatch, name: str, fail_on: int | None = None) -> None:
        self.sizes: list[int] = []
        self.fail_on = fail_on
        self._fn = getattr(cells_mod, name)
        monkeypatch.setattr(cells_mod, name, self)

    def __call__(self, *args, **kwargs):
        if self.fail_on is not None and len(self.sizes) == self.fail_on:
            raise RuntimeError("killed")
        self.sizes.append(len(args[1]))
        return self._fn(*args, **kwargs)


def test_each_row_gets_the_code_of_the_patch_around_it_at_the_runs_scale(tmp_path):
    model = _model()
    run = _run(tmp_path, model, mpp=0.5)
    img = _image()
    cells = _cells(9)
    cells.loc[0, ["x", "y"]] = [60.0, 45.0]
    out = embed_cells(run, cells, tmp_path / "e.parquet", slides=img, slide_mpp=0.25, chunk_rows=4)
    t = pd.read_parquet(out)
    assert list(t.columns) == ["cell_id", "x", "y", "area_um2", "z_00", "z_01", "z_02"]
    pd.testing.assert_frame_equal(t[cells.columns], cells)
    # the run's data.mpp (0.5) on a 0.25 µm/px image: the 16-px patch covers the 32 image
    # pixels around (60, 45), corner at 60 + 0.5 - 8.5 * 2 (nuclei.patches.patch_window)
    patch = ArraySlide(img, mpp=0.25).read(60 - 16.5, 45 - 16.5, 16, 16, mpp=0.5)
    ref = encode_images(model, patch[None])["z"][0]
    np.testing.assert_allclose(t[["z_00", "z_01", "z_02"]].to_numpy()[0], ref, atol=1e-6)
    near = encode_images(model, ArraySlide(img, mpp=0.25).read(60 - 14.5, 45 - 16.5, 16, 16, mpp=0.5)[None])["z"][0]
    assert np.abs(near - ref).max() > 1e-3  # a patch two pixels off would be told apart
    # another scale gives another code (the scale is not ignored)
    other = embed_cells(model, cells, tmp_path / "f.parquet", slides=img, slide_mpp=0.25, mpp=0.25)
    assert not np.allclose(pd.read_parquet(other)["z_00"], t["z_00"])
    with pytest.raises(InputError, match="data.mpp"):
        embed_cells(_run(tmp_path / "b", model, mpp=None), cells, tmp_path / "g.parquet", slides=img,
                    slide_mpp=0.25)


def test_memory_is_bounded_by_the_chunk_and_parquet_input_is_streamed(tmp_path, monkeypatch):
    model = _model()
    cells = _cells(23)
    src = tmp_path / "cells.parquet"
    cells.to_parquet(src, row_group_size=3)  # row groups that do not align with the chunks
    whole = embed_cells(model, src, tmp_path / "whole.parquet", slides=_image(), slide_mpp=0.5, mpp=0.5,
                        chunk_rows=100)
    reads = _Counter(monkeypatch, "extract_patches")
    encodes = _Counter(monkeypatch, "encode_images")
    out = embed_cells(model, src, tmp_path / "out.parquet", slides=_image(), slide_mpp=0.5, mpp=0.5, chunk_rows=5)
    assert reads.sizes == [5, 5, 5, 5, 3] and encodes.sizes == [5, 5, 5, 5, 3]
    a, b = pd.read_parquet(out), pd.read_parquet(whole)
    assert a["cell_id"].tolist() == list(range(23))
    np.testing.assert_allclose(a["z_00"], b["z_00"], atol=1e-6)
    assert not parts_folder(out).exists()


def test_a_crashed_run_resumes_to_the_bitwise_same_file(tmp_path, monkeypatch):
    from histolatent.io.tables import read_cell_table, with_physical_coordinates, write_cell_table

    model = _model()
    img = _image()
    cells = with_physical_coordinates(_cells(14), slide_id="s", mpp=0.5)
    src = tmp_path / "cells.parquet"
    write_cell_table(cells, src, metadata={"method": "watershed"})
    opts = dict(slides=img, mpp=0.5, chunk_rows=4)
    ref = embed_cells(model, src, tmp_path / "ref.parquet", **opts)

    out = tmp_path / "out.parquet"
    with monkeypatch.context() as m:
        _Counter(m, "encode_images", fail_on=2)  # dies while encoding the third chunk
        with pytest.raises(RuntimeError, match="killed"):
            embed_cells(model, src, out, **opts)
    assert not out.exists() and sorted(p.name for p in parts_folder(out).iterdir()) == [
        "chunk-000000.parquet", "chunk-000001.parquet"]
    # a torn part (e.g. a disk that filled up) is found and redone
    part = parts_folder(out) / "chunk-000001.parquet"
    part.write_bytes(part.read_bytes()[:-40])
    reads = _Counter(monkeypatch, "extract_patches")
    embed_cells(model, src, out, **opts)
    assert reads.sizes == [4, 4, 2]  # chunk 0 reused; chunks 1 (torn), 2 and 3 read
    assert out.read_bytes() == ref.read_bytes()
    assert not parts_folder(out).exists()
    back = read_cell_table(out)  # still a cell table, with the input's metadata and the embedding's
    assert back.attrs["histolatent"]["method"] == "watershed"
    assert back.attrs["histolatent"]["embedding"]["patch_mpp"] == 0.5


def test_parts_of_another_job_or_other_rows_are_not_reused(tmp_path, monkeypatch):
    model = _model()
    img = _image()
    out = tmp_path / "out.parquet"
    with monkeypatch.context() as m:
        _Counter(m, "encode_images", fail_on=1)
        with pytest.raises(RuntimeError):
            embed_cells(model, _cells(8), out, slides=img, slide_mpp=0.5, mpp=0.5, chunk_rows=4)
    # other rows: the finished part no longer verifies
    moved = _cells(8).assign(x=lambda d: d["x"] + 1)
    reads = _Counter(monkeypatch, "extract_patches")
    embed_cells(model, moved, out, slides=img, slide_mpp=0.5, mpp=0.5, chunk_rows=4)
    assert reads.sizes == [4, 4]
    ref = embed_cells(model, moved, tmp_path / "ref.parquet", slides=img, slide_mpp=0.5, mpp=0.5, chunk_rows=4)
    assert pq.read_table(out).equals(pq.read_table(ref))
    # another slide of the same size, or another scale: nothing is reused either
    for opts in (dict(slides=_image(seed=5), mpp=0.5), dict(slides=img, mpp=0.4)):
        with monkeypatch.context() as m:
            _Counter(m, "encode_images", fail_on=1)
            with pytest.raises(RuntimeError):
                embed_cells(model, moved, out, slide_mpp=0.5, chunk_rows=4, slides=img, mpp=0.5)
        reads.sizes.clear()
        embed_cells(model, moved, out, slide_mpp=0.5, chunk_rows=4, **opts)
        assert reads.sizes == [4, 4]


def test_a_patch_array_aligned_with_the_rows_and_columns_replaced_by_name(tmp_path):
    model = _model()
    patches = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "p.npy", patches)
    table = pd.DataFrame({"z_00": np.zeros(6), "label": list("aabbcc")})
    out = embed_cells(model, table, tmp_path / "e.parquet", patches=tmp_path / "p.npy", chunk_rows=4)
    t = pd.read_parquet(out)
    assert list(t.columns) == ["label", "z_00", "z_01", "z_02"]  # the stale z_00 replaced
    np.testing.assert_allclose(t[["z_00", "z_01", "z_02"]].to_numpy(), encode_images(model, patches)["z"], atol=1e-6)
    with pytest.raises(InputError, match=r"aligned with the 5 rows"):
        embed_cells(model, table.iloc[:5], tmp_path / "f.parquet", patches=patches)


def test_bad_inputs_fail_before_any_patch_is_read(tmp_path, monkeypatch):
    model = _model()
    reads = _Counter(monkeypatch, "extract_patches")
    cells = _cells(4)
    img = _image()
    cases = [
        (dict(cells=cells.drop(columns="y"), slides=img), "no column 'y'"),
        (dict(cells=cells.assign(x=[1.0, np.nan, 3.0, 4.0]), slides=img), "NaN"),
        (dict(cells=cells, slides=tmp_path / "missing.tiff"), "missing.tiff"),
        (dict(cells=cells, slides=None), "names no source slide"),
        (dict(cells=cells, slides={"a": img}), "slide_id"),
        (dict(cells=cells.assign(slide_id="b"), slides={"a": img}), r"slide_id\(s\) \['b'\]"),
        (dict(cells=cells, slides=img, slide_mpp=None), "has no mpp"),
        (dict(cells=cells, slides=img, edge="skip"), "edge"),
        (dict(cells=cells.iloc[:0], slides=img), "no rows"),
        (dict(cells=tmp_path / "nope.parquet", slides=img), "nope.parquet"),
    ]
    for kw, match in cases:
        kw = {"slide_mpp": 0.5, "mpp": 0.5} | kw
        with pytest.raises(InputError, match=match):
            embed_cells(model, kw.pop("cells"), tmp_path / "o.parquet", **kw)
    assert reads.sizes == [] and not (tmp_path / "o.parquet").exists()
