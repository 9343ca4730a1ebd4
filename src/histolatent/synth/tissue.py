"""Tissue layout of a SynthPath world: compartments, fibres and where nuclei sit.

A world is defined on an infinite plane in µm. Its compartments are thresholded fractal
noise fields (:mod:`histolatent.synth.noise`), evaluated identically on pixel grids and at
nucleus centres:

- **stroma**: eosin collagen in wavy, oriented bundles (a warped phase field), with pale
  clefts; spindle fibroblasts aligned with the local fibre direction;
- **epithelial nests / glands**: cytoplasm (pale eosin + a little haematoxylin) packed with
  epithelial nuclei; a fraction of nests are glands with a central lumen;
- **lymphocyte aggregates**: dense sheets of small dark round nuclei;
- **fat**: adipocytes, white polygons with thin eosin membranes;
- on slides, **glass** outside the tissue section and a **lesion** (tumour) region whose
  tissue follows another :class:`TissueSpec` (higher grade, more epithelium).

Nuclei are drawn from one jittered lattice per nucleus type (a rotated grid with a spacing
matched to the type's size), each lattice site kept with a probability given by the local
compartment; every random number of a site is a hash of ``(seed, layer, site)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from histolatent.errors import InputError
from histolatent.synth.noise import (
    Grid,
    Points,
    fbm,
    hash_uniform,
    ramp,
    seed32,
    threshold_for_fraction,
)

#: Tissue compartment codes of the region map.
REGIONS = {"glass": 0, "stroma": 1, "epithelium": 2, "lumen": 3, "lymphoid": 4, "fat": 5}

#: Pleomorphism (0..1) per grade (0 = normal/benign epithelium, 1–3 = tumour grade).
GRADE_PLEOMORPHISM = {0: 0.0, 1: 0.15, 2: 0.5, 3: 1.0}
#: Probability that an epithelial nucleus is a mitotic figure, per grade (proliferation).
GRADE_MITOSIS = {0: 0.0, 1: 0.004, 2: 0.012, 3: 0.035}


@dataclass(frozen=True)
class TissueSpec:
    """Composition of a tissue (area fractions are approximate, over large areas).

    Parameters
    ----------
    epithelium : float
        Area fraction of epithelial nests (glands included).
    glands : float
        Fraction of nests formed as glands with a lumen.
    lymphoid : float
        Area fraction of lymphocyte aggregates.
    fat : float
        Area fraction of adipose tissue.
    grade : int
        0 = normal epithelium, 1–3 = tumour grade (sets pleomorphism and mitoses).
    pleomorphism : float or None
        Override of the grade's pleomorphism (0..1): widens epithelial size, shape and
        intensity spread, coarsens chromatin, enlarges nucleoli.
    mitosis_fraction : float or None
        Override of the grade's fraction of epithelial nuclei in mitosis.
    nest_um : float
        Spatial scale of nests (µm).
    epithelial_density, stroma_lymphocytes, fibroblast_density : float
        Probability that a lattice site of that nucleus layer holds a nucleus in its
        compartment (epithelium, stroma, stroma).
    fibre_um : float
        Period of stromal collagen bundles (µm).
    """

    epithelium: float = 0.35
    glands: float = 0.35
    lymphoid: float = 0.06
    fat: float = 0.06
    grade: int = 2
    pleomorphism: float | None = None
    mitosis_fraction: float | None = None
    nest_um: float = 170.0
    epithelial_density: float = 0.92
    stroma_lymphocytes: float = 0.05
    fibroblast_density: float = 0.6
    fibre_um: float = 9.0

    def __post_init__(self) -> None:
        for name in ("epithelium", "glands", "lymphoid", "fat", "epithelial_density",
                     "stroma_lymphocytes", "fibroblast_density"):
            v = getattr(self, name)
            if not (0.0 <= float(v) <= 1.0):
                raise InputError(f"tissue.{name}: expected a fraction in [0, 1], got {v}")
        if self.grade not in GRADE_PLEOMORPHISM:
            raise InputError(f"tissue.grade: expected 0, 1, 2 or 3, got {self.grade}")
        if self.pleomorphism is not None and not (0.0 <= self.pleomorphism <= 1.0):
            raise InputError(f"tissue.pleomorphism: expected 0..1, got {self.pleomorphism}")
        if self.mitosis_fraction is not None and not (0.0 <= self.mitosis_fraction <= 0.5):
            raise InputError(f"tissue.mitosis_fraction: expected 0..0.5, got {self.mitosis_fraction}")
        if not (20.0 <= self.nest_um <= 5000.0):
            raise InputError(f"tissue.nest_um: expected 20..5000 µm, got {self.nest_um}")
        if not (3.0 <= self.fibre_um <= 100.0):
            raise InputError(f"tissue.fibre_um: expected 3..100 µm, got {self.fibre_um}")

    @property
    def pleo(self) -> float:
        return GRADE_PLEOMORPHISM[self.grade] if self.pleomorphism is None else float(self.pleomorphism)

    @property
    def mitosis(self) -> float:
        return GRADE_MITOSIS[self.grade] if self.mitosis_fraction is None else float(self.mitosis_fraction)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Named tissue presets.
PRESETS: dict[str, TissueSpec] = {
    "breast": TissueSpec(),
    "tumour": TissueSpec(epithelium=0.62, glands=0.15, lymphoid=0.05, fat=0.0, grade=2, nest_um=220.0),
    "normal": TissueSpec(epithelium=0.18, glands=0.85, lymphoid=0.03, fat=0.15, grade=0, nest_um=120.0),
    "stroma": TissueSpec(epithelium=0.0, lymphoid=0.02, fat=0.04),
    "lymphoid": TissueSpec(epithelium=0.05, lymphoid=0.75, fat=0.0, nest_um=120.0),
    "fat": TissueSpec(epithelium=0.03, lymphoid=0.0, fat=0.75),
}


def as_tissue(tissue: TissueSpec | str | dict | None, *, name: str = "tissue") -> TissueSpec:
    """A :class:`TissueSpec` from a spec, a preset name, a dict (optionally with ``preset``), or None."""
    if tissue is None:
        return PRESETS["breast"]
    if isinstance(tissue, TissueSpec):
        return tissue
    if isinstance(tissue, str):
        if tissue not in PRESETS:
            raise InputError(f"{name}: unknown preset {tissue!r}; known: {', '.join(sorted(PRESETS))}")
        return PRESETS[tissue]
    if isinstance(tissue, dict):
        opts = dict(tissue)
        base = as_tissue(opts.pop("preset", None), name=name)
        try:
            return replace(base, **opts)
        except TypeError as err:
            raise InputError(f"{name}: {err}") from None
    raise InputError(f"{name}: expected a TissueSpec, a preset name or a dict, got {type(tissue).__name__}")


@dataclass(frozen=True)
class Blob:
    """A smooth closed region (tissue section, lesion): an ellipse with a wavy, rough edge.

    Parameters
    ----------
    x_um, y_um : float
        Centre (µm, slide coordinates).
    rx_um, ry_um : float
        Semi-axes (µm).
    angle : float
        Rotation of the first axis, radians (counter-clockwise as displayed).
    waviness : float
        Relative amplitude of low Fourier modes of the edge.
    roughness : float
        Relative amplitude of fractal noise on the edge.
    key : int
        Random key for the edge shape.
    edge_um : float
        Width of the soft transition (µm).
    """

    x_um: float
    y_um: float
    rx_um: float
    ry_um: float
    angle: float = 0.0
    waviness: float = 0.12
    roughness: float = 0.06
    key: int = 0
    edge_um: float = 20.0

    def membership(self, where: Grid | Points) -> np.ndarray:
        """Soft membership in [0, 1] (1 inside) at a grid or at points."""
        if isinstance(where, Grid):
            x = where.xs[None, :].astype(np.float64)
            y = where.ys[:, None].astype(np.float64)
        else:
            x, y = np.asarray(where.x, np.float64), np.asarray(where.y, np.float64)
        dx, dy = x - self.x_um, y - self.y_um
        c, s = np.cos(self.angle), np.sin(self.angle)
        u = dx * c - dy * s
        v = -dx * s - dy * c
        phi = np.arctan2(v / self.ry_um, u / self.rx_um)
        rho = np.hypot(u / self.rx_um, v / self.ry_um)
        rng = np.random.default_rng(seed32(self.key, 0xB10B))
        edge = np.ones_like(phi)
        for k in range(2, 7):
            edge = edge + self.waviness / k * rng.normal() * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
        scale = min(self.rx_um, self.ry_um)
        rough = fbm(seed32(self.key, 0xED6E), where, max(scale / 3.0, 20.0), octaves=3)
        edge = edge + self.roughness * rough * 2.0
        dist_um = (edge - rho) * scale  # > 0 inside
        out = np.clip(dist_um / self.edge_um + 0.5, 0.0, 1.0)
        return out.astype(np.float32) if isinstance(where, Grid) else out


@dataclass(frozen=True)
class World:
    """Everything that defines a SynthPath tissue, on an infinite plane in µm.

    ``tissue`` applies everywhere except inside ``lesion``, where ``lesion_tissue`` does;
    outside ``section`` there is glass. Rendering a region of a world is a pure function of
    the world and the region.
    """

    seed: int
    tissue: TissueSpec = field(default_factory=TissueSpec)
    lesion: Blob | None = None
    lesion_tissue: TissueSpec | None = None
    section: Blob | None = None

    def key(self, *tags: int) -> int:
        return seed32(self.seed, *tags)

    @property
    def specs(self) -> list[TissueSpec]:
        out = [self.tissue]
        if self.lesion is not None:
            out.append(self.lesion_tissue or PRESETS["tumour"])
        return out

    @property
    def fibre_angle(self) -> float:
        return float(hash_uniform(self.key(7), np.int64(0))) * np.pi


# field keys
_K_FAT, _K_LYM, _K_NEST, _K_GLAND, _K_WARP, _K_WARP2 = 11, 12, 13, 14, 15, 16


def _lerp(a: float, b: float, t: np.ndarray | float) -> np.ndarray | float:
    return a + (b - a) * t if a != b else a


def raw_fields(world: World, where: Grid | Points) -> dict[str, np.ndarray]:
    """Smooth (un-thresholded) fields: noise levels, fibre phase, lesion and section membership."""
    specs = world.specs
    nest_um = specs[0].nest_um
    out: dict[str, np.ndarray] = {
        "fat": fbm(world.key(_K_FAT), where, 320.0, octaves=3),
        "lym": fbm(world.key(_K_LYM), where, 130.0, octaves=3),
        "nest": fbm(world.key(_K_NEST), where, nest_um, octaves=3),
        "gland": fbm(world.key(_K_GLAND), where, 2.5 * nest_um, octaves=2),
    }
    if len(specs) > 1 and specs[1].nest_um != nest_um:
        out["nest2"] = fbm(world.key(_K_NEST, 2), where, specs[1].nest_um, octaves=3)
    out["phase"] = fibre_phase(world, where)
    if isinstance(where, Grid):  # texture fields are only needed for pixels
        out["fibre_noise"] = fbm(world.key(17), where, 16.0, octaves=2)
        out["loose"] = fbm(world.key(18), where, 90.0, octaves=2)
        out["thickness"] = fbm(world.key(19), where, 70.0, octaves=3)  # section thickness / uptake
        out["h_uptake"] = fbm(world.key(20), where, 220.0, octaves=2)
        out["cyto"] = fbm(world.key(21), where, 9.0, octaves=2)
    if world.lesion is not None:
        out["lesion"] = world.lesion.membership(where)
    if world.section is not None:
        out["section"] = world.section.membership(where)
    return out


def memberships(world: World, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Compartment memberships in [0, 1] from raw fields (same shapes).

    Priority: glass, then fat, lymphoid, epithelium (nest minus lumen), then stroma.
    """
    specs = world.specs
    lesion = raw.get("lesion", 0.0)
    if len(specs) == 1:
        lesion = 0.0
    t_fat = _lerp(threshold_for_fraction(specs[0].fat), threshold_for_fraction(specs[-1].fat), lesion)
    t_lym = _lerp(threshold_for_fraction(specs[0].lymphoid), threshold_for_fraction(specs[-1].lymphoid), lesion)
    t_nest0 = threshold_for_fraction(specs[0].epithelium)
    t_nest1 = threshold_for_fraction(specs[-1].epithelium)
    t_gland = _lerp(threshold_for_fraction(specs[0].glands, 2), threshold_for_fraction(specs[-1].glands, 2), lesion)
    section = raw.get("section", 1.0)
    fat = ramp(raw["fat"], t_fat, 0.006) * section
    lym = ramp(raw["lym"], t_lym, 0.03) * (section - fat)
    free = section - fat - lym
    nest_v = raw["nest"]
    if "nest2" in raw:
        nest_v = raw["nest"] * (1.0 - lesion) + raw["nest2"] * lesion
    t_nest = _lerp(t_nest0, t_nest1, lesion)
    nest = ramp(nest_v, t_nest, 0.012)
    gland = ramp(raw["gland"], t_gland, 0.04)
    lumen = ramp(nest_v, t_nest + 0.075, 0.012) * gland
    nest = nest * free
    lumen = lumen * free
    epi = nest - lumen
    stroma = free - nest
    return {"section": section if isinstance(section, np.ndarray) else np.float32(section), "fat": fat,
            "lymphoid": lym, "epithelium": epi, "lumen": lumen, "stroma": stroma, "nest_level": nest_v - t_nest,
            "lesion": lesion, "gland": gland}


def region_map(m: dict[str, np.ndarray]) -> np.ndarray:
    """uint8 compartment codes (:data:`REGIONS`) of the dominant compartment per pixel.

    Memberships sum to the section membership, so at most one exceeds 0.5.
    """
    out = np.ones(m["stroma"].shape, dtype=np.uint8)
    for name in ("epithelium", "lumen", "lymphoid", "fat"):
        code = REGIONS[name] - 1
        out += (m[name] > 0.5).view(np.uint8) * np.uint8(code)
    section = m["section"]
    if np.ndim(section):
        out *= (section >= 0.5).view(np.uint8)
    elif float(section) < 0.5:
        out[:] = 0
    return out


def gland_masks(regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gland instances and lumen of a region map (:func:`region_map`).

    A gland is a connected epithelial nest (epithelium and lumen, 4-connected) that holds a
    lumen, as the GLaS annotations outline glands; solid nests are not glands. Returns
    ``(instances (H, W) int32, 0 = none, glands numbered 1.. in raster order of their first
    pixel; lumen (H, W) bool)``.

    >>> reg = np.ones((5, 7), np.uint8); reg[1:4, 1:4] = 2; reg[2, 2] = 3; reg[1:4, 5] = 2
    >>> inst, lumen = gland_masks(reg)
    >>> int(inst.max()), int((inst == 1).sum()), int(lumen.sum())
    (1, 9, 1)
    """
    import cv2

    lumen = regions == REGIONS["lumen"]
    nest = (regions == REGIONS["epithelium"]) | lumen
    n, lab = cv2.connectedComponents(nest.view(np.uint8), connectivity=4)
    has_lumen = np.zeros(n, bool)
    has_lumen[np.unique(lab[lumen])] = True
    has_lumen[0] = False
    ids = np.zeros(n, np.int32)
    ids[has_lumen] = np.arange(1, int(has_lumen.sum()) + 1, dtype=np.int32)
    return ids[lab], lumen


# ----------------------------------------------------------------------------- nuclei layers

#: Nucleus type names and ids (0 = background in type maps).
TYPES = ("epithelial", "lymphocyte", "fibroblast", "mitosis")
TYPE_IDS = {name: i + 1 for i, name in enumerate(TYPES)}


@dataclass(frozen=True)
class Layer:
    """One jittered lattice of nucleus sites: ``kind`` in epithelial/lymphocyte/fibroblast."""

    kind: str
    spacing_um: float
    jitter: float
    spec_index: int  # which TissueSpec of the world (0 = tissue, 1 = lesion)
    priority: int


def layers(world: World) -> list[Layer]:
    out = []
    for si, spec in enumerate(world.specs):
        # epithelial cells pack at roughly one nuclear length plus a rim of cytoplasm
        a_mean = 4.6 if spec.grade == 0 else 5.8 + 1.2 * spec.pleo
        out.append(Layer("epithelial", 2.0 * a_mean * 0.86 + 2.5, 0.45, si, 0 + 10 * si))
        out.append(Layer("lymphocyte", 8.6, 0.55, si, 1 + 10 * si))
        out.append(Layer("fibroblast", 17.0, 0.8, si, 2 + 10 * si))
    return out


def layer_sites(world: World, layer: Layer, x0: float, y0: float, x1: float, y1: float) -> dict[str, np.ndarray]:
    """Lattice sites of ``layer`` whose jittered position lies in [x0, x1) x [y0, y1) µm.

    Returns ``x``, ``y`` (µm), ``ix``, ``iy`` (lattice indices) and ``key`` (the layer's key).
    """
    key, ang = layer_angle(world, layer)  # per-layer lattice rotation
    c, s = np.cos(ang), np.sin(ang)
    # bounding box of the window in lattice coordinates (rotation by -ang)
    cx = np.array([x0, x1, x0, x1])
    cy = np.array([y0, y0, y1, y1])
    lu = (cx * c + cy * s) / layer.spacing_um
    lv = (-cx * s + cy * c) / layer.spacing_um
    iu = np.arange(int(np.floor(lu.min())) - 1, int(np.ceil(lu.max())) + 1)
    iv = np.arange(int(np.floor(lv.min())) - 1, int(np.ceil(lv.max())) + 1)
    IU, IV = np.meshgrid(iu, iv)
    IU, IV = IU.ravel(), IV.ravel()
    ju = hash_uniform(key, IU, IV, 0) - 0.5
    jv = hash_uniform(key, IU, IV, 1) - 0.5
    pu = (IU + 0.5 + layer.jitter * ju) * layer.spacing_um
    pv = (IV + 0.5 + layer.jitter * jv) * layer.spacing_um
    x = pu * c - pv * s
    y = pu * s + pv * c
    keep = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    return {"x": x[keep], "y": y[keep], "ix": IU[keep], "iy": IV[keep], "key": key}


def fibre_direction(world: World, x: np.ndarray, y: np.ndarray, h: float = 0.5) -> np.ndarray:
    """Local collagen fibre direction at points (radians, counter-clockwise as displayed, mod pi)."""
    def phase(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        return fibre_phase(world, Points(px, py))

    gx = (phase(x + h, y) - phase(x - h, y)) / (2 * h)
    gy = (phase(x, y + h) - phase(x, y - h)) / (2 * h)
    # fibres run along level sets: direction perpendicular to the gradient, (gy, -gx) in
    # pixel coordinates (y down) -> displayed angle atan2(gx, gy)
    return np.mod(np.arctan2(gx, gy), np.pi)


def fibre_phase(world: World, where: Grid | Points) -> np.ndarray:
    """Collagen bundle phase: distance across bundles in periods, warped into wavy bundles."""
    fibre_um = world.specs[0].fibre_um
    beta = world.fibre_angle
    if isinstance(where, Grid):
        x, y = where.xs[None, :], where.ys[:, None]
    else:
        x, y = np.asarray(where.x), np.asarray(where.y)
    base = (x * (-np.sin(beta)) + y * np.cos(beta)) / fibre_um
    warp = fbm(world.key(_K_WARP), where, 110.0, octaves=2) * (70.0 / fibre_um)
    warp2 = fbm(world.key(_K_WARP2), where, 30.0, octaves=2) * (4.0 / fibre_um)
    out = base + warp + warp2
    return out.astype(np.float32) if isinstance(where, Grid) else out


def nest_gradient_angle(world: World, x: np.ndarray, y: np.ndarray, h: float = 1.0) -> np.ndarray:
    """Displayed angle of the gradient of the nest field (points into the nest/lumen)."""
    key = world.key(_K_NEST)
    um = world.specs[0].nest_um

    def f(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        return fbm(key, Points(px, py), um, octaves=3)

    gx = f(x + h, y) - f(x - h, y)
    gy = f(x, y + h) - f(x, y - h)
    return np.arctan2(-gy, gx)


def voronoi_edge_um(key: int, spacing_um: float, jitter: float, angle: float, grid: Grid) -> np.ndarray:
    """Distance (µm) to the Voronoi edges of a jittered lattice, on ``grid``.

    Half the gap between the nearest and second-nearest site; the lattice is the one of
    :func:`layer_sites` for the same key, spacing, jitter and angle (so epithelial cell
    borders surround the epithelial nuclei).
    """
    c, s = np.cos(angle), np.sin(angle)
    x = grid.xs[None, :].astype(np.float32)
    y = grid.ys[:, None].astype(np.float32)
    lu = (x * np.float32(c / spacing_um) + y * np.float32(s / spacing_um))
    lv = (-x * np.float32(s / spacing_um) + y * np.float32(c / spacing_um))
    iu = np.floor(lu).astype(np.int64)
    iv = np.floor(lv).astype(np.int64)
    u0, v0 = int(iu.min()) - 1, int(iv.min()) - 1
    tu = np.arange(u0, int(iu.max()) + 2)
    tv = np.arange(v0, int(iv.max()) + 2)
    nu = len(tu)
    su = (tu[None, :] + 0.5 + jitter * (hash_uniform(key, tu[None, :], tv[:, None], 0) - 0.5)).astype(np.float32).ravel()
    sv = (tv[:, None] + 0.5 + jitter * (hash_uniform(key, tu[None, :], tv[:, None], 1) - 0.5)).astype(np.float32).ravel()
    base = (iv - v0) * nu + (iu - u0)  # flat index of each point's own cell
    d1 = np.full(lu.shape, np.inf, dtype=np.float32)
    d2 = d1.copy()
    for dv in (-1, 0, 1):
        for du in (-1, 0, 1):
            idx = base + (dv * nu + du)
            d = np.hypot(su.take(idx) - lu, sv.take(idx) - lv)
            np.minimum(d2, np.maximum(d1, d), out=d2)
            np.minimum(d1, d, out=d1)
    return ((d2 - d1) * 0.5 * spacing_um).astype(np.float32)


def layer_angle(world: World, layer: Layer) -> tuple[int, float]:
    """Key and rotation (radians) of a layer's lattice, as used by :func:`layer_sites`."""
    key = world.key(101, layer.priority)
    return key, float(hash_uniform(key, np.int64(7))) * np.pi / 2
