"""``histolatent slide info|thumbnail|tissue|tiles``: slides at a physical scale."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Slides: metadata, thumbnails, tissue masks and tile grids.", no_args_is_help=True)

_MPP = typer.Option(None, "--slide-mpp", help="Microns per level-0 pixel, when the file has none (PNG/JPEG).")


def _save_png(path: Path, arr) -> Path:
    from PIL import Image

    from histolatent.io.atomic import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return path


@app.command("info")
def info(path: Path = typer.Argument(..., help="Slide or image file."), slide_mpp: float = _MPP,
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Backend, dimensions, levels, mpp and which levels use the native-tile fast path."""
    from histolatent.io.slide import open_slide

    with open_slide(path, mpp=slide_mpp) as slide:
        meta = slide.info()
    if as_json:
        typer.echo(json.dumps(meta, indent=2))
        return
    for k, v in meta.items():
        typer.echo(f"{k:20s} {v}")


@app.command("thumbnail")
def thumbnail(path: Path = typer.Argument(..., help="Slide or image file."),
              out: Path = typer.Argument(..., help="Output PNG."),
              max_px: int = typer.Option(1024, help="Longest side in pixels."), slide_mpp: float = _MPP) -> None:
    """Write a thumbnail (read in strips: memory does not grow with the slide)."""
    from histolatent.io.slide import open_slide

    with open_slide(path, mpp=slide_mpp) as slide:
        thumb = slide.thumbnail(max_px)
    typer.echo(str(_save_png(out, thumb)))


@app.command("tissue")
def tissue(path: Path = typer.Argument(..., help="Slide or image file."),
           out: Path = typer.Argument(..., help="Output mask PNG (255 = tissue)."),
           figure: Path = typer.Option(None, help="Also write an overlay figure here."),
           thumbnail_px: int = typer.Option(2048, help="Thumbnail size the mask is computed on."),
           remove_pen: bool = typer.Option(False, "--remove-pen", help="Remove green/blue pen marks."),
           threshold: float = typer.Option(None, help="Fixed tissue-score threshold instead of Otsu."),
           slide_mpp: float = _MPP) -> None:
    """Detect tissue (bright and unsaturated = glass; Otsu + morphology) and write the mask."""
    import numpy as np

    from histolatent.io.slide import open_slide
    from histolatent.tissue import detect_tissue

    with open_slide(path, mpp=slide_mpp) as slide:
        mask = detect_tissue(slide, thumbnail_px=thumbnail_px, remove_pen=remove_pen, threshold=threshold)
        _save_png(out, (mask.mask * 255).astype(np.uint8))
        typer.echo(f"{out}: tissue {mask.tissue_fraction:.1%} of the slide")
        if figure is not None:
            from histolatent.viz.tissue import tissue_overlay_figure

            tissue_overlay_figure(slide.thumbnail(min(thumbnail_px, 1024)), mask.mask, figure,
                                  level0_dimensions=slide.dimensions, title=path.name)
            typer.echo(str(figure))


@app.command("tiles")
def tiles(path: Path = typer.Argument(..., help="Slide or image file."),
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
    from histolatent.io.slide import open_slide
    from histolatent.tissue import detect_tissue, mask_from_geojson, mask_from_image, tile_grid

    with open_slide(path, mpp=slide_mpp) as slide:
        if mask is None:
            tm = detect_tissue(slide, remove_pen=remove_pen)
        elif mask.suffix.lower() in (".geojson", ".json"):
            tm = mask_from_geojson(mask, slide.dimensions)
        else:
            tm = mask_from_image(mask, slide.dimensions)
        grid = tile_grid(slide, mpp=mpp, tile_px=tile_px, stride_px=stride_px, min_tissue=min_tissue, mask=tm)
        grid.to_csv(out)
        typer.echo(f"{out}: {len(grid)} tiles of {tile_px} px at {mpp} um/px")
        if figure is not None:
            from histolatent.viz.tissue import tissue_overlay_figure

            tissue_overlay_figure(slide.thumbnail(1024), tm.mask, figure, grid=grid, title=path.name)
            typer.echo(str(figure))
        if save_tiles is not None:
            save_tiles.mkdir(parents=True, exist_ok=True)
            for i, tile in grid.iter_tiles(slide):
                _save_png(save_tiles / f"tile_{int(grid.x[i])}_{int(grid.y[i])}.png", tile)
            typer.echo(f"{save_tiles}: {len(grid)} PNG tiles")
