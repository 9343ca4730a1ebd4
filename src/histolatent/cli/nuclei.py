"""``histolatent nuclei ...``: one call each to :mod:`histolatent.nuclei.files` (``train``: the engine)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from histolatent.cli._show import print_table

app = typer.Typer(help="Nuclei: LoG detection, watershed / U-Net segmentation, patches, cell tables, QuPath GeoJSON.",
                  no_args_is_help=True)

_INPUTS = typer.Argument(..., help="A slide / image file, or a folder of them (runs as a Dask cohort).")
_OUT = typer.Option(Path("nuclei-out"), "--out", help="Output folder (cell tables, GeoJSON, summary.csv).")
_SLIDE_MPP = typer.Option(None, "--slide-mpp", help="µm per pixel of inputs without one (PNG/JPEG ROIs).")
_MPP = typer.Option(None, "--mpp", help="Resolution to work at, µm/px (default: each slide's own).")
_SCHED = typer.Option(None, "--scheduler", help="Dask scheduler address (default: a LocalCluster).")
_WORKERS = typer.Option(None, "--workers", help="Local Dask workers (default: min(slides, cores)).")
_OVERWRITE = typer.Option(False, "--overwrite", help="Redo slides that already have a cell table.")


def _model(run: Path | None):  # a run folder -> its model: the nuclei API takes models, never loads them
    from histolatent.train import load_model

    return None if run is None else load_model(run)


def _report(summary, title: str) -> None:
    """Print the per-slide summary; failed slides make the exit status 1."""
    rows = summary.to_dict("records")
    fmt = lambda v: "-" if v != v else f"{v:.1f}"  # noqa: E731 - NaN-aware
    print_table([(r["slide_id"], r["status"], r["n_nuclei"], fmt(r["mna_um2"]), fmt(r["sdna_um2"])) for r in rows],
                ("slide_id", "status", "n_nuclei", "MNA µm²", "SDNA µm²"), title=title)
    failed = [r for r in rows if r.get("status") == "failed"]
    for r in failed:
        typer.secho(f"{r['slide_id']}: {r.get('error')}", fg=typer.colors.RED, err=True)
    if failed:
        raise typer.Exit(1)


@app.command("detect")
def detect(inputs: Path = _INPUTS, out: Path = _OUT, slide_mpp: float = _SLIDE_MPP, mpp: float = _MPP,
           radius_min: float = typer.Option(3.0, "--radius-min", help="Smallest nuclear radius, µm."),
           radius_max: float = typer.Option(7.0, "--radius-max", help="Largest nuclear radius, µm."),
           threshold: float = typer.Option(0.1, "--threshold", help="LoG response threshold (haematoxylin OD)."),
           scheduler: str = _SCHED, workers: int = _WORKERS, overwrite: bool = _OVERWRITE) -> None:
    """Nucleus centres by LoG blob detection on the haematoxylin channel (cell tables of points)."""
    from histolatent.nuclei.files import detect_nuclei

    _report(detect_nuclei(inputs, out, radius_um=(radius_min, radius_max), threshold=threshold, slide_mpp=slide_mpp,
                          mpp=mpp, overwrite=overwrite, scheduler=scheduler, n_workers=workers, progress=True),
            f"nuclei (log) -> {out}")


@app.command("segment")
def segment(inputs: Path = _INPUTS, out: Path = _OUT,
            method: str = typer.Option("watershed", "--method", help="watershed | unet"),
            model: Path = typer.Option(None, "--model", help="U-Net run folder (for --method unet)."),
            slide_mpp: float = _SLIDE_MPP, mpp: float = _MPP,
            geojson: bool = typer.Option(True, "--geojson/--no-geojson", help="Also write QuPath GeoJSON outlines."),
            scheduler: str = _SCHED, workers: int = _WORKERS, overwrite: bool = _OVERWRITE) -> None:
    """Nucleus outlines and morphometrics (watershed or U-Net) -> cell tables + QuPath GeoJSON."""
    from histolatent.nuclei.files import segment_nuclei

    _report(segment_nuclei(inputs, out, method=method, model=_model(model), geojson=geojson, slide_mpp=slide_mpp,
                           mpp=mpp, overwrite=overwrite, scheduler=scheduler, n_workers=workers, progress=True),
            f"nuclei ({method}) -> {out}")


@app.command("patches")
def patches(cells: Path = typer.Argument(..., help="A cell table (.parquet)."),
            slides: Path = typer.Option(..., "--slides", help="The slide file, or a folder holding <slide_id>.* files."),
            out: Path = typer.Option(..., "--out", help="Output zarr patch store."),
            preset: str = typer.Option("se2n-vae", "--preset", help="se2n-vae (68 px @ 0.25) | infogan-40 (40 px @ 0.5)."),
            size: int = typer.Option(None, "--size", help="Patch side, px (overrides the preset)."),
            patch_mpp: float = typer.Option(None, "--patch-mpp", help="Patch resolution, µm/px (overrides the preset)."),
            edge: str = typer.Option("pad", "--edge", help="pad | reflect | skip"),
            mask: bool = typer.Option(False, "--mask", help="Add the nucleus mask as a 4th channel."),
            slide_mpp: float = _SLIDE_MPP, overwrite: bool = _OVERWRITE) -> None:
    """Nucleus-centred patches of a cell table, written to a zarr store."""
    from histolatent.nuclei.files import write_nucleus_patches

    typer.echo(write_nucleus_patches(cells, slides, out, preset=preset, size_px=size, mpp=patch_mpp, edge=edge,
                                     mask=mask, slide_mpp=slide_mpp, overwrite=overwrite, progress=True))


@app.command("train")
def train(config: Path = typer.Argument(Path("configs/unet-nuclei.yaml"), help="Run config (default configs/unet-nuclei.yaml)."),
          set_: list[str] = typer.Option([], "--set", help="Override a key: --set train.steps=2000 (repeatable)."),
          out: Path = typer.Option(None, "--out", help="Run folder (default runs/unet-<time>)."),
          resume: Path = typer.Option(None, "--resume", help="Continue a run folder from its last checkpoint."),
          threads: int = typer.Option(None, "--threads", help="Torch CPU threads (1 is fastest on a busy shared CPU).")) -> None:
    """Train the nuclei U-Net through the engine (SynthPath tiles, or your annotations via data.name=nuclei-folder)."""
    from histolatent.train import fit

    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    typer.echo(f"run: {fit(config, overrides=list(set_), out=out, resume=resume)}")


@app.command("evaluate")
def evaluate(method: str = typer.Argument(..., help="log | watershed | unet"),
             model: Path = typer.Option(None, "--model", help="U-Net run folder (for unet)."),
             tiles: int = typer.Option(20, "--tiles", help="Held-out SynthPath tiles per stain."),
             size: int = typer.Option(256, "--size", help="Tile side, px."),
             tile_mpp: float = typer.Option(0.5, "--tile-mpp", help="Tile resolution, µm/px."),
             stain: list[int] = typer.Option([0], "--stain", help="Stain site ids (0 = reference; repeatable)."),
             annotations: Path = typer.Option(None, "--annotations", help="Score on an annotated folder instead "
                                              "(images/ + annotations/ or labels/)."),
             annotations_mpp: float = typer.Option(0.25, "--annotations-mpp", help="µm/px of the annotated images."),
             match_um: float = typer.Option(4.0, "--match-um", help="Detection match distance, µm.")) -> None:
    """Score a nucleus finder on held-out SynthPath tiles (or your annotations); prints JSON."""
    from histolatent.nuclei.files import evaluate_nuclei

    typer.echo(json.dumps(evaluate_nuclei(method, model=_model(model), tiles=tiles, size_px=size, mpp=tile_mpp,
                                          stains=stain, annotations=annotations, annotations_mpp=annotations_mpp,
                                          match_um=match_um), indent=2))
