"""Benchmark results: ``benchmarks/results/<name>.json`` + a Markdown table.

Each benchmark is a script ``benchmarks/<name>.py`` with ``main(quick: bool = False) ->
dict`` that measures side by side in one run and calls :func:`save_result`.
``histolatent bench NAME`` runs it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from histolatent.errors import InputError
from histolatent.io.atomic import write_text_atomic
from histolatent.machine import machine_info, package_versions, source_state


def results_dir() -> Path:
    """``$HISTOLATENT_BENCH_RESULTS`` or ``./benchmarks/results``."""
    return Path(os.environ.get("HISTOLATENT_BENCH_RESULTS", "benchmarks/results"))


def save_result(name: str, figures: dict[str, float], *, details: dict[str, Any] | None = None,
                notes: str = "", out_dir: str | os.PathLike | None = None, allow_dirty: bool | None = None) -> Path:
    """Write ``<name>.json`` ({figures, details, notes, machine, versions, commit, date}) and ``<name>.md``.

    A result must name the code it measured: it records the commit, whether ``src/`` had
    uncommitted changes (``src_dirty``) and a hash of ``src/``. Writing into the committed
    results folder (``benchmarks/results``) from a tree whose ``src/`` is dirty is refused,
    unless ``allow_dirty`` (or ``$HISTOLATENT_BENCH_ALLOW_DIRTY=1``) says so; such a result
    is marked ``"src_dirty": true`` in the JSON and the table.
    """
    out = Path(out_dir) if out_dir is not None else results_dir()
    state = check_result_target(name, out_dir=out, allow_dirty=allow_dirty)
    machine = machine_info()
    machine.pop("versions", None)
    record = {
        "name": name,
        "figures": {k: _plain(v) for k, v in figures.items()},
        "details": _plain(details or {}),
        "notes": notes,
        "machine": machine,
        "versions": package_versions(),
        **state,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path = write_text_atomic(out / f"{name}.json", json.dumps(record, indent=2) + "\n")
    lines = [f"# benchmark `{name}`", "", f"{record['date']} · commit {record['commit'] or '?'}"
             f"{' (src DIRTY)' if record['src_dirty'] else ''} · "
             f"{machine['cpu']} ({machine['cores']} cores, torch threads {machine['torch_threads']})", "",
             "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in record["figures"].items()]
    if notes:
        lines += ["", notes]
    write_text_atomic(out / f"{name}.md", "\n".join(lines) + "\n")
    return path


def check_result_target(name: str, *, out_dir: str | os.PathLike | None = None,
                        allow_dirty: bool | None = None) -> dict[str, Any]:
    """Refuse, before any work, a result that would not name the code it measured.

    Returns :func:`~histolatent.machine.source_state` (commit, ``src_dirty``, ``src_hash``).
    Raises :class:`InputError` when ``src/`` is dirty and ``out_dir`` is the committed
    ``benchmarks/results`` folder, unless dirty results are allowed (see :func:`save_result`).
    """
    out = Path(out_dir) if out_dir is not None else results_dir()
    state = source_state()
    if allow_dirty is None:
        allow_dirty = os.environ.get("HISTOLATENT_BENCH_ALLOW_DIRTY", "") not in ("", "0")
    if state["src_dirty"] and not allow_dirty and _is_committed_results(out):
        raise InputError(f"benchmark {name!r}: src/ has uncommitted changes, so {out} would record code that no "
                         "commit holds; commit first (or set HISTOLATENT_BENCH_ALLOW_DIRTY=1 to write a result "
                         "marked dirty)")
    return state


def _is_committed_results(out: Path) -> bool:
    """Is ``out`` the repository's ``benchmarks/results`` folder (the one results are committed in)?"""
    try:
        resolved = out.resolve()
    except OSError:
        return False
    return resolved.name == "results" and resolved.parent.name == "benchmarks"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _plain(obj: Any) -> Any:
    """Make numpy/torch scalars and arrays JSON-serialisable."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return obj


def benchmark_names(bench_dir: str | os.PathLike = "benchmarks") -> list[str]:
    """The registered benchmarks: the scripts ``bench_dir/NAME.py`` (NAME a plain identifier, no ``_`` first)."""
    folder = Path(bench_dir)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.py") if p.stem.isidentifier() and not p.stem.startswith("_"))


def run_benchmark(name: str, *, quick: bool = False, bench_dir: str | os.PathLike = "benchmarks") -> dict[str, Any]:
    """Run the script ``bench_dir/NAME.py`` (its ``main(quick=...)``) and return its figures.

    The script writes its own result (:func:`save_result`). An unknown ``name`` is an
    :class:`~histolatent.errors.InputError` that lists the benchmarks there.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from histolatent.bench import run_benchmark
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "tiny.py").write_text("def main(quick=False): return {'quick': quick}")
    >>> run_benchmark("tiny", quick=True, bench_dir=folder)
    {'quick': True}
    """
    import runpy

    known = benchmark_names(bench_dir)
    if name not in known:
        raise InputError(f"no benchmark {name!r} in {str(bench_dir)!r}; known: {', '.join(known) or '(none)'} "
                         "(a name, not a path; run from the repository root, or pass --dir)")
    script = Path(bench_dir) / f"{name}.py"
    return runpy.run_path(str(script), run_name=f"histolatent_bench_{name}")["main"](quick=quick)
