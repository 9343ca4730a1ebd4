"""``histolatent compress SLIDES... --encoder RUN --out grids/``: a cohort of slides to NIC grids on Dask."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    slides: list[Path] = typer.Argument(..., help="Slide files and/or folders of slides."),
    encoder: str = typer.Option(..., "--encoder", help="A training run folder or a TorchScript encoder file."),
    out: Path = typer.Option(..., "--out", help="Output folder: <slide>.zarr per slide + summary.csv/.txt."),
    scheduler: str = typer.Option(None, "--scheduler",
                                  help="tcp://host:port of a running Dask scheduler; 'inline' = this process; "
                                       "default a new LocalCluster."),
    workers: int = typer.Option(None, "--workers", help="Workers of the local cluster (default min(slides, cores))."),
    mpp: float = typer.Option(0.5, "--mpp", help="µm/px of the tiles."),
    tile_px: int = typer.Option(128, "--tile-px", help="Tile side in pixels at --mpp."),
    stride_px: int = typer.Option(None, "--stride-px", help="Step between tiles (default --tile-px)."),
    dihedral: bool = typer.Option(False, "--dihedral", help="Also store the 8 dihedral copies, (8, C, L, L)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 (autocast)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Tiles per forward pass."),
    min_tissue: float = typer.Option(0.5, "--min-tissue", help="Encode tiles with at least this tissue fraction."),
    slide_mpp: float = typer.Option(None, "--slide-mpp", help="µm/px of slides that carry none."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present) | cpu | cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo slides whose grid verifies."),
    figures: bool = typer.Option(False, "--figures", help="Also write <slide>.png: thumbnail | PCA of the grid."),
) -> None:
    """Compress slides to (C, H, W) float16 grids of tile codes (Neural Image Compression).

    Resumable: a slide whose grid and manifest verify is skipped; unfinished, damaged or
    differently-made grids are redone. A corrupt slide is reported and the others finish.
    """
    from histolatent.embed.cohort import SUMMARY_COLUMNS, compress_cohort
    from histolatent.io.cohort import summary_table

    figure = None
    if figures:
        from histolatent.viz.nic import write_grid_figure as figure
    summary = compress_cohort(slides, encoder, out, mpp=mpp, tile_px=tile_px, stride_px=stride_px, dihedral=dihedral,
                              precision=precision, batch_size=batch_size, min_tissue=min_tissue, slide_mpp=slide_mpp,
                              device=device, overwrite=overwrite, scheduler=scheduler, workers=workers,
                              figure=figure)
    rows = summary.to_dict("records")
    typer.echo(summary_table(rows, [c for c in SUMMARY_COLUMNS if c in summary.columns]), nl=False)
    failed = sum(r.get("status") == "failed" for r in rows)
    typer.echo(f"{len(rows) - failed}/{len(rows)} slides compressed into {out} (summary.csv)")
    if failed:
        raise typer.Exit(1)
