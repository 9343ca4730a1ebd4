"""``histolatent demo``: run the whole pipeline on samples + SynthPath, write an HTML report."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    out: Path = typer.Option(Path("histolatent-demo"), "--out", help="Output folder."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step (data, initialisation, sampling)."),
    quick: bool = typer.Option(False, "--quick", help="Fewer steps: a smoke run in seconds."),
    only: list[str] = typer.Option([], "--only", help="Run only these stages (repeatable; an unknown name "
                                   "is refused with the list of stages)."),
) -> None:
    """Run the main job end to end on the samples and synthetic data; prints the report's path."""
    from rich.console import Console

    from histolatent.demo import run_demo

    console = Console()
    with console.status("demo") as status:
        report, sections = run_demo(out, seed=seed, quick=quick, only=only or None,
                                    progress=lambda name: status.update(f"demo: {name}"))
    for s in sections:
        mark = "[red]failed[/red]" if s.error else "[green]ok[/green]"
        console.print(f"  {mark} {s.title} ({s.seconds:.1f} s)")
    console.print(f"report: {report.resolve()}")
    if any(s.error for s in sections):
        raise typer.Exit(1)
