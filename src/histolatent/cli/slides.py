"""``histolatent slides ...``: slide-level models on compressed slides (NIC part 2).

``train`` fits a slide model (``slide-cnn``, ``attention-mil``) on grid crops with slide
labels, ``predict`` applies a trained one to grids (T crops x 8 dihedral views per slide),
``cv`` runs the paper's cross-validation, ``heatmap`` draws Grad-CAM of a grid. Each parses
and makes one API call; a new command of the group is one more ``@app.command`` here.
"""

from __future__ import annotations

from pathlib import Path

import typer

from histolatent.cli._parse import comma_list

app = typer.Typer(help="Slide-level learning on compressed slides: train, predict, cross-validate.",
                  no_args_is_help=True)

_SET = typer.Option([], "--set", help="Override a config key: --set train.steps=200 (repeatable).")
_CROPS = typer.Option(10, "--crops", help="T: test crops per slide, spread over the tissue.")
_DIHEDRAL = typer.Option(True, "--dihedral/--no-dihedral", help="Average over the 8 flips / quarter turns too.")


@app.command("train")
def train(config: Path = typer.Argument(None, help="Run config (YAML): a slide model on grid-crops data."),
          set_: list[str] = _SET,
          out: Path = typer.Option(None, "--out", help="Run folder (default runs/<model>-<time>)."),
          resume: Path = typer.Option(None, "--resume", help="Continue a run folder from its last checkpoint.")
          ) -> None:
    """Train a slide-level model (slide-cnn, attention-mil) on grid crops with slide labels."""
    from histolatent.downstream.slide_cv import train_slide_model

    typer.echo(f"run: {train_slide_model(config, out=out, overrides=list(set_), resume=resume)}")


@app.command("predict")
def predict(run: Path = typer.Argument(..., help="A trained slide model's run folder."),
            grids: list[Path] = typer.Argument(..., help="Grid stores (*.zarr) and/or folders of them."),
            out: Path = typer.Option(None, "--out", help="Write the table here (.parquet or .csv)."),
            labels: Path = typer.Option(None, "--labels", help="Label table (slide_id,label): adds a label column."),
            crops: int = _CROPS, dihedral: bool = _DIHEDRAL,
            seed: int = typer.Option(0, "--seed", help="Seed of the crop centres."),
            crop: int = typer.Option(None, "--crop", help="Crop side in cells (default: the run's data.crop)."),
            batch_size: int = typer.Option(16, "--batch-size", help="Crops per forward pass.")) -> None:
    """Predict slides from their grids: the model's mean over T crops x 8 dihedral views."""
    from histolatent.cli._show import print_table
    from histolatent.embed.slides import predict_grids

    table = predict_grids(run, grids, out=out, labels=labels, crops=crops, dihedral=dihedral, seed=seed, crop=crop,
                          batch_size=batch_size)
    cols = [c for c in ("slide_id", "prediction", "std", "views", "label") if c in table.columns]
    print_table(table[cols].round(4).values.tolist(), cols, title=f"{len(table)} slides" +
                (f" -> {out}" if out else ""))


@app.command("cv")
def cv(config: Path = typer.Argument(..., help="Run config (YAML): a slide model on grid-crops data."),
       out: Path = typer.Option(..., "--out", help="Folder for the runs, predictions and summary."),
       folds: int = typer.Option(4, "--folds", help="Partitions: each round tests one, validates on the next."),
       seeds: str = typer.Option("0", "--seeds", help="Training seeds, comma-separated (e.g. 0,1)."),
       partition_seed: int = typer.Option(0, "--partition-seed", help="Seed of the stratified partitions."),
       crops: int = _CROPS, dihedral: bool = _DIHEDRAL, set_: list[str] = _SET) -> None:
    """Cross-validate a slide model as NIC does: AUC or Spearman over all held-out slides, per seed."""
    from histolatent.downstream.slide_cv import cross_validate_slides
    from histolatent.errors import InputError

    try:
        seed_list = [int(s) for s in comma_list(seeds)]
    except ValueError:
        raise InputError(f"--seeds: expected comma-separated integers, got {seeds!r}") from None
    result = cross_validate_slides(config, out=out, folds=folds, seeds=seed_list, partition_seed=partition_seed,
                                   crops=crops, dihedral=dihedral, overrides=list(set_))
    s = result.summary
    typer.echo(f"{s['model']}: {s['metric']} {s['mean']:.4f} ± {s['sd']:.4f} over seeds {s['seeds']} "
               f"(per fold {s['fold_mean']:.4f} ± {s['fold_sd']:.4f}); tables in {result.out}")


@app.command("heatmap")
def heatmap(run: Path = typer.Argument(..., help="A trained slide-cnn's run folder."),
            grid: Path = typer.Argument(..., help="The slide's grid store (*.zarr)."),
            out: Path = typer.Option(..., "--out", help="Folder for <slide>.heatmap.zarr, .geojson and .png."),
            slide: Path = typer.Option(None, "--slide", help="The slide file, for the PNG's thumbnail."),
            threshold: float = typer.Option(0.5, "--threshold", help="Regions: heatmap >= this (0..1 over tissue)."),
            postprocess: bool = typer.Option(True, "--postprocess/--raw", help="Denoise and drop small regions."),
            window: int = typer.Option(256, "--window", help="Grad-CAM window (cells): memory follows it."),
            overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs.")) -> None:
    """Grad-CAM of a slide grid at grid resolution: a heatmap store, QuPath GeoJSON and a PNG overlay."""
    from histolatent.viz.heatmap import render_heatmap_slide

    paths = render_heatmap_slide(run, grid, out, slide=slide, threshold=threshold, postprocess=postprocess,
                                 window=window, overwrite=overwrite)
    typer.echo(f"heatmap: {paths.store}\nregions: {paths.geojson}\nfigure:  {paths.png}")
