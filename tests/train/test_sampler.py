"""The engine's resumable sampler: epochs are permutations, resumes are exact, blocks stay together."""

from __future__ import annotations

import pytest

from histolatent.errors import InputError
from histolatent.train.data import ResumableBatchSampler


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
