"""What the numpy and torch paths of the stain-matrix estimators share, so that they agree.

Macenko and Vahadane estimate stain vectors on both paths (:mod:`~histolatent.stain.macenko`,
:mod:`~histolatent.stain.vahadane`, :mod:`~histolatent.stain.torch_ops`). To agree to one
grey level they must look at the same pixels (a raster subsample), reject the same
degenerate estimates, and resolve percentiles with the same histograms
(:mod:`~histolatent.stain.quantile`). Those rules live here.
"""

from __future__ import annotations

import math

import numpy as np

#: Smallest ratio of the second to the first OD covariance eigenvalue for two stains to exist.
MIN_EIG_RATIO = 1e-4
#: Largest |cos| between the two stain vectors (about 2.6 degrees apart).
MAX_STAIN_COS = 0.999
#: Histogram bins of Macenko's angle percentiles and their range (atan2's, with a margin so
#: that a float32 pi is inside): 0.0004 rad each.
PHI_BINS = 16384
PHI_RANGE = (-np.pi - 1e-3, np.pi + 1e-3)
#: Histogram bins of the concentration percentile over its a-priori range.
C_BINS = 16384


def subsample_stride(n: int, max_pixels: int | None, width: int = 1) -> int:
    """Raster stride keeping at most ``max_pixels`` of ``n`` pixels.

    The stride is made coprime with the image ``width`` so that the subsample visits every
    column (a stride dividing the width would sample the same few columns on every row).
    """
    if max_pixels is None or n <= max_pixels:
        return 1
    k = int(math.ceil(n / max_pixels))
    while width > 1 and math.gcd(k, width) != 1:
        k += 1
    return k


def subsample_index(n: int, max_pixels: int | None, width: int = 1) -> slice:
    """A deterministic raster-order slice over ``n`` pixels (see :func:`subsample_stride`)."""
    return slice(None, None, subsample_stride(n, max_pixels, width))
