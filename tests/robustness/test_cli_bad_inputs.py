"""Every command group refuses bad input with one clear line: exit code 2, a message naming the
input, no traceback, and nothing written at the output path.

Each case builds its bad input in a fresh folder from the session's good ones
(``conftest.good``), runs the CLI in process and checks the four promises. The output path
(``{out}``) is where the command would write; for cases whose output already exists (a folder
where a file is expected) the check is that it is left as it was.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.robustness.conftest import Good


@dataclass
class Case:
    """``make(good, tmp)`` -> the arguments (``{out}`` stands for the output path) and the text
    that the error must contain."""

    make: Callable[[Good, Path], tuple[list, str]]
    out: str = "out"  # the output's name in tmp; None: the command writes no file


def _write(tmp: Path, name: str, data: bytes | str) -> Path:
    path = tmp / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _stain(tmp: Path, good: Good, state: dict | None = None, *, method: str = "macenko", text: str | None = None,
           params: dict | None = None) -> Path:
    data = json.loads((good.reinhard if method == "reinhard" else good.stain).read_text())
    data["state"].update(state or {})
    data["params"].update(params or {})
    return _write(tmp, "norm.json", text if text is not None else json.dumps(data))


def _geojson(tmp: Path, geometry: dict) -> Path:
    return _write(tmp, "mask.geojson", json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": geometry}]}))


def _run_copy(tmp: Path, good: Good, spoil: Callable[[Path], None]) -> Path:
    run = tmp / "run"
    shutil.copytree(good.run, run)
    spoil(run)
    return run


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _cells(tmp: Path, good: Good, **columns) -> Path:
    import pandas as pd

    from histolatent.io.tables import write_cell_table

    table = pd.DataFrame({"slide_id": ["roi"] * 2, "x": [20.0, 30.0], "y": [20.0, 30.0], "mpp": [0.5, 0.5]})
    for k, v in columns.items():
        table[k] = v
    table["x_um"], table["y_um"] = table.x * 0.5, table.y * 0.5
    return write_cell_table(table, tmp / "bad-cells.parquet", metadata={"source": str(good.png)})


def _parquet(tmp: Path, **columns) -> Path:
    """A table written without the cell-table checks (as another tool might write one)."""
    import pandas as pd

    table = pd.DataFrame({"slide_id": ["roi"] * 2, "x": [20.0, 30.0], "y": [20.0, 30.0], "mpp": [0.5, 0.5]})
    for k, v in columns.items():
        table[k] = v
    table.to_parquet(tmp / "raw.parquet")
    return tmp / "raw.parquet"


def _config(tmp: Path, text: str) -> Path:
    return _write(tmp, "bad.yaml", text)


PNG_BAD = b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 8
ZERO = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
RANK1 = [[0.6, 0.7, 0.3], [1.2, 1.4, 0.6]]
CFG = ("model: {name: autoencoder, in_channels: 3, image_size: 8, channels: [4], latent_dim: 2%s}\n"
       "data: {name: digits, size: 8}\ntrain: {steps: 2%s}\n")

CASES: dict[str, Case] = {
    # -- slide --------------------------------------------------------------------------
    "slide-info-missing": Case(lambda g, t: (["slide", "info", t / "nope.svs"], "nope.svs"), None),
    "slide-info-empty": Case(lambda g, t: (["slide", "info", _write(t, "empty.svs", b"")], "empty.svs"), None),
    "slide-info-folder": Case(lambda g, t: (["slide", "info", t], str(t)), None),
    "slide-info-corrupt-png": Case(lambda g, t: (["slide", "info", _write(t, "bad.png", PNG_BAD)], "bad.png"), None),
    "slide-info-truncated-png": Case(lambda g, t: (["slide", "info", _write(t, "cut.png", g.png.read_bytes()[:80])],
                                                   "cut.png"), None),
    "slide-info-text-as-svs": Case(lambda g, t: (["slide", "info", _write(t, "notes.svs", "hello")], "notes.svs"),
                                   None),
    "slide-info-mpp-nan": Case(lambda g, t: (["slide", "info", g.png, "--slide-mpp", "nan"], "--slide-mpp"), None),
    "slide-thumbnail-out-is-folder": Case(lambda g, t: (["slide", "thumbnail", g.png, t / "out"], "out"), "out/"),
    "slide-thumbnail-below-a-file": Case(lambda g, t: (["slide", "thumbnail", g.png, _write(t, "f", "") / "x.png"],
                                                       "x.png"), "f/x.png"),
    "slide-thumbnail-max-px-0": Case(lambda g, t: (["slide", "thumbnail", g.png, t / "out", "--max-px", "0"],
                                                   "max_px")),
    "slide-tissue-out-is-folder": Case(lambda g, t: (["slide", "tissue", g.png, t / "out"], "out"), "out/"),
    "slide-tissue-mpp-negative": Case(lambda g, t: (["slide", "tissue", g.png, t / "out", "--slide-mpp", "-1"],
                                                    "--slide-mpp")),
    "slide-tissue-threshold-nan": Case(lambda g, t: (["slide", "tissue", g.png, t / "out", "--threshold", "nan"],
                                                     "threshold")),
    "slide-tiles-mpp-zero": Case(lambda g, t: (["slide", "tiles", g.png, t / "out", "--mpp", "0", "--slide-mpp",
                                                "0.5"], "mpp")),
    "slide-tiles-mpp-nan": Case(lambda g, t: (["slide", "tiles", g.png, t / "out", "--mpp", "nan", "--slide-mpp",
                                               "0.5"], "mpp")),
    "slide-tiles-tile-px-0": Case(lambda g, t: (["slide", "tiles", g.png, t / "out", "--mpp", "1", "--slide-mpp",
                                                 "0.5", "--tile-px", "0"], "tile_px")),
    "slide-tiles-min-tissue-2": Case(lambda g, t: (["slide", "tiles", g.png, t / "out", "--mpp", "1", "--slide-mpp",
                                                    "0.5", "--min-tissue", "2"], "min_tissue")),
    "slide-tiles-mask-point": Case(lambda g, t: (["slide", "tiles", g.png, t / "out", "--mpp", "1", "--slide-mpp",
                                                  "0.5", "--mask", _geojson(t, {"type": "Point",
                                                                                "coordinates": [5, 5]})],
                                                 "mask.geojson")),
    "slide-tiles-mask-1e300": Case(lambda g, t: (["slide", "tiles", g.png, t / "out", "--mpp", "1", "--slide-mpp",
                                                  "0.5", "--mask", _geojson(t, {"type": "Polygon", "coordinates": [
                                                      [[0, 0], [1e300, 0], [1e300, 1e300], [0, 0]]]})],
                                                 "mask.geojson")),
    "slide-tiles-mask-off-slide": Case(lambda g, t: (["slide", "tiles", g.png, t / "out", "--mpp", "1", "--slide-mpp",
                                                      "0.5", "--mask", _geojson(t, {"type": "Polygon", "coordinates": [
                                                          [[500, 500], [600, 500], [600, 600], [500, 500]]]})],
                                                     "mask.geojson")),
    "slide-tiles-mask-not-json": Case(lambda g, t: (["slide", "tiles", g.png, t / "out", "--mpp", "1", "--slide-mpp",
                                                     "0.5", "--mask", _write(t, "m.geojson", "{oops")], "m.geojson")),
    "slide-tiles-mask-missing": Case(lambda g, t: (["slide", "tiles", g.png, t / "out", "--mpp", "1", "--slide-mpp",
                                                    "0.5", "--mask", t / "gone.png"], "gone.png")),
    "slide-tiles-mask-corrupt-png": Case(lambda g, t: (["slide", "tiles", g.png, t / "out", "--mpp", "1",
                                                        "--slide-mpp", "0.5", "--mask", _write(t, "m.png", PNG_BAD)],
                                                       "m.png")),
    "slide-tiles-out-is-folder": Case(lambda g, t: (["slide", "tiles", g.png, t / "out", "--mpp", "1", "--slide-mpp",
                                                     "0.5"], "out"), "out/"),
    "slide-tiles-save-tiles-is-file": Case(lambda g, t: (["slide", "tiles", g.png, t / "out", "--mpp", "1",
                                                          "--slide-mpp", "0.5", "--save-tiles", _write(t, "tf", "x")],
                                                         "tf")),
    # -- stain --------------------------------------------------------------------------
    "stain-fit-missing-target": Case(lambda g, t: (["stain", "fit", t / "gone.png", "--out", t / "out"], "gone.png")),
    "stain-fit-corrupt-target": Case(lambda g, t: (["stain", "fit", _write(t, "c.png", PNG_BAD), "--out", t / "out"],
                                                   "c.png")),
    "stain-fit-unknown-method": Case(lambda g, t: (["stain", "fit", g.png, "--out", t / "out", "--method", "magic"],
                                                   "magic")),
    "stain-fit-out-is-folder": Case(lambda g, t: (["stain", "fit", g.png, "--out", t / "out"], "out"), "out/"),
    "stain-fit-bad-option": Case(lambda g, t: (["stain", "fit", g.png, "--out", t / "out", "--set", "nosuch=1"],
                                               "nosuch")),
    "stain-apply-zero-matrix": Case(lambda g, t: (["stain", "apply", _stain(t, g, {"stain_matrix": ZERO}), g.png,
                                                   t / "out.png"], "stain_matrix"), "out.png"),
    "stain-apply-rank-1-matrix": Case(lambda g, t: (["stain", "apply", _stain(t, g, {"stain_matrix": RANK1}), g.png,
                                                     t / "out.png"], "rank-deficient"), "out.png"),
    "stain-apply-nan-matrix": Case(lambda g, t: (["stain", "apply", _stain(t, g, text=g.stain.read_text().replace(
        '"stain_matrix": [\n      [\n        ', '"stain_matrix": [\n      [\n        NaN, ', 1)), g.png,
        t / "out.png"], "norm.json"), "out.png"),
    "stain-apply-inf-concentration": Case(lambda g, t: (["stain", "apply", _stain(t, g, text=json.dumps(
        {**json.loads(g.stain.read_text()), "state": {**json.loads(g.stain.read_text())["state"],
                                                      "max_concentrations": [float("inf"), 1.0]}})), g.png,
        t / "out.png"], "max_concentrations"), "out.png"),
    "stain-apply-negative-stain": Case(lambda g, t: (["stain", "apply", _stain(
        t, g, {"stain_matrix": [[-0.6, -0.7, -0.3], [0.1, 0.9, 0.2]]}), g.png, t / "out.png"], "stain_matrix"),
        "out.png"),
    "stain-apply-matrix-shape": Case(lambda g, t: (["stain", "apply", _stain(t, g, {"stain_matrix": [[1, 2, 3]]}),
                                                    g.png, t / "out.png"], "stain_matrix"), "out.png"),
    "stain-apply-zero-concentration": Case(lambda g, t: (["stain", "apply", _stain(t, g, {"max_concentrations":
                                                                                           [0.0, 1.0]}),
                                                          g.png, t / "out.png"], "max_concentrations"), "out.png"),
    "stain-apply-reinhard-zero-std": Case(lambda g, t: (["stain", "apply", _stain(t, g, {"std": [0, 1, 1]},
                                                                                  method="reinhard"),
                                                         g.png, t / "out.png"], "std"), "out.png"),
    "stain-apply-not-json": Case(lambda g, t: (["stain", "apply", _stain(t, g, text="{method: macenko"), g.png,
                                                t / "out.png"], "norm.json"), "out.png"),
    "stain-apply-a-list": Case(lambda g, t: (["stain", "apply", _stain(t, g, text="[1, 2]"), g.png, t / "out.png"],
                                             "norm.json"), "out.png"),
    "stain-apply-unknown-method": Case(lambda g, t: (["stain", "apply", _stain(t, g, text=g.stain.read_text().replace(
        '"macenko"', '"magic"')), g.png, t / "out.png"], "magic"), "out.png"),
    "stain-apply-missing-normaliser": Case(lambda g, t: (["stain", "apply", t / "gone.json", g.png, t / "out.png"],
                                                         "gone.json"), "out.png"),
    "stain-apply-missing-source": Case(lambda g, t: (["stain", "apply", g.stain, t / "gone.png", t / "out.png"],
                                                     "gone.png"), "out.png"),
    "stain-apply-corrupt-source": Case(lambda g, t: (["stain", "apply", g.stain, _write(t, "c.png", PNG_BAD),
                                                      t / "out.png"], "c.png"), "out.png"),
    "stain-apply-out-is-folder": Case(lambda g, t: (["stain", "apply", g.stain, g.png, t / "out"], "out"), "out/"),
    "stain-compare-missing-source": Case(lambda g, t: (["stain", "compare", t / "gone.png", g.png, "--figure",
                                                        t / "out.png"], "gone.png"), "out.png"),
    "stain-compare-figure-is-folder": Case(lambda g, t: (["stain", "compare", g.png, g.png, "--figure", t / "out"],
                                                         "--figure"), "out/"),
    "stain-compare-unknown-method": Case(lambda g, t: (["stain", "compare", g.png, g.png, "--figure", t / "out.png",
                                                        "--methods", "magic"], "magic"), "out.png"),
    # -- nuclei -------------------------------------------------------------------------
    "nuclei-detect-threshold-nan": Case(lambda g, t: (["nuclei", "detect", g.png, "--out", t / "out", "--slide-mpp",
                                                       "0.5", "--threshold", "nan"], "threshold")),
    "nuclei-detect-threshold-inf": Case(lambda g, t: (["nuclei", "detect", g.png, "--out", t / "out", "--slide-mpp",
                                                       "0.5", "--threshold", "inf"], "threshold")),
    "nuclei-detect-radius-reversed": Case(lambda g, t: (["nuclei", "detect", g.png, "--out", t / "out", "--slide-mpp",
                                                         "0.5", "--radius-min", "9", "--radius-max", "3"],
                                                        "radius_um")),
    "nuclei-detect-missing-input": Case(lambda g, t: (["nuclei", "detect", t / "gone.png", "--out", t / "out"],
                                                      "gone.png")),
    "nuclei-detect-empty-folder": Case(lambda g, t: (["nuclei", "detect", (t / "empty").mkdir() or t / "empty",
                                                      "--out", t / "out"], "empty")),
    "nuclei-detect-slide-mpp-0": Case(lambda g, t: (["nuclei", "detect", g.png, "--out", t / "out", "--slide-mpp",
                                                     "0"], "slide_mpp")),
    "nuclei-detect-out-is-file": Case(lambda g, t: (["nuclei", "detect", g.png, "--out", _write(t, "out", "x"),
                                                     "--slide-mpp", "0.5"], "out"), "out="),
    "nuclei-segment-unknown-method": Case(lambda g, t: (["nuclei", "segment", g.png, "--out", t / "out", "--method",
                                                         "magic"], "magic")),
    "nuclei-segment-corrupt-image": Case(lambda g, t: (["nuclei", "segment", _write(t, "c.png", PNG_BAD), "--out",
                                                        t / "out", "--slide-mpp", "0.5"], "c.png")),
    "nuclei-segment-mpp-huge": Case(lambda g, t: (["nuclei", "segment", g.png, "--out", t / "out", "--slide-mpp",
                                                   "0.5", "--mpp", "1e9"], "mpp")),
    "nuclei-patches-missing-table": Case(lambda g, t: (["nuclei", "patches", t / "gone.parquet", "--slides", g.png,
                                                        "--out", t / "out"], "gone.parquet")),
    "nuclei-patches-corrupt-table": Case(lambda g, t: (["nuclei", "patches", _write(t, "c.parquet", b"PAR1xx"),
                                                        "--slides", g.png, "--out", t / "out"], "c.parquet")),
    "nuclei-patches-unknown-preset": Case(lambda g, t: (["nuclei", "patches", g.cells, "--slides", g.png, "--out",
                                                         t / "out", "--preset", "magic"], "magic")),
    # -- train and runs -----------------------------------------------------------------
    "train-missing-config": Case(lambda g, t: (["train", t / "gone.yaml", "--out", t / "out"], "gone.yaml")),
    "train-lr-nan": Case(lambda g, t: (["train", _config(t, CFG % (", lr: .nan", "")), "--out", t / "out"],
                                       "model.lr")),
    "train-lr-inf-override": Case(lambda g, t: (["train", g.config, "--out", t / "out", "--set", "model.lr=inf"],
                                                "model.lr")),
    "train-steps-negative": Case(lambda g, t: (["train", _config(t, CFG % ("", ", steps: -3")), "--out", t / "out"],
                                               "train.steps")),
    "train-invalid-yaml": Case(lambda g, t: (["train", _config(t, "model: [unclosed"), "--out", t / "out"],
                                             "bad.yaml")),
    "train-unknown-key": Case(lambda g, t: (["train", _config(t, CFG % (", wings: 2", "")), "--out", t / "out"],
                                            "wings")),
    "train-out-holds-a-run": Case(lambda g, t: (["train", g.config, "--out", shutil.copytree(g.run, t / "out")],
                                                "--resume"), "out/"),
    "train-out-is-a-file": Case(lambda g, t: (["train", g.config, "--out", _write(t, "out", "x")], "out"), "out="),
    "train-resume-not-a-run": Case(lambda g, t: (["train", "--resume", t], "--resume"), None),
    "train-resume-only-corrupt-checkpoints": Case(lambda g, t: (["train", "--resume", _run_copy(
        t, g, lambda r: (shutil.copy(g.config, r / "config.yaml"), (r / "checkpoints").mkdir(),
                         _write(r / "checkpoints", "step-00000002.pt", b"junk")))],
        "step-00000002.pt"), None),
    "runs-show-not-a-run": Case(lambda g, t: (["runs", "show", t], str(t)), None),
    # -- embed, cluster, probe ----------------------------------------------------------
    "embed-flipped-weights": Case(lambda g, t: (["embed", _run_copy(t, g, lambda r: _flip_byte(
        r / "weights.safetensors")), "--cells", g.cells, "--out", t / "out.parquet"], "weights.safetensors"),
        "out.parquet"),
    "embed-truncated-weights": Case(lambda g, t: (["embed", _run_copy(t, g, lambda r: _truncate(
        r / "weights.safetensors")), "--cells", g.cells, "--out", t / "out.parquet"], "weights.safetensors"),
        "out.parquet"),
    "embed-bad-model-json": Case(lambda g, t: (["embed", _run_copy(t, g, lambda r: _write(r, "model.json", "{x")),
                                                "--cells", g.cells, "--out", t / "out.parquet"], "model.json"),
                                 "out.parquet"),
    "embed-missing-weights": Case(lambda g, t: (["embed", _run_copy(t, g, lambda r: (r / "weights.safetensors")
                                                                    .unlink()),
                                                 "--cells", g.cells, "--out", t / "out.parquet"], "run"),
                                  "out.parquet"),
    "embed-missing-run": Case(lambda g, t: (["embed", t / "norun", "--cells", g.cells, "--out", t / "out.parquet"],
                                            "norun"), "out.parquet"),
    "embed-missing-cells": Case(lambda g, t: (["embed", g.run, "--cells", t / "gone.parquet", "--out",
                                               t / "out.parquet"], "gone.parquet"), "out.parquet"),
    "embed-corrupt-cells": Case(lambda g, t: (["embed", g.run, "--cells", _write(t, "c.parquet", b"PAR1junk"),
                                               "--out", t / "out.parquet"], "c.parquet"), "out.parquet"),
    "embed-cells-off-the-slide": Case(lambda g, t: (["embed", g.run, "--cells", _cells(t, g, x=[20.0, 5e6]),
                                                     "--out", t / "out.parquet"], "off the slide"), "out.parquet"),
    "embed-cells-nan": Case(lambda g, t: (["embed", g.run, "--cells", _parquet(t, y=[float("nan"), 3.0]),
                                           "--out", t / "out.parquet"], "raw.parquet"), "out.parquet"),
    "embed-out-is-folder": Case(lambda g, t: (["embed", g.run, "--cells", g.cells, "--out", t / "out"], "out"),
                                "out/"),
    "embed-mpp-nan": Case(lambda g, t: (["embed", g.run, "--cells", g.cells, "--out", t / "out.parquet", "--mpp",
                                         "nan"], "mpp"), "out.parquet"),
    "embed-unknown-edge": Case(lambda g, t: (["embed", g.run, "--cells", g.cells, "--out", t / "out.parquet",
                                              "--edge", "wrap"], "edge"), "out.parquet"),
    "cluster-flipped-weights": Case(lambda g, t: (["cluster", _run_copy(t, g, lambda r: _flip_byte(
        r / "weights.safetensors")), "--cells", g.cells, "--out", t / "out.parquet"], "weights.safetensors"),
        "out.parquet"),
    "cluster-geojson-is-folder": Case(lambda g, t: (["cluster", g.run, "--cells", g.cells, "--out", t / "o.parquet",
                                                     "--geojson", t / "out"], "geojson"), "out/"),
    "cluster-missing-cells": Case(lambda g, t: (["cluster", g.run, "--cells", t / "gone.parquet", "--out",
                                                 t / "out.parquet"], "gone.parquet"), "out.parquet"),
    "probe-resamples-0": Case(lambda g, t: (["probe", g.probe, "--label", "label", "--features", "z", "--resamples",
                                             "0", "--out", t / "out.json"], "n_resamples"), "out.json"),
    "probe-missing-table": Case(lambda g, t: (["probe", t / "gone.parquet", "--label", "label", "--features", "z",
                                               "--out", t / "out.json"], "gone.parquet"), "out.json"),
    "probe-corrupt-table": Case(lambda g, t: (["probe", _write(t, "c.parquet", b"PAR1junk"), "--label", "label",
                                               "--features", "z", "--out", t / "out.json"], "c.parquet"),
                                "out.json"),
    "probe-missing-label": Case(lambda g, t: (["probe", g.probe, "--label", "grade", "--features", "z", "--out",
                                               t / "out.json"], "grade"), "out.json"),
    "probe-out-is-folder": Case(lambda g, t: (["probe", g.probe, "--label", "label", "--features", "z", "--out",
                                               t / "out"], "out"), "out/"),
    # -- bench, synth, compress, slides -------------------------------------------------
    "bench-a-path": Case(lambda g, t: (["bench", "../../x"], "../../x"), None),
    "bench-an-absolute-path": Case(lambda g, t: (["bench", str(_write(t, "evil.py", "raise SystemExit(9)"))[:-3]],
                                                 "evil"), None),
    "bench-unknown": Case(lambda g, t: (["bench", "nosuch"], "nosuch"), None),
    "synth-tiles-out-is-a-file": Case(lambda g, t: (["synth", "tiles", "--out", _write(t, "out", "x"), "--n", "1",
                                                     "--size", "32"], "out"), "out="),
    "synth-tiles-mpp-nan": Case(lambda g, t: (["synth", "tiles", "--out", t / "out", "--n", "1", "--size", "32",
                                               "--mpp", "nan"], "mpp")),
    "compress-missing-slide": Case(lambda g, t: (["compress", t / "gone.svs", "--encoder", g.run, "--out", t / "out",
                                                  "--scheduler", "inline"], "gone.svs")),
    "compress-flipped-encoder": Case(lambda g, t: (["compress", g.png, "--encoder", _run_copy(t, g, lambda r: _flip_byte(
        r / "weights.safetensors")), "--out", t / "out", "--scheduler", "inline", "--slide-mpp", "0.5"],
        "weights.safetensors")),
    "slides-cv-missing-config": Case(lambda g, t: (["slides", "cv", t / "gone.yaml", "--out", t / "out"],
                                                   "gone.yaml")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_input_is_exit_2_with_a_line_naming_it_and_no_output(case, good, cli, tmp_path):
    spec = CASES[case]
    args, names = spec.make(good, tmp_path)
    out = None
    if spec.out is not None:
        name = spec.out.rstrip("/=")
        out = tmp_path / name
        if spec.out.endswith("/"):
            out.mkdir(exist_ok=True)
    before = sorted(p.name for p in out.iterdir()) if out is not None and out.is_dir() else None
    before_file = out.read_bytes() if out is not None and out.is_file() else None
    code, stdout, stderr = cli(*args)
    assert code == 2, f"exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    assert "Traceback" not in stderr and stderr.startswith("error: ") and len(stderr.strip().splitlines()) == 1, stderr
    assert names in stderr, stderr
    if out is not None:
        if before is not None:
            assert sorted(p.name for p in out.iterdir()) == before  # an existing folder is left as it was
        elif before_file is not None:
            assert out.read_bytes() == before_file
        else:
            assert not out.exists()
    assert not [p for p in tmp_path.rglob(".*") if ".tmp" in p.name]  # no temporary left behind
