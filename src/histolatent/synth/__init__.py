"""SynthPath: H&E tissue, cells, stain pairs and whole slides with ground truth.

Rendered in optical density (Beer–Lambert) from procedural concentration fields, with
nuclei of known type, outline, orientation and position; plus NIC's synthetic digit
slides and TARGET-VAE's rotated digits. Everything is a pure function of a seed.

Main entry points
-----------------
- :func:`render_tile`, :func:`rerender`, :func:`stain_pair`, :func:`stain_pairs`
- :func:`cell_patches`, :func:`roi_set`
- :func:`write_slide` (pyramidal JPEG TIFF, tile by tile)
- data set folders with manifests, one per ``histolatent synth`` command (in
  :mod:`histolatent.synth.writers`): :func:`write_cells`, :func:`write_tiles`,
  :func:`write_rois`, :func:`write_stain_pairs`, :func:`write_slides`, :func:`write_nic`,
  :func:`write_grids`, :func:`write_digits`
- :func:`write_pcam`, :func:`write_glas`: PCam- and GLaS-layout folders for DRL's transfer
  protocol (:mod:`histolatent.synth.transfer`)
- :func:`grid_slide` (a compressed slide with a known lesion, :mod:`histolatent.synth.grids`)
- :func:`nic_image`, :func:`nic_slide`
- :func:`rotated_digits`, :func:`multi_digit_canvas`
- :func:`realism_table`, :func:`realism_figure` (in :mod:`histolatent.synth.figures`)
"""

from histolatent.synth.cells import RoiSet, cell_patches, roi_set
from histolatent.synth.digits import multi_digit_canvas, rotated_digits, split_indices
from histolatent.synth.grids import GridSlide, grid_slide
from histolatent.synth.nic import NicImage, nic_image, nic_slide
from histolatent.synth.render import (
    StainPair,
    SynthTile,
    clean_rgb,
    render_region,
    render_tile,
    rerender,
    stain_pair,
    stain_pairs,
)
from histolatent.synth.slide import Lesion, SlideTruth, random_lesion, write_slide
from histolatent.synth.stain import (
    CLEAN,
    REFERENCE_MATRIX,
    Scanner,
    Stain,
    site_scanner,
    site_stain,
)
from histolatent.synth.tissue import (
    PRESETS,
    REGIONS,
    TYPE_IDS,
    TYPES,
    Blob,
    TissueSpec,
    World,
    gland_masks,
)
from histolatent.synth.transfer import gland_tiles, pcam_patches, write_glas, write_pcam
from histolatent.synth.writers import (
    write_cells,
    write_digits,
    write_grids,
    write_nic,
    write_rois,
    write_slides,
    write_stain_pairs,
    write_tiles,
)


def realism_table(**kwargs):
    """See :func:`histolatent.synth.figures.realism_table` (needs the real samples)."""
    from histolatent.synth.figures import realism_table as _t

    return _t(**kwargs)


def realism_figure(out_path, **kwargs):
    """See :func:`histolatent.synth.figures.realism_figure` (needs the real samples)."""
    from histolatent.synth.figures import realism_figure as _f

    return _f(out_path, **kwargs)


__all__ = [
    "CLEAN", "PRESETS", "REFERENCE_MATRIX", "REGIONS", "TYPES", "TYPE_IDS", "Blob", "GridSlide", "Lesion",
    "NicImage", "RoiSet", "Scanner", "SlideTruth", "Stain", "StainPair", "SynthTile", "TissueSpec", "World",
    "cell_patches", "clean_rgb", "gland_masks", "gland_tiles", "pcam_patches", "write_glas", "write_pcam", "grid_slide", "multi_digit_canvas", "nic_image", "nic_slide", "random_lesion", "realism_figure",
    "realism_table", "render_region", "render_tile", "rerender", "roi_set", "rotated_digits", "site_scanner",
    "site_stain", "split_indices", "stain_pair", "stain_pairs", "write_cells", "write_digits", "write_grids", "write_nic",
    "write_rois", "write_slide", "write_slides", "write_stain_pairs", "write_tiles",
]
