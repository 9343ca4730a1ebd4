"""synth-cells: items rendered alone on demand, each once per run, shared with loader workers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from histolatent.datasets import create_dataset
from histolatent.datasets.synth_cells import SynthCellsDataset
from histolatent.io.image import tensor_from_rgb8
from histolatent.synth.cells import cell_patches
from histolatent.train import fit

OPTS = {"n": 10, "n_eval": 4, "size": 24, "mpp": 1.0, "types": ["lymphocyte", "fibroblast"], "stain_jitter": 1.0}


def render_all(split_seed: int) -> tuple[np.ndarray, object]:
    return cell_patches(10, 24, 1.0, split_seed, rotate="uniform", types=["lymphocyte", "fibroblast"],
                        stain_jitter=1.0)


@pytest.mark.parametrize("cache", [True, False])
def test_items_are_the_renderers_patches_in_any_order(cache):
    d = create_dataset("synth-cells", split="train", seed=3, cache=cache, **OPTS)
    images, table = render_all(d.seed)
    for i in (7, 2, 9, 2, 0):
        item = d[i]
        assert torch.equal(item["image"], tensor_from_rgb8(images[i])[0])
        assert int(item["label"]) == ["lymphocyte", "fibroblast"].index(table["type"].iloc[i])
        assert float(item["angle"]) == pytest.approx(table["orientation"].iloc[i], abs=1e-6)
        assert item["shift"].tolist() == pytest.approx(table[["dx", "dy"]].iloc[i].tolist(), abs=1e-6)
    with pytest.raises(IndexError):
        d[10]


def test_each_item_is_rendered_once_with_the_cache(monkeypatch):
    calls = []
    render = SynthCellsDataset._render
    monkeypatch.setattr(SynthCellsDataset, "_render", lambda self, i: calls.append(i) or render(self, i))
    cached = create_dataset("synth-cells", split="train", seed=0, **OPTS)
    plain = create_dataset("synth-cells", split="train", seed=0, cache=False, **OPTS)
    for _ in range(2):
        for i in (1, 5):
            assert torch.equal(cached[i]["image"], plain[i]["image"])
    assert sorted(calls) == [1, 1, 1, 5, 5, 5]  # twice without the cache, once with it


def test_loader_workers_fill_one_shared_cache():
    d = create_dataset("synth-cells", split="val", seed=0, **OPTS)
    loader = DataLoader(d, batch_size=2, num_workers=2)
    from_workers = torch.cat([b["image"] for b in loader])
    assert d._cache.done.all()  # written by the workers, seen here
    assert torch.equal(from_workers, torch.stack([d[i]["image"] for i in range(4)]))
    spawned = pickle.loads(pickle.dumps(d))  # what a spawned worker gets: an empty cache, not a copy
    assert not spawned._cache.done.any() and torch.equal(spawned[3]["image"], d[3]["image"])


def test_a_run_with_loader_workers_equals_one_without(tmp_path):
    cfg = {"model": {"name": "autoencoder", "in_channels": 3, "image_size": 24, "channels": [4, 8], "latent_dim": 2},
           "data": {"name": "synth-cells", **OPTS},
           "train": {"steps": 4, "batch_size": 4, "seed": 1, "progress": False}}
    a = fit(cfg, out=tmp_path / "a")
    b = fit(cfg, out=tmp_path / "b", overrides=["train.num_workers=1"])
    wa, wb = load_file(str(a / "weights.safetensors")), load_file(str(b / "weights.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_prerender_gives_the_rendered_items_and_a_second_run_reads_them_from_disk(tmp_path, monkeypatch):
    kw = dict(size=20, mpp=1.0, n=12, n_eval=4, neighbours=False, translate_px=1.0)
    plain = create_dataset("synth-cells", split="train", seed=5, **kw)
    pre = create_dataset("synth-cells", split="train", seed=5, prerender=True, prerender_workers=2,
                         cache_dir=str(tmp_path), **kw)
    assert len(list(tmp_path.glob("synth-cells-*.npz"))) == 1
    for i in range(12):
        assert all(torch.equal(pre[i][k], plain[i][k]) for k in plain[i])

    def no_render(self, i):
        raise AssertionError("rendered again")

    monkeypatch.setattr(SynthCellsDataset, "_render", no_render)
    again = create_dataset("synth-cells", split="train", seed=5, prerender=True, cache_dir=str(tmp_path), **kw)
    assert all(torch.equal(again[i]["image"], plain[i]["image"]) for i in range(12))
    other = dict(kw, n=13)  # other options are another file, never the first one's items
    with pytest.raises(AssertionError, match="rendered again"):
        create_dataset("synth-cells", split="train", seed=5, prerender=True, prerender_workers=1,
                       cache_dir=str(tmp_path), **other)
