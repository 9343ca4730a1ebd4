"""Deterministic, resumable batches: batch ``s`` is a pure function of (seed, s, rank).

Each epoch is a permutation of the dataset drawn from ``seed`` and the epoch number; a run
resumed at step ``s`` starts at exactly the batch an uninterrupted run would see. A dataset
whose neighbouring items share expensive work (a rendered SynthPath window, a read slide
region) says so with an integer attribute ``sample_block``: the permutation then shuffles
whole blocks of ``sample_block`` consecutive indices, and the items within each block, so
that a batch touches ``batch_size / sample_block`` regions instead of ``batch_size``. Under DDP,
rank ``r`` of ``W`` takes the r-th slice of each global batch of ``W * batch_size``.

Data handed to ``fit`` in memory (arrays, a mapping of arrays, a torch ``Dataset``) become a
map-style dataset here (:func:`in_memory_dataset`); the run records what they were
(:func:`describe_data`: items, fields and a content hash) so that a resume can check it is
given the same data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from histolatent.errors import InputError
from histolatent.train.config import IN_MEMORY


class ResumableBatchSampler:
    """Yields index lists for steps ``start_step .. total_steps - 1`` (drop-last epochs)."""

    def __init__(self, n: int, batch_size: int, *, seed: int, total_steps: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1, block: int = 1) -> None:
        if int(block) < 1:
            raise InputError(f"sample_block: expected an integer >= 1, got {block!r}")
        global_batch = batch_size * world_size
        if n < global_batch:
            raise InputError(f"dataset has {n} items, fewer than one global batch of {global_batch} "
                             f"(batch_size {batch_size} x {world_size} devices)")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.total_steps, self.start_step = total_steps, start_step
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = n // global_batch
        self.block = int(block)

    def _perm(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.block == 1:
            return torch.randperm(self.n, generator=g)
        starts = torch.randperm(-(-self.n // self.block), generator=g) * self.block
        within = torch.randperm(self.block, generator=g)  # one order inside every block, new each epoch
        idx = (starts[:, None] + within[None, :]).reshape(-1)
        return idx[idx < self.n]

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
                 rank: int, world_size: int, num_workers: int, prefetch: int = 0) -> DataLoader | ThreadPrefetch:
    sampler = ResumableBatchSampler(len(dataset), batch_size, seed=seed, total_steps=total_steps,
                                    start_step=start_step, rank=rank, world_size=world_size,
                                    block=getattr(dataset, "sample_block", 1))
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, persistent_workers=num_workers > 0)
    return ThreadPrefetch(loader, prefetch) if prefetch and not num_workers else loader


class ThreadPrefetch:
    """A loader whose batches a background thread builds up to ``depth`` ahead, in order.

    For ``num_workers = 0``: the batches are built in this process (no worker start-up, no
    copying into shared memory) while the model's step runs, which releases the GIL in its
    kernels. An error in the data set is raised here, at the batch it broke. The thread ends
    when the iterator is exhausted or closed.
    """

    def __init__(self, loader: DataLoader, depth: int) -> None:
        if int(depth) < 1:
            raise InputError(f"prefetch: expected at least 1 batch ahead, got {depth!r}")
        self.loader, self.depth = loader, int(depth)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        import queue
        import threading

        slots: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    slots.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def build() -> None:
            try:
                for batch in self.loader:
                    if not put(("batch", batch)):
                        return
                put(("end", None))
            except BaseException as err:  # handed to the training thread, raised there
                put(("error", err))

        worker = threading.Thread(target=build, name="histolatent-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                kind, value = slots.get()
                if kind == "batch":
                    yield value
                elif kind == "end":
                    return
                else:
                    raise value
        finally:
            stop.set()


def eval_loader(dataset: Dataset, *, batch_size: int, num_workers: int = 0) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


# -- data handed to fit() in memory -----------------------------------------------------------
class ArrayDataset(Dataset):
    """Items of arrays held in memory: item ``i`` is ``{key: array[i]}`` as tensors.

    The ``"image"`` array follows the image-input policy (:mod:`histolatent.io.image`):
    ``uint8``/``uint16``/``bool`` images ``(N, H, W, C)`` (or ``(N, H, W)`` grey) are kept as
    uint8 RGB and each item becomes a ``(3, H, W)`` float32 tensor in [0, 1]; a float array or
    tensor is taken as model input ``(N, C, H, W)`` as it is (cast to float32). Every other key
    is converted with ``torch.as_tensor`` once. Tensors are kept on the CPU (the engine moves
    each batch to the device). No array is copied where it need not be, and none is modified.
    """

    def __init__(self, arrays: Mapping[str, Any], *, name: str = "data") -> None:
        from histolatent.io.image import rgb8_from_any

        if not isinstance(arrays, Mapping) or not arrays:
            raise InputError(f"{name}: expected a non-empty mapping of arrays, got {type(arrays).__name__}")
        self.fields: dict[str, torch.Tensor | np.ndarray] = {}
        self._rgb8 = False
        n = None
        for key, value in arrays.items():
            where = f"{name}[{key!r}]"
            if key == "image" and _dtype_kind(value) in "uib":
                arr = rgb8_from_any(value.cpu().numpy() if isinstance(value, torch.Tensor) else value, name=where,
                                    batch=True)
                if arr.ndim != 4:
                    raise InputError(f"{where}: expected a stack of images (N, H, W, C), got shape {np.shape(value)}")
                self.fields[key], self._rgb8 = arr, True
            else:
                try:
                    t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value).cpu()
                except (TypeError, ValueError, RuntimeError) as err:
                    raise InputError(f"{where}: cannot be made a tensor ({err})") from None
                if key == "image":
                    if t.ndim != 4:
                        raise InputError(f"{where}: a float image array must be (N, C, H, W), got shape "
                                         f"{tuple(t.shape)}")
                    t = t.float()
                    if not torch.isfinite(t).all():
                        raise InputError(f"{where}: contains NaN or inf")
                self.fields[key] = t
            if np.ndim(self.fields[key]) == 0:
                raise InputError(f"{where}: expected one value per item, got a scalar")
            k = len(self.fields[key])
            if n is not None and k != n:
                raise InputError(f"{where}: {k} items, but the other arrays have {n}")
            n = k
        if not n:
            raise InputError(f"{name}: no items")
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from histolatent.io.image import tensor_from_rgb8

        out = {}
        for key, v in self.fields.items():
            out[key] = tensor_from_rgb8(v[i])[0] if key == "image" and self._rgb8 else v[i]
        return out

    def describe(self) -> dict[str, Any]:
        """The ``data`` entry a run records: items, fields (dtype and shape) and a content hash."""
        h = hashlib.sha256()
        fields = {}
        for key, v in self.fields.items():
            a = v.numpy() if isinstance(v, torch.Tensor) else v
            fields[key] = f"{a.dtype} {tuple(a.shape)}"
            h.update(f"{key}|{a.dtype}|{a.shape}|".encode())
            h.update(np.ascontiguousarray(a).view(np.uint8).ravel().data)
        return {"name": IN_MEMORY, "items": self.n, "fields": fields, "sha256": h.hexdigest()[:16]}


def _dtype_kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "f" if value.is_floating_point() else ("b" if value.dtype == torch.bool else "u")
    return np.asarray(value).dtype.kind


def in_memory_dataset(data: Any, *, name: str = "data") -> Dataset:
    """What ``fit(data=...)`` accepts -> a map-style dataset.

    ``data`` is a torch ``Dataset`` (used as it is; items are dicts of tensors), an image
    array or tensor (the ``"image"`` of each item), or a mapping of arrays (see
    :class:`ArrayDataset`).
    """
    if isinstance(data, Dataset) and not isinstance(data, ArrayDataset):
        try:
            len(data)
        except TypeError:
            raise InputError(f"{name}: a {type(data).__name__} has no len(); fit needs a map-style dataset") from None
        return data
    if isinstance(data, ArrayDataset):
        return data
    if isinstance(data, Mapping):
        return ArrayDataset(data, name=name)
    if isinstance(data, (np.ndarray, torch.Tensor)):
        return ArrayDataset({"image": data}, name=name)
    raise InputError(f"{name}: expected an image array, a mapping of arrays or a torch Dataset, "
                     f"got {type(data).__name__}")


def describe_data(dataset: Dataset) -> dict[str, Any]:
    """The ``data`` entry of a run trained on ``dataset`` held in memory."""
    if isinstance(dataset, ArrayDataset):
        return dataset.describe()
    return {"name": IN_MEMORY, "items": len(dataset), "fields": type(dataset).__name__, "sha256": None}


def check_same_data(recorded: dict[str, Any], given: dict[str, Any], *, run: str) -> None:
    """On resume: the data handed in must be the data the run was trained on (hash, or length)."""
    if recorded.get("name") != IN_MEMORY:
        raise InputError(f"--resume {run!r}: this run trained on the registered dataset "
                         f"{recorded.get('name')!r}; do not pass data=")
    for key in ("items", "sha256"):
        if recorded.get(key) != given.get(key):
            raise InputError(f"data: not the data run {run!r} was trained on ({key} {given.get(key)!r}, "
                             f"recorded {recorded.get(key)!r})")
