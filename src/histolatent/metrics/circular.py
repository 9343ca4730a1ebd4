"""Pose metrics: circular correlation, rotation RMSE, translation correlation (pure numpy).

TARGET-VAE (papers/target-vae.txt §4.2, appendix A.3) scores unsupervised pose inference by

- the circular correlation of Jammalamadaka & SenGupta (2001) between true and predicted
  angles, where the prediction is taken relative to the model's prediction for the same
  object unrotated (a model's zero angle is arbitrary per object);
- the RMSE of the predicted rotations over copies of each test object rotated by known
  angles (appendix A.3, after Sun et al.'s canonical capsules);
- the Pearson correlation of true and predicted translations, per axis.

Angles are radians. Objects with an ``n``-fold symmetry are scored modulo ``2 pi / n`` by
passing ``period=2 * pi / n``: the angles are multiplied by ``2 pi / period`` (for axial data
such as elongated nuclei, ``period=pi`` doubles them), which maps the symmetry classes onto
the circle.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "circular_correlation",
    "circular_mean",
    "pearson",
    "relative_angles",
    "rotation_rmse",
    "translation_correlation",
    "wrap_angle",
]

TWO_PI = 2.0 * np.pi


def _as_angles(a, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: angles must be finite")
    return arr


def _scale(period: float) -> float:
    if not period > 0:
        raise ValueError(f"period must be > 0, got {period}")
    return TWO_PI / float(period)


def wrap_angle(a, period: float = TWO_PI) -> np.ndarray:
    """Wrap to ``[-period / 2, period / 2)``."""
    a = np.asarray(a, dtype=np.float64)
    return np.mod(a + period / 2.0, period) - period / 2.0


def circular_mean(a, period: float = TWO_PI) -> float:
    """Mean direction ``atan2(sum sin, sum cos)`` of angles with the given period, in ``[-period/2, period/2)``."""
    k = _scale(period)
    a = _as_angles(a, "a") * k
    return float(wrap_angle(np.arctan2(np.sin(a).sum(), np.cos(a).sum()) / k, period))


def circular_correlation(a, b, *, period: float = TWO_PI) -> float:
    """Jammalamadaka–SenGupta circular correlation of paired angles.

    ``sum sin(a - mean_a) sin(b - mean_b) / sqrt(sum sin^2(a - mean_a) sum sin^2(b - mean_b))``
    with circular means ``mean_a``, ``mean_b``. In ``[-1, 1]``; +1 when ``b = a + const``,
    -1 when ``b = -a + const``; invariant to a constant offset of either argument. With
    ``period = 2 pi / n`` angles are first multiplied by ``n`` (scores modulo the symmetry).
    Returns 0 when either set has no spread.
    """
    k = _scale(period)
    a = _as_angles(a, "a") * k
    b = _as_angles(b, "b") * k
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"a and b must be paired sets of >= 2 angles, got {a.shape} and {b.shape}")
    sa = np.sin(a - np.arctan2(np.sin(a).sum(), np.cos(a).sum()))
    sb = np.sin(b - np.arctan2(np.sin(b).sum(), np.cos(b).sum()))
    den = np.sqrt((sa * sa).sum() * (sb * sb).sum())
    return float((sa * sb).sum() / den) if den > 0 else 0.0


def circular_correlation_interval(a, b, *, period: float = TWO_PI, n_boot: int = 1000, seed: int = 0,
                                  quantiles: tuple[float, ...] = (0.025, 0.5, 0.975)) -> tuple[float, ...]:
    """Bootstrap quantiles of :func:`circular_correlation` over resamples of the pairs.

    With angles spread uniformly over the circle the circular means in the coefficient are
    set by sampling noise, so the coefficient of a fixed set of predictions moves a lot with
    the sample when a fraction of them is off by half a period (2-fold-symmetric objects):
    with 9 % such flips among 1,000 uniform angles it ranges from below 0 to about 0.86.
    Report this interval beside the point value.
    """
    a = _as_angles(a, "a")
    b = _as_angles(b, "b")
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"a and b must be paired sets of >= 2 angles, got {a.shape} and {b.shape}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    vals = np.array([circular_correlation(a[i], b[i], period=period)
                     for i in (rng.integers(0, a.size, a.size) for _ in range(int(n_boot)))])
    return tuple(float(v) for v in np.quantile(vals, quantiles))


def relative_angles(pred, pred_reference, *, period: float = TWO_PI) -> np.ndarray:
    """``pred - pred_reference`` wrapped: predictions relative to the unrotated object's (§4.2)."""
    return wrap_angle(_as_angles(pred, "pred") - _as_angles(pred_reference, "pred_reference"), period)


def rotation_rmse(pred, pred_reference, true_rotation, *, period: float = TWO_PI, degrees: bool = True,
                  groups=None) -> float | dict:
    """RMSE of predicted rotations (TARGET-VAE appendix A.3).

    Parameters
    ----------
    pred : ``(N, K)`` predicted angles of ``N`` objects each rotated by ``K`` known angles.
    pred_reference : ``(N,)`` the prediction for each object unrotated.
    true_rotation : ``(N, K)`` or ``(K,)`` the rotations applied.
    period : angles are compared modulo ``period`` (``pi`` for 2-fold symmetric objects).
    degrees : report degrees (as Table 3) or radians.
    groups : optional ``(N,)`` labels: then a dict ``{label: rmse, ..., "mean": mean over labels}``.

    The error of each copy is ``wrap((pred - pred_reference) - true_rotation)``.
    """
    p = np.asarray(pred, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"pred must be (N, K), got shape {p.shape}")
    ref = np.asarray(pred_reference, dtype=np.float64).reshape(-1, 1)
    tr = np.broadcast_to(np.asarray(true_rotation, dtype=np.float64), p.shape)
    if ref.shape[0] != p.shape[0]:
        raise ValueError(f"pred_reference has {ref.shape[0]} objects, pred has {p.shape[0]}")
    err = wrap_angle(p - ref - tr, period)
    if degrees:
        err = np.rad2deg(err)
    if groups is None:
        return float(np.sqrt(np.mean(err**2)))
    g = np.asarray(groups).reshape(-1)
    out = {k.item() if hasattr(k, "item") else k: float(np.sqrt(np.mean(err[g == k] ** 2))) for k in np.unique(g)}
    out["mean"] = float(np.mean(list(out.values())))
    return out


def pearson(a, b) -> float:
    """Pearson correlation of two paired samples (0 if either is constant)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"a and b must be paired samples of size >= 2, got {a.shape} and {b.shape}")
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def translation_correlation(pred, true) -> tuple[float, float]:
    """Pearson correlation per axis of predicted and true translations ``(N, 2)`` -> ``(r_x, r_y)``."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"pred and true must both be (N, 2), got {p.shape} and {t.shape}")
    return pearson(p[:, 0], t[:, 0]), pearson(p[:, 1], t[:, 1])
