"""Every option of every command matters: a test shows what it changes, or this file says why it
changes nothing.

``REAL`` runs commands for real (in process, no fakes) on tiny inputs. For each option listed
in a command's ``alts``, :func:`test_option_changes_the_result` runs the command twice, without
and with the option, and what the command produced must differ: pixels, arrays, tables, printed
results or the files written -- never a manifest's echo of its own parameters, so an option that
is recorded and otherwise ignored fails. :func:`test_baseline_is_reproducible` checks that what
is compared holds no timings or paths. The options in a command's ``same`` say why they change
nothing, and :func:`test_option_said_to_change_nothing_changes_nothing` checks it (to float
rounding).

``OTHER`` holds every option that is not run here: either the test that shows its effect
(``file.py::test_name``, checked to exist) or ``"not output-changing: why"`` (speed, memory,
parallelism, device, verbosity). :func:`test_every_option_is_listed` fails for an option of the
app that is in neither, or in both. Arguments (the inputs themselves) are not listed; that each
option reaches the API at all is :mod:`tests.cli.test_cli_calls_api`'s job.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from tests.cli.test_cli_calls_api import _commands  # every command of the app, by path
from typer.testing import CliRunner

from histolatent.cli.app import build_app
from histolatent.errors import InputError

TESTS = Path(__file__).resolve().parents[1]


# -- what a run produced ------------------------------------------------------------------------------
def _arr(a: Any) -> tuple:
    a = np.ascontiguousarray(np.asarray(a))
    return a.shape, str(a.dtype), a.tobytes()


def _image(path: Path) -> tuple:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            return _arr(page.asarray()), (page.tilewidth, page.tilelength)
    return _arr(np.asarray(Image.open(path)))


def _table(path: Path, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    df = df.drop(columns=[c for c in drop if c in df.columns])
    return {"columns": list(df.columns), **{c: _arr(df[c].to_numpy()) if df[c].dtype.kind in "biuf" else
                                            df[c].astype(str).tolist() for c in df.columns}}


def _close(a: Any, b: Any) -> bool:
    """Equal, numbers to float rounding (rtol 1e-5): what an option that changes nothing may change."""
    if isinstance(a, tuple) and len(a) == 3 and isinstance(a[2], bytes) and isinstance(b, tuple) and len(b) == 3:
        if a[:2] != b[:2]:
            return False
        x, y = (np.frombuffer(v[2], dtype=v[1]).reshape(v[0]) for v in (a, b))
        return bool(np.allclose(x, y, rtol=1e-5, atol=1e-6)) if x.dtype.kind in "fc" else np.array_equal(x, y)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) if out.exists() else []


def _data(out: Path, *globs: str, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Contents of the files matching ``globs``: images as pixels, arrays, tables (less ``drop``), JSON."""
    got: dict[str, Any] = {}
    for g in globs:
        for p in sorted(out.glob(g)):
            key = str(p.relative_to(out))
            if p.suffix == ".npy":
                got[key] = _arr(np.load(p))
            elif p.suffix == ".npz":
                with np.load(p) as z:
                    got[key] = {k: _arr(z[k]) for k in sorted(z.files)}
            elif p.suffix in (".png", ".tif", ".tiff"):
                got[key] = _image(p)
            elif p.suffix in (".parquet", ".csv"):
                got[key] = _table(p, drop)
            elif p.suffix == ".safetensors":  # the tensors (the header's key order varies between saves)
                from safetensors.torch import load_file

                got[key] = {k: _arr(v.numpy()) for k, v in sorted(load_file(str(p)).items())}
            elif p.suffix in (".json", ".geojson"):
                got[key] = json.loads(p.read_text())
            elif p.suffix == ".zarr" and (p / "cells.parquet").is_file():
                from histolatent.nuclei.patches import read_patch_store

                patches, cells = read_patch_store(p)
                got[key] = _arr(patches[...]), cells.to_csv(index=False)
            elif p.suffix == ".zarr":
                from histolatent.embed.grid import read_slide_grid

                grid, mask, _ = read_slide_grid(p)
                got[key] = _arr(grid), _arr(mask)
            else:
                got[key] = p.read_bytes()
    return got


# -- the specs ------------------------------------------------------------------------------------------
@dataclass
class Alt:
    """One option's change: ``args`` added to the baseline (the last value of an option wins)."""

    args: list[str]
    base: list[str] = field(default_factory=list)  # added to both runs: the option acts only with these
    again: bool = False  # both runs write into a folder a baseline run already filled
    instead: list[str] | None = None  # replaces the command's baseline argv for both runs


@dataclass
class Real:
    """A real run of one command: ``base`` argv ({in}: the inputs, {out}: a fresh folder) and what to compare."""

    base: list[str]
    evidence: Callable[[Path, str, int], Any]  # (out folder, printed output, exit code) -> what was produced
    alts: dict[str, Alt | list[str]]
    same: dict[str, tuple[list[str], str]] = field(default_factory=dict)  # option -> (args, why it changes nothing)


def _std(out: Path, text: str, code: int) -> Any:
    return code, text


def _scores(out: Path, text: str, code: int) -> Any:
    """Printed JSON scores, less the seconds they took."""
    def drop(d: Any) -> Any:
        return {k: drop(v) for k, v in d.items() if k != "seconds"} if isinstance(d, dict) else d
    return code, drop(json.loads(text))


def _synth(*globs: str, drop: tuple[str, ...] = ()) -> Callable:
    def evidence(out: Path, text: str, code: int) -> Any:
        return code, _files(out / "o"), _data(out / "o", *globs, drop=drop)
    return evidence


_OVER = Alt(["--overwrite"], again=True)
# columns of the manifests that echo an option: never evidence
_ECHO = ("mpp", "size_px", "seed", "split", "mode", "source", "mask_mpp", "width", "height", "lesion", "tissue")

REAL: dict[str, Real] = {
    "synth cells": Real(
        ["--out", "{out}/o", "--n", "2", "--stain-jitter", "0.3"], _synth("images.npy", "manifest.parquet", drop=_ECHO),
        {"--out": ["--out", "{out}/p"],
         "--n": ["--n", "3"], "--preset": ["--preset", "infogan-40"], "--size": ["--size", "40"],
         "--mpp": ["--mpp", "0.4"], "--rotate": ["--rotate"], "--translate": ["--translate", "3"],
         "--neighbours": ["--no-neighbours"], "--types": ["--types", "lymphocyte"],
         "--stain-jitter": ["--stain-jitter", "0.9"], "--sites": ["--sites", "2"], "--grade": ["--grade", "3"],
         "--masks": ["--masks"], "--seed": ["--seed", "1"], "--overwrite": _OVER}),
    "synth tiles": Real(
        ["--out", "{out}/o", "--n", "1", "--size", "128"], _synth("*.png", "*.npz", "nuclei.parquet", drop=_ECHO),
        {"--out": ["--out", "{out}/p"],
         "--n": ["--n", "2"], "--size": ["--size", "136"], "--mpp": ["--mpp", "1.0"],
         "--tissue": ["--tissue", "tumour"],
         "--stain": ["--stain", "2"], "--concentrations": ["--concentrations"], "--seed": ["--seed", "1"],
         "--overwrite": _OVER}),
    "synth rois": Real(
        ["--out", "{out}/o", "--n-rois", "1", "--cells-per-roi", "2", "--roi-px", "128", "--patch-px", "24"],
        _synth("patches.npy", "cells.parquet", "manifest.parquet", drop=_ECHO),
        {"--out": ["--out", "{out}/p"],
         "--n-rois": ["--n-rois", "2"], "--grades": ["--grades", "0,0,1"],
         "--cells-per-roi": ["--cells-per-roi", "3"],
         "--roi-px": ["--roi-px", "160"], "--mpp": ["--mpp", "0.5"], "--patch-px": ["--patch-px", "20"],
         "--seed": ["--seed", "1"], "--overwrite": _OVER}),
    "synth stain-pairs": Real(
        ["--out", "{out}/o", "--n", "1", "--size", "64"], _synth("*.png", "*.npy"),
        {"--out": ["--out", "{out}/p"],
         "--n": ["--n", "2"], "--size": ["--size", "72"], "--mpp": ["--mpp", "1.0"], "--target": ["--target", "2"],
         "--concentrations": ["--concentrations"], "--seed": ["--seed", "1"], "--overwrite": _OVER}),
    "synth slide": Real(
        ["--out", "{out}/o", "--width", "256", "--height", "256", "--tile-px", "128"],
        _synth("*.tiff", "masks/*.png", "labels.csv"),
        {"--out": ["--out", "{out}/p"],
         "--n": ["--n", "2"], "--width": ["--width", "320"], "--height": ["--height", "320"],
         "--mpp": ["--mpp", "1.0"],
         "--lesion": ["--lesion", "0.5,0.5,40,3"], "--tile-px": ["--tile-px", "64"], "--quality": ["--quality", "40"],
         "--seed": ["--seed", "1"], "--overwrite": _OVER}),
    "synth grids": Real(
        ["--out", "{out}/o", "--n", "2", "--size", "8,12", "--channels", "3"],
        _synth("labels.csv", "manifest.parquet", "*.zarr/grid/c/0/0/0", drop=_ECHO),
        {"--out": ["--out", "{out}/p"], "--n": ["--n", "3"], "--size": ["--size", "10,12"],
         "--channels": ["--channels", "4"], "--strength": ["--strength", "0.5"],
         "--balanced": ["--random-labels"], "--seed": ["--seed", "1"], "--overwrite": _OVER}),
    "synth nic": Real(
        ["--out", "{out}/o", "--n", "2", "--size", "256", "--no-tiff"], _synth("*.png", "*.tiff", "digits.parquet"),
        {"--out": ["--out", "{out}/p"],
         "--n": ["--n", "3"], "--size": ["--size", "320"], "--split": ["--split", "val"],
         "--balanced": ["--random-labels"], "--tiff": ["--tiff"], "--seed": ["--seed", "1"], "--overwrite": _OVER}),
    "synth digits": Real(
        ["--out", "{out}/o", "--n", "4"], _synth("images.npy", "manifest.parquet", drop=_ECHO),
        {"--out": ["--out", "{out}/p"],
         "--n": ["--n", "5"], "--mode": ["--mode", "N"], "--split": ["--split", "val"], "--canvas": ["--canvas"],
         "--source": ["--source", "mnist-5k"], "--seed": ["--seed", "1"], "--overwrite": _OVER}),

    # -- slides, tissue, tiles --------------------------------------------------------------------------
    "slide info": Real(["{in}/slide.png", "--slide-mpp", "0.5"], _std,
                       {"--slide-mpp": ["--slide-mpp", "0.25"], "--json": ["--json"]}),
    "slide thumbnail": Real(["{in}/slide.png", "{out}/t.png", "--max-px", "64"], lambda o, t, c: _data(o, "t.png"),
                            {"--max-px": ["--max-px", "48"]},
                            {"--slide-mpp": (["--slide-mpp", "0.5"], "a thumbnail has no physical scale; the option "
                                             "is there so that every slide command opens files alike")}),
    # tissue masks drop objects under 2e4 µm²: the 128 px image is taken as a 512 µm wide slide
    "slide tissue": Real(["{in}/slide.png", "{out}/m.png", "--slide-mpp", "4", "--thumbnail-px", "128"],
                         lambda o, t, c: (_files(o), _data(o, "m.png")),
                         {"--figure": ["--figure", "{out}/f.png"], "--thumbnail-px": ["--thumbnail-px", "64"],
                          "--remove-pen": ["--remove-pen"], "--threshold": ["--threshold", "0.5"],
                          "--slide-mpp": ["--slide-mpp", "16"]}),
    "slide tiles": Real(["{in}/slide.png", "{out}/t.csv", "--mpp", "8", "--tile-px", "8", "--slide-mpp", "4"],
                        lambda o, t, c: (_files(o), _data(o, "t.csv", "tiles/*.png")),
                        {"--mpp": ["--mpp", "16"], "--tile-px": ["--tile-px", "4"], "--stride-px": ["--stride-px", "4"],
                         "--min-tissue": ["--min-tissue", "0.99"], "--mask": ["--mask", "{in}/mask.png"],
                         "--remove-pen": ["--remove-pen"], "--figure": ["--figure", "{out}/f.png"],
                         "--save-tiles": ["--save-tiles", "{out}/tiles"], "--slide-mpp": ["--slide-mpp", "2"]}),
    # -- compression: a (untrained, tiny) U-Net's bottleneck takes tiles of any multiple of 16 px
    "compress": Real(["{in}/slide.png", "--encoder", "{in}/unet", "--out", "{out}/g", "--scheduler", "inline",
                      "--mpp", "8", "--tile-px", "16", "--slide-mpp", "4", "--min-tissue", "0"],
                     lambda o, t, c: _cohort(o / "g", "*.zarr"),
                     {"--encoder": ["--encoder", "{in}/unet2"], "--out": ["--out", "{out}/h"], "--mpp": ["--mpp", "4"],
                      "--stride-px": ["--stride-px", "8"], "--dihedral": ["--dihedral"],
                      "--precision": ["--precision", "bf16"], "--min-tissue": ["--min-tissue", "0.6"],
                      "--slide-mpp": ["--slide-mpp", "2"], "--overwrite": _OVER, "--figures": ["--figures"]},
                     {"--batch-size": (["--batch-size", "3"], "tiles per forward pass"),
                      "--device": (["--device", "cpu"], "where the forward pass runs (auto is the CPU on this machine)")}),
    # -- stain normalisation ---------------------------------------------------------------------------------
    "stain fit": Real(["{in}/tgt.png", "--out", "{out}/m.json", "--method", "macenko"],
                      lambda o, t, c: _normalised(o / "m.json"),
                      {"--out": ["--out", "{out}/n.json"], "--method": ["--method", "reinhard"],
                       "--set": ["--set", "alpha=20"]}),
    "stain apply": Real(["{in}/norm.json", "{in}/slide.tiff", "{out}/o.tif", "--tile-px", "64"],
                        lambda o, t, c: _data(o, "o.tif"),
                        {"--tile-px": ["--tile-px", "32"], "--per-tile": ["--per-tile"]}),
    "stain compare": Real(["{in}/src.png", "{in}/tgt.png", "--figure", "{out}/f.png", "--methods", "macenko"],
                          lambda o, t, c: (_files(o), _data(o, "*.json"), t),
                          {"--figure": ["--figure", "{out}/g.png"], "--methods": ["--methods", "reinhard"],
                           "--truth": ["--truth", "{in}/truth.png"], "--json": ["--json", "{out}/m.json"],
                           "--set": ["--set", "macenko.alpha=20"]}),
    # -- cells: nuclei, patches, embeddings, clusters, probes ---------------------------------------------
    "nuclei detect": Real(["{in}/tissue.png", "--out", "{out}/n", "--slide-mpp", "0.5", "--scheduler", "inline"],
                          lambda o, t, c: _cohort(o / "n"),
                          {"--out": ["--out", "{out}/m"], "--slide-mpp": ["--slide-mpp", "0.25"],
                           "--mpp": ["--mpp", "1.0"], "--radius-min": ["--radius-min", "5"],
                           "--radius-max": ["--radius-max", "4"], "--threshold": ["--threshold", "0.3"],
                           "--overwrite": _OVER}),
    "nuclei segment": Real(["{in}/tissue.png", "--out", "{out}/n", "--slide-mpp", "0.5", "--scheduler", "inline"],
                           lambda o, t, c: _cohort(o / "n"),
                           {"--out": ["--out", "{out}/m"], "--method": ["--method", "unet", "--model", "{in}/unet"],
                            "--model": Alt(["--model", "{in}/unet2"], base=["--method", "unet", "--model", "{in}/unet"]),
                            "--slide-mpp": ["--slide-mpp", "0.25"], "--mpp": ["--mpp", "1.0"],
                            "--geojson": ["--no-geojson"], "--overwrite": _OVER}),
    "nuclei patches": Real(["{in}/segmented.parquet", "--slides", "{in}/tissue.png", "--out", "{out}/p.zarr",
                            "--preset", "infogan-40", "--slide-mpp", "0.5"],
                           lambda o, t, c: (c, _data(o, "*.zarr")),
                           {"--slides": ["--slides", "{in}/slide2.png"], "--out": ["--out", "{out}/q.zarr"],
                            "--preset": ["--preset", "se2n-vae"],
                            "--size": ["--size", "12"], "--patch-mpp": ["--patch-mpp", "1.0"],
                            "--edge": ["--edge", "reflect"], "--mask": ["--mask"],
                            "--slide-mpp": ["--slide-mpp", "0.25"], "--overwrite": _OVER}),
    "embed": Real(["{in}/mlp", "--cells", "{in}/cells.parquet", "--out", "{out}/e.parquet", "--slide", "{in}/tissue.png",
                   "--slide-mpp", "0.5"], lambda o, t, c: _data(o, "*.parquet"),
                  {"--cells": ["--cells", "{in}/cells2.parquet"], "--out": ["--out", "{out}/f.parquet"],
                   "--patches": ["--patches", "{in}/patches.npy"], "--slide": ["--slide", "{in}/slide2.png"],
                   "--slide-mpp": ["--slide-mpp", "0.25"], "--mpp": ["--mpp", "1.0"], "--part": ["--part", "z"],
                   "--edge": ["--edge", "reflect"], "--precision": ["--precision", "bf16"]},
                  {"--chunk-rows": (["--chunk-rows", "1"], "cells per chunk: the memory bound and unit of resume"),
                   "--batch-size": (["--batch-size", "1"], "patches per forward pass")}),
    "cluster": Real(["{in}/gan", "--cells", "{in}/cells.parquet", "--out", "{out}/c.parquet", "--slide",
                     "{in}/tissue.png", "--slide-mpp", "0.5"], lambda o, t, c: (_files(o), _data(o, "*.parquet", "*.geojson")),
                    {"--cells": ["--cells", "{in}/cells2.parquet"], "--out": ["--out", "{out}/d.parquet"],
                     "--slide": ["--slide", "{in}/slide2.png"], "--slide-mpp": ["--slide-mpp", "0.25"],
                     "--patch-mpp": ["--patch-mpp", "0.5"], "--names": ["--names", "a,b,c"],
                     "--geojson": ["--geojson", "{out}/g.geojson"]},
                    {"--chunk-rows": (["--chunk-rows", "1"], "cells per chunk: the memory bound and unit of resume"),
                     "--batch-size": (["--batch-size", "1"], "patches per forward pass")}),
    "probe": Real(["{in}/probe.parquet", "--label", "grade", "--features", "z", "--resamples", "2",
                   "--out", "{out}/r.json"], lambda o, t, c: (t, _data(o, "*.json")),
                  {"--label": ["--label", "grade2"], "--features": ["--features", "w"], "--split": ["--split", "split2"],
                   "--roi": ["--roi", "roi"],
                   "--area": Alt(["--area", "area2"], base=["--roi", "roi", "--area", "area", "--features", "mna"]),
                   "--resamples": ["--resamples", "3"], "--seed": ["--seed", "1"], "--out": ["--out", "{out}/s.json"]}),
    # -- training and the rest --------------------------------------------------------------------------------
    "train": Real(["{in}/tiny.yaml", "--out", "{out}/run"], lambda o, t, c: _data(o, "*/weights.safetensors"),
                  {"--set": ["--set", "train.seed=4"], "--out": ["--out", "{out}/other"],
                   "--precision": ["--precision", "bf16-mixed"]}),
    "finetune": Real(["{in}/drl", "--data", "{in}/pcam", "--steps", "2", "--batch-size", "4", "--labels", "50%",
                      "--out", "{out}/ft"],
                     lambda o, t, c: (c, [ln for ln in t.splitlines() if not ln.startswith("run:")],
                                      _data(o, "*/weights.safetensors")),
                     {"--data": ["--data", "{in}/pcam2"], "--labels": ["--labels", "100%"],
                      "--init": ["--init", "random"], "--head": ["--head", "mlp"], "--steps": ["--steps", "3"],
                      "--batch-size": ["--batch-size", "2"], "--seed": ["--seed", "1"],
                      "--label-seed": ["--label-seed", "7"], "--set": ["--set", "model.lr=0.1"],
                      "--out": ["--out", "{out}/other"]}),
    "nuclei train": Real(["{in}/unet.yaml", "--out", "{out}/run"], lambda o, t, c: _data(o, "*/weights.safetensors"),
                         {"--set": ["--set", "train.seed=4"], "--out": ["--out", "{out}/other"]}),
    "nuclei evaluate": Real(["log", "--tiles", "1", "--size", "64"], _scores,
                            {"--model": Alt(["--model", "{in}/unet2"],
                                            instead=["unet", "--model", "{in}/unet", "--tiles", "1", "--size", "64"]),
                             "--tiles": ["--tiles", "2"], "--size": ["--size", "96"], "--tile-mpp": ["--tile-mpp", "1.0"],
                             "--stain": ["--stain", "3"], "--annotations": ["--annotations", "{in}/annotated"],
                             "--annotations-mpp": Alt(["--annotations-mpp", "1.0"],
                                                      base=["--annotations", "{in}/annotated"]),
                             "--match-um": ["--match-um", "0.5"]}),
    "bench": Real(["tiny", "--dir", "{in}/bench"], _std, {"--quick": ["--quick"], "--dir": ["--dir", "{in}/bench2"]}),
}


def _normalised(path: Path) -> Any:
    """What each fitted normaliser does to a fixed image (not how its JSON reads)."""
    from histolatent.stain import load_normalizer
    from histolatent.synth import render_tile

    src = render_tile(48, 0.5, seed=11, stain=3).rgb
    return [(f.name, _arr(load_normalizer(f).transform(src))) for f in sorted(path.parent.glob("*.json"))]


def _cohort(out: Path, *globs: str) -> Any:
    """A cohort run's files, each slide's status (not its timings) and its data."""
    summary = pd.read_csv(out / "summary.csv") if (out / "summary.csv").exists() else None
    status = None if summary is None else summary["status"].tolist()
    return _files(out), status, _data(out, *(globs or ("**/*.parquet", "**/*.geojson")))


# -- running ------------------------------------------------------------------------------------------------
def _options(path: str) -> dict[str, Any]:
    """The options of a command by first flag (arguments left out)."""
    return {p.opts[0]: p for p in _commands()[path].params if p.param_type_name == "option"}


def _alt(spec: Real, flag: str) -> Alt:
    a = spec.alts[flag]
    return a if isinstance(a, Alt) else Alt(list(a))


def _invoke(command: str, args: list[str], inputs: Path, out: Path) -> tuple[str, int]:
    argv = [*command.split(), *(a.format(**{"in": inputs, "out": out}) for a in args)]
    res = CliRunner().invoke(build_app(), argv)
    text, code = res.output, res.exit_code
    if isinstance(res.exception, InputError):  # as histolatent.cli.app.main reports it
        text, code = f"{text}error: {res.exception}", 2
    elif code != 0 and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"{' '.join(argv)} raised {res.exception!r}\n{text}") from res.exception
    return text.replace(str(out), "{out}").replace(str(inputs), "{in}"), code


def _produce(command: str, extra: list[str], inputs: Path, out: Path, *, again: list[str] | None = None,
             base: list[str] | None = None) -> Any:
    spec = REAL[command]
    base = spec.base if base is None else base
    out.mkdir(parents=True)
    if again is not None:  # fill the output folder first
        text, code = _invoke(command, [*base, *again], inputs, out)
        assert code == 0, f"{command}: {text}"
    text, code = _invoke(command, [*base, *extra], inputs, out)
    if again is None:
        assert code == 0, f"{command} {extra}: exit {code}\n{text}"
    return spec.evidence(out, text, code)


_BASELINES: dict[tuple, Any] = {}


def _baseline(command: str, alt: Alt, inputs: Path, tmp_path_factory) -> Any:
    key = (command, tuple(alt.base), alt.again, tuple(alt.instead or ()))
    if key not in _BASELINES:
        out = tmp_path_factory.mktemp("baseline")
        _BASELINES[key] = _produce(command, alt.base, inputs, out / "run", again=alt.base if alt.again else None,
                                   base=alt.instead)
    return _BASELINES[key]


def _save_run(model, run: Path, data: dict | None = None) -> None:
    from histolatent.config import dump_yaml
    from histolatent.models import save_weights

    save_weights(model, run, step=1)
    model_cfg = {"name": model.registry_name, **model.config.model_dump(mode="json")}
    (run / "config.yaml").write_text(dump_yaml({"model": model_cfg, "data": data or {}}))


def _cell_table(path: Path, xy: list[tuple[float, float]], source: Path) -> None:
    from histolatent.io.tables import with_physical_coordinates, write_cell_table

    cells = with_physical_coordinates(pd.DataFrame(xy, columns=["x", "y"]), slide_id="slide", mpp=0.5)
    write_cell_table(cells, path, metadata={"source": str(source)})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Tiny inputs of every command: images, a slide, run folders, tables, configs."""
    import tifffile

    from histolatent.io.tiff_writer import write_pyramidal_tiff
    from histolatent.models import create_model
    from histolatent.stain.files import fit_normalizer
    from histolatent.synth import render_tile

    root = tmp_path_factory.mktemp("inputs")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # a 128 px "slide" at 0.5 µm/px: glass along the top, a green pen stroke from the glass into the tissue
    t = render_tile(128, 0.5, seed=1, tissue="tumour")
    rgb = t.rgb.copy()
    rgb[:24] = 245
    rgb[:90, 60:66] = (40, 160, 60)
    Image.fromarray(t.rgb).save(root / "tissue.png")  # for the nuclei and cell commands
    Image.fromarray(rgb).save(root / "slide.png")
    Image.fromarray(render_tile(128, 0.5, seed=2, tissue="tumour").rgb).save(root / "slide2.png")
    mask = np.zeros((128, 128), np.uint8)
    mask[:, :64] = 255
    Image.fromarray(mask).save(root / "mask.png")
    write_pyramidal_tiff(root / "slide.tiff", np.concatenate([rgb, render_tile(128, 0.5, seed=3).rgb], 1),
                         size=(256, 128), mpp=0.5, tile_px=64, compression="none")
    # stain: source, target, truth (the source's tissue under the target's stain)
    Image.fromarray(render_tile(64, 0.5, seed=4, stain=3).rgb).save(root / "src.png")
    Image.fromarray(render_tile(64, 0.5, seed=5, stain=0).rgb).save(root / "tgt.png")
    Image.fromarray(render_tile(64, 0.5, seed=4, stain=0).rgb).save(root / "truth.png")
    fit_normalizer(root / "tgt.png", method="reinhard", out=root / "norm.json")
    # annotated folder: one tile and its instance labels
    (root / "annotated" / "images").mkdir(parents=True)
    (root / "annotated" / "labels").mkdir()
    a = render_tile(96, 0.5, seed=6, tissue="tumour")
    Image.fromarray(a.rgb).save(root / "annotated" / "images" / "a.png")
    tifffile.imwrite(root / "annotated" / "labels" / "a.tif", a.instances.astype(np.int32))
    # run folders: two MLP VAEs, an InfoGAN, two U-Nets
    for i, name in enumerate(("mlp", "mlp2")):
        torch.manual_seed(i)
        _save_run(create_model("mlp-vae", in_channels=3, image_size=16, hidden=8, latent_dim=2), root / name,
                  {"name": "synth-cells", "mpp": 0.5})
    torch.manual_seed(0)
    _save_run(create_model("infogan", arch="dcgan", image_size=16, g_channels=4, d_channels=4, q_hidden=8, z_dim=4),
              root / "gan", {"name": "synth-nuclei-crops", "size_px": 16, "mpp": 1.0})
    for i, (name, size) in enumerate((("unet", 16), ("unet2", 16), ("unet32", 32))):
        torch.manual_seed(i)
        _save_run(create_model("unet", width=0.125, image_size=size), root / name)
    # cell tables of tissue.png (level-0 px), and patches aligned with the first
    _cell_table(root / "cells.parquet", [(3.0, 60.0), (40.0, 50.0), (70.0, 90.0), (120.0, 120.0)], root / "tissue.png")
    _cell_table(root / "cells2.parquet", [(20.0, 40.0), (60.0, 60.0), (100.0, 70.0)], root / "tissue.png")
    from histolatent.nuclei.files import segment_nuclei

    segment_nuclei(root / "tissue.png", root / "seg", slide_mpp=0.5, scheduler="inline", geojson=False)
    (root / "segmented.parquet").write_bytes(next((root / "seg").rglob("tissue*.parquet")).read_bytes())
    np.save(root / "patches.npy", np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8))
    # a probe table: 36 ROIs of 4 cells; grades 1-3 in turn, so that every split of consecutive ROIs has each
    roi = np.repeat(np.arange(36), 4)
    split = np.where(roi < 16, "train", np.where(roi < 24, "val", "test"))
    split2 = np.where(roi >= 20, "train", np.where(roi < 8, "val", "test"))
    grade = 1 + roi % 3
    rng = np.random.default_rng(3)
    table = pd.DataFrame({"roi": roi, "grade": grade, "grade2": (roi // 3) % 3, "split": split, "split2": split2,
                          "area": rng.normal(40 + 15 * grade, 5), "area2": rng.normal(50, 5, len(roi))})
    for j in range(3):
        table[f"z_{j:02d}"] = rng.normal(size=len(roi)) + 0.5 * grade
        table[f"w_{j:02d}"] = rng.normal(size=len(roi))
    table.to_parquet(root / "probe.parquet")
    # fine-tuning: a tiny DRL run, two PCam folders and a GLaS folder
    from histolatent.io.glas import write_glas_grades, write_glas_image
    from histolatent.io.pcam import write_pcam_split

    torch.manual_seed(5)
    _save_run(create_model("drl", image_size=32, widths=[4, 8], convs=[1, 1], local_block=1, fem_channels=2,
                           disc_channels=[4, 4, 4], prior_hidden=[4]), root / "drl")
    for folder, shift in (("pcam", 0), ("pcam2", 1)):
        for split, n in (("train", 24), ("valid", 4), ("test", 8)):
            y = (np.arange(n) + shift) % 2
            x = np.random.default_rng(shift).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            write_pcam_split(root / folder, split, x, y)
    (root / "glas").mkdir()
    for k, name in enumerate(("train_1", "train_2", "testA_1")):
        anno = np.zeros((24, 24), np.uint8)
        anno[4:12, 4:14] = 1
        write_glas_image(root / "glas", name, np.full((24, 24, 3), 60 + 40 * k, np.uint8), anno)
    write_glas_grades(root / "glas", {"train_1": "benign", "train_2": "malignant", "testA_1": "benign"})
    # run configs
    tiny = (TESTS / "train" / "tiny.yaml").read_text().replace("steps: 30", "steps: 2")
    (root / "tiny.yaml").write_text(tiny)
    (root / "unet.yaml").write_text(
        "model: {name: unet, width: 0.125, image_size: 16}\n"
        "data: {name: nuclei-synth, tiles: 2, tile_px: 64, size: 16, crops_per_tile: 2}\n"
        "train: {steps: 1, batch_size: 2, progress: false}\n")
    # benchmark scripts
    for folder, body in (("bench", "def main(quick=False):\n    return {'quick': quick}\n"),
                         ("bench2", "def main(quick=False):\n    return {'other': 1}\n")):
        (root / folder).mkdir()
        (root / folder / "tiny.py").write_text(body)
    torch.set_num_threads(old_threads)
    return root


@pytest.mark.parametrize("command,flag", [(c, f) for c in REAL for f in REAL[c].alts])
def test_option_changes_the_result(command, flag, inputs, tmp_path, tmp_path_factory):
    alt = _alt(REAL[command], flag)
    base = _baseline(command, alt, inputs, tmp_path_factory)
    changed = _produce(command, [*alt.base, *alt.args], inputs, tmp_path / "run",
                       again=alt.base if alt.again else None, base=alt.instead)
    assert changed != base, f"{command}: {' '.join(alt.args)} changes nothing that the command produced"


@pytest.mark.parametrize("command,flag", [(c, f) for c in REAL for f in REAL[c].same])
def test_option_said_to_change_nothing_changes_nothing(command, flag, inputs, tmp_path, tmp_path_factory):
    args, _why = REAL[command].same[flag]
    base = _baseline(command, Alt([]), inputs, tmp_path_factory)
    assert _close(_produce(command, args, inputs, tmp_path / "run"), base), f"{command}: {' '.join(args)} changed the result"


@pytest.mark.parametrize("command", sorted(REAL))
def test_baseline_is_reproducible(command, inputs, tmp_path, tmp_path_factory):
    """What is compared does not change from run to run (no timings, no paths): a difference is the option's."""
    again = _produce(command, [], inputs, tmp_path / "run")
    assert again == _baseline(command, Alt([]), inputs, tmp_path_factory)
    assert again, command


# -- options whose effect is shown another way -----------------------------------------------------------------
def test_compress_tile_px_is_the_encoders_input_and_sets_the_grid(inputs, tmp_path):
    """Tiles reach the encoder at its own input size: --tile-px must match it and sets the grid."""
    from histolatent.embed.grid import read_slide_grid

    def grid(encoder: str, tile_px: str) -> tuple:
        out = tmp_path / f"{encoder}-{tile_px}"
        out.mkdir()
        text, code = _invoke("compress", ["{in}/slide.png", "--encoder", f"{{in}}/{encoder}", "--out", "{out}/g",
                                          "--scheduler", "inline", "--mpp", "8", "--tile-px", tile_px, "--slide-mpp",
                                          "4", "--min-tissue", "0"], inputs, out)
        return (read_slide_grid(out / "g" / "slide.zarr")[0].shape if code == 0 else None), text

    assert grid("unet", "16")[0][1:] == (4, 4)  # 512 µm of slide in 128 µm tiles
    assert grid("unet32", "32")[0][1:] == (2, 2)
    shape, text = grid("unet", "32")
    assert shape is None and "32x32 px but the model takes 16x16" in text


def test_demo_options_reach_the_stages(monkeypatch, tmp_path):
    """--out is where the report goes, --only picks the stages, --seed and --quick reach each stage's context."""
    import histolatent.demo as demo
    from histolatent.report import Section

    seen: list[tuple] = []

    class Stages:
        def __getattr__(self, fn: str):
            def stage(ctx) -> Section:
                seen.append((fn, ctx.out, ctx.seed, ctx.quick))
                return Section(fn)
            return stage

    monkeypatch.setattr(demo, "import_module", lambda name: Stages())
    runs = {}
    for name, args in (("plain", []), ("set", ["--seed", "7", "--quick", "--only", "stain", "--only", "nuclei"])):
        seen.clear()
        res = CliRunner().invoke(build_app(), ["demo", "--out", str(tmp_path / name), *args])
        assert res.exit_code == 0, res.output
        runs[name] = list(seen)
        assert (tmp_path / name / "report" / "index.html").is_file()
    assert [fn for fn, *_ in runs["plain"]] == [fn for _, fn in demo.STAGES]
    assert {(out, seed, quick) for _, out, seed, quick in runs["plain"]} == {(tmp_path / "plain", 0, False)}
    assert runs["set"] == [(fn, tmp_path / "set", 7, True) for fn in ("stain", "nuclei")]


# -- the registry -------------------------------------------------------------------------------------------
_CALLS = "cli/test_cli_calls_api.py::test_every_option_reaches_the_api"
_DDP = "train/test_engine.py::test_two_process_ddp_on_cpu_averages_gradients"
_COHORT = ("not output-changing: where the slides are processed (inline, a local Dask cluster or a scheduler); "
           "the same rows either way: io/test_cohort.py::test_a_raising_task_is_a_failed_row_and_the_others_finish, "
           "nuclei/test_pipeline.py::test_cohort_on_dask_is_resumable")
OTHER: dict[str, dict[str, str]] = {
    # the output is the table of the machine's bf16 speed: not reproducible, so checked on a faked probe
    "info": {"--json": _CALLS},
    # all samples cached, --list prints the same table; its effect is that nothing is fetched or verified
    "samples": {"--list": _CALLS},
    "train": {"--resume": "train/test_engine.py::test_sigkill_then_resume_ends_with_identical_weights",
              "--devices": _DDP, "--strategy": _DDP,
              "--accelerator": "not output-changing: the device the run computes on; on this CPU-only test machine "
                               "auto and cpu are the same device (test_cli_calls_api checks it reaches fit)"},
    # a segment run needs a GLaS folder where classify needs a PCam one: no common baseline
    "finetune": {"--task": "downstream/test_finetune.py::test_segment_task_scores_glas_objects"},
    "nuclei train": {"--resume": "train/test_engine.py::test_sigkill_then_resume_ends_with_identical_weights",
                     "--threads": "not output-changing: torch CPU threads set the speed; sums may round differently "
                                  "(weights agree to float precision, bitwise only at the same thread count): "
                                  "train/test_engine.py::test_threads_option_sets_torch_threads"},
    # a real demo stage takes seconds to minutes: the stages are replaced by recorders
    "demo": {f: "cli/test_cli_options_matter.py::test_demo_options_reach_the_stages"
             for f in ("--out", "--seed", "--quick", "--only")},
    "compress": {"--tile-px": "cli/test_cli_options_matter.py::test_compress_tile_px_is_the_encoders_input_and_sets_the_grid",
                 "--scheduler": "not output-changing: where the slides are processed; the same bytes: "
                                "embed/test_compress_cohort.py::test_the_same_bytes_from_one_process_and_from_two_dask_workers",
                 "--workers": "not output-changing: workers of the local Dask cluster; the same bytes: "
                              "embed/test_compress_cohort.py::test_the_same_bytes_from_one_process_and_from_two_dask_workers"},
    # slide-level commands need a trained slide model: their options are shown to matter at the API
    # (test_cli_calls_api checks each reaches that API unchanged)
    "slides train": {"--out": "downstream/test_slide_cv.py::test_train_slide_model_checks_the_config_then_fits_and_resumes",
                     "--resume": "downstream/test_slide_cv.py::test_train_slide_model_checks_the_config_then_fits_and_resumes",
                     "--set": "downstream/test_slide_cv.py::test_train_slide_model_checks_the_config_then_fits_and_resumes"},
    "slides predict": {"--out": "embed/test_slides.py::test_predict_grids_table_labels_and_errors",
                       "--labels": "embed/test_slides.py::test_predict_grids_table_labels_and_errors",
                       "--crops": "embed/test_slides.py::test_the_eight_views_are_the_dihedral_transforms_of_the_crop",
                       "--dihedral": "embed/test_slides.py::test_the_eight_views_are_the_dihedral_transforms_of_the_crop",
                       "--seed": "embed/test_slides.py::test_predict_grids_table_labels_and_errors",
                       "--crop": "embed/test_slides.py::test_the_eight_views_are_the_dihedral_transforms_of_the_crop",
                       "--batch-size": "not output-changing: crops per forward pass, eval mode (same predictions)"},
    "slides cv": {f: "downstream/test_slide_cv.py::test_folds_partition_the_slides_and_each_is_tested_once_per_seed"
                  for f in ("--folds", "--seeds", "--partition-seed", "--out", "--crops", "--dihedral", "--set")},
    "slides heatmap": {"--out": "viz/test_heatmap.py::test_render_heatmap_slide_writes_store_geojson_and_png",
                       "--slide": "viz/test_heatmap.py::test_render_heatmap_slide_writes_store_geojson_and_png",
                       "--overwrite": "viz/test_heatmap.py::test_render_heatmap_slide_writes_store_geojson_and_png",
                       "--threshold": "downstream/test_heatmaps.py::test_compressed_slide_end_to_end",
                       "--postprocess": "downstream/test_heatmaps.py::test_postprocess_removes_a_speck_and_keeps_a_blob",
                       "--window": "downstream/test_gradcam.py::"
                                   "test_windowed_heatmap_equals_the_whole_grid_when_the_receptive_field_fits"},
    "nuclei detect": {"--scheduler": _COHORT, "--workers": _COHORT},
    "nuclei segment": {"--scheduler": _COHORT, "--workers": _COHORT},
}


def _test_functions(module: str) -> set[str]:
    tree = ast.parse((TESTS / module).read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_option_is_listed():
    for path in _commands():
        options = set(_options(path))
        real = {*REAL[path].alts, *REAL[path].same} if path in REAL else set()
        assert path not in REAL or not set(REAL[path].alts) & set(REAL[path].same), path
        other = set(OTHER.get(path, {}))
        assert not real & other, f"{path}: {sorted(real & other)} both run here and listed in OTHER"
        assert options == real | other, (f"{path}: options without a test or a reason: {sorted(options - real - other)}; "
                                         f"listed but not options: {sorted(real | other - options)}")
    assert set(REAL) | set(OTHER) <= set(_commands())


def test_each_alternative_uses_its_own_option():
    for path, spec in REAL.items():
        opts = _options(path)
        for flag in spec.alts:
            p = opts[flag]
            assert set(_alt(spec, flag).args) & {*p.opts, *p.secondary_opts}, f"{path} {flag}"


def test_named_tests_exist():
    refs = [(path, flag, ref) for path, d in OTHER.items() for flag, why in d.items()
            for ref in re.findall(r"[\w/]+\.py::\w+", why)]
    for path, flag, why in ((p, f, w) for p, d in OTHER.items() for f, w in d.items()):
        assert why.startswith("not output-changing: ") or re.fullmatch(r"[\w/]+\.py::\w+", why), (path, flag, why)
    for path, spec in REAL.items():
        for flag, (args, why) in spec.same.items():
            assert why.strip() and flag in args, (path, flag)
    for path, flag, ref in refs:
        module, name = ref.split("::")
        assert name in _test_functions(module), f"{path} {flag}: {ref} does not exist"
