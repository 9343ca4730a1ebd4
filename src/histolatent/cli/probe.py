"""``histolatent probe TABLE --label grade --features z_iso ...``: paper 0's downstream protocol."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    table: Path = typer.Argument(..., help="Cell table (Parquet) with embedding columns and a split column."),
    label: str = typer.Option(..., "--label", help="Column to predict (cell type, ROI grade, ...)."),
    features: list[str] = typer.Option(..., "--features",
                                       help="A feature set: comma-separated columns or parts, e.g. "
                                            "'z_iso' or 'z_iso,mna,sdna' (repeatable; orientation parts "
                                            "such as q_ori use the rotation-invariant probe)."),
    split: str = typer.Option("split", "--split", help="Column with train / val / test."),
    roi: str = typer.Option(None, "--roi", help="Aggregate cells to ROIs by this column first (§5.3)."),
    area: str = typer.Option(None, "--area", help="Nuclear-area column: adds mna and sdna per ROI."),
    resamples: int = typer.Option(10, "--resamples", help="Training-set resamples (mean ± SD)."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(None, "--out", help="Write the results as JSON."),
) -> None:
    """Logistic probes (L2 tuned on val) with mAUC over resampled training sets, per feature set."""
    from histolatent.downstream.probes import probe_table

    res = probe_table(table, label=label, features=features, split=split, roi=roi, area=area,
                      n_resamples=resamples, seed=seed, out=out)
    for name, r in res.items():
        typer.echo(f"{name:40s} mAUC {r.mean:.3f} ± {r.sd:.3f}")
