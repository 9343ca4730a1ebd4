"""``histolatent bench NAME``: run ``benchmarks/NAME.py`` and write its results JSON."""

from __future__ import annotations

import runpy
from pathlib import Path

import typer


def command(
    name: str = typer.Argument(..., help="Benchmark name: a script benchmarks/NAME.py."),
    quick: bool = typer.Option(False, "--quick", help="A smaller, faster version (smoke check)."),
    bench_dir: Path = typer.Option(Path("benchmarks"), "--dir", help="Folder holding the benchmark scripts."),
) -> None:
    """Run a benchmark; writes benchmarks/results/NAME.json (+ .md) and prints its figures."""
    import json

    from histolatent.errors import InputError

    script = bench_dir / f"{name}.py"
    if not script.is_file():
        known = sorted(p.stem for p in bench_dir.glob("*.py") if not p.stem.startswith("_"))
        raise InputError(f"no benchmark {name!r} at {script}; known: {', '.join(known) or '(none)'} "
                         "(run from the repository root, or pass --dir)")
    ns = runpy.run_path(str(script), run_name=f"histolatent_bench_{name}")
    figures = ns["main"](quick=quick)
    typer.echo(json.dumps(figures, indent=2))
