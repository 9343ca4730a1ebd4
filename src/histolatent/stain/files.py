"""Stain normalisation of files: ``histolatent stain fit | apply | compare`` as Python calls.

=============================== =============================================================
:func:`fit_normalizer`          fit a method on target image file(s); optionally save its JSON
:func:`normalize_path`          an image, every image of a folder, or a whole slide (streamed
                                into a pyramidal TIFF by :func:`~histolatent.stain.slide.normalize_slide`)
:func:`compare_normalizers`     several methods on one source / target pair, with the metrics
:func:`read_image`              a whole image file (a slide: its thumbnail) as uint8 RGB
=============================== =============================================================

The neural normaliser (``"colorizer"``) lives in :mod:`histolatent.models.colorizer` and
registers itself when that module is imported; import it first to use it here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from histolatent.errors import InputError
from histolatent.io.atomic import check_output, write_image_atomic
from histolatent.stain.base import StainNormalizer, create_normalizer, load_normalizer

__all__ = ["IMAGE_SUFFIXES", "Normalized", "compare_normalizers", "fit_normalizer", "normalize_path",
           "read_image"]

#: Files of a folder that :func:`normalize_path` normalises.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_image(path: str | os.PathLike, *, max_px: int = 4096) -> np.ndarray:
    """A whole image file as ``(H, W, 3)`` uint8 RGB; a slide larger than ``max_px`` as its thumbnail."""
    from histolatent.io.slide import open_slide

    with open_slide(path, mpp=1.0) as slide:  # the scale plays no part in reading the whole image
        if max(slide.dimensions) <= max_px:
            return slide.read_level(0, 0, 0, *slide.dimensions)
        return slide.thumbnail(max_px)


def _create(method: str, params: Mapping[str, Any] | None) -> StainNormalizer:
    try:
        return create_normalizer(method, **dict(params or {}))
    except TypeError as err:
        raise InputError(f"stain method {method!r}: bad option ({err})") from None


def fit_normalizer(targets: str | os.PathLike | Sequence[str | os.PathLike], *, method: str = "macenko",
                   params: Mapping[str, Any] | None = None, out: str | os.PathLike | None = None) -> StainNormalizer:
    """Fit a normaliser on target image file(s) (pooled); with ``out``, also save it as JSON.

    Parameters
    ----------
    targets : path-like or sequence of path-likes
        Images (or slides, read as thumbnails) of the target style.
    method : str
        A registered method: ``macenko``, ``reinhard``, ``vahadane`` (``colorizer`` once
        :mod:`histolatent.models.colorizer` is imported).
    params : mapping, optional
        Keyword arguments of the method's constructor.
    out : path-like, optional
        Where to save the fitted normaliser (JSON, atomic).

    Returns
    -------
    StainNormalizer

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from histolatent.io.atomic import write_image_atomic
    >>> from histolatent.stain.files import fit_normalizer
    >>> from histolatent.synth import render_tile
    >>> folder = Path(tempfile.mkdtemp())
    >>> target = write_image_atomic(folder / "target.png", render_tile(96, seed=5).rgb)
    >>> norm = fit_normalizer(target, method="macenko", params={"alpha": 1.5}, out=folder / "m.json")
    >>> norm.fitted, (folder / "m.json").is_file()
    (True, True)
    """
    paths = [targets] if isinstance(targets, (str, os.PathLike)) else list(targets)
    if not paths:
        raise InputError("targets: expected at least one image")
    if out is not None:
        check_output(out, name="out")
    norm = _create(method, params)
    norm.fit([read_image(p) for p in paths])
    if out is not None:
        norm.save(out)
    return norm


@dataclass(frozen=True)
class Normalized:
    """What :func:`normalize_path` wrote: ``kind`` is "image", "folder" or "slide"; counts of
    images (or slide tiles) normalised and returned unchanged (too little tissue)."""

    out: Path
    kind: str
    n_transformed: int
    n_skipped: int


def normalize_path(normalizer: StainNormalizer | str | os.PathLike, source: str | os.PathLike,
                   out: str | os.PathLike, *, tile_px: int = 512, per_tile: bool = False) -> Normalized:
    """Normalise an image file, every image of a folder, or a whole slide.

    Parameters
    ----------
    normalizer : StainNormalizer or path-like
        A fitted normaliser or its saved JSON.
    source : path-like
        An image (PNG, JPEG, ...), a folder of images (:data:`IMAGE_SUFFIXES`, written to
        ``out/<name>.png``), or a whole-slide file (written to ``out`` as a pyramidal TIFF,
        see :func:`~histolatent.stain.slide.normalize_slide`).
    out : path-like
        Output image, folder, or TIFF. Every file is written atomically.
    tile_px, per_tile
        Slides only; see :func:`~histolatent.stain.slide.normalize_slide`.

    Returns
    -------
    Normalized

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from histolatent.io.atomic import write_image_atomic
    >>> from histolatent.stain import ReinhardNormalizer
    >>> from histolatent.stain.files import normalize_path
    >>> from histolatent.synth import render_tile
    >>> folder = Path(tempfile.mkdtemp())
    >>> src = write_image_atomic(folder / "src.png", render_tile(64, seed=1, stain=4).rgb)
    >>> norm = ReinhardNormalizer().fit(render_tile(64, seed=2).rgb)
    >>> normalize_path(norm, src, folder / "out.png").kind
    'image'
    """
    from histolatent.io.slide import ArraySlide, open_slide
    from histolatent.stain.slide import normalize_slide

    norm = normalizer if isinstance(normalizer, StainNormalizer) else load_normalizer(normalizer)
    source, out = Path(source), Path(out)
    if not source.exists():
        raise InputError(f"source {str(source)!r}: no such file or folder")
    check_output(out, name="out", kind="folder" if source.is_dir() else "file")
    before = (norm.n_transformed, norm.n_skipped)

    def result(kind: str) -> Normalized:
        return Normalized(out, kind, norm.n_transformed - before[0], norm.n_skipped - before[1])

    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)})")
        out.mkdir(parents=True, exist_ok=True)
        for f in files:
            write_image_atomic(out / f.with_suffix(".png").name, norm.transform(read_image(f)))
        return result("folder")
    with open_slide(source, mpp=None) as slide:
        if isinstance(slide, ArraySlide):
            write_image_atomic(out, norm.transform(slide.read_level(0, 0, 0, *slide.dimensions)))
            return result("image")
        normalize_slide(norm, slide, out, tile_px=tile_px, per_tile=per_tile)
        return result("slide")


def compare_normalizers(source: Any, target: Any, *, methods: Sequence[str] = ("macenko", "reinhard", "vahadane"),
                        truth: Any = None, params: Mapping[str, Mapping[str, Any]] | None = None
                        ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
    """Normalise ``source`` to ``target`` with each method and score every output.

    Parameters
    ----------
    source, target : path-like or (H, W, 3) uint8 array
        The image to normalise and an image of the target style.
    methods : sequence of str
        Registered methods to compare.
    truth : path-like or array, optional
        The true normalised image (the same tissue under the target stain, e.g. a SynthPath
        stain pair); the reference of the metrics. Default: ``target`` (then only the
        histogram metrics compare like with like).
    params : mapping, optional
        ``{method: {option: value}}`` for the methods' constructors.

    Returns
    -------
    outputs : dict
        Method -> normalised image.
    table : dict
        Method (and ``"unnormalised"``) -> :func:`~histolatent.metrics.stain.stain_metrics`.

    Examples
    --------
    >>> from histolatent.stain.files import compare_normalizers
    >>> from histolatent.synth import stain_pair
    >>> pair = stain_pair(seed=3, size_px=64)
    >>> outputs, table = compare_normalizers(pair.source, pair.target, methods=["reinhard"], truth=pair.target)
    >>> sorted(table), table["reinhard"]["psnr"] > table["unnormalised"]["psnr"]
    (['reinhard', 'unnormalised'], True)
    """
    from histolatent.io.image import rgb8_from_any
    from histolatent.metrics.stain import stain_metrics

    def image(x: Any, name: str) -> np.ndarray:
        return read_image(x) if isinstance(x, (str, os.PathLike)) else rgb8_from_any(x, name=name)

    src, tgt = image(source, "source"), image(target, "target")
    ref = tgt if truth is None else image(truth, "truth")
    params = dict(params or {})
    outputs, table = {}, {}
    for m in methods:
        outputs[m] = _create(m, params.get(m)).fit(tgt).transform(src)
        table[m] = stain_metrics(outputs[m], ref)
    table["unnormalised"] = stain_metrics(src, ref)
    return outputs, table
