"""``histolatent runs list|show``: what is in a runs folder."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="List and inspect training runs.", no_args_is_help=True)


@app.command("list")
def list_(root: Path = typer.Argument(Path("runs"), help="Folder holding run folders.")) -> None:
    """One line per run: model, status (broken runs say why), step, last losses."""
    from histolatent.cli._show import print_table
    from histolatent.train import list_runs, run_summary

    def losses(d: dict) -> str:
        return " ".join(f"{k}={float(v):.4g}" for k, v in d.items() if k not in ("step", "elapsed_s"))

    def status(s: dict) -> str:
        return f"{s['status']}: {s['problem']}" if s.get("problem") else s["status"]

    rows = [(run.name, s["model"], status(s), s["step"], losses(s["train"]), losses(s["val"]))
            for run, s in ((run, run_summary(run)) for run in list_runs(root))]
    print_table(rows, ("run", "model", "status", "step", "last train", "last val"), title=f"runs in {root}")


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
