"""compress_cohort: bad slides recorded, unfinished or damaged grids redone, same bytes inline and on Dask."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from histolatent.embed.cohort import compress_cohort
from histolatent.embed.grid import MANIFEST, read_manifest
from histolatent.errors import InputError

T = 16


class TinyConv(torch.nn.Module):
    """A BiGAN-shaped encoder in miniature: strided valid convs, LeakyReLU, BN, then linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2), torch.nn.LeakyReLU(0.2), torch.nn.BatchNorm2d(8),
                                       torch.nn.Conv2d(8, 8, 3, 2), torch.nn.LeakyReLU(0.2), torch.nn.BatchNorm2d(8),
                                       torch.nn.Flatten(), torch.nn.Linear(8 * 3 * 3, 6))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _cohort(folder, n=3):
    folder.mkdir()
    rng = np.random.default_rng(1)
    for k in range(n):
        small = rng.integers(0, 256, (6 + 2 * k, 10, 3), dtype=np.uint8)
        Image.fromarray(np.repeat(np.repeat(small, 8, 0), 8, 1)).save(folder / f"s{k}.png")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a png at all" * 10)
    return folder


OPTS = dict(tile_px=T, mpp=0.5, slide_mpp=0.5, min_tissue=0.0, progress=False)


def test_a_corrupt_slide_is_reported_and_the_others_finish(tmp_path):
    src = _cohort(tmp_path / "in")
    out = tmp_path / "grids"
    summary = compress_cohort(src, TinyConv(), out, scheduler="inline", **OPTS)
    status = summary.set_index("slide_id").status.to_dict()
    assert status == {"bad": "failed", "s0": "done", "s1": "done", "s2": "done"}
    bad = summary.set_index("slide_id").loc["bad"]
    assert "bad.png" in bad.error and "InputError" in bad.error
    assert sorted(p.name for p in out.glob("*.zarr")) == ["s0.zarr", "s1.zarr", "s2.zarr"]
    assert read_manifest(out / "s1.zarr")["shape"] == [6, 4, 5]  # (6 + 2) * 8 px high, 80 px wide
    table = (out / "summary.txt").read_text()
    assert "bad" in table and "failed" in table and "forward_s" in table
    assert (out / "summary.csv").read_text().startswith("slide_id,")


def test_unfinished_or_damaged_grids_are_redone_and_verified_ones_skipped(tmp_path):
    src = _cohort(tmp_path / "in")
    (src / "bad.png").unlink()
    out = tmp_path / "grids"
    enc = TinyConv()
    first = compress_cohort(src, enc, out, scheduler="inline", **OPTS).set_index("slide_id")
    # s0: as if its writer died before the manifest; s1: one value changed; s2 untouched
    (out / "s0.zarr" / MANIFEST).unlink()
    import zarr

    zarr.open_group(str(out / "s1.zarr"), mode="r+")["grid"][0, 0, 0] = 9.0
    (out / ".s2.zarr.abc123.tmp").mkdir()  # a dead writer's leftover
    stamp = (out / "s2.zarr" / MANIFEST).stat().st_mtime_ns
    again = compress_cohort(src, enc, out, scheduler="inline", **OPTS).set_index("slide_id")
    assert again.status.to_dict() == {"s0": "done", "s1": "done", "s2": "skipped"}
    assert "no manifest" in again.loc["s0", "redone_because"] and "checksum" in again.loc["s1", "redone_because"]
    assert again.checksum.to_dict() == first.checksum.to_dict()  # redone to the same bytes
    assert (out / "s2.zarr" / MANIFEST).stat().st_mtime_ns == stamp
    # other options or other weights are not "finished" either
    other = TinyConv()
    with torch.no_grad():
        other.net[0].weight.add_(0.1)
    third = compress_cohort(src, other, out, scheduler="inline", **OPTS).set_index("slide_id")
    assert (third.status == "done").all() and "weights_hash" in third.loc["s2", "redone_because"]
    assert not (out / ".s2.zarr.abc123.tmp").exists()


def test_the_same_bytes_from_one_process_and_from_two_dask_workers(tmp_path):
    src = _cohort(tmp_path / "in")
    (src / "bad.png").unlink()
    one = compress_cohort(src, TinyConv(), tmp_path / "one", scheduler="inline", dihedral=True, **OPTS)
    two = compress_cohort(src, TinyConv(), tmp_path / "two", workers=2, processes=False, torch_threads=1,
                          dihedral=True, **OPTS)
    assert (two.status == "done").all()
    assert one.checksum.tolist() == two.checksum.tolist() and one.checksum.notna().all()
    for sid in one.slide_id:
        a = zarr_bytes(tmp_path / "one" / f"{sid}.zarr")
        assert a == zarr_bytes(tmp_path / "two" / f"{sid}.zarr")


def zarr_bytes(store):
    import zarr

    return zarr.open_group(str(store), mode="r")["grid"][...].tobytes()


def test_bad_arguments_fail_before_any_slide(tmp_path):
    src = _cohort(tmp_path / "in")
    for kw, match in ((dict(encoder=tmp_path / "nope"), "no such run"), (dict(precision="fp16"), "precision"),
                      (dict(workers=0), "workers"), (dict(mpp=-1.0), "mpp")):
        args = {**OPTS, "encoder": TinyConv(), **kw}
        with pytest.raises(InputError, match=match):
            compress_cohort(src, out_dir=tmp_path / "g", scheduler="inline", **args)
    assert not (tmp_path / "g").exists()
    shutil.rmtree(src)
    with pytest.raises(InputError, match="no such file"):
        compress_cohort(src, TinyConv(), tmp_path / "g", **OPTS)
