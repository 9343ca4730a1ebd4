"""U-Net nuclei segmentation around the model: targets, tiled inference, instances.

The model itself (:class:`histolatent.models.unet.UNet`, registry name ``"unet"``) predicts
background / nucleus / boundary per pixel (Yuan & Suh 2018, §2.2 and §3.2). This module

- builds its 3-class training target from an instance label map
  (:func:`classes_from_instances`),
- runs it over an image of any size at the model's own mpp, in overlapping tiles with
  only the centre of each tile kept (:func:`predict_probabilities`),
- turns the 3-class map into nucleus instances (:func:`instances_from_probabilities`):
  the nucleus interiors, split at their necks, are the seeds; the watershed of the
  foreground (interior + boundary) from them gives each nucleus its boundary back.

It takes any :class:`Segmenter`: a module with ``predict(x) -> (N, 3, H, W)`` probabilities
and a ``config.mpp``. This package never loads one: a trained run folder becomes a model
with :func:`histolatent.models.load_model` (a higher layer), which the caller passes in.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from histolatent.errors import InputError
from histolatent.io.image import check_mpp, rgb8_from_any, tensor_from_rgb8
from histolatent.nuclei.watershed import distance_markers, instances_from_markers
from histolatent.progress import Progress

if TYPE_CHECKING:
    import torch

BACKGROUND, NUCLEUS, BOUNDARY = 0, 1, 2


@runtime_checkable
class Segmenter(Protocol):
    """What the U-Net functions need of a model: a ``config`` with ``mpp`` (the resolution it
    was trained at; optionally ``depth``, the number of 2x poolings, so tiles are cut to a
    multiple of ``2**depth``), and ``predict``."""

    config: Any

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` float RGB in [0, 1] -> ``(N, 3, H, W)`` probabilities of background,
        nucleus interior, boundary."""
        ...


def classes_from_instances(instances: np.ndarray, *, boundary_px: int = 1) -> np.ndarray:
    """3-class target of an instance map: 0 background, 1 nucleus interior, 2 boundary.

    Parameters
    ----------
    instances : ndarray of int, (H, W)
        Instance labels, 0 = background. Not modified.
    boundary_px : int
        Width of the boundary band inside each nucleus, px (pixels of a nucleus within
        this distance of another label or the background).

    Returns
    -------
    ndarray of uint8, (H, W)
    """
    lab = np.asarray(instances)
    if lab.ndim != 2 or not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
        raise InputError(f"instances: expected a 2-D integer label map, got shape {lab.shape}, dtype {lab.dtype}")
    if int(boundary_px) < 1:
        raise InputError(f"boundary_px: expected >= 1, got {boundary_px}")
    out = (lab > 0).astype(np.uint8)
    edge = find_boundaries(lab, connectivity=1, mode="inner")
    if boundary_px > 1:
        edge = ndi.binary_dilation(edge, iterations=int(boundary_px) - 1) & (lab > 0)
    out[edge & (lab > 0)] = BOUNDARY
    return out


def instances_from_probabilities(prob: np.ndarray, *, mpp: float, min_area_um2: float = 6.0,
                                 interior_threshold: float = 0.5, split_distance_um: float = 3.5,
                                 split_depth_um: float = 0.3) -> np.ndarray:
    """Nucleus instances from a 3-class probability map.

    The foreground is every pixel not predicted background; the seeds are the confident
    nucleus-interior pixels. Touching nuclei whose interiors still merge (the boundary class
    is thin and rare between them) are split at the necks of the interior: one marker per
    peak of its distance transform (peaks ``split_distance_um`` apart and ``split_depth_um``
    above their saddles, :func:`~histolatent.nuclei.watershed.distance_markers`). The
    foreground is then flooded from the markers; a foreground component without any
    interior (a thin spindle predicted all boundary) becomes one nucleus.

    Parameters
    ----------
    prob : ndarray, (3, H, W)
        Probabilities of background, nucleus interior, boundary.
    mpp : float
        Microns per pixel of ``prob``.
    min_area_um2 : float
        Smallest nucleus kept, µm².
    interior_threshold : float
        Interior probability of a seed pixel.
    split_distance_um, split_depth_um : float
        Marker spacing and peak depth of the interior split, µm.

    Returns
    -------
    ndarray of int32, (H, W)
        Labels 1..n, 0 = background.
    """
    mpp = check_mpp(mpp)
    p = np.asarray(prob, dtype=np.float32)
    if p.ndim != 3 or p.shape[0] != 3:
        raise InputError(f"prob: expected (3, H, W) probabilities, got shape {p.shape}")
    fg = ndi.binary_fill_holes(p[BACKGROUND] < 0.5)
    seeds = (p[NUCLEUS] > interior_threshold) & fg
    pts = distance_markers(seeds, mpp=mpp, min_distance_um=split_distance_um, h_um=split_depth_um)
    elevation = -cv2.distanceTransform(seeds.astype(np.uint8), cv2.DIST_L2, 5)
    return instances_from_markers(fg, pts, elevation=elevation, min_area_px=min_area_um2 / (mpp * mpp))


def check_segmenter(model: Any) -> Segmenter:
    """``model`` in eval mode if it is a :class:`Segmenter`, else a clear :class:`InputError`.

    A run folder is not accepted here: load it first with
    :func:`histolatent.models.load_model` (``nuclei`` sits below ``models`` and never loads
    weights itself).
    """
    if isinstance(model, (str, os.PathLike)):
        raise InputError(f"model: {str(model)!r} is a path; load the run first, "
                         "e.g. histolatent.models.load_model(path), and pass the model")
    if not isinstance(model, Segmenter) or not hasattr(model.config, "mpp"):
        raise InputError(f"model: expected a U-Net (a model with predict() and config.mpp), got {type(model).__name__}")
    return model.eval() if hasattr(model, "eval") else model



def predict_probabilities(image: np.ndarray, model: Any, *, mpp: float, tile_px: int = 512, overlap_px: int = 32,
                          batch_size: int = 4, progress: bool = False) -> np.ndarray:
    """3-class probabilities of an image of any size, at the image's own resolution.

    The image is resampled to the model's mpp, cut into ``tile_px`` tiles overlapping by
    ``overlap_px`` on each side (only each tile's centre is kept, so no seams), and the
    probability map is resampled back.

    Parameters
    ----------
    image : ndarray, (H, W, 3)
        RGB H&E; never modified.
    model : Segmenter
        A trained U-Net (see :func:`check_segmenter`).
    mpp : float
        Microns per pixel of ``image``.
    tile_px, overlap_px : int
        Tile size and overlap margin at the model's mpp.
    batch_size : int
        Tiles per forward pass.

    Returns
    -------
    ndarray of float32, (3, H, W)
    """
    import torch

    mpp = check_mpp(mpp)
    net = check_segmenter(model)
    rgb = rgb8_from_any(image, name="image")
    H, W = rgb.shape[:2]
    scale = mpp / float(net.config.mpp)  # model pixels per image pixel
    if abs(scale - 1.0) > 1e-3:
        w2, h2 = max(1, int(round(W * scale))), max(1, int(round(H * scale)))
        work = cv2.resize(rgb, (w2, h2), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    else:
        work = rgb
    hh, ww = work.shape[:2]
    m = 2 ** int(getattr(net.config, "depth", 4))
    tile_px = max(m, int(tile_px) // m * m)
    overlap_px = int(overlap_px)
    core = tile_px - 2 * overlap_px
    if core < m:
        raise InputError(f"tile_px {tile_px} leaves no core with overlap_px {overlap_px} on each side")
    pad = np.pad(work, ((overlap_px, overlap_px + core), (overlap_px, overlap_px + core), (0, 0)), mode="reflect")
    out = np.zeros((3, hh, ww), dtype=np.float32)
    origins = [(y, x) for y in range(0, hh, core) for x in range(0, ww, core)]
    device = net.device if hasattr(net, "device") else torch.device("cpu")
    bar = Progress(len(origins), "U-Net tiles", unit="tiles", transient=True) if progress else None
    with bar if bar is not None else contextlib.nullcontext():
        for b in range(0, len(origins), int(batch_size)):
            chunk = origins[b:b + int(batch_size)]
            tiles = np.stack([pad[y:y + tile_px, x:x + tile_px] for y, x in chunk])  # (n, T, T, 3)
            with torch.inference_mode():
                prob = net.predict(tensor_from_rgb8(tiles, device=device)).float().cpu().numpy()  # (n, 3, T, T)
            for (y, x), pr in zip(chunk, prob, strict=True):
                h1, w1 = min(core, hh - y), min(core, ww - x)
                out[:, y:y + h1, x:x + w1] = pr[:, overlap_px:overlap_px + h1, overlap_px:overlap_px + w1]
            if bar is not None:
                bar.advance(len(chunk))
    if (hh, ww) != (H, W):
        out = np.stack([cv2.resize(c, (W, H), interpolation=cv2.INTER_LINEAR) for c in out])
    return out


def segment_unet(image: np.ndarray, model: Any, *, mpp: float, min_area_um2: float = 6.0, tile_px: int = 512,
                 overlap_px: int = 32, batch_size: int = 4, return_probabilities: bool = False,
                 progress: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Nucleus instances of an RGB image by the U-Net (3-class map -> instances).

    Parameters
    ----------
    image : ndarray, (H, W, 3)
        RGB H&E; never modified.
    model : Segmenter
        A trained U-Net (:func:`histolatent.models.load_model` loads one from its run folder).
    mpp : float
        Microns per pixel of ``image`` (resampled to the model's mpp internally).
    min_area_um2 : float
        Smallest nucleus kept, µm².
    return_probabilities : bool
        Also return the ``(3, H, W)`` probabilities.

    Returns
    -------
    labels : ndarray of int32, (H, W)
    prob : ndarray of float32, (3, H, W), only with ``return_probabilities``
    """
    prob = predict_probabilities(image, model, mpp=mpp, tile_px=tile_px, overlap_px=overlap_px,
                                 batch_size=batch_size, progress=progress)
    labels = instances_from_probabilities(prob, mpp=mpp, min_area_um2=min_area_um2)
    return (labels, prob) if return_probabilities else labels

