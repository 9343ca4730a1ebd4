"""Trained models meet data: every place a model is applied to images, cells or slides.

=====================================  ========================================================
:func:`encode_images`                  ``model.encode`` over a batch of images, parts as arrays
:func:`embed_cells`                    a cell table + embedding columns, chunked and resumable
:func:`cluster_cells`                  InfoGAN classes of a cell table, + a QuPath GeoJSON
:func:`classify_images`                InfoGAN ``argmax q(c | x)`` of patches in memory
:func:`compress_slide`                 a slide -> a zarr ``(C, H, W)`` grid of tile codes (NIC)
:func:`compress_cohort`                slides on Dask -> grids, resumable, a summary table
:func:`embed_slide_grid`               the same as compress_slide, encoder first (older spelling)
:func:`verify_grid`                    whether a grid store is finished (manifest checksum)
:func:`read_slide_grid`                such a grid, its tissue mask and attrs
:func:`predict_grid`                   a slide model on one grid: T crops x 8 transforms, averaged
:func:`predict_grids`                  the same for a cohort of grids -> a table (NIC's slide labels)
:func:`slide_attention`                an attention-MIL model's attention over a whole grid
:func:`patch_geometry`                 the patch size and mpp a run was trained on
:func:`weights_hash`                   the identity of a model's weights
:mod:`~histolatent.embed.columns`      the naming rule of embedding columns (``z_iso_00`` …)
:func:`train_feature_encoder`          the label-free autoencoder of the k-means baseline
=====================================  ========================================================

``downstream`` reads what these write (tables and grids) and never applies an encoder; the
models it runs (the slide-level CNN behind Grad-CAM) read grids, not images.
"""

from histolatent.embed.baselines import train_feature_encoder
from histolatent.embed.cells import embed_cells
from histolatent.embed.cluster import classify_images, cluster_cells
from histolatent.embed.cohort import compress_cohort
from histolatent.embed.encode import encode_images, weights_hash
from histolatent.embed.grid import compress_slide, embed_slide_grid, read_slide_grid, verify_grid
from histolatent.embed.runs import patch_geometry
from histolatent.embed.slides import predict_grid, predict_grids, slide_attention

__all__ = ["classify_images", "cluster_cells", "compress_cohort", "compress_slide", "embed_cells", "embed_slide_grid",
           "encode_images", "patch_geometry", "predict_grid", "predict_grids", "read_slide_grid", "slide_attention",
           "train_feature_encoder", "verify_grid", "weights_hash"]
