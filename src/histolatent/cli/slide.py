"""``histolatent slide info|thumbnail|tissue|tiles``: slides at a physical scale.

``tissue`` and ``tiles`` call :mod:`histolatent.tissue.files`; ``--figure`` adds an overlay
drawn by :func:`histolatent.viz.tissue.tissue_overlay_figure`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Slides: metadata, thumbnails, tissue masks and tile grids.", no_args_is_help=True)

_PATH = typer.Argument(..., help="Slide or image file.")
_MPP = typer.Option(None, "--slide-mpp", help="Microns per level-0 pixel, when the file has none (PNG/JPEG).")


def _open(path: Path, slide_mpp: float | None):
    from histolatent.io.image import check_mpp
    from histolatent.io.slide import open_slide

    return open_slide(path, mpp=check_mpp(slide_mpp, name="--slide-mpp", optional=True))


@app.command("info")
def info(path: Path = _PATH, slide_mpp: float = _MPP,
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Backend, dimensions, levels, mpp and which levels use the native-tile fast path."""
    with _open(path, slide_mpp) as slide:
        meta = slide.info()
    typer.echo(json.dumps(meta, indent=2) if as_json else "\n".join(f"{k:20s} {v}" for k, v in meta.items()))


@app.command("thumbnail")
def thumbnail(path: Path = _PATH, out: Path = typer.Argument(..., help="Output PNG."),
              max_px: int = typer.Option(1024, help="Longest side in pixels."), slide_mpp: float = _MPP) -> None:
    """Write a thumbnail (read in strips: memory does not grow with the slide)."""
    from histolatent.io.atomic import check_output, write_image_atomic

    check_output(out, name="OUT")
    with _open(path, slide_mpp) as slide:
        typer.echo(str(write_image_atomic(out, slide.thumbnail(max_px))))


@app.command("tissue")
def tissue(path: Path = _PATH, out: Path = typer.Argument(..., help="Output mask PNG (255 = tissue)."),
           figure: Path = typer.Option(None, help="Also write an overlay figure here."),
           thumbnail_px: int = typer.Option(2048, help="Thumbnail size the mask is computed on."),
           remove_pen: bool = typer.Option(False, "--remove-pen", help="Remove green/blue pen marks."),
           threshold: float = typer.Option(None, help="Fixed tissue-score threshold instead of Otsu."),
           slide_mpp: float = _MPP) -> None:
    """Detect tissue (bright and unsaturated = glass; Otsu + morphology) and write the mask."""
    from histolatent.tissue.files import write_tissue_mask

    with _open(path, slide_mpp) as slide:
        mask = write_tissue_mask(slide, out, thumbnail_px=thumbnail_px, remove_pen=remove_pen, threshold=threshold)
        typer.echo(f"{out}: tissue {mask.tissue_fraction:.1%} of the slide")
        if figure is not None:
            from histolatent.viz.tissue import tissue_overlay_figure

            typer.echo(str(tissue_overlay_figure(slide.thumbnail(min(thumbnail_px, 1024)), mask.mask, figure,
                                                 level0_dimensions=slide.dimensions, title=path.name)))


@app.command("tiles")
def tiles(path: Path = _PATH,
          out: Path = typer.Argument(..., help="Output CSV: x, y (level 0), mpp, tile_px, tissue_fraction."),
          mpp: float = typer.Option(..., help="Microns per pixel of the tiles."),
          tile_px: int = typer.Option(256, help="Tile side in pixels at --mpp."),
          stride_px: int = typer.Option(None, help="Step between tiles (default: tile_px)."),
          min_tissue: float = typer.Option(0.5, help="Minimum tissue fraction of a kept tile."),
          mask: Path = typer.Option(None, help="A tissue mask: PNG (non-zero = tissue) or GeoJSON polygons."),
          remove_pen: bool = typer.Option(False, "--remove-pen", help="Remove pen marks (detected masks)."),
          figure: Path = typer.Option(None, help="Also write an overlay figure of the grid."),
          save_tiles: Path = typer.Option(None, help="Also write every tile as PNG into this folder."),
          slide_mpp: float = _MPP) -> None:
    """Tile grid at a physical scale with the tissue fraction of each tile."""
    from histolatent.tissue.files import load_tissue_mask, write_tile_grid

    with _open(path, slide_mpp) as slide:
        tm = load_tissue_mask(slide, mask, remove_pen=remove_pen)
        grid = write_tile_grid(slide, out, mpp=mpp, tile_px=tile_px, stride_px=stride_px, min_tissue=min_tissue,
                               mask=tm, tiles_dir=save_tiles)
        typer.echo(f"{out}: {len(grid)} tiles of {tile_px} px at {mpp} um/px"
                   + (f"; {len(grid)} PNG tiles in {save_tiles}" if save_tiles is not None else ""))
        if figure is not None:
            from histolatent.viz.tissue import tissue_overlay_figure

            typer.echo(str(tissue_overlay_figure(slide.thumbnail(1024), tm.mask, figure, grid=grid, title=path.name)))
