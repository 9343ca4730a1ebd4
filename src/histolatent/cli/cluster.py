"""``histolatent cluster RUN --cells TABLE``: unsupervised nucleus classes from a trained InfoGAN.

Paper 4 §4.2 (Fig. 7B): every nucleus of a cell table is cropped at the scale the model was
trained on, classified by ``argmax q(c | x)`` and written back into the table (``cluster``,
``cluster_prob``, ``q_c_00`` ..., ``classification``), with a QuPath GeoJSON whose
classification is the cluster.
"""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    run: Path = typer.Argument(..., help="A trained InfoGAN run folder (histolatent train configs/infogan-nuclei.yaml)."),
    cells: Path = typer.Option(..., "--cells", help="Cell table (Parquet) from `histolatent nuclei detect|segment`."),
    out: Path = typer.Option(None, "--out", help="Cell table to write (default: update TABLE in place)."),
    slide: Path = typer.Option(None, "--slide", help="Slide / image of the cells (default: the table's 'source')."),
    slide_mpp: float = typer.Option(None, "--slide-mpp", help="µm/px of a slide without one (default: the table's mpp)."),
    patch_mpp: float = typer.Option(None, "--patch-mpp", help="µm/px of the crops (default: the run's data.mpp)."),
    names: str = typer.Option(None, "--names", help="Comma-separated names of the clusters, e.g. 'epi,lym,fib'."),
    geojson: Path = typer.Option(None, "--geojson", help="QuPath GeoJSON to write (default: OUT with .geojson)."),
    batch_size: int = typer.Option(256, "--batch-size"),
) -> None:
    """Classify every nucleus of a cell table with an InfoGAN's q(c | x); writes the table and a GeoJSON."""
    import numpy as np

    from histolatent.config import load_yaml
    from histolatent.errors import InputError
    from histolatent.io.geojson_export import write_geojson
    from histolatent.io.tables import read_cell_table, write_cell_table
    from histolatent.models.infogan import InfoGAN, classify_images
    from histolatent.nuclei.patches import PatchSpec, extract_patches
    from histolatent.train import load_model

    model = load_model(run)
    if not isinstance(model, InfoGAN):
        raise InputError(f"run {str(run)!r}: holds a {type(model).__name__!r} model, not an InfoGAN")
    table = read_cell_table(cells)
    source = slide or table.attrs.get("histolatent", {}).get("source")
    if source is None:
        raise InputError(f"{cells}: the table names no source slide; pass --slide PATH")
    if not Path(source).exists():
        raise InputError(f"slide {str(source)!r} does not exist (pass --slide PATH)")
    if patch_mpp is None:
        cfg = load_yaml(Path(run) / "config.yaml")
        patch_mpp = (cfg.get("data") or {}).get("mpp")
        if patch_mpp is None:
            raise InputError(f"run {str(run)!r}: its data config has no 'mpp'; pass --patch-mpp")
    if slide_mpp is None and len(table):
        mpps = np.unique(table["mpp"].to_numpy(dtype=np.float64))
        if len(mpps) != 1:
            raise InputError(f"{cells}: cells of several mpp values {mpps.tolist()}; pass --slide-mpp")
        slide_mpp = float(mpps[0])
    k = model.config.n_classes
    labels = [s.strip() for s in names.split(",")] if names else [f"cluster {j}" for j in range(k)]
    if len(labels) != k:
        raise InputError(f"--names: expected {k} names (the model has {k} classes), got {len(labels)}")
    spec = PatchSpec(model.config.image_size, float(patch_mpp))
    patches, kept = extract_patches(str(source), table[["x", "y"]].to_numpy(), spec, edge="reflect", mpp=slide_mpp)
    cls, prob = classify_images(model, patches, batch_size=batch_size)
    result = table.copy()
    result["cluster"] = np.full(len(table), -1, dtype=np.int64)
    result.loc[result.index[kept], "cluster"] = cls.numpy()
    result["cluster_prob"] = np.nan
    result.loc[result.index[kept], "cluster_prob"] = prob.max(1).values.numpy().astype(np.float64)
    for j in range(k):
        result[f"q_c_{j:02d}"] = np.nan
        result.loc[result.index[kept], f"q_c_{j:02d}"] = prob[:, j].numpy().astype(np.float64)
    result["classification"] = [labels[c] if c >= 0 else "unclassified" for c in result["cluster"]]
    dest = out or cells
    meta = {"cluster_run": str(run), "cluster_names": labels, "patch_mpp": float(patch_mpp)}
    write_cell_table(result, dest, metadata=meta)
    gj = geojson or Path(dest).with_suffix(".geojson")
    write_geojson(result, gj, geometry="polygon" if "polygon" in result.columns else "points",
                  classification="classification",
                  measurements=[c for c in ("cluster_prob", "area_um2") if c in result.columns])
    counts = {labels[j]: int((result["cluster"] == j).sum()) for j in range(k)}
    typer.echo(f"{len(result)} cells classified: {counts}")
    typer.echo(f"table: {dest}\ngeojson: {gj}")
