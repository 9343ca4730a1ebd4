"""``histolatent finetune``: fine-tune a pretrained encoder on a fraction of the labels."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    run: Path = typer.Argument(..., help="Pretrained run folder (drl, dim, ...)."),
    data: Path = typer.Option(..., "--data", help="PCam folder (classify) or GLaS folder (segment)."),
    task: str = typer.Option("classify", "--task", help="classify | segment"),
    labels: str = typer.Option("1%", "--labels", help="Share of the training labels: 1% or 0.01."),
    init: str = typer.Option("pretrained", "--init", help="pretrained | random (the baseline)."),
    head: str = typer.Option("linear", "--head", help="Classifier head: linear | mlp."),
    steps: int = typer.Option(500, "--steps", help="Optimisation steps."),
    batch_size: int = typer.Option(64, "--batch-size", help="Batch size (cut to the labelled items)."),
    seed: int = typer.Option(0, "--seed", help="Training seed (also the label subset's, unless --label-seed)."),
    label_seed: int = typer.Option(None, "--label-seed", help="Seed of the stratified label subset."),
    set_: list[str] = typer.Option([], "--set", help="Override a run-config key: --set model.lr=1e-4."),
    out: Path = typer.Option(None, "--out", help="Run folder (default runs/<model>-<time>)."),
) -> None:
    """Fine-tune RUN's encoder on a few labels; prints the run folder and the test scores."""
    from histolatent.downstream.finetune import finetune

    r = finetune(run, task=task, labels=labels, data=data, seed=seed, label_seed=label_seed, init=init, head=head,
                 steps=steps, batch_size=batch_size, out=out, overrides=list(set_))
    typer.echo(f"run: {r.run}")
    typer.echo(f"labels: {r.n_labelled} ({100 * r.label_fraction:g} %)")
    for k, v in r.scores.items():
        typer.echo(f"{k}: {v:.4f}")
