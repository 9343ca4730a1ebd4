"""The CLI only parses and calls: every option of every command reaches the Python API.

Each command runs in process with its API functions replaced by recorders. For every
argument and option, the command runs once with its baseline values and once with only that
parameter changed; the recorded API calls must differ. An option that is parsed and then
ignored (or never passed on) fails here. Options that only change how a result is printed
are listed per command and must change the output instead.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from histolatent.cli.app import build_app
from histolatent.stain.files import Normalized

#: Commands not covered here (none: add a spec for every new command).
NOT_COVERED: set[str] = set()


def _plain(x: Any) -> Any:
    """A comparable form of an API call's arguments."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if isinstance(x, np.ndarray):
        return ("array", x.shape, x.tobytes())
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    if callable(x):
        return "<callable>"
    return repr(x)


class Recorder:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple] = []
        self._mp = monkeypatch

    def wrap(self, name: str, ret: Any = None):
        def fake(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, _plain(args), _plain(kwargs)))
            return ret(*args, **kwargs) if callable(ret) else ret
        return fake

    def replace(self, target: str, ret: Any = None) -> None:
        module, attr = target.rsplit(".", 1)
        self._mp.setattr(importlib.import_module(module), attr, self.wrap(target, ret))


class FakeSlide:
    def __init__(self, rec: Recorder, path: Any, mpp: Any = None) -> None:
        self.rec, self.path, self.mpp, self.dimensions = rec, os.fspath(path), mpp, (64, 32)

    def __repr__(self) -> str:
        return f"FakeSlide({self.path}, mpp={self.mpp})"

    def __enter__(self) -> FakeSlide:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def info(self) -> dict:
        self.rec.calls.append(("slide.info", self.path, self.mpp))
        return {"path": self.path, "mpp": self.mpp}

    def thumbnail(self, max_px: int) -> np.ndarray:
        self.rec.calls.append(("slide.thumbnail", self.path, max_px))
        return np.zeros((2, 2, 3), np.uint8)


@dataclass
class FakeMask:
    tissue_fraction: float = 0.5
    mask: np.ndarray = field(default_factory=lambda: np.zeros((2, 2), bool))

    def __repr__(self) -> str:
        return "FakeMask()"


class FakeGrid(list):
    def __repr__(self) -> str:
        return "FakeGrid()"


def _summary(*args: Any, **kwargs: Any) -> pd.DataFrame:
    return pd.DataFrame([{"slide_id": "s", "status": "done", "n_nuclei": 3, "mna_um2": 1.0, "sdna_um2": 0.5}])


@dataclass
class Spec:
    """How to run one command: its API fakes, baseline values (by parameter name), and
    alternative values where a generic one would not parse."""

    fakes: dict[str, Any]
    base: dict[str, Any] = field(default_factory=dict)
    alts: dict[str, Any] = field(default_factory=dict)
    output_only: tuple[str, ...] = ()
    setup: Any = None


def _synth(name: str, **alts: Any) -> Spec:
    return Spec({f"histolatent.synth.{name}": Path("out")}, {"out": "o"}, alts)


def _runs_folders(tmp_path: Path) -> None:
    for name in ("run1", "alt-path"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text("model: {name: x}\n")


def _slide(rec: Recorder) -> dict:
    return {"histolatent.io.slide.open_slide": lambda path, mpp=None: FakeSlide(rec, path, mpp)}


LOAD = {"histolatent.train.load_model": "MODEL"}  # a run folder becomes a model in the CLI
SUMMARY = {"model": "m", "status": "finished", "step": 1, "train": {}, "val": {}}
SPECS: dict[str, Any] = {
    "info": lambda rec: Spec({"histolatent.cli.info.machine_info": {"versions": {"torch": "2"}, "cores": 2}},
                             output_only=("as_json",)),
    "samples": lambda rec: Spec({"histolatent.samples.path": Path("cached")}, alts={"name": ["target-image"]}),
    "train": lambda rec: Spec({"histolatent.train.fit": Path("run")}, {"config": "c.yaml"},
                              alts={"set_": ["train.lr=1"]}),
    "demo": lambda rec: Spec({"histolatent.demo.run_demo": (Path("report.html"), [])}),
    "bench": lambda rec: Spec({"histolatent.bench.run_benchmark": {"f": 1}}, {"name": "a"}),
    "runs list": lambda rec: Spec({"histolatent.train.list_runs": [Path("r1")],
                                   "histolatent.train.run_summary": SUMMARY}),
    "runs show": lambda rec: Spec({"histolatent.train.run_summary": SUMMARY}, {"run": "run1"}, setup=_runs_folders),
    "slide info": lambda rec: Spec(_slide(rec), {"path": "s.svs"}, output_only=("as_json",)),
    "slide thumbnail": lambda rec: Spec({**_slide(rec), "histolatent.io.atomic.write_image_atomic": Path("t.png")},
                                        {"path": "s.svs", "out": "t.png"}),
    "slide tissue": lambda rec: Spec({**_slide(rec), "histolatent.tissue.files.write_tissue_mask": FakeMask(),
                                      "histolatent.viz.tissue.tissue_overlay_figure": Path("f.png")},
                                     {"path": "s.svs", "out": "m.png"}),
    "slide tiles": lambda rec: Spec({**_slide(rec), "histolatent.tissue.files.load_tissue_mask": FakeMask(),
                                     "histolatent.tissue.files.write_tile_grid": FakeGrid([1, 2]),
                                     "histolatent.viz.tissue.tissue_overlay_figure": Path("f.png")},
                                    {"path": "s.svs", "out": "t.csv", "mpp": "1.0"}),
    "stain fit": lambda rec: Spec({"histolatent.stain.files.fit_normalizer": "NORM"},
                                  {"targets": ["t.png"], "out": "m.json"},
                                  alts={"method": "reinhard", "set_": ["alpha=2"], "targets": ["t.png", "u.png"]}),
    "stain apply": lambda rec: Spec({"histolatent.stain.files.normalize_path": Normalized(Path("o"), "image", 1, 0)},
                                    {"normalizer": "m.json", "source": "s.png", "out": "o.png"}),
    "stain compare": lambda rec: Spec(
        {"histolatent.stain.files.read_image": lambda p, **k: np.full((2, 2, 3), len(str(p)), np.uint8),
         "histolatent.stain.files.compare_normalizers": ({}, {"macenko": {"psnr": 1.0}}),
         "histolatent.viz.stain.stain_comparison_figure": Path("f.png"),
         "histolatent.io.atomic.write_text_atomic": Path("m.json")},
        {"source": "s.png", "target": "t.png"}, alts={"methods": "reinhard", "set_": ["macenko.alpha=2"]}),
    "nuclei detect": lambda rec: Spec({"histolatent.nuclei.files.detect_nuclei": _summary}, {"inputs": "s.svs"}),
    "nuclei segment": lambda rec: Spec({"histolatent.nuclei.files.segment_nuclei": _summary, **LOAD}, {"inputs": "s.svs"},
                                       alts={"method": "unet"}),
    "nuclei patches": lambda rec: Spec({"histolatent.nuclei.files.write_nucleus_patches": Path("p.zarr")},
                                       {"cells": "c.parquet", "slides": "s.svs", "out": "p.zarr"}),
    "nuclei train": lambda rec: Spec({"histolatent.train.fit": Path("run"), "torch.set_num_threads": None},
                                     alts={"set_": ["train.steps=2"]}),
    "nuclei evaluate": lambda rec: Spec({"histolatent.nuclei.files.evaluate_nuclei": {"stain_0": {"f1": 1.0}}, **LOAD},
                                        {"method": "log"}),
    "embed": lambda rec: Spec({"histolatent.embed.embed_cells": Path("o.parquet")},
                              {"run": "r", "cells": "c.parquet", "out": "o.parquet"}),
    "finetune": lambda rec: Spec({"histolatent.downstream.finetune.finetune": SimpleNamespace(
        run=Path("ft"), n_labelled=3, label_fraction=0.01, scores={"accuracy": 0.5})},
        {"run": "pre", "data": "pcam"}, alts={"task": ["segment"], "init": ["random"], "head": ["mlp"],
                                             "labels": ["10%"], "label_seed": [3]}),
    "probe": lambda rec: Spec({"histolatent.downstream.probes.probe_table": {}},
                              {"table": "t.parquet", "label": "grade", "features": ["z_iso"]}),
    "cluster": lambda rec: Spec({"histolatent.embed.cluster_cells": (Path("t.parquet"), Path("t.geojson"))},
                                {"run": "r", "cells": "c.parquet"}),
    "compress": lambda rec: Spec({"histolatent.embed.cohort.compress_cohort": lambda *a, **k: pd.DataFrame(
                                      [{"slide_id": "s", "status": "done"}])},
                                 {"slides": "s.svs", "encoder": "r", "out": "g"},
                                 alts={"precision": "bf16", "device": "cpu", "scheduler": "inline"}),
    "slides train": lambda rec: Spec({"histolatent.downstream.slide_cv.train_slide_model": Path("run")},
                                     {"config": "c.yaml"}, alts={"set_": ["train.steps=2"]}),
    "slides predict": lambda rec: Spec({"histolatent.embed.slides.predict_grids": pd.DataFrame(
                                           [{"slide_id": "s", "prediction": 0.5, "std": 0.1, "views": 8}])},
                                       {"run": "r", "grids": ["g.zarr"]}, alts={"grids": ["g.zarr", "h.zarr"]}),
    "slides cv": lambda rec: Spec({"histolatent.downstream.slide_cv.cross_validate_slides": SimpleNamespace(
                                       summary={"model": "m", "metric": "auc", "mean": 1.0, "sd": 0.0, "seeds": [0],
                                                "fold_mean": 1.0, "fold_sd": 0.0}, out=Path("cv"))},
                                  {"config": "c.yaml", "out": "cv"}, alts={"seeds": "0,1", "set_": ["train.steps=2"]}),
    "slides heatmap": lambda rec: Spec({"histolatent.viz.heatmap.render_heatmap_slide": SimpleNamespace(
                                           store=Path("h.zarr"), geojson=Path("h.geojson"), png=Path("h.png"))},
                                       {"run": "r", "grid": "g.zarr", "out": "hm"}),
    "synth cells": lambda rec: _synth("write_cells", preset="infogan-40", types="lymphocyte"),
    "synth tiles": lambda rec: _synth("write_tiles"),
    "synth rois": lambda rec: _synth("write_rois", grades="1,2,3"),
    "synth stain-pairs": lambda rec: _synth("write_stain_pairs"),
    "synth slide": lambda rec: _synth("write_slides", lesion="none"),
    "synth nic": lambda rec: _synth("write_nic"),
    "synth digits": lambda rec: _synth("write_digits"),
    "synth grids": lambda rec: _synth("write_grids", size="24,32"),
}


def _commands() -> dict[str, Any]:
    root = typer.main.get_command(build_app())
    out = {}

    def walk(cmd: Any, path: str) -> None:
        subs = getattr(cmd, "commands", None)
        if subs is None:
            out[path] = cmd
        for name, sub in (subs or {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(root, "")
    return out


def _alternative(p: Any, spec: Spec) -> Any:
    if p.name in spec.alts:
        return spec.alts[p.name]
    if p.param_type_name == "option" and p.is_flag:
        return not p.default
    kind = p.bare_type()
    elem = kind[5:-1] if kind.startswith("list[") else kind
    d = None if isinstance(p.default, (list, tuple)) else p.default
    if elem == "int":
        value = str((d or 0) + 3)
    elif elem == "float":
        value = str((d or 0.0) * 2 + 0.75)
    else:
        value = {"str": "alt", "Path": "alt-path"}[elem]
    return [value] if kind.startswith("list[") else value


def _argv(cmd: Any, values: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for p in cmd.params:
        if p.name not in values:
            continue
        v = values[p.name]
        if p.param_type_name == "argument":
            out += v if isinstance(v, list) else [v]
        elif p.is_flag:
            out.append(p.opts[0] if v else p.secondary_opts[0])
        else:
            for item in v if isinstance(v, list) else [v]:
                out += [p.opts[0], item]
    return out


def test_every_command_is_covered():
    assert set(_commands()) - set(SPECS) == NOT_COVERED


@pytest.mark.parametrize("path", sorted(SPECS))
def test_every_option_reaches_the_api(path, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cmd = _commands()[path]
    rec = Recorder(monkeypatch)
    spec = SPECS[path](rec)
    for target, ret in spec.fakes.items():
        rec.replace(target, ret)
    if spec.setup is not None:
        spec.setup(tmp_path)
    runner = CliRunner()

    def run(values: dict[str, Any]) -> tuple[list, str]:
        rec.calls.clear()
        result = runner.invoke(build_app(), [*path.split(), *_argv(cmd, values)])
        assert result.exit_code == 0, f"{path} {_argv(cmd, values)}: {result.output}\n{result.exception!r}"
        return list(rec.calls), result.output

    base_calls, base_out = run(spec.base)
    assert base_calls, f"{path}: no API call"
    for p in cmd.params:
        changed = {**spec.base, p.name: _alternative(p, spec)}
        calls, out = run(changed)
        if p.name in spec.output_only:
            assert out != base_out, f"{path}: {p.name} changes nothing in the output"
        else:
            assert calls != base_calls, f"{path}: {p.name} is parsed but does not reach the API"
