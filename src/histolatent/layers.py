"""The layer order of histolatent's packages, written once, and the check against it.

Imports flow one way: a module may import modules of its own package and of packages in
*lower* layers, never of a higher layer, never of another package in its own layer (the
packages of one layer are peers that know nothing of each other), and never in a cycle.
:data:`LAYERS` is the order; :func:`read_import_graph` reads every import of a source tree
(function-level imports and ``importlib.import_module`` calls included) and
:func:`violations` lists what breaks the rules. ``tests/test_layering.py`` runs it on the
package and docs/architecture.md shows the same table (:func:`markdown_table`).

Run ``python -m histolatent.layers [SRC_DIR]`` to print the violations of a tree.

Example
-------
>>> graph = {"histolatent.io.slide": [Import("histolatent.train.run", 3)],
...          "histolatent.train.run": [Import("histolatent.io.slide", 5)]}
>>> [v.kind for v in violations(graph)]
['upward', 'cycle']
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LAYERS", "Import", "Layer", "Violation", "find_cycles", "layer_index", "markdown_table",
           "read_import_graph", "unit_of", "violations"]

ROOT = "histolatent"
#: The unit name of the package face ``histolatent/__init__.py``.
FACE = "__init__"


@dataclass(frozen=True)
class Layer:
    """Peer units (sub-packages or top-level modules of ``histolatent``) and why they sit here."""

    units: tuple[str, ...]
    why: str


#: Low -> high. A unit is a sub-package (``stain``) or a top-level module (``samples``).
LAYERS: tuple[Layer, ...] = (
    Layer(("errors",), "the exceptions every layer raises"),
    Layer((FACE, "config", "registry", "progress", "machine", "layers"),
          "plumbing that knows no science: configs, registries, progress, machine facts"),
    Layer(("metrics",), "pure numpy scores; nothing of ours"),
    Layer(("io",), "the only place that touches file formats, and the image-input policy"),
    Layer(("samples", "stain", "tissue"),
          "pixels: bundled real samples, stain maths and normalisers, tissue masks and grids"),
    Layer(("synth",), "SynthPath ground truth: renders with stain maths, writes through io"),
    Layer(("nuclei",), "detection and segmentation; scored against synth; takes a model object, "
                       "never loads one"),
    Layer(("nn",), "torch layers"),
    Layer(("losses",), "tensor functions of model outputs (may use nn's dtype helpers)"),
    Layer(("models",), "one file per method, the registry, weights files"),
    Layer(("datasets",), "training data sets, built from synth, io and nuclei"),
    Layer(("train",), "the one engine"),
    Layer(("embed",), "applying a trained model to data"),
    Layer(("downstream",), "probes, clustering, aggregation on tables and grids"),
    Layer(("viz", "report"), "figures and the HTML report"),
    Layer(("bench",), "benchmark results and their provenance; above everything a benchmark measures"),
    Layer(("demo",), "the end-to-end demo"),
    Layer(("cli",), "parse, then one API call"),
)


@dataclass(frozen=True)
class Import:
    """One import statement's target module (a module of ours) and its line."""

    target: str
    line: int


@dataclass(frozen=True)
class Violation:
    """``kind`` is ``"cycle"``, ``"upward"``, ``"peer"``, ``"unplaced"`` or ``"dynamic"``."""

    kind: str
    module: str
    target: str
    line: int
    message: str

    def __str__(self) -> str:
        return self.message


def unit_of(module: str) -> str:
    """``"histolatent.stain.base"`` -> ``"stain"``; ``"histolatent"`` -> ``"__init__"``."""
    parts = module.split(".")
    if parts[0] != ROOT:
        raise ValueError(f"{module!r} is not a module of {ROOT}")
    return parts[1] if len(parts) > 1 else FACE


def layer_index(unit: str, layers: Iterable[Layer] = LAYERS) -> int | None:
    """Position of ``unit`` in the order (0 = lowest), or None if it is not placed."""
    for i, layer in enumerate(layers):
        if unit in layer.units:
            return i
    return None


# -- reading imports -------------------------------------------------------------------------
def _module_names(src: Path, package: str) -> dict[str, Path]:
    out = {}
    for f in sorted((src / package).rglob("*.py")):
        parts = f.relative_to(src).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _nearest(name: str, modules: Mapping[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _dynamic_target(call: ast.Call) -> tuple[str, bool] | None:
    """For ``import_module(...)`` / ``__import__(...)``: (name or prefix, is_prefix), or
    ("", False) when the argument cannot be read; None if ``call`` is not an import."""
    f = call.func
    fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
    if fname not in ("import_module", "__import__") or not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value, False
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value), True
    if (isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add) and isinstance(arg.left, ast.Constant)
            and isinstance(arg.left.value, str)):
        return arg.left.value, True
    return "", False


def read_import_graph(src: str | Path, package: str = ROOT) -> tuple[dict[str, list[Import]], list[Violation]]:
    """Every module of ``package`` under ``src`` -> the modules of ours it imports.

    Reads ``import`` and ``from ... import`` statements anywhere in a module (inside
    functions and ``if TYPE_CHECKING`` blocks too; an import is a dependency whenever it
    runs) and ``import_module``/``__import__`` calls: a constant name is one import, an
    f-string with a constant prefix (``f"histolatent.models.{name}"``) imports every module
    under that prefix. ``from pkg import name`` targets the submodule ``pkg.name`` when there
    is one, else the package ``pkg`` itself.

    Returns
    -------
    graph : dict
        Module name -> list of :class:`Import` (targets are modules of ours, never itself).
    unreadable : list of Violation
        ``"dynamic"`` imports whose target cannot be read from the source.
    """
    src = Path(src)
    modules = _module_names(src, package)
    graph: dict[str, list[Import]] = {}
    unreadable: list[Violation] = []
    for name, path in modules.items():
        found, dynamic = _imports_of(name, path, modules, package)
        graph[name] = sorted(set(found), key=lambda i: (i.line, i.target))
        unreadable += dynamic
    return graph, unreadable


def _imports_of(name: str, path: Path, modules: Mapping[str, Path], package: str
                ) -> tuple[list[Import], list[Violation]]:
    """The imports of one module (see :func:`read_import_graph`)."""
    is_pkg = path.name == "__init__.py"
    found: list[Import] = []
    unreadable: list[Violation] = []

    def add(target: str | None, line: int) -> None:
        if target is not None and target != name:
            found.append(Import(target, line))

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == package:
                    add(_nearest(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1 packages
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            if base.split(".")[0] != package:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else _nearest(base, modules), node.lineno)
        elif isinstance(node, ast.Call) and (dyn := _dynamic_target(node)) is not None:
            target, is_prefix = dyn
            if not target:
                unreadable.append(Violation(
                    "dynamic", name, "?", node.lineno,
                    f"{name}:{node.lineno}: a dynamic import whose target cannot be read; "
                    f"name the module (or an f\"{package}.<package>.{{name}}\" prefix)"))
            elif target.split(".")[0] != package:
                continue
            elif is_prefix:
                for m in modules:
                    if m.startswith(target):
                        add(m, node.lineno)
            else:
                add(_nearest(target, modules), node.lineno)
    return found, unreadable


# -- checking --------------------------------------------------------------------------------
def find_cycles(graph: Mapping[str, Iterable[Import]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    succ = {m: sorted({i.target for i in imps}) for m, imps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(succ):
        if root in index:
            continue
        # iterative Tarjan: (node, iterator over its successors)
        work = [(root, iter(succ.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(succ.get(w, ()))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return sorted(out)


def _shortest_cycle(graph: Mapping[str, Iterable[Import]], comp: list[str]) -> list[tuple[str, str, int]]:
    """A shortest cycle through ``comp[0]`` inside the component, as (module, target, line) edges."""
    members, start = set(comp), comp[0]
    edges = {m: sorted((i.target, i.line) for i in graph[m] if i.target in members) for m in comp}
    prev: dict[str, tuple[str, int]] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for m in frontier:
            for t, line in edges[m]:
                if t == start:
                    path = [(m, t, line)]
                    while m != start:
                        p, pline = prev[m]
                        path.append((p, m, pline))
                        m = p
                    return path[::-1]
                if t not in prev:
                    prev[t] = (m, line)
                    nxt.append(t)
        frontier = nxt
    raise AssertionError("a strongly connected component always has a cycle")  # pragma: no cover


def violations(graph: Mapping[str, Iterable[Import]], layers: tuple[Layer, ...] = LAYERS) -> list[Violation]:
    """Every import against ``layers`` and every module cycle in ``graph``.

    Upward and peer imports come first (by module and line), then one ``"cycle"`` per
    strongly connected component, then units missing from the table.
    """
    out: list[Violation] = []
    unplaced: dict[str, str] = {}
    for module in sorted(graph):
        unit = unit_of(module)
        here = layer_index(unit, layers)
        if here is None:
            unplaced.setdefault(unit, module)
            continue
        for imp in graph[module]:
            tunit = unit_of(imp.target)
            there = layer_index(tunit, layers)
            if there is None or tunit == unit:
                if there is None:
                    unplaced.setdefault(tunit, imp.target)
                continue
            if there > here:
                out.append(Violation("upward", module, imp.target, imp.line,
                                     f"{module}:{imp.line} imports {imp.target}: {unit} (layer {here}) "
                                     f"may not import {tunit} (layer {there}, higher)"))
            elif there == here:
                out.append(Violation("peer", module, imp.target, imp.line,
                                     f"{module}:{imp.line} imports {imp.target}: {unit} and {tunit} are "
                                     f"peers in layer {here} and may not import each other"))
    for comp in find_cycles(graph):
        path = _shortest_cycle(graph, comp)
        steps = " -> ".join([path[0][0]] + [f"{t} (line {line})" for _, t, line in path])
        out.append(Violation("cycle", comp[0], path[0][1], path[0][2],
                             f"import cycle: {steps}; {len(comp)} modules in the knot: {', '.join(comp)}"))
    for unit, module in sorted(unplaced.items()):
        out.append(Violation("unplaced", module, unit, 0,
                             f"{module}: unit {unit!r} has no place in histolatent.layers.LAYERS"))
    return out


def markdown_table(layers: tuple[Layer, ...] = LAYERS) -> str:
    """The layer table as Markdown (docs/architecture.md shows exactly this), highest first."""
    rows = ["| layer | packages | why here |", "|---|---|---|"]
    for i in range(len(layers) - 1, -1, -1):
        units = ", ".join(f"`{u}`" if u != FACE else "`histolatent/__init__.py`" for u in layers[i].units)
        rows.append(f"| {i} | {units} | {layers[i].why} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print every violation of the tree under ``argv[0]`` (default ``src``); exit 1 if any."""
    args = sys.argv[1:] if argv is None else argv
    graph, unreadable = read_import_graph(args[0] if args else "src")
    found = unreadable + violations(graph)
    for v in found:
        print(v)
    print(f"{len(found)} violation(s) in {len(graph)} modules")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
