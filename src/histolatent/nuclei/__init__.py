"""Nuclei: detection, segmentation, nucleus-centred patches, morphometrics, cell tables.

Arrays in, arrays and tables out; every size is in µm and every call takes the image's
``mpp``.

============================== ==========================================================
:func:`haematoxylin_from_rgb`  haematoxylin channel by colour deconvolution
:func:`detect_log`             LoG blob centres, radii in µm
:func:`segment_watershed`      LoG- or distance-seeded watershed instances
:func:`segment_unet`           U-Net 3-class map -> instances (model: ``"unet"``)
:func:`measure_nuclei`         area, perimeter, axes, eccentricity, orientation, solidity,
                               haematoxylin mean / SD per nucleus
:func:`aggregate_nuclei`       per ROI / slide: MNA, SDNA (paper 0's baselines), means
:func:`cells_from_image`       one image -> cell table
:func:`cells_from_slide`       a whole slide, tile by tile -> cell table (level-0 px)
:func:`run_cohort`             a folder of slides on Dask, one resumable task per slide
:class:`NucleusPatchDataset`   lazy nucleus-centred patches (presets 68 px @ 0.25 µm/px,
                               40 px @ 0.5 µm/px) for training
:func:`write_patch_store`      patches materialised into zarr
============================== ==========================================================

Submodules are imported on first use, so ``import histolatent.nuclei`` stays light.

Example
-------
>>> from histolatent.nuclei import cells_from_slide
>>> from histolatent.synth import render_tile
>>> tile = render_tile(256, mpp=0.5, seed=1)          # a SynthPath tile; a slide path works the same way
>>> cells = cells_from_slide(tile.rgb, slide_mpp=0.5, method="watershed", tile_px=256)
>>> abs(len(cells) - len(tile.nuclei)) <= 4, list(cells.columns[:4])
(True, ['slide_id', 'cell_id', 'x', 'y'])
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "haematoxylin_from_rgb": "haematoxylin",
    "haematoxylin_map": "haematoxylin",
    "detect_log": "detect",
    "log_response": "detect",
    "foreground_mask": "foreground",
    "distance_markers": "watershed",
    "instances_from_markers": "watershed",
    "segment_watershed": "watershed",
    "classes_from_instances": "unet",
    "instances_from_probabilities": "unet",
    "predict_probabilities": "unet",
    "segment_unet": "unet",
    "check_segmenter": "unet",
    "Segmenter": "unet",
    "measure_nuclei": "morphometrics",
    "aggregate_nuclei": "morphometrics",
    "crofton_perimeters": "morphometrics",
    "outline_polygon": "morphometrics",
    "MORPHOMETRIC_COLUMNS": "morphometrics",
    "PATCH_PRESETS": "patches",
    "PatchSpec": "patches",
    "patch_spec": "patches",
    "extract_patch": "patches",
    "extract_patches": "patches",
    "NucleusPatchDataset": "patches",
    "write_patch_store": "patches",
    "read_patch_store": "patches",
    "METHODS": "pipeline",
    "segment_image": "pipeline",
    "cells_from_image": "pipeline",
    "cells_from_slide": "pipeline",
    "slide_summary": "pipeline",
    "run_cohort": "cohort",
    "process_slide": "cohort",
    "cohort_tables": "cohort",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'histolatent.nuclei' has no attribute {name!r}")
    value = getattr(import_module(f"histolatent.nuclei.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
