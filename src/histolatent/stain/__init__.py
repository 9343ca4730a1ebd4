"""Stain: optical density, colour deconvolution, normalisation and augmentation.

Classical normalisers (:class:`MacenkoNormalizer`, :class:`ReinhardNormalizer`,
:class:`VahadaneNormalizer`) share the :class:`StainNormalizer` protocol; the neural
colorisation normaliser lives in :mod:`histolatent.train.colorizer` (its ``fit`` is a training
run) and registers itself under ``"colorizer"`` when :mod:`histolatent.train` is imported. This package imports torch
only inside the tensor paths.
"""

from histolatent.stain.augment import StainAugment
from histolatent.stain.base import (
    NORMALIZERS,
    StainNormalizer,
    create_normalizer,
    list_normalizers,
    load_normalizer,
    register_normalizer,
)
from histolatent.stain.lab import lab_from_rgb, rgb_from_lab
from histolatent.stain.macenko import MacenkoNormalizer, macenko_stain_matrix
from histolatent.stain.optical_density import (
    BETA_MACENKO,
    HE_MACENKO_REF,
    HE_RUIFROK,
    concentrations_from_od,
    hed_from_rgb,
    od_from_concentrations,
    od_from_rgb,
    rgb_from_od,
    tissue_pixel_mask,
)
from histolatent.stain.reinhard import ReinhardNormalizer
from histolatent.stain.slide import normalize_slide
from histolatent.stain.vahadane import VahadaneNormalizer, nn_lasso2, vahadane_dictionary

__all__ = [
    "BETA_MACENKO",
    "HE_MACENKO_REF",
    "HE_RUIFROK",
    "NORMALIZERS",
    "MacenkoNormalizer",
    "ReinhardNormalizer",
    "StainAugment",
    "StainNormalizer",
    "VahadaneNormalizer",
    "concentrations_from_od",
    "create_normalizer",
    "hed_from_rgb",
    "lab_from_rgb",
    "list_normalizers",
    "load_normalizer",
    "macenko_stain_matrix",
    "nn_lasso2",
    "normalize_slide",
    "od_from_concentrations",
    "od_from_rgb",
    "register_normalizer",
    "rgb_from_lab",
    "rgb_from_od",
    "tissue_pixel_mask",
    "vahadane_dictionary",
]
