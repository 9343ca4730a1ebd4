"""Imports flow one way: the layer order in histolatent.layers, checked on the real tree.

The checker itself is tested on synthetic graphs and on a copy of the tree with a cycle,
an upward import, a peer import, an unreadable dynamic import and an unplaced package
planted in it: each must be reported, and nothing else.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from histolatent.layers import (
    LAYERS,
    Import,
    Layer,
    find_cycles,
    markdown_table,
    read_import_graph,
    unit_of,
    violations,
)

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


@pytest.fixture(scope="module")
def tree():
    return read_import_graph(SRC)


def test_the_package_follows_the_layer_order(tree):
    graph, unreadable = tree
    found = unreadable + violations(graph)
    assert not found, f"{len(found)} layering violation(s):\n" + "\n".join(map(str, found))


def test_model_files_do_not_import_each_other(tree):
    graph, _ = tree
    model_files = {m for m in graph if m.startswith("histolatent.models.")
                   and "@register_model(" in (SRC / (m.replace(".", "/") + ".py")).read_text()}
    assert {"histolatent.models.vae", "histolatent.models.target_vae"} <= model_files
    crossing = [f"{m}:{i.line} imports {i.target}" for m in sorted(model_files) for i in graph[m]
                if i.target in model_files]
    assert not crossing, "shared code belongs in models/base.py, nn/ or losses/:\n" + "\n".join(crossing)


def test_every_unit_is_placed_once_and_exists():
    units = [u for layer in LAYERS for u in layer.units]
    assert len(units) == len(set(units))
    pkg = SRC / "histolatent"
    missing = [u for u in units if u != "__init__" and not (pkg / u / "__init__.py").is_file()
               and not (pkg / f"{u}.py").is_file()]
    assert not missing


def test_the_docs_show_the_same_table():
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert markdown_table() in doc, ("docs/architecture.md must contain histolatent.layers.markdown_table() "
                                     "verbatim:\n" + markdown_table())


def test_import_histolatent_stays_light():
    code = "import sys, histolatent; print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC)}).stdout
    assert out.strip() == "[]"


# -- the checker on synthetic graphs ---------------------------------------------------------
TOY = (Layer(("errors",), ""), Layer(("io",), ""), Layer(("stain", "tissue"), ""), Layer(("train",), ""))


def _graph(edges: dict[str, list[str]]) -> dict[str, list[Import]]:
    mods = set(edges) | {t for ts in edges.values() for t in ts}
    return {m: [Import(t, k + 1) for k, t in enumerate(edges.get(m, []))] for m in sorted(mods)}


def test_downward_and_same_package_imports_pass():
    g = _graph({"histolatent.train.engine": ["histolatent.io.slide", "histolatent.train.run", "histolatent.errors"],
                "histolatent.stain.base": ["histolatent.io.slide"], "histolatent.io.slide": ["histolatent.errors"]})
    assert violations(g, TOY) == []


def test_upward_peer_cycle_and_unplaced_are_each_reported():
    g = _graph({
        "histolatent.io.slide": ["histolatent.train.run"],                           # upward
        "histolatent.tissue.mask": ["histolatent.stain.base"],                       # peer
        "histolatent.stain.a": ["histolatent.stain.b"], "histolatent.stain.b": ["histolatent.stain.c"],
        "histolatent.stain.c": ["histolatent.stain.a"],                              # 3-cycle
        "histolatent.viz.x": ["histolatent.errors"],                                 # not in TOY
    })
    found = violations(g, TOY)
    assert [(v.kind, v.module, v.target) for v in found] == [
        ("upward", "histolatent.io.slide", "histolatent.train.run"),
        ("peer", "histolatent.tissue.mask", "histolatent.stain.base"),
        ("cycle", "histolatent.stain.a", "histolatent.stain.b"),
        ("unplaced", "histolatent.viz.x", "viz"),
    ]
    assert "histolatent.stain.a -> histolatent.stain.b (line 1) -> histolatent.stain.c (line 1) -> " \
           "histolatent.stain.a (line 1)" in str(found[2])
    assert "io (layer 1) may not import train (layer 3" in str(found[0])


def test_cycles_are_strongly_connected_components():
    g = _graph({"histolatent.a": ["histolatent.b"], "histolatent.b": ["histolatent.a", "histolatent.c"],
                "histolatent.c": ["histolatent.d"], "histolatent.d": ["histolatent.c"], "histolatent.e": ["histolatent.a"]})
    assert find_cycles(g) == [["histolatent.a", "histolatent.b"], ["histolatent.c", "histolatent.d"]]
    assert unit_of("histolatent") == "__init__" and unit_of("histolatent.stain.base") == "stain"


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_reader_follows_every_kind_of_import(tmp_path):
    for rel in ("histolatent/__init__.py", "histolatent/errors.py", "histolatent/io/__init__.py",
                "histolatent/io/slide.py", "histolatent/train/__init__.py", "histolatent/train/run.py",
                "histolatent/models/__init__.py", "histolatent/models/vae.py", "histolatent/models/unet.py"):
        _write(tmp_path, rel, "")
    _write(tmp_path, "histolatent/io/tables.py", """
        from typing import TYPE_CHECKING
        import numpy as np
        from . import slide
        from ..errors import InputError
        if TYPE_CHECKING:
            from histolatent.train import run
        def late():
            import histolatent.train
            from histolatent.models import create_model
        def dynamic(name):
            from importlib import import_module
            import_module(f"histolatent.models.{name}")
            import_module("histolatent.train.run")
            import_module(name)
        """)
    graph, unreadable = read_import_graph(tmp_path)
    assert sorted({i.target for i in graph["histolatent.io.tables"]}) == [
        "histolatent.errors", "histolatent.io.slide", "histolatent.models", "histolatent.models.unet",
        "histolatent.models.vae", "histolatent.train", "histolatent.train.run"]
    lines = {i.target: i.line for i in graph["histolatent.io.tables"]}
    assert lines["histolatent.errors"] == 5 and lines["histolatent.models"] == 10
    assert [(v.kind, v.module, v.line) for v in unreadable] == [("dynamic", "histolatent.io.tables", 15)]


def test_planted_violations_in_a_copy_of_the_tree_are_found(tmp_path):
    shutil.copytree(SRC / "histolatent", tmp_path / "histolatent",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    before_graph, before_dyn = read_import_graph(tmp_path)
    before = {str(v) for v in before_dyn + violations(before_graph)}
    pkg = tmp_path / "histolatent"
    with open(pkg / "errors.py", "a") as f:  # an upward import hidden in a function
        f.write("\n\ndef _planted():\n    from histolatent.machine import machine_info\n    return machine_info\n")
    for a, b in (("auc", "clustering"), ("clustering", "auc")):  # a two-module cycle in metrics
        with open(pkg / "metrics" / f"{a}.py", "a") as f:
            f.write(f"\nfrom histolatent.metrics import {b}  # noqa\n")
    with open(pkg / "viz" / "latent.py", "a") as f:  # a peer import
        f.write("\nfrom histolatent.report import html  # noqa\n")
    with open(pkg / "demo" / "stain.py", "a") as f:  # a dynamic import nobody can read
        f.write("\nimport importlib\nimportlib.import_module(str(1))\n")
    _write(tmp_path, "histolatent/newthing/__init__.py", "from histolatent.errors import InputError\n")
    graph, dyn = read_import_graph(tmp_path)
    new = [v for v in dyn + violations(graph) if str(v) not in before]
    assert sorted((v.kind, v.module, v.target) for v in new) == [
        ("cycle", "histolatent.metrics.auc", "histolatent.metrics.clustering"),
        ("dynamic", "histolatent.demo.stain", "?"),
        ("peer", "histolatent.viz.latent", "histolatent.report.html"),
        ("unplaced", "histolatent.newthing", "newthing"),
        ("upward", "histolatent.errors", "histolatent.machine"),
    ]
    n_lines = len((pkg / "errors.py").read_text().splitlines())
    assert next(v for v in new if v.kind == "upward").line == n_lines - 1

