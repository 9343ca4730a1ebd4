"""``histolatent bench NAME``: run ``benchmarks/NAME.py`` (:func:`histolatent.bench.run_benchmark`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def command(
    name: str = typer.Argument(..., help="Benchmark name: a script benchmarks/NAME.py."),
    quick: bool = typer.Option(False, "--quick", help="A smaller, faster version (smoke check)."),
    bench_dir: Path = typer.Option(Path("benchmarks"), "--dir", help="Folder holding the benchmark scripts."),
) -> None:
    """Run a benchmark; writes benchmarks/results/NAME.json (+ .md) and prints its figures."""
    from histolatent.bench import run_benchmark

    typer.echo(json.dumps(run_benchmark(name, quick=quick, bench_dir=bench_dir), indent=2))
