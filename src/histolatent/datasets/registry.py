"""Dataset registry for training: ``create_dataset(name, split=..., seed=..., **options)``.

A dataset is a map-style ``torch.utils.data.Dataset`` whose items are dicts of tensors
(``{"image": (C, H, W) float32 in [0, 1], "label": ...}``). Its options are a
:class:`~histolatent.config.Config` subclass named ``Config`` on the class. Randomness in
a dataset is a pure function of ``(seed, index)`` so that a resumed run sees the same data.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from histolatent.config import validate
from histolatent.registry import Registry

DATASETS: Registry[type[Dataset]] = Registry("dataset")

SPLITS = ("train", "val", "test")


def register_dataset(name: str):
    def deco(cls):
        if not hasattr(cls, "Config"):
            raise TypeError(f"dataset {cls.__name__} must define a Config class")
        return DATASETS.register(name)(cls)

    return deco


def dataset_class(name: str) -> type[Dataset]:
    """The class registered under ``name``.

    The built-in datasets are registered by ``histolatent/datasets/__init__.py``, which Python
    runs before any module of the package, so they are always there.
    """
    return DATASETS.get(name)


def create_dataset(name: str, *, split: str = "train", seed: int = 0, source: str = "<create_dataset>",
                   **options: Any) -> Dataset:
    """Build a registered dataset for ``split``; bad options raise ``ConfigError``."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} must be one of {SPLITS}")
    cls = dataset_class(name)
    config = validate(cls.Config, options, source=source, prefix="data")
    return cls(config, split=split, seed=seed)


def list_datasets() -> list[str]:
    """Names of every registered dataset, sorted."""
    return DATASETS.names()
