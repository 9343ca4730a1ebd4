"""Stain: optical density, colour deconvolution, normalisation and augmentation."""

from histolatent.stain.optical_density import (
    HE_MACENKO_REF,
    HE_RUIFROK,
    concentrations_from_od,
    hed_from_rgb,
    od_from_concentrations,
    od_from_rgb,
    rgb_from_od,
)

__all__ = [
    "HE_MACENKO_REF",
    "HE_RUIFROK",
    "concentrations_from_od",
    "hed_from_rgb",
    "od_from_concentrations",
    "od_from_rgb",
    "rgb_from_od",
]
