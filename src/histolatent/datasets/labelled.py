"""What the labelled data sets of the fine-tuning protocol share: the label-fraction subset.

DRL's low-label protocol (papers/drl_deformation-representation-learning.txt §4.C.2) fine-tunes
on "a randomly selected subset of the labeled data" of 0.01 % to 100 %. Here the subset is
stratified (each class keeps its share, at least one item per class present) and drawn from
``label_seed`` alone, so two runs with the same fraction and seed see the same items whatever
their training seed. The options below are added to a labelled data set's ``Config``.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from histolatent.config import Config
from histolatent.errors import InputError

__all__ = ["LabelFractionConfig", "stratified_subset"]


class LabelFractionConfig(Config):
    label_fraction: float = Field(1.0, gt=0, le=1, description="share of the train split's labels used (0.01 = 1 %)")
    label_seed: int = Field(0, description="seed of the label subset (stratified by class)")


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a stratified random ``fraction`` of ``labels``.

    Each class ``c`` with ``n_c`` items keeps ``max(1, round(fraction * n_c))`` of them, drawn
    without replacement from ``seed``. ``fraction = 1`` returns every index.

    >>> y = np.array([0] * 90 + [1] * 10)
    >>> idx = stratified_subset(y, 0.1, seed=0)
    >>> len(idx), int(y[idx].sum())
    (10, 1)
    >>> bool((stratified_subset(y, 0.1, seed=0) == idx).all())
    True
    """
    y = np.asarray(labels).reshape(-1)
    if not 0 < fraction <= 1:
        raise InputError(f"label_fraction: expected 0 < fraction <= 1, got {fraction}")
    if y.size == 0:
        raise InputError("labels: no items to take a fraction of")
    if fraction == 1:
        return np.arange(y.size)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x1ABE1])
    keep = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        k = max(1, int(round(fraction * members.size)))
        keep.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(keep))
