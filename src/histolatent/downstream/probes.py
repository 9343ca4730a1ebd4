"""Linear probes on embeddings with paper 0's protocol (§5.3, §6).

* :class:`LogisticProbe` — multinomial logistic regression with L2, the strength tuned on the
  validation set (mAUC), on standardised features.
* :class:`CyclicMaxProbe` — paper 0's model for the angular variables: a two-layer logistic
  regression with an intermediate maximum projection over the ``N`` cyclic shifts of the
  orientation axis, so its predictions are invariant to a common rotation of all ``z_ORI``
  (``hidden_k = max_t <W1_k, roll(H, t)>``, ``logits = W2 hidden + V s + b``; ``s`` are any
  scalar features, e.g. MNA and SDNA). L2 tuned on validation.
* :func:`resampled_mauc` — the training set resampled (stratified bootstrap) ``n`` times, a
  probe fitted and tuned each time, mAUC on the fixed held-out test set: mean and SD.
* :func:`probe_representations` — all of it for named feature sets of a table: each feature is
  a column or an embedding part (``z_iso`` -> ``z_iso_00..``); orientation parts
  (``q_ori_00_0..``) switch to :class:`CyclicMaxProbe`.
* :func:`probe_table` — the whole protocol on a table file (``histolatent probe``), with
  optional aggregation of cells to ROIs first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from histolatent.embed.columns import is_orientation_part, part_array, part_columns
from histolatent.machine import torch_threads
from histolatent.metrics.auc import multiclass_auc

__all__ = ["CyclicMaxProbe", "Features", "LogisticProbe", "ProbeResult", "features_from_table",
           "probe_representations", "probe_table", "resampled_mauc"]


@dataclass
class Features:
    """``flat (n, F)`` scalar features and/or ``cyclic (n, M, N)`` orientation features."""

    flat: np.ndarray | None = None
    cyclic: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.flat) if self.flat is not None else len(self.cyclic)

    def take(self, idx: np.ndarray) -> Features:
        return Features(None if self.flat is None else self.flat[idx], None if self.cyclic is None else self.cyclic[idx])


def features_from_table(table: pd.DataFrame, features: Sequence[str]) -> Features:
    """Stack the named columns / parts of ``table`` into :class:`Features`."""
    flat, cyc = [], []
    for name in features:
        if name in table.columns and not _has_indexed(table, name):
            flat.append(table[[name]].to_numpy(dtype=np.float64))
        elif is_orientation_part(table, name):
            cyc.append(part_array(table, name))
        else:
            flat.append(table[part_columns(table.columns, name)].to_numpy(dtype=np.float64))
    if cyc and len({c.shape[2] for c in cyc}) > 1:
        raise ValueError("orientation parts with different N cannot be combined")
    return Features(np.concatenate(flat, axis=1) if flat else None, np.concatenate(cyc, axis=1) if cyc else None)


def _has_indexed(table: pd.DataFrame, name: str) -> bool:
    try:
        return part_columns(table.columns, name) != [name]
    except KeyError:
        return False


class LogisticProbe:
    """Standardise, then multinomial logistic regression; ``C`` (inverse L2) tuned on validation mAUC."""

    def __init__(self, Cs: Sequence[float] = tuple(np.logspace(-3, 2, 6)), max_iter: int = 3000) -> None:
        self.Cs = list(Cs)
        self.max_iter = max_iter

    def _fit_one(self, x: np.ndarray, y: np.ndarray, c: float):
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # small problems: threads only spin on busy cores
            return LogisticRegression(C=c, max_iter=self.max_iter).fit(x, y)

    def fit(self, train: Features, y: np.ndarray, val: Features, y_val: np.ndarray) -> LogisticProbe:
        if train.cyclic is not None:
            raise ValueError("LogisticProbe takes flat features only; use CyclicMaxProbe for orientation parts")
        x = train.flat
        self.mean_ = x.mean(0)
        self.std_ = x.std(0) + 1e-8
        xs, xv = self._z(x), self._z(val.flat)
        best = None
        for c in self.Cs:
            model = self._fit_one(xs, y, c)
            score = multiclass_auc(y_val, model.predict_proba(xv), model.classes_)
            if best is None or score > best[0] + 1e-12:
                best = (score, c, model)
        self.val_mauc_, self.C_, self.model_ = best
        self.classes_ = self.model_.classes_
        return self

    def _z(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) / self.std_

    def predict_proba(self, feats: Features) -> np.ndarray:
        return self.model_.predict_proba(self._z(feats.flat))

    @property
    def hyper(self) -> float:
        return self.C_


class _CyclicNet(torch.nn.Module):
    def __init__(self, m: int, n: int, f: int, k: int, c: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(k, m, n, generator=g, dtype=torch.float64) / np.sqrt(m * n))
        self.b1 = torch.nn.Parameter(torch.zeros(k, dtype=torch.float64))
        self.w2 = torch.nn.Parameter(torch.randn(c, k, generator=g, dtype=torch.float64) / np.sqrt(k))
        self.v = torch.nn.Parameter(torch.zeros(c, f, dtype=torch.float64))
        self.b2 = torch.nn.Parameter(torch.zeros(c, dtype=torch.float64))

    @staticmethod
    def rolls(h: torch.Tensor) -> torch.Tensor:
        """``(B, M, N) -> (B, N_shifts, M * N)``: every cyclic shift of the orientation axis (constant)."""
        n = h.shape[-1]
        return torch.stack([torch.roll(h, -t, dims=-1) for t in range(n)], dim=1).flatten(2)

    def forward(self, rolled: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
        """``rolled`` from :meth:`rolls`; returns logits ``(B, C)``."""
        z = rolled @ self.w1.flatten(1).t()  # (B, T, K): correlation with W1 at every cyclic shift
        hidden = z.amax(dim=1) + self.b1  # max projection over shifts: rotation-invariant
        logits = hidden @ self.w2.t() + self.b2
        if s is not None and s.shape[1]:
            logits = logits + s @ self.v.t()
        return logits

    def penalty(self) -> torch.Tensor:
        return self.w1.square().sum() + self.w2.square().sum() + self.v.square().sum()


class CyclicMaxProbe:
    """Two-layer logistic regression with max projection over cyclic shifts (paper 0 §5.3).

    Input ``cyclic (n, M, N)`` (e.g. ``Q_ORI`` or ROI-level ``z_ORI`` histograms) plus optional
    ``flat (n, F)`` invariant features. Standardised per latent (over samples and orientations,
    which keeps the shift invariance). Full-batch L-BFGS on cross-entropy + ``lam * ||W||^2``;
    ``lam`` tuned on validation mAUC.
    """

    def __init__(self, lams: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0), hidden: int = 8, max_iter: int = 200,
                 seed: int = 0) -> None:
        self.lams = list(lams)
        self.hidden = hidden
        self.max_iter = max_iter
        self.seed = seed

    def _tensors(self, feats: Features) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = _CyclicNet.rolls(torch.from_numpy((feats.cyclic - self.cmean_) / self.cstd_))
        s = None if feats.flat is None else torch.from_numpy((feats.flat - self.fmean_) / self.fstd_)
        return h, s

    def _fit_one(self, h, s, y_idx, lam: float) -> _CyclicNet:
        m, n = self._shape
        net = _CyclicNet(m, n, 0 if s is None else s.shape[1], self.hidden, len(self.classes_), self.seed)
        opt = torch.optim.LBFGS(net.parameters(), lr=1.0, max_iter=self.max_iter, line_search_fn="strong_wolfe")
        target = torch.from_numpy(y_idx)

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(h, s), target) + lam * net.penalty() / len(target)
            loss.backward()
            return loss

        with torch.enable_grad(), torch_threads(1):
            opt.step(closure)
        return net

    def fit(self, train: Features, y: np.ndarray, val: Features, y_val: np.ndarray) -> CyclicMaxProbe:
        if train.cyclic is None:
            raise ValueError("CyclicMaxProbe needs orientation features (n, M, N)")
        self.classes_ = np.unique(y)
        c = train.cyclic
        self._shape = c.shape[1:]
        self.cmean_ = c.mean(axis=(0, 2), keepdims=True)[0]
        self.cstd_ = c.std(axis=(0, 2), keepdims=True)[0] + 1e-8
        if train.flat is not None:
            self.fmean_, self.fstd_ = train.flat.mean(0), train.flat.std(0) + 1e-8
        h, s = self._tensors(train)
        y_idx = np.searchsorted(self.classes_, y)
        best = None
        for lam in self.lams:
            net = self._fit_one(h, s, y_idx, lam)
            self.net_ = net
            score = multiclass_auc(y_val, self.predict_proba(val), self.classes_)
            if best is None or score > best[0] + 1e-12:
                best = (score, lam, net)
        self.val_mauc_, self.lam_, self.net_ = best
        return self

    @torch.no_grad()
    def predict_proba(self, feats: Features) -> np.ndarray:
        h, s = self._tensors(feats)
        with torch_threads(1):
            return torch.softmax(self.net_(h, s), dim=-1).numpy()

    @property
    def hyper(self) -> float:
        return self.lam_


@dataclass
class ProbeResult:
    """mAUC on the test set over training-set resamples."""

    mean: float
    sd: float
    values: list[float]
    hypers: list[float] = field(default_factory=list)
    val_maucs: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "sd": self.sd, "values": self.values, "hypers": self.hypers,
                "val_maucs": self.val_maucs}


def stratified_bootstrap(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a bootstrap sample drawn class by class (every class keeps its count)."""
    idx = [rng.choice(np.flatnonzero(y == c), size=int((y == c).sum()), replace=True) for c in np.unique(y)]
    return np.sort(np.concatenate(idx))


def resampled_mauc(train: Features, y_train, val: Features, y_val, test: Features, y_test, *,
                   n_resamples: int = 10, seed: int = 0, probe: str = "auto", probe_kwargs: dict | None = None,
                   ) -> ProbeResult:
    """Paper 0 §6: resample the training set ``n_resamples`` times, refit (tuning on ``val``), test mAUC.

    ``probe``: ``"logistic"``, ``"cyclic"`` or ``"auto"`` (cyclic iff orientation features are given).
    ``n_resamples = 0`` fits once on the full training set (SD 0).
    """
    y_train, y_val, y_test = (np.asarray(v) for v in (y_train, y_val, y_test))
    if probe == "auto":
        probe = "cyclic" if train.cyclic is not None else "logistic"
    make = {"logistic": LogisticProbe, "cyclic": CyclicMaxProbe}[probe]
    rng = np.random.default_rng(seed)
    values, hypers, vals = [], [], []
    for r in range(max(n_resamples, 1)):
        idx = stratified_bootstrap(y_train, rng) if n_resamples > 0 else np.arange(len(y_train))
        kw = dict(probe_kwargs or {})
        if probe == "cyclic":
            kw.setdefault("seed", seed * 1000 + r)
        p = make(**kw).fit(train.take(idx), y_train[idx], val, y_val)
        values.append(multiclass_auc(y_test, p.predict_proba(test), p.classes_))
        hypers.append(float(p.hyper))
        vals.append(float(p.val_mauc_))
    v = np.asarray(values)
    return ProbeResult(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, values, hypers, vals)


def probe_representations(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame,
                          feature_sets: Mapping[str, Sequence[str]], label: str, *, n_resamples: int = 10,
                          seed: int = 0) -> dict[str, ProbeResult]:
    """mAUC (mean, SD over ``n_resamples``) of each named feature set for predicting ``label``.

    Example: ``{"VAE": ["mu"], "z_ISO": ["z_iso"], "z_ORI": ["q_ori"], "MNA": ["mna"],
    "MNA+SDNA": ["mna", "sdna"], "z_ISO + MNA + SDNA": ["z_iso", "mna", "sdna"]}``.
    """
    out = {}
    for name, cols in feature_sets.items():
        f = [features_from_table(t, cols) for t in (train, val, test)]
        out[name] = resampled_mauc(f[0], train[label].to_numpy(), f[1], val[label].to_numpy(), f[2],
                                   test[label].to_numpy(), n_resamples=n_resamples, seed=seed)
    return out


def probe_table(table: pd.DataFrame | str | os.PathLike, *, label: str, features: Sequence[str],
                split: str = "split", roi: str | None = None, area: str | None = None, n_resamples: int = 10,
                seed: int = 0, out: str | os.PathLike | None = None) -> dict[str, ProbeResult]:
    """Paper 0's downstream protocol on a table: one probe per feature set, mAUC on its test split.

    Parameters
    ----------
    table : DataFrame or path
        One row per cell (Parquet when a path) with embedding columns, ``label`` and ``split``.
    label : str
        The column to predict.
    features : sequence of str
        Feature sets, each a comma-separated list of columns or parts (``"z_iso"``,
        ``"z_iso,mna,sdna"``); orientation parts (``q_ori``) use :class:`CyclicMaxProbe`.
    split : str
        Column holding ``train`` / ``val`` / ``test``.
    roi : str, optional
        Aggregate cells to ROIs by this column first (§5.3); ``z_ori`` becomes ROI histograms.
    area : str, optional
        With ``roi``: the nuclear-area column, adding ``mna`` and ``sdna``.
    n_resamples, seed
        Training-set resamples (mean ± SD) and their seed.
    out : path, optional
        Also write the results as JSON (atomically).

    Returns
    -------
    dict of str to ProbeResult
        Keyed by the feature-set strings as given.

    Raises
    ------
    InputError
        A missing file, column or part, or an empty split, before any probe is fitted.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 30)
    >>> t = pd.DataFrame({"z_00": y + rng.normal(0, 0.3, 60), "label": y,
    ...                   "split": np.tile(["train", "train", "val", "test"], 15)})
    >>> res = probe_table(t, label="label", features=["z"], n_resamples=2)
    >>> res["z"].mean > 0.9
    True
    """
    import json

    from histolatent.downstream.aggregation import aggregate_rois
    from histolatent.errors import InputError
    from histolatent.io.atomic import check_output, write_text_atomic

    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 2:
        raise InputError(f"n_resamples: expected an integer >= 2 (the SD of the mAUC needs at least two "
                         f"resampled training sets; the paper uses 10), got {n_resamples!r}")
    if out is not None:
        check_output(out, name="out")
    name = "table"
    if not isinstance(table, pd.DataFrame):
        name = f"table {str(table)!r}"
        if not Path(table).is_file():
            raise InputError(f"{name}: does not exist")
        try:
            table = pd.read_parquet(table)
        except (OSError, ValueError) as err:  # pyarrow's errors derive from these
            raise InputError(f"{name}: not a readable Parquet table ({type(err).__name__}: {err})") from None
    for col in (label, split):
        if col not in table.columns:
            raise InputError(f"{name}: no column {col!r}")
    sets = {f: [c.strip() for c in f.split(",") if c.strip()] for f in features}
    if roi is not None:
        names = {n for cols in sets.values() for n in cols if n not in ("mna", "sdna")}
        try:
            table = aggregate_rois(table, roi=roi, parts=[n for n in names if n != "z_ori"],
                                   angle_parts=["z_ori"] if "z_ori" in names else [], area=area, keep=[label, split])
        except (KeyError, ValueError) as err:
            raise InputError(f"{name}: {err}") from None
        sets = {k: [("z_ori_hist" if c == "z_ori" else c) for c in v] for k, v in sets.items()}
    else:
        for c in {c for cols in sets.values() for c in cols}:
            try:
                part_columns(table.columns, c)
            except KeyError as err:
                raise InputError(f"{name}: {err.args[0]}") from None
    splits = {s: table[table[split] == s] for s in ("train", "val", "test")}
    for s, d in splits.items():
        if len(d) == 0:
            raise InputError(f"{name}: no rows with {split} == {s!r}")
    res = probe_representations(splits["train"], splits["val"], splits["test"], sets, label,
                                n_resamples=n_resamples, seed=seed)
    if out is not None:
        write_text_atomic(out, json.dumps({k: v.to_dict() for k, v in res.items()}, indent=2) + "\n")
    return res
