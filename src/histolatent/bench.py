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

from histolatent.io.atomic import write_text_atomic
from histolatent.machine import git_commit, machine_info, package_versions


def results_dir() -> Path:
    """``$HISTOLATENT_BENCH_RESULTS`` or ``./benchmarks/results``."""
    return Path(os.environ.get("HISTOLATENT_BENCH_RESULTS", "benchmarks/results"))


def save_result(name: str, figures: dict[str, float], *, details: dict[str, Any] | None = None,
                notes: str = "", out_dir: str | os.PathLike | None = None) -> Path:
    """Write ``<name>.json`` ({figures, details, notes, machine, versions, commit, date}) and ``<name>.md``."""
    out = Path(out_dir) if out_dir is not None else results_dir()
    machine = machine_info()
    machine.pop("versions", None)
    record = {
        "name": name,
        "figures": {k: _plain(v) for k, v in figures.items()},
        "details": _plain(details or {}),
        "notes": notes,
        "machine": machine,
        "versions": package_versions(),
        "commit": git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path = write_text_atomic(out / f"{name}.json", json.dumps(record, indent=2) + "\n")
    lines = [f"# benchmark `{name}`", "", f"{record['date']} · commit {record['commit'] or '?'} · "
             f"{machine['cpu']} ({machine['cores']} cores, torch threads {machine['torch_threads']})", "",
             "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in record["figures"].items()]
    if notes:
        lines += ["", notes]
    write_text_atomic(out / f"{name}.md", "\n".join(lines) + "\n")
    return path


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

    from histolatent.errors import InputError

    script = Path(bench_dir) / f"{name}.py"
    if not script.is_file():
        known = sorted(p.stem for p in Path(bench_dir).glob("*.py") if not p.stem.startswith("_"))
        raise InputError(f"no benchmark {name!r} at {script}; known: {', '.join(known) or '(none)'} "
                         "(run from the repository root, or pass --dir)")
    return runpy.run_path(str(script), run_name=f"histolatent_bench_{name}")["main"](quick=quick)
