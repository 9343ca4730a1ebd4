"""``histolatent embed RUN --cells TABLE --out cells.parquet``: embedding columns for a cell table."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    run: Path = typer.Argument(..., help="A finished training run folder (weights.safetensors + model.json)."),
    cells: Path = typer.Option(..., "--cells", help="Cell table (Parquet), one row per cell."),
    out: Path = typer.Option(..., "--out", help="Output Parquet: the cell table plus embedding columns."),
    patches: Path = typer.Option(None, "--patches",
                                 help="uint8 (N, H, W, 3) .npy of patches aligned with the table's rows; "
                                      "without it patches are read from the 'slide' column at (x, y)."),
    slide: Path = typer.Option(None, "--slide",
                               help="The slide or image every cell comes from (tables written by "
                                    "`histolatent nuclei` name their slide by id, not by path)."),
    mpp: float = typer.Option(0.25, "--mpp", help="Patch resolution (µm/px) when reading from slides."),
    parts: list[str] = typer.Option([], "--part", help="Encode part(s) to keep (repeatable; default all)."),
    batch_size: int = typer.Option(256, "--batch-size"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16"),
) -> None:
    """Encode every cell of a table with a trained model; writes TABLE + columns like z_iso_00."""
    import numpy as np
    import pandas as pd

    from histolatent.downstream.embedding import embed_cells, read_cell_patches
    from histolatent.errors import InputError
    from histolatent.io.atomic import atomic_path
    from histolatent.train import load_model

    if not cells.is_file():
        raise InputError(f"--cells {str(cells)!r} does not exist")
    if precision not in ("fp32", "bf16"):
        raise InputError(f"--precision {precision!r}: expected fp32 or bf16")
    model = load_model(run)
    table = pd.read_parquet(cells)
    if patches is not None:
        if not patches.is_file():
            raise InputError(f"--patches {str(patches)!r} does not exist")
        arr = np.load(patches, mmap_mode="r")
    else:
        source = table
        if slide is not None:
            if not slide.exists():
                raise InputError(f"--slide {str(slide)!r} does not exist")
            source = table.assign(slide=str(slide))  # only for reading; the output keeps the table's columns
        arr = read_cell_patches(source, size_px=model.config.image_size, mpp=mpp)
    result = embed_cells(model, table, arr, parts=parts or None, batch_size=batch_size, precision=precision)
    with atomic_path(out) as tmp:
        result.to_parquet(tmp, index=False)
    typer.echo(f"{out}: {len(result)} cells, {result.shape[1] - table.shape[1]} embedding columns")
