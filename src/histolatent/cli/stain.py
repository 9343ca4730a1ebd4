"""``histolatent stain fit|apply|compare``: stain normalisation from the command line.

Each command calls one function of :mod:`histolatent.stain.files` (``fit_normalizer``,
``normalize_path``, ``compare_normalizers``).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from histolatent.cli._parse import comma_list, overrides

app = typer.Typer(help="Stain normalisation: fit a target, apply it, compare methods.", no_args_is_help=True)


def _register_neural(*methods: str | None) -> None:
    """The neural normaliser trains through the engine, so it lives in train/ and registers itself there."""
    if "colorizer" in methods:
        import histolatent.train  # noqa: F401


def _method_of(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("method")
    except (OSError, ValueError, AttributeError):
        return None  # load_normalizer reports the problem with the file


@app.command("fit")
def fit(targets: list[Path] = typer.Argument(..., help="Image(s) of the target style."),
        out: Path = typer.Option(..., "--out", help="Output JSON."),
        method: str = typer.Option("macenko", help="macenko | reinhard | vahadane | colorizer."),
        set_: list[str] = typer.Option(None, "--set", help="Normaliser option, e.g. --set alpha=1.0.")) -> None:
    """Fit a normaliser on the target image(s) and write it as JSON."""
    from histolatent.stain.files import fit_normalizer

    _register_neural(method)
    norm = fit_normalizer(targets, method=method, params=overrides(set_), out=out)
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
    from histolatent.stain.files import normalize_path

    _register_neural(_method_of(normalizer))
    r = normalize_path(normalizer, source, out, tile_px=tile_px, per_tile=per_tile)
    if r.kind == "folder":
        typer.echo(f"{r.out}: {r.n_transformed + r.n_skipped} images, {r.n_skipped} returned unchanged "
                   "(too little tissue)")
    elif r.kind == "image":
        typer.echo(f"{r.out}: normalised ({'unchanged: too little tissue' if r.n_skipped else 'ok'})")
    else:
        typer.echo(f"{r.out}: {r.n_transformed} tiles normalised, {r.n_skipped} unchanged")


@app.command("compare")
def compare(source: Path = typer.Argument(..., help="Image to normalise."),
            target: Path = typer.Argument(..., help="Image of the target style."),
            figure: Path = typer.Option(Path("stain_compare.png"), help="Side-by-side figure (PNG)."),
            methods: str = typer.Option("macenko,reinhard,vahadane", help="Comma-separated methods."),
            truth: Path = typer.Option(None, help="The true normalised image (same tissue), if known."),
            as_json: Path = typer.Option(None, "--json", help="Also write the metrics as JSON."),
            set_: list[str] = typer.Option(None, "--set", help="Option for every method, e.g. colorizer.steps=300.")) -> None:
    """Normalise SOURCE to TARGET with each method; print a metrics table and write a figure."""
    from histolatent.cli._show import print_table
    from histolatent.io.atomic import check_output, write_text_atomic
    from histolatent.stain.files import compare_normalizers, read_image
    from histolatent.viz.stain import stain_comparison_figure

    for option, path in (("--figure", figure), ("--json", as_json)):
        if path is not None:
            check_output(path, name=option)
    names = comma_list(methods)
    _register_neural(*names)
    src, tgt, ref = (None if p is None else read_image(p) for p in (source, target, truth))
    outputs, table = compare_normalizers(src, tgt, methods=names, truth=ref, params=overrides(set_))
    cols = sorted({k for v in table.values() for k in v})
    print_table([(m, *[f"{row[c]:.4g}" if c in row else "-" for c in cols]) for m, row in table.items()],
                ["method", *cols], title=f"{source.name} -> {target.name} (vs {'truth' if truth else 'target style'})")
    stain_comparison_figure(src, tgt, outputs, figure, truth=ref, metrics=table)
    typer.echo(str(figure))
    if as_json is not None:
        write_text_atomic(as_json, json.dumps(table, indent=2) + "\n")
