"""``histolatent cluster RUN --cells TABLE``: unsupervised nucleus classes from a trained InfoGAN.

Paper 4 §4.2 (Fig. 7B): every nucleus of a cell table is cropped at the scale the model was
trained on and classified by ``argmax q(c | x)``; see :func:`histolatent.embed.cluster_cells`.
"""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    run: Path = typer.Argument(..., help="A trained InfoGAN run folder (histolatent train configs/infogan-nuclei.yaml)."),
    cells: Path = typer.Option(..., "--cells", help="Cell table (Parquet) from `histolatent nuclei detect|segment`."),
    out: Path = typer.Option(None, "--out", help="Clustered table to write (default: TABLE-clusters.parquet beside "
                                                 "TABLE; the input is never changed unless named here)."),
    slide: Path = typer.Option(None, "--slide", help="Slide / image of the cells (default: the table's 'source')."),
    slide_mpp: float = typer.Option(None, "--slide-mpp", help="µm/px of a slide without one (default: the table's mpp)."),
    patch_mpp: float = typer.Option(None, "--patch-mpp", help="µm/px of the crops (default: the run's data.mpp)."),
    names: str = typer.Option(None, "--names", help="Comma-separated names of the clusters, e.g. 'epi,lym,fib'."),
    geojson: Path = typer.Option(None, "--geojson", help="QuPath GeoJSON to write (default: OUT with .geojson)."),
    chunk_rows: int = typer.Option(4096, "--chunk-rows", help="Cells per chunk: the memory bound and unit of resume."),
    batch_size: int = typer.Option(256, "--batch-size"),
) -> None:
    """Classify every nucleus of a cell table with an InfoGAN's q(c | x); writes a new table and a GeoJSON."""
    from histolatent.embed import cluster_cells

    labels = [s.strip() for s in names.split(",")] if names else None
    table, gj = cluster_cells(run, cells, out, slides=slide, slide_mpp=slide_mpp, patch_mpp=patch_mpp, names=labels,
                              geojson=geojson, chunk_rows=chunk_rows, batch_size=batch_size)
    typer.echo(f"table: {table}\ngeojson: {gj}")
