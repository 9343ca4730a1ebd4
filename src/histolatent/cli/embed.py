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
                                      "without it patches are read from the slide around each cell's (x, y)."),
    slide: Path = typer.Option(None, "--slide",
                               help="The slide or image the cells come from (default: the table's source)."),
    slide_mpp: float = typer.Option(None, "--slide-mpp", help="µm/px of a slide without one (default: the table's mpp)."),
    mpp: float = typer.Option(None, "--mpp", help="Patch resolution (µm/px); default: the run's data.mpp."),
    parts: list[str] = typer.Option([], "--part", help="Encode part(s) to keep (repeatable; default all)."),
    edge: str = typer.Option("pad", "--edge", help="Patches leaving the slide: pad (white) | reflect."),
    chunk_rows: int = typer.Option(4096, "--chunk-rows", help="Cells per chunk: the memory bound and unit of resume."),
    batch_size: int = typer.Option(256, "--batch-size"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16"),
) -> None:
    """Encode every cell of a table with a trained model; writes TABLE + columns like z_iso_00.

    Resumable: run the same command again after a crash and finished chunks are reused.
    """
    from histolatent.embed import embed_cells

    path = embed_cells(run, cells, out, slides=slide, patches=patches, mpp=mpp, slide_mpp=slide_mpp,
                       parts=parts or None, edge=edge, chunk_rows=chunk_rows, batch_size=batch_size,
                       precision=precision)
    typer.echo(f"{path}: cells and embedding columns written")
