"""``histolatent runs list|show``: what is in a runs folder."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="List and inspect training runs.", no_args_is_help=True)


@app.command("list")
def list_(root: Path = typer.Argument(Path("runs"), help="Folder holding run folders.")) -> None:
    """One line per run: model, status, step, last losses."""
    from rich.console import Console
    from rich.table import Table

    from histolatent.train import list_runs, run_summary

    table = Table(title=f"runs in {root}")
    for col in ("run", "model", "status", "step", "last train", "last val"):
        table.add_column(col)
    for run in list_runs(root):
        s = run_summary(run)
        fmt = lambda d: " ".join(f"{k}={float(v):.4g}" for k, v in d.items() if k not in ("step", "elapsed_s"))  # noqa: E731
        table.add_row(run.name, s["model"], s["status"], str(s["step"]), fmt(s["train"]), fmt(s["val"]))
    Console().print(table)


@app.command("show")
def show(run: Path = typer.Argument(..., help="A run folder.")) -> None:
    """The run's resolved config, status and last metrics (JSON)."""
    from histolatent.errors import InputError
    from histolatent.train import run_summary

    if not (run / "config.yaml").is_file():
        raise InputError(f"{run}: not a run folder (no config.yaml)")
    summary = run_summary(run)
    summary["config"] = (run / "config.yaml").read_text()
    typer.echo(json.dumps(summary, indent=2))
