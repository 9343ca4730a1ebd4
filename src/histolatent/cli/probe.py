"""``histolatent probe TABLE --label grade --features z_iso ...``: paper 0's downstream protocol."""

from __future__ import annotations

import json
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
    import pandas as pd

    from histolatent.downstream.aggregation import aggregate_rois
    from histolatent.downstream.probes import probe_representations
    from histolatent.embed.columns import is_orientation_part, part_columns
    from histolatent.errors import InputError
    from histolatent.io.atomic import write_text_atomic

    if not table.is_file():
        raise InputError(f"table {str(table)!r} does not exist")
    df = pd.read_parquet(table)
    for col in (label, split):
        if col not in df.columns:
            raise InputError(f"{table}: no column {col!r}")
    sets = {f: [c.strip() for c in f.split(",") if c.strip()] for f in features}
    if roi is not None:
        names = {n for cols in sets.values() for n in cols if n not in ("mna", "sdna")}
        parts = [n for n in names if n != "z_ori"]
        angle_parts = ["z_ori"] if "z_ori" in names else []
        df = aggregate_rois(df, roi=roi, parts=parts, angle_parts=angle_parts, area=area, keep=[label, split])
        sets = {k: [("z_ori_hist" if c == "z_ori" else c) for c in v] for k, v in sets.items()}
    else:
        for cols in sets.values():
            for c in cols:
                if c not in df.columns:
                    part_columns(df.columns, c)  # raises KeyError naming the part
                    is_orientation_part(df, c)
    splits = {s: df[df[split] == s] for s in ("train", "val", "test")}
    for s, d in splits.items():
        if len(d) == 0:
            raise InputError(f"{table}: no rows with {split} == {s!r}")
    res = probe_representations(splits["train"], splits["val"], splits["test"], sets, label,
                                n_resamples=resamples, seed=seed)
    for name, r in res.items():
        typer.echo(f"{name:40s} mAUC {r.mean:.3f} ± {r.sd:.3f}")
    if out is not None:
        write_text_atomic(out, json.dumps({k: v.to_dict() for k, v in res.items()}, indent=2) + "\n")
