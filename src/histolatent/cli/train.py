"""``histolatent train``: train any registered model from a YAML config."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    config: Path = typer.Argument(None, help="Run config (YAML). Not needed with --resume."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set train.lr=1e-3 (repeatable)."),
    resume: Path = typer.Option(None, "--resume", help="Continue a run folder from its last checkpoint."),
    out: Path = typer.Option(None, "--out", help="Run folder (default runs/<model>-<time>)."),
    devices: int = typer.Option(None, "--devices", help="Number of devices (processes for DDP)."),
    strategy: str = typer.Option(None, "--strategy", help="auto | ddp | ddp_spawn"),
    precision: str = typer.Option(None, "--precision", help="32-true | bf16-mixed | 16-mixed"),
    accelerator: str = typer.Option(None, "--accelerator", help="cpu | cuda | mps | auto"),
) -> None:
    """Train a model (checkpoints, resume, DDP, mixed precision); prints the run folder."""
    from histolatent.errors import InputError, TrainingError
    from histolatent.train import fit

    overrides = list(set_)
    for key, value in (("devices", devices), ("strategy", strategy), ("precision", precision),
                       ("accelerator", accelerator)):
        if value is not None:
            overrides.append(f"train.{key}={value}")
    if config is None and resume is None:
        raise InputError("give a CONFIG.yaml to start a run, or --resume RUN to continue one")
    try:
        run = fit(config, overrides=overrides, out=out, resume=resume)
    except TrainingError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"run: {run}")
