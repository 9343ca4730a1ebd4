"""The engine's resumable sampler: epochs are permutations, resumes are exact, blocks stay together;
the prefetch thread hands over the same batches in order and passes a data set's error on."""

from __future__ import annotations

import pytest
import torch

from histolatent.errors import InputError
from histolatent.train import RunConfig, fit
from histolatent.train.data import ResumableBatchSampler, ThreadPrefetch, train_loader


def _batches(**kw):
    return list(ResumableBatchSampler(**kw))


@pytest.mark.parametrize("block", [1, 4, 7])
def test_each_epoch_is_a_permutation_and_a_resume_continues_exactly(block):
    n, bs = 30, 5  # 30 is not a multiple of 4 or 7: a short last block
    full = _batches(n=n, batch_size=bs, seed=3, total_steps=12, block=block)
    epoch = sorted(i for b in full[:6] for i in b)
    assert epoch == list(range(n))
    assert sorted(i for b in full[6:] for i in b) == list(range(n))
    assert full[:6] != full[6:]  # a new order each epoch
    assert _batches(n=n, batch_size=bs, seed=3, total_steps=12, start_step=5, block=block) == full[5:]
    assert _batches(n=n, batch_size=bs, seed=4, total_steps=12, block=block) != full


def test_blocks_stay_together_so_a_batch_touches_few_regions():
    n, bs, block = 64, 8, 8
    for b in _batches(n=n, batch_size=bs, seed=0, total_steps=16, block=block):
        assert len({i // block for i in b}) == 1  # one rendered window per batch
    plain = _batches(n=n, batch_size=bs, seed=0, total_steps=16, block=1)
    assert max(len({i // block for i in b}) for b in plain) > 2


def test_ranks_take_disjoint_slices_of_each_global_batch():
    kw = dict(n=40, batch_size=4, seed=1, total_steps=5, world_size=2, block=4)
    r0, r1 = _batches(rank=0, **kw), _batches(rank=1, **kw)
    for a, b in zip(r0, r1, strict=True):
        assert not set(a) & set(b)


def test_a_bad_block_is_refused():
    with pytest.raises(InputError, match="sample_block"):
        ResumableBatchSampler(10, 2, seed=0, total_steps=1, block=0)


# -- the prefetch thread ----------------------------------------------------------------------
class _Items(torch.utils.data.Dataset):
    """Item i is a function of i alone (as every registered data set's); ``broken`` raises."""

    def __init__(self, n: int, broken: int | None = None) -> None:
        self.n, self.broken = n, broken

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if i == self.broken:
            raise ValueError(f"item {i} is corrupt")
        g = torch.Generator().manual_seed(i)
        return {"image": torch.rand(1, 8, 8, generator=g)}


def test_prefetched_batches_are_the_batches_in_order_and_an_error_reaches_the_loop():
    kw = dict(batch_size=4, seed=2, total_steps=9, start_step=0, rank=0, world_size=1, num_workers=0)
    plain = [b["image"] for b in train_loader(_Items(20), **kw)]
    ahead = train_loader(_Items(20), prefetch=3, **kw)
    assert isinstance(ahead, ThreadPrefetch) and len(ahead) == 9
    got = [b["image"] for b in ahead]
    assert len(got) == 9 and all(torch.equal(a, b) for a, b in zip(plain, got, strict=True))
    seen = 0
    with pytest.raises(ValueError, match="item 7 is corrupt"):
        for _ in train_loader(_Items(20, broken=7), prefetch=2, **kw):
            seen += 1
    assert seen < 9
    with pytest.raises(ValueError, match="prefetch"):
        RunConfig(model={"name": "vae"}, data={"name": "digits"}, train={"prefetch": 2, "num_workers": 1})


def test_a_run_with_a_prefetch_thread_learns_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    cfg = {"model": {"name": "autoencoder", "image_size": 16, "channels": [4, 8], "latent_dim": 4},
           "data": {"name": "digits", "size": 16}, "train": {"steps": 6, "batch_size": 8, "progress": False}}
    runs = [fit(RunConfig(**{**cfg, "train": {**cfg["train"], "prefetch": p}}), out=tmp_path / f"p{p}")
            for p in (0, 2)]
    a, b = (load_file(r / "weights.safetensors") for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
