"""Deterministic, resumable batches: batch ``s`` is a pure function of (seed, s, rank).

Each epoch is a permutation of the dataset drawn from ``seed`` and the epoch number; a run
resumed at step ``s`` starts at exactly the batch an uninterrupted run would see. Under DDP,
rank ``r`` of ``W`` takes the r-th slice of each global batch of ``W * batch_size``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from histolatent.errors import InputError


class ResumableBatchSampler:
    """Yields index lists for steps ``start_step .. total_steps - 1`` (drop-last epochs)."""

    def __init__(self, n: int, batch_size: int, *, seed: int, total_steps: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        global_batch = batch_size * world_size
        if n < global_batch:
            raise InputError(f"dataset has {n} items, fewer than one global batch of {global_batch} "
                             f"(batch_size {batch_size} x {world_size} devices)")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.total_steps, self.start_step = total_steps, start_step
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = n // global_batch

    def _perm(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[list[int]]:
        epoch = -1
        perm = None
        for step in range(self.start_step, self.total_steps):
            e, b = divmod(step, self.steps_per_epoch)
            if e != epoch:
                epoch, perm = e, self._perm(e)
            lo = (b * self.world_size + self.rank) * self.batch_size
            yield perm[lo: lo + self.batch_size].tolist()

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)


def train_loader(dataset: Dataset, *, batch_size: int, seed: int, total_steps: int, start_step: int,
                 rank: int, world_size: int, num_workers: int) -> DataLoader:
    sampler = ResumableBatchSampler(len(dataset), batch_size, seed=seed, total_steps=total_steps,
                                    start_step=start_step, rank=rank, world_size=world_size)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      persistent_workers=num_workers > 0)


def eval_loader(dataset: Dataset, *, batch_size: int, num_workers: int = 0) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
