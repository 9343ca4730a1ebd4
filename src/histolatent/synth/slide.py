"""Whole-slide images with a tumour lesion of controllable size and place.

A slide is a tissue section (a large irregular blob of normal breast-like tissue: stroma,
fat, normal ducts, lymphocytes) on glass, optionally with a lesion (tumour of grade 1–3)
inside it. :func:`write_slide` renders it tile by tile straight into a pyramidal JPEG
TIFF (:func:`histolatent.io.tiff_writer.write_pyramidal_tiff`), so memory does not grow
with the slide's size, and returns the ground truth: slide label (lesion present, grade)
and low-resolution lesion and tissue masks. The slide label task is the one of
papers/nic_neural-image-compression.txt (Camelyon16: metastasis present; TUPAC16: grade).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from histolatent.errors import InputError
from histolatent.io.image import check_mpp
from histolatent.synth.noise import Grid, seed32
from histolatent.synth.render import render_region
from histolatent.synth.stain import Scanner, Stain, as_scanner, as_stain, rgb_from_concentrations
from histolatent.synth.tissue import Blob, TissueSpec, World, as_tissue


@dataclass(frozen=True)
class Lesion:
    """A tumour lesion on a slide.

    Parameters
    ----------
    center : (float, float)
        Centre as fractions (0..1) of the slide's width and height.
    radius_um : float
        Mean radius (µm); the lesion is an irregular ellipse of this equivalent radius.
    grade : int
        Tumour grade 1–3 (pleomorphism, mitoses); the slide's grade label.
    aspect : float
        Ratio of the ellipse's axes (>= 1).
    angle : float
        Orientation of the long axis (radians).
    """

    center: tuple[float, float] = (0.5, 0.5)
    radius_um: float = 1000.0
    grade: int = 2
    aspect: float = 1.3
    angle: float = 0.0

    def __post_init__(self) -> None:
        cx, cy = self.center
        if not (0.0 <= cx <= 1.0 and 0.0 <= cy <= 1.0):
            raise InputError(f"lesion.center: expected fractions in [0, 1], got {self.center}")
        if not (self.radius_um > 0):
            raise InputError(f"lesion.radius_um: expected > 0, got {self.radius_um}")
        if self.grade not in (1, 2, 3):
            raise InputError(f"lesion.grade: expected 1, 2 or 3, got {self.grade}")
        if not (1.0 <= self.aspect <= 5.0):
            raise InputError(f"lesion.aspect: expected 1..5, got {self.aspect}")


def random_lesion(seed: int, size: tuple[int, int], mpp: float, *, p_present: float = 0.5,
                  radius_fraction: tuple[float, float] = (0.05, 0.25)) -> Lesion | None:
    """A lesion drawn from ``seed`` (or None, with probability ``1 - p_present``).

    Its radius is a fraction (uniform in ``radius_fraction``) of the slide's shorter side;
    its centre lies well inside the tissue section.
    """
    rng = np.random.default_rng(seed32(seed, 0x1E5))
    if rng.uniform() >= p_present:
        return None
    short_um = min(size) * mpp
    r = rng.uniform(*radius_fraction) * short_um
    return Lesion(center=(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.65))), radius_um=float(r),
                  grade=int(rng.integers(1, 4)), aspect=float(rng.uniform(1.0, 1.8)),
                  angle=float(rng.uniform(0, np.pi)))


def as_lesion(lesion: Lesion | dict | str | None, seed: int, size: tuple[int, int], mpp: float) -> Lesion | None:
    if lesion is None or lesion is False:
        return None
    if isinstance(lesion, Lesion):
        return lesion
    if lesion == "random":
        return random_lesion(seed, size, mpp)
    if isinstance(lesion, dict):
        opts = dict(lesion)
        if "center" in opts:
            opts["center"] = tuple(opts["center"])
        try:
            return Lesion(**opts)
        except TypeError as err:
            raise InputError(f"lesion: {err}") from None
    raise InputError(f"lesion: expected a Lesion, a dict, 'random' or None, got {lesion!r}")


def slide_world(seed: int, size: tuple[int, int], mpp: float, lesion: Lesion | None,
                tissue: TissueSpec | str | dict | None = "normal") -> World:
    """The world of a slide: a tissue section on glass with an optional lesion."""
    w_um, h_um = size[0] * mpp, size[1] * mpp
    rng = np.random.default_rng(seed32(seed, 0x5EC))
    section = Blob(x_um=w_um / 2, y_um=h_um / 2, rx_um=w_um * rng.uniform(0.38, 0.45),
                   ry_um=h_um * rng.uniform(0.38, 0.45), angle=float(rng.uniform(-0.2, 0.2)),
                   waviness=0.15, roughness=0.05, key=seed32(seed, 1), edge_um=15.0)
    blob = None
    spec_l = None
    if lesion is not None:
        r = lesion.radius_um
        blob = Blob(x_um=lesion.center[0] * w_um, y_um=lesion.center[1] * h_um, rx_um=r * np.sqrt(lesion.aspect),
                    ry_um=r / np.sqrt(lesion.aspect), angle=lesion.angle, waviness=0.18, roughness=0.08,
                    key=seed32(seed, 2), edge_um=max(10.0, 0.02 * r))
        spec_l = TissueSpec(epithelium=0.62, glands=0.12, lymphoid=0.06, fat=0.0, grade=lesion.grade,
                            nest_um=220.0)
    return World(seed=int(seed), tissue=as_tissue(tissue), lesion=blob, lesion_tissue=spec_l, section=section)


@dataclass(frozen=True)
class SlideTruth:
    """Ground truth of a written slide.

    Attributes
    ----------
    path : Path
        The TIFF.
    size : (int, int)
        Level-0 (width, height) px.
    mpp : float
        Level-0 µm per pixel.
    label : int
        1 if a lesion is present, else 0.
    grade : int
        Lesion grade (0 without lesion).
    lesion : dict or None
        The lesion's parameters.
    lesion_mask, tissue_mask : ndarray, (h, w) bool
        At ``mask_mpp`` µm per pixel (pixel (i, j) covers level-0 pixels
        ``[j * f, (j + 1) * f)`` with ``f = mask_mpp / mpp``).
    lesion_fraction : float
        Lesion area / tissue area.
    """

    path: Path
    size: tuple[int, int]
    mpp: float
    label: int
    grade: int
    lesion: dict | None
    lesion_mask: np.ndarray
    tissue_mask: np.ndarray
    mask_mpp: float
    lesion_fraction: float
    seed: int
    stain: dict

    def to_dict(self) -> dict:
        """JSON-ready summary (masks left out)."""
        return {"path": str(self.path), "size": list(self.size), "mpp": self.mpp, "label": self.label,
                "grade": self.grade, "lesion": self.lesion, "mask_mpp": self.mask_mpp,
                "lesion_fraction": self.lesion_fraction, "seed": self.seed, "stain": self.stain}


def slide_masks(world: World, size: tuple[int, int], mpp: float, mask_mpp: float) -> tuple[np.ndarray, np.ndarray]:
    """Lesion and tissue masks (bool) of a slide world at ``mask_mpp``."""
    f = mask_mpp / mpp
    w, h = max(1, int(np.ceil(size[0] / f))), max(1, int(np.ceil(size[1] / f)))
    g = Grid(0.0, 0.0, w, h, mask_mpp)
    tissue = world.section.membership(g) >= 0.5 if world.section is not None else np.ones((h, w), bool)
    lesion = (world.lesion.membership(g) >= 0.5) & tissue if world.lesion is not None else np.zeros((h, w), bool)
    return lesion, tissue


def slide_reader(world: World, mpp: float, stain: Stain, scanner: Scanner) -> Callable[[int, int, int, int], np.ndarray]:
    """``read(x, y, w, h)`` rendering level-0 pixels of a slide world (glass tiles are fast)."""
    bg = np.array(stain.background, dtype=np.float32)

    def read(x: int, y: int, w: int, h: int) -> np.ndarray:
        grid = Grid(x * mpp, y * mpp, w, h, mpp)
        rng = np.random.default_rng(seed32(world.seed, 0x711E, x, y))
        if world.section is not None:
            step = 16
            probe = Grid(grid.x0 - 40.0, grid.y0 - 40.0, w // step + 3 + int(80 / (mpp * step)),
                         h // step + 3 + int(80 / (mpp * step)), mpp * step)
            if float(world.section.membership(probe).max()) <= 0.0:
                img = np.broadcast_to(bg, (h, w, 3)).astype(np.float32)
                if scanner.noise_std > 0:
                    img = img + rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(scanner.noise_std)
                return np.clip(img * np.float32(scanner.brightness) + np.float32(0.5), 0, 255).astype(np.uint8)
        reg = render_region(world, grid)
        return rgb_from_concentrations(reg.concentrations, stain, scanner, mpp=mpp, rng=rng)

    return read


def write_slide(path: str | os.PathLike, size: tuple[int, int] = (8192, 8192), mpp: float = 0.5,
                lesion: Lesion | dict | str | None = "random", seed: int = 0, *, tile_px: int = 512,
                tissue: TissueSpec | str | dict | None = "normal", stain: Stain | int | None = None,
                scanner: Scanner | dict | bool | None = None, quality: int = 90, mask_mpp: float | None = None,
                progress: Callable[[int, int], None] | None = None) -> SlideTruth:
    """Render a whole slide tile by tile into a pyramidal JPEG TIFF and return its ground truth.

    Parameters
    ----------
    path : path-like
        Output ``.tiff`` (written atomically).
    size : (width, height)
        Level-0 size in px (up to 50,000 x 50,000 and beyond: memory stays flat).
    mpp : float
        Level-0 µm per pixel (stored in the TIFF; OpenSlide and tiffslide report it).
    lesion : Lesion, dict, "random" or None
        The tumour lesion: place (``center`` as fractions), size (``radius_um``), grade.
        "random" draws one from ``seed`` (present with probability 0.5).
    seed : int
        Same seed, same bytes.
    tile_px : int
        TIFF tile side (multiple of 16).
    tissue : TissueSpec, str or dict
        Tissue outside the lesion (default "normal": stroma, fat, normal ducts).
    stain : Stain or int
        Stain or site id.
    scanner : Scanner, dict, None or False
        Acquisition effects before JPEG compression.
    quality : int
        JPEG quality of the tiles.
    mask_mpp : float, optional
        Resolution of the returned masks (default: the long side at most 2048 px, >= 8 µm/px).
    progress : callable, optional
        ``progress(done_tiles, total_tiles)``.
    """
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"size: expected (width, height), got {size!r}") from None
    if not (64 <= w <= 1_000_000 and 64 <= h <= 1_000_000):
        raise InputError(f"size: each side must be 64..1,000,000 px, got {(w, h)}")
    mpp = check_mpp(mpp)
    les = as_lesion(lesion, seed, (w, h), mpp)
    st = as_stain(stain)
    sc = as_scanner(scanner)
    world = slide_world(seed, (w, h), mpp, les, tissue)
    if mask_mpp is None:
        mask_mpp = max(8.0, max(w, h) * mpp / 2048.0)
    lesion_mask, tissue_mask = slide_masks(world, (w, h), mpp, float(mask_mpp))
    from histolatent.io.tiff_writer import write_pyramidal_tiff

    desc = f"histolatent SynthPath slide seed={seed} mpp={mpp} label={int(les is not None)}"
    out = write_pyramidal_tiff(path, slide_reader(world, mpp, st, sc), size=(w, h), mpp=mpp, tile_px=tile_px,
                               quality=quality, description=desc, progress=progress)
    frac = float(lesion_mask.sum() / max(tissue_mask.sum(), 1))
    return SlideTruth(path=Path(out), size=(w, h), mpp=mpp, label=int(les is not None),
                      grade=int(les.grade) if les is not None else 0,
                      lesion=asdict(les) if les is not None else None, lesion_mask=lesion_mask,
                      tissue_mask=tissue_mask, mask_mpp=float(mask_mpp), lesion_fraction=frac, seed=int(seed),
                      stain=st.to_dict())


__all__ = ["Lesion", "SlideTruth", "random_lesion", "slide_masks", "slide_reader", "slide_world",
           "write_slide"]
