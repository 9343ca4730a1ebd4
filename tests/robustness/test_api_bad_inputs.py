"""The public API refuses the same bad inputs with an InputError naming the input, before any
work and without writing anything; and a seeded fuzz of the array functions (stain
normalisers, tissue masks, nuclei) finds only InputErrors or valid results."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from histolatent.errors import InputError
from tests.robustness.conftest import Good

GOOD_MATRIX = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]]


def _macenko_state(matrix) -> dict:
    return {"method": "macenko", "version": 1, "params": {},
            "state": {"stain_matrix": matrix, "max_concentrations": [1.0, 1.0]}}


def _flipped_run(good: Good, tmp: Path) -> Path:
    run = tmp / "run"
    shutil.copytree(good.run, run)
    w = run / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0x40
    w.write_bytes(bytes(data))
    return run


def _from_dict(data):
    from histolatent.stain import MacenkoNormalizer

    return MacenkoNormalizer.from_dict(data)


def _geojson(tmp: Path, geometry: dict) -> Path:
    path = tmp / "m.geojson"
    path.write_text(json.dumps({"type": "Feature", "geometry": geometry}))
    return path


def _mask(tmp, geometry):
    from histolatent.tissue.mask import mask_from_geojson

    return mask_from_geojson(_geojson(tmp, geometry), (64, 64))


def _embed(good, tmp, **kw):
    import pandas as pd

    from histolatent.embed import embed_cells

    cells = pd.DataFrame({"x": [10.0, kw.pop("x", 20.0)], "y": [10.0, 20.0]})
    return embed_cells(kw.pop("run", good.run), cells, tmp / "out.parquet", slides=good.png, slide_mpp=0.5, **kw)


#: name -> (call(good, tmp), text the message must contain)
CASES: dict[str, tuple[Callable[[Good, Path], object], str]] = {
    "open_slide-float-0-255": (lambda g, t: __import__("histolatent.io.slide", fromlist=["open_slide"]).open_slide(
        np.full((8, 8, 3), 128.0)), "[0, 1]"),
    "open_slide-float-nan": (lambda g, t: __import__("histolatent.io.slide", fromlist=["open_slide"]).open_slide(
        np.full((8, 8), np.nan)), "NaN"),
    "stain-matrix-zero": (lambda g, t: _from_dict(_macenko_state(np.zeros((2, 3)).tolist())), "stain_matrix"),
    "stain-matrix-rank-1": (lambda g, t: _from_dict(_macenko_state([[0.6, 0.7, 0.3], [1.2, 1.4, 0.6]])),
                            "rank-deficient"),
    "stain-matrix-nan": (lambda g, t: _from_dict(_macenko_state([[float("nan"), 0.7, 0.3], GOOD_MATRIX[1]])),
                         "stain_matrix"),
    "stain-matrix-inf": (lambda g, t: _from_dict(_macenko_state([[float("inf"), 0.7, 0.3], GOOD_MATRIX[1]])),
                         "stain_matrix"),
    "stain-augment-rank-1": (lambda g, t: __import__("histolatent.stain", fromlist=["StainAugment"]).StainAugment(
        stain_matrix=[[0.6, 0.7, 0.3], [0.6, 0.7, 0.3]]), "rank-deficient"),
    "hed-zero-matrix": (lambda g, t: __import__("histolatent.stain", fromlist=["hed_from_rgb"]).hed_from_rgb(
        np.zeros((4, 4, 3), np.uint8), np.zeros((2, 3))), "stain_matrix"),
    "load_normalizer-not-json": (lambda g, t: __import__("histolatent.stain", fromlist=["load_normalizer"])
                                 .load_normalizer((t / "n.json").write_text("{") and t / "n.json"), "n.json"),
    "load_model-flipped": (lambda g, t: __import__("histolatent.models", fromlist=["load_model"]).load_model(
        _flipped_run(g, t)), "weights.safetensors"),
    "detect_log-threshold-nan": (lambda g, t: __import__("histolatent.nuclei.detect", fromlist=["detect_log"])
                                 .detect_log(np.zeros((16, 16), np.float32), mpp=0.5, threshold=float("nan")),
                                 "threshold"),
    "mask-point-only": (lambda g, t: _mask(t, {"type": "Point", "coordinates": [3, 3]}), "m.geojson"),
    "mask-1e300": (lambda g, t: _mask(t, {"type": "Polygon", "coordinates": [[[0, 0], [1e300, 0], [0, 1e300],
                                                                              [0, 0]]]}), "m.geojson"),
    "mask-zero-area": (lambda g, t: _mask(t, {"type": "Polygon", "coordinates": [[[5, 5], [5, 5], [5, 5], [5, 5]]]}),
                       "m.geojson"),
    "embed-cells-off-slide": (lambda g, t: _embed(g, t, x=1e6), "off the slide"),
    "embed-flipped-weights": (lambda g, t: _embed(g, t, run=_flipped_run(g, t)), "weights.safetensors"),
    "probe-resamples-0": (lambda g, t: __import__("histolatent.downstream.probes", fromlist=["probe_table"])
                          .probe_table(g.probe, label="label", features=["z"], n_resamples=0, out=t / "out.json"),
                          "n_resamples"),
    "fit-lr-nan": (lambda g, t: __import__("histolatent.train", fromlist=["fit"]).fit(
        {"model": {"name": "autoencoder", "in_channels": 3, "image_size": 8, "channels": [4], "lr": float("nan")}},
        data=np.zeros((4, 8, 8, 3), np.uint8), out=t / "out"), "model.lr"),
    "write_tile_grid-save-tiles-is-a-file": (lambda g, t: __import__("histolatent.tissue.files", fromlist=["x"])
                                             .write_tile_grid(g.png, t / "out.csv", mpp=1.0, slide_mpp=0.5,
                                                              tiles_dir=(t / "f").write_text("x") and t / "f"),
                                             "tiles_dir"),
    "check_output-folder-for-a-file": (lambda g, t: __import__("histolatent.io.atomic", fromlist=["x"])
                                       .check_output(t, name="--out"), "--out"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_api_raises_an_input_error_naming_the_input_and_writes_nothing(case, good, tmp_path):
    call, text = CASES[case]
    before = {p.name for p in tmp_path.iterdir()}
    with pytest.raises(InputError) as err:
        call(good, tmp_path)
    assert text in str(err.value)
    left = {p.name for p in tmp_path.iterdir()} - before - {"run", "n.json", "m.geojson", "f"}
    assert not left, left


def test_a_png_over_pils_pixel_limit_opens_and_one_over_the_memory_is_refused(good, monkeypatch):
    from PIL import Image

    import histolatent.io.image as image
    from histolatent.io.slide import open_slide

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the ROI is 40x over PIL's (lowered) limit
    with open_slide(good.png, mpp=0.5) as slide:
        assert slide.dimensions == (64, 64)
    assert Image.MAX_IMAGE_PIXELS == 100  # the limit is lifted for our read only
    monkeypatch.setattr(image, "available_memory", lambda: 1000)
    with pytest.raises(InputError, match=r"roi\.png.*GiB of memory is available"):
        open_slide(good.png, mpp=0.5)


def _arrays(rng: np.random.Generator, n: int):
    """Arbitrary image-like arrays: shapes, dtypes and values a user might pass, valid or not."""
    shapes = [(8, 8), (8, 8, 3), (8, 8, 4), (8, 8, 1), (8, 8, 2), (1, 1, 3), (0, 8, 3), (8,), (2, 8, 8, 3), (16, 12, 3)]
    dtypes = [np.uint8, np.uint16, np.float32, np.float64, np.int32, np.bool_, np.int8]
    for _ in range(n):
        shape = shapes[rng.integers(len(shapes))]
        dtype = dtypes[rng.integers(len(dtypes))]
        kind = rng.integers(4)
        if np.issubdtype(dtype, np.floating):
            values = [rng.random(shape), rng.random(shape) * 255, np.full(shape, np.nan), rng.normal(size=shape)][kind]
        elif dtype is np.bool_:
            values = rng.random(shape) > 0.5
        else:
            info = np.iinfo(dtype)
            values = rng.integers(info.min, info.max, shape, endpoint=True)
        yield np.asarray(values).astype(dtype)


FUZZ_TARGETS = ["macenko", "reinhard", "vahadane", "tissue", "log", "watershed"]


def fitted_normaliser(target: str, good: Good):
    """The stain normaliser ``target`` fitted on the good PNG, or None for the other targets."""
    from histolatent.io.slide import open_slide
    from histolatent.stain import create_normalizer

    if target not in ("macenko", "reinhard", "vahadane"):
        return None
    with open_slide(good.png) as s:
        return create_normalizer(target).fit(s.read_level(0, 0, 0, 64, 64))


def check_input_error_or_valid(target: str, fitted, arr: np.ndarray) -> None:
    """``target`` on ``arr``: an InputError, or a result of the promised kind (anything else fails)."""
    from histolatent.io.slide import open_slide
    from histolatent.nuclei.detect import detect_log
    from histolatent.nuclei.watershed import segment_watershed
    from histolatent.tissue.mask import detect_tissue

    try:
        if fitted is not None:
            out = fitted.transform(arr)
            assert out.dtype == np.uint8 and out.shape[-1] in (3, 4)  # RGBA keeps its alpha
            assert out.shape[:-1] == arr.shape[:out.ndim - 1]
        elif target == "tissue":
            with open_slide(arr, mpp=2.0) as s:
                mask = detect_tissue(s)
            assert mask.mask.dtype == bool and 0.0 <= mask.tissue_fraction <= 1.0
        elif target == "log":
            det = detect_log(arr, mpp=0.5, radius_um=(1.0, 2.0))
            assert {"x", "y"} <= set(det.columns) and np.isfinite(det[["x", "y"]].to_numpy()).all()
        else:
            labels = segment_watershed(arr, mpp=0.5)
            labels = labels[0] if isinstance(labels, tuple) else labels
            assert np.asarray(labels).shape[:2] == arr.shape[:2]
    except InputError:
        pass


@pytest.mark.parametrize("target", FUZZ_TARGETS)
def test_fuzzed_arrays_give_an_input_error_or_a_valid_result(target, good):
    fitted = fitted_normaliser(target, good)
    rng = np.random.default_rng(FUZZ_TARGETS.index(target))
    for arr in _arrays(rng, 25):
        check_input_error_or_valid(target, fitted, arr)
