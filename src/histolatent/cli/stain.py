"""``histolatent stain fit|apply|compare``: stain normalisation from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Stain normalisation: fit a target, apply it, compare methods.", no_args_is_help=True)

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _read_image(path: Path, *, max_px: int = 4096):
    """A whole image as uint8 RGB; slides bigger than ``max_px`` are read as a thumbnail."""
    from histolatent.io.slide import open_slide

    with open_slide(path, mpp=1.0) as slide:
        if max(slide.dimensions) <= max_px:
            return slide.read_level(0, 0, 0, *slide.dimensions)
        return slide.thumbnail(max_px)


def _write_image(path: Path, arr) -> None:
    from PIL import Image

    from histolatent.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))


def _params(sets: list[str]) -> dict:
    from histolatent.config import parse_override

    out = {}
    for text in sets or []:
        keys, value = parse_override(text)
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return out


def _register_neural(method: str) -> None:
    """The neural normaliser lives in train/ and registers itself when that is imported."""
    if method == "colorizer":
        import histolatent.train  # noqa: F401


def _normalizer(method: str, params: dict):
    from histolatent.stain import create_normalizer

    _register_neural(method)

    try:
        return create_normalizer(method, **params)
    except TypeError as err:
        from histolatent.errors import InputError

        raise InputError(f"stain method {method!r}: bad option ({err})") from None


@app.command("fit")
def fit(targets: list[Path] = typer.Argument(..., help="Image(s) of the target style."),
        out: Path = typer.Option(..., "--out", help="Output JSON."),
        method: str = typer.Option("macenko", help="macenko | reinhard | vahadane | colorizer."),
        set_: list[str] = typer.Option(None, "--set", help="Normaliser option, e.g. --set alpha=1.0.")) -> None:
    """Fit a normaliser on the target image(s) and write it as JSON."""
    norm = _normalizer(method, _params(set_))
    norm.fit([_read_image(p) for p in targets])
    norm.save(out)
    typer.echo(f"{out}: {norm!r}")


@app.command("apply")
def apply(normalizer: Path = typer.Argument(..., help="JSON written by `stain fit`."),
          source: Path = typer.Argument(..., help="An image, a folder of images, or a slide."),
          out: Path = typer.Argument(..., help="Output image, folder, or pyramidal TIFF (for a slide)."),
          tile_px: int = typer.Option(512, help="Slides: tile size of the output TIFF."),
          per_tile: bool = typer.Option(False, "--per-tile", help="Slides: estimate the source stain on "
                                        "every tile instead of once on a sample of tissue tiles.")) -> None:
    """Normalise an image, every image of a folder, or a whole slide (streamed tile by tile,
    with the slide's stain estimated once from a sample of its tissue tiles)."""
    from histolatent.errors import InputError
    from histolatent.io.slide import ArraySlide, open_slide
    from histolatent.stain import load_normalizer

    try:
        _register_neural(json.loads(normalizer.read_text()).get("method"))
    except (OSError, ValueError, AttributeError):
        pass  # load_normalizer reports the problem with the file
    norm = load_normalizer(normalizer)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{source}: no images ({', '.join(_IMAGE_SUFFIXES)})")
        out.mkdir(parents=True, exist_ok=True)
        for f in files:
            _write_image(out / f.with_suffix(".png").name, norm.transform(_read_image(f)))
        typer.echo(f"{out}: {len(files)} images, {norm.n_skipped} returned unchanged (too little tissue)")
        return
    slide = open_slide(source, mpp=None)
    try:
        if isinstance(slide, ArraySlide):
            _write_image(out, norm.transform(slide.read_level(0, 0, 0, *slide.dimensions)))
            typer.echo(f"{out}: normalised ({'unchanged: too little tissue' if norm.n_skipped else 'ok'})")
            return
        from histolatent.io.tiff_writer import write_pyramidal_tiff

        if not per_tile and norm.method != "colorizer":
            _fix_source_from_slide(norm, slide, tile_px)

        def read(x: int, y: int, w: int, h: int):
            return norm.transform(slide.read_level(0, x, y, w, h))

        write_pyramidal_tiff(out, read, size=slide.dimensions, mpp=slide.mpp or 1.0, tile_px=tile_px)
        typer.echo(f"{out}: {norm.n_transformed} tiles normalised, {norm.n_skipped} unchanged")
    finally:
        slide.close()


def _fix_source_from_slide(norm, slide, tile_px: int, n_tiles: int = 16) -> None:
    """Estimate the slide's stain once, from up to ``n_tiles`` tissue tiles spread over it."""
    import numpy as np

    from histolatent.tissue import detect_tissue, tile_grid

    mpp = slide.mpp or 1.0
    grid = tile_grid(mask=detect_tissue(slide), level0_dimensions=slide.dimensions, slide_mpp=mpp, mpp=mpp,
                     tile_px=tile_px, min_tissue=0.5)
    if len(grid) == 0:
        return  # no tissue found: fall back to per-tile estimates (glass tiles are skipped)
    pick = np.unique(np.linspace(0, len(grid) - 1, min(n_tiles, len(grid))).round().astype(int))
    norm.fix_source([grid.read(slide, int(i)) if slide.mpp else
                     slide.read_level(0, int(grid.x[i]), int(grid.y[i]), tile_px, tile_px) for i in pick])


@app.command("compare")
def compare(source: Path = typer.Argument(..., help="Image to normalise."),
            target: Path = typer.Argument(..., help="Image of the target style."),
            figure: Path = typer.Option(Path("stain_compare.png"), help="Side-by-side figure (PNG)."),
            methods: str = typer.Option("macenko,reinhard,vahadane", help="Comma-separated methods."),
            truth: Path = typer.Option(None, help="The true normalised image (same tissue), if known."),
            as_json: Path = typer.Option(None, "--json", help="Also write the metrics as JSON."),
            set_: list[str] = typer.Option(None, "--set", help="Option for every method, e.g. colorizer.steps=300.")) -> None:
    """Normalise SOURCE to TARGET with each method; print a metrics table and write a figure."""
    from rich.console import Console
    from rich.table import Table

    from histolatent.metrics.stain import stain_metrics
    from histolatent.viz.stain import stain_comparison_figure

    src, tgt = _read_image(source), _read_image(target)
    ref = _read_image(truth) if truth is not None else tgt
    params = _params(set_)
    outputs, table = {}, {}
    for m in [s.strip() for s in methods.split(",") if s.strip()]:
        norm = _normalizer(m, params.get(m, {}))
        outputs[m] = norm.fit(tgt).transform(src)
        table[m] = stain_metrics(outputs[m], ref)
    table["unnormalised"] = stain_metrics(src, ref)
    cols = sorted({k for v in table.values() for k in v})
    t = Table(title=f"{source.name} -> {target.name} (vs {'truth' if truth else 'target style'})")
    t.add_column("method")
    for c in cols:
        t.add_column(c)
    for m, row in table.items():
        t.add_row(m, *[f"{row[c]:.4g}" if c in row else "-" for c in cols])
    Console().print(t)
    stain_comparison_figure(src, tgt, outputs, figure, truth=None if truth is None else ref, metrics=table)
    typer.echo(str(figure))
    if as_json is not None:
        from histolatent.io.atomic import write_text_atomic

        write_text_atomic(as_json, json.dumps(table, indent=2) + "\n")
