"""``histolatent nuclei detect|segment|patches|train|evaluate``: nuclei from the command line.

``detect`` and ``segment`` take one slide / image or a folder of them; a folder runs as a
Dask cohort (one resumable task per slide, a LocalCluster unless ``--scheduler`` names a
running scheduler). Outputs go to ``--out``: ``<slide>.parquet`` cell tables,
``<slide>.geojson`` for QuPath, and ``summary.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Nuclei: LoG detection, watershed / U-Net segmentation, patches, cell tables, QuPath GeoJSON.",
                  no_args_is_help=True)

_DEFAULT_CONFIG = Path("configs/unet-nuclei.yaml")


def _run(inputs: Path, out: Path, *, method: str, model, slide_mpp, mpp, scheduler, workers, overwrite, geojson,
         options: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from histolatent.errors import InputError
    from histolatent.nuclei.cohort import list_inputs, run_cohort

    files = list_inputs(inputs)
    if len(files) == 1 and not inputs.is_dir() and scheduler is None:
        from histolatent.nuclei.pipeline import cells_from_slide, default_slide_id

        out.mkdir(parents=True, exist_ok=True)
        sid = default_slide_id(files[0])
        if method == "unet":
            from histolatent.nuclei.unet import load_unet

            model = load_unet(model)
        cells = cells_from_slide(files[0], method=method, model=model, mpp=mpp, slide_mpp=slide_mpp, slide_id=sid,
                                 progress=True, **options)
        from histolatent.io.tables import write_cell_table
        from histolatent.nuclei.pipeline import slide_summary

        if geojson and "polygon" in cells.columns:
            from histolatent.io.geojson_export import write_geojson

            write_geojson(cells, out / f"{sid}.geojson")
        write_cell_table(cells, out / f"{sid}.parquet", metadata={"source": str(files[0]), "method": method})
        rows = [{"slide_id": sid, "status": "done", **slide_summary(cells)}]
    else:
        if method == "unet" and model is None:
            raise InputError("--model RUN is required with --method unet")
        summary = run_cohort(files, out, method=method, model=model, slide_mpp=slide_mpp, mpp=mpp, geojson=geojson,
                             overwrite=overwrite, scheduler=scheduler, n_workers=workers, progress=True, **options)
        rows = summary.to_dict("records")
    table = Table(title=f"nuclei ({method}) -> {out}")
    for col in ("slide_id", "status", "n_nuclei", "MNA µm²", "SDNA µm²"):
        table.add_column(col)
    for r in rows:
        fmt = lambda v: "-" if v != v else f"{v:.1f}"  # noqa: E731 - NaN-aware
        table.add_row(str(r["slide_id"]), str(r["status"]), str(r["n_nuclei"]), fmt(r["mna_um2"]), fmt(r["sdna_um2"]))
    Console().print(table)
    failed = [r for r in rows if r.get("status") == "failed"]
    for r in failed:
        typer.secho(f"{r['slide_id']}: {r.get('error')}", fg=typer.colors.RED, err=True)
    if failed:
        raise typer.Exit(1)


_INPUTS = typer.Argument(..., help="A slide / image file, or a folder of them (runs as a Dask cohort).")
_OUT = typer.Option(Path("nuclei-out"), "--out", help="Output folder (cell tables, GeoJSON, summary.csv).")
_SLIDE_MPP = typer.Option(None, "--slide-mpp", help="µm per pixel of inputs without one (PNG/JPEG ROIs).")
_MPP = typer.Option(None, "--mpp", help="Resolution to work at, µm/px (default: each slide's own).")
_SCHED = typer.Option(None, "--scheduler", help="Dask scheduler address (default: a LocalCluster).")
_WORKERS = typer.Option(None, "--workers", help="Local Dask workers (default: min(slides, cores)).")
_OVERWRITE = typer.Option(False, "--overwrite", help="Redo slides that already have a cell table.")


@app.command("detect")
def detect(
    inputs: Path = _INPUTS,
    out: Path = _OUT,
    slide_mpp: float = _SLIDE_MPP,
    mpp: float = _MPP,
    radius_min: float = typer.Option(3.0, "--radius-min", help="Smallest nuclear radius, µm."),
    radius_max: float = typer.Option(7.0, "--radius-max", help="Largest nuclear radius, µm."),
    threshold: float = typer.Option(0.1, "--threshold", help="LoG response threshold (haematoxylin OD)."),
    scheduler: str = _SCHED,
    workers: int = _WORKERS,
    overwrite: bool = _OVERWRITE,
) -> None:
    """Nucleus centres by LoG blob detection on the haematoxylin channel (cell tables of points)."""
    _run(inputs, out, method="log", model=None, slide_mpp=slide_mpp, mpp=mpp, scheduler=scheduler, workers=workers,
         overwrite=overwrite, geojson=False,
         options={"radius_um": (radius_min, radius_max), "threshold": threshold})


@app.command("segment")
def segment(
    inputs: Path = _INPUTS,
    out: Path = _OUT,
    method: str = typer.Option("watershed", "--method", help="watershed | unet"),
    model: Path = typer.Option(None, "--model", help="U-Net run folder (for --method unet)."),
    slide_mpp: float = _SLIDE_MPP,
    mpp: float = _MPP,
    geojson: bool = typer.Option(True, "--geojson/--no-geojson", help="Also write QuPath GeoJSON outlines."),
    scheduler: str = _SCHED,
    workers: int = _WORKERS,
    overwrite: bool = _OVERWRITE,
) -> None:
    """Nucleus outlines and morphometrics (watershed or U-Net) -> cell tables + QuPath GeoJSON."""
    from histolatent.errors import InputError

    if method not in ("watershed", "unet"):
        raise InputError(f"--method: expected watershed or unet, got {method!r}")
    if method == "unet" and model is None:
        raise InputError("--model RUN is required with --method unet (train one: histolatent nuclei train)")
    _run(inputs, out, method=method, model=model, slide_mpp=slide_mpp, mpp=mpp, scheduler=scheduler,
         workers=workers, overwrite=overwrite, geojson=geojson, options={})


@app.command("patches")
def patches(
    cells: Path = typer.Argument(..., help="A cell table (.parquet)."),
    slides: Path = typer.Option(..., "--slides", help="The slide file, or a folder holding <slide_id>.* files."),
    out: Path = typer.Option(..., "--out", help="Output zarr patch store."),
    preset: str = typer.Option("se2n-vae", "--preset", help="se2n-vae (68 px @ 0.25) | infogan-40 (40 px @ 0.5)."),
    size: int = typer.Option(None, "--size", help="Patch side, px (overrides the preset)."),
    patch_mpp: float = typer.Option(None, "--patch-mpp", help="Patch resolution, µm/px (overrides the preset)."),
    edge: str = typer.Option("pad", "--edge", help="pad | reflect | skip"),
    mask: bool = typer.Option(False, "--mask", help="Add the nucleus mask as a 4th channel."),
    slide_mpp: float = _SLIDE_MPP,
    overwrite: bool = _OVERWRITE,
) -> None:
    """Nucleus-centred patches of a cell table, written to a zarr store."""
    from histolatent.errors import InputError
    from histolatent.io.tables import read_cell_table
    from histolatent.nuclei.cohort import list_inputs
    from histolatent.nuclei.patches import NucleusPatchDataset, patch_spec, write_patch_store
    from histolatent.nuclei.pipeline import default_slide_id

    table = read_cell_table(cells)
    ids = sorted(set(table["slide_id"].astype(str)))
    if slides.is_dir():
        found = {default_slide_id(p): p for p in list_inputs(slides)}
        missing = [i for i in ids if i not in found]
        if missing:
            raise InputError(f"--slides {str(slides)!r}: no file for slide_id(s) {missing[:5]}")
        sources = {i: found[i] for i in ids}
    else:
        if len(ids) != 1:
            raise InputError(f"--slides: one file given but the table holds {len(ids)} slides; give a folder")
        sources = {ids[0]: slides}
    ds = NucleusPatchDataset(table, sources, patch_spec(preset, size_px=size, mpp=patch_mpp), edge=edge, mask=mask,
                             mpp=slide_mpp)
    path = write_patch_store(ds, out, overwrite=overwrite, progress=True)
    typer.echo(f"{len(ds)} patches -> {path}")


@app.command("train")
def train(
    config: Path = typer.Argument(_DEFAULT_CONFIG, help="Run config (default configs/unet-nuclei.yaml)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set train.steps=2000 (repeatable)."),
    out: Path = typer.Option(None, "--out", help="Run folder (default runs/unet-<time>)."),
    resume: Path = typer.Option(None, "--resume", help="Continue a run folder from its last checkpoint."),
    threads: int = typer.Option(None, "--threads", help="Torch CPU threads (1 is fastest on a busy shared CPU)."),
) -> None:
    """Train the nuclei U-Net through the engine (SynthPath tiles, or your annotations via data.name=nuclei-folder)."""
    from histolatent.train import fit

    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))

    run = fit(config, overrides=list(set_), out=out, resume=resume)
    typer.echo(f"run: {run}")


@app.command("evaluate")
def evaluate(
    method: str = typer.Argument(..., help="log | watershed | unet"),
    model: Path = typer.Option(None, "--model", help="U-Net run folder (for unet)."),
    tiles: int = typer.Option(20, "--tiles", help="Held-out SynthPath tiles per stain."),
    size: int = typer.Option(256, "--size", help="Tile side, px."),
    tile_mpp: float = typer.Option(0.5, "--tile-mpp", help="Tile resolution, µm/px."),
    stain: list[int] = typer.Option([0], "--stain", help="Stain site ids (0 = reference; repeatable)."),
    annotations: Path = typer.Option(None, "--annotations", help="Score on an annotated folder instead "
                                     "(images/ + annotations/ or labels/)."),
    annotations_mpp: float = typer.Option(0.25, "--annotations-mpp", help="µm/px of the annotated images."),
    match_um: float = typer.Option(4.0, "--match-um", help="Detection match distance, µm."),
) -> None:
    """Score a nucleus finder on held-out SynthPath tiles (or your annotations); prints JSON."""
    from histolatent.nuclei.evaluate import evaluate_method, heldout_tiles

    result = {}
    if annotations is not None:
        from histolatent.io.annotations import read_annotated_folder

        pairs = [(rgb, lab) for _, rgb, lab in read_annotated_folder(annotations)]
        _, result["annotations"] = evaluate_method(pairs, mpp=annotations_mpp, method=method, model=model,
                                                   match_um=match_um)
    else:
        for s in stain:
            ts = heldout_tiles(tiles, size_px=size, mpp=tile_mpp, stain=s)
            _, result[f"stain_{s}"] = evaluate_method([(t.rgb, t.instances) for t in ts], mpp=tile_mpp,
                                                      method=method, model=model, match_um=match_um)
    typer.echo(json.dumps(result, indent=2))
