"""Render SynthPath regions: concentrations -> Beer–Lambert -> scanner -> RGB, with ground truth.

:func:`render_tile` is the entry point for one tile; :func:`render_region` renders any
window of a :class:`~histolatent.synth.tissue.World` (slides call it tile by tile);
:func:`rerender` and :func:`stain_pair` give the same tissue under another stain — the
ground truth of stain normalisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import pandas as pd

from histolatent.errors import InputError
from histolatent.io.image import check_mpp
from histolatent.synth.noise import Grid, fine_noise, seed32
from histolatent.synth.nuclei import (
    MAX_RADIUS_UM,
    empty_nuclei,
    extent_um,
    rasterise,
    sample_nuclei,
)
from histolatent.synth.stain import (
    CLEAN,
    Scanner,
    Stain,
    as_scanner,
    as_stain,
    intensity_from_concentrations,
    rgb_from_concentrations,
    site_stain,
)
from histolatent.synth.tissue import (
    TissueSpec,
    World,
    as_tissue,
    gland_masks,
    layer_angle,
    layers,
    memberships,
    raw_fields,
    region_map,
    voronoi_edge_um,
)

_TEXTURE_UM = 0.8  # chromatin / fibril texture lattice
_ADIPOCYTE_UM = 70.0


@dataclass(frozen=True)
class SynthTile:
    """A rendered tile and its ground truth.

    Attributes
    ----------
    rgb : ndarray, (H, W, 3) uint8
        The image as a scanner would deliver it.
    instances : ndarray, (H, W) int32
        Nucleus instance ids (0 = no nucleus); ids match ``nuclei.instance_id``.
    types : ndarray, (H, W) uint8
        Nucleus type ids (0 = none, see :data:`~histolatent.synth.tissue.TYPE_IDS`).
    nuclei : pandas.DataFrame
        One row per visible nucleus: ``instance_id``, ``type``, ``type_id``, ``x``, ``y``
        (centroid of its visible pixels, px), ``x_um``, ``y_um`` (true centre, world µm),
        ``orientation`` (body angle, radians in [0, 2 pi), counter-clockwise as displayed),
        ``axis_angle`` (orientation mod pi), ``major_axis_um``, ``minor_axis_um``,
        ``aspect``, ``area_px``, ``area_um2``, ``truncated``, ``h_mean``, ``nucleolus``,
        ``grade``, ``pleomorphism``, ``in_lesion``, ``gid`` (world-unique id).
    concentrations : ndarray, (H, W, 3) float32
        True stain concentrations (haematoxylin, eosin, residual), decadic OD units.
    stain_matrix : ndarray, (3, 3)
        OD per unit concentration (rows H, E, residual): ``od = concentrations @ stain_matrix``.
    mpp : float
        Microns per pixel.
    regions : ndarray, (H, W) uint8
        Tissue compartment codes (:data:`~histolatent.synth.tissue.REGIONS`).
    stain, scanner : Stain, Scanner
        Rendering parameters (``stain.background`` is I0).
    origin_um : tuple of float
        World coordinates (µm) of the tile's top-left corner.
    world : World
        The tissue definition (seed, specs).
    """

    rgb: np.ndarray
    instances: np.ndarray
    types: np.ndarray
    nuclei: pd.DataFrame
    concentrations: np.ndarray
    stain_matrix: np.ndarray
    mpp: float
    regions: np.ndarray
    stain: Stain
    scanner: Scanner
    origin_um: tuple[float, float]
    world: World

    @property
    def background(self) -> tuple[float, float, float]:
        return self.stain.background

    @property
    def glands(self) -> np.ndarray:
        """Gland instances ``(H, W)`` int32 (nests with a lumen; :func:`~histolatent.synth.tissue.gland_masks`)."""
        return gland_masks(self.regions)[0]

    @property
    def lumen(self) -> np.ndarray:
        """Gland lumen ``(H, W)`` bool."""
        return gland_masks(self.regions)[1]


def _check_size(size_px: Any, name: str = "size_px") -> tuple[int, int]:
    if isinstance(size_px, (int, np.integer)):
        w = h = int(size_px)
    else:
        try:
            w, h = (int(v) for v in size_px)
        except (TypeError, ValueError):
            raise InputError(f"{name}: expected an int or (width, height), got {size_px!r}") from None
    if not (1 <= w <= 16384 and 1 <= h <= 16384):
        raise InputError(f"{name}: each side must be 1..16384 px, got {(w, h)}")
    return w, h


def _upsampled_fields(world: World, grid: Grid) -> dict[str, np.ndarray]:
    """Raw fields evaluated on a ~2 µm grid and bilinearly upsampled to ``grid``.

    The coarse grid is aligned so that each fine pixel gets the value interpolated at its
    own centre (no shift), and includes a one-cell margin, so windows tile seamlessly.
    """
    f = int(max(1, round(2.0 / grid.mpp)))
    if f == 1:
        return raw_fields(world, grid)
    wc = -(-grid.width // f) + 2
    hc = -(-grid.height // f) + 2
    coarse = Grid(grid.x0 - f * grid.mpp, grid.y0 - f * grid.mpp, wc, hc, grid.mpp * f)
    raw = raw_fields(world, coarse)
    out = {}
    for k, v in raw.items():
        # one field per call: OpenCV's single-channel float resize is the fast path
        up = cv2.resize(np.asarray(v, dtype=np.float32), (wc * f, hc * f), interpolation=cv2.INTER_LINEAR)
        out[k] = up[f:f + grid.height, f:f + grid.width]
    return out


def _coarse_grid(grid: Grid) -> tuple[Grid, int]:
    """A ~2 µm grid with a one-cell margin, aligned so that upsampling by ``f`` is exact."""
    f = int(max(1, round(2.0 / grid.mpp)))
    wc = -(-grid.width // f) + 2
    hc = -(-grid.height // f) + 2
    return Grid(grid.x0 - f * grid.mpp, grid.y0 - f * grid.mpp, wc, hc, grid.mpp * f), f


def _upsample(coarse: np.ndarray, grid: Grid, f: int) -> np.ndarray:
    if f == 1:
        return np.ascontiguousarray(coarse[1:-1, 1:-1])
    hc, wc = coarse.shape
    up = cv2.resize(coarse, (wc * f, hc * f), interpolation=cv2.INTER_LINEAR)
    return up[f:f + grid.height, f:f + grid.width]


def _edges(world: World, grid: Grid, key: int, spacing: float, jitter: float, angle: float) -> np.ndarray:
    """Distance (µm) to the walls of a Voronoi lattice (cells), evaluated at ~2 µm and upsampled."""
    cg, f = _coarse_grid(grid)
    return _upsample(voronoi_edge_um(key, spacing, jitter, angle, cg), grid, f)


def tissue_concentrations(world: World, grid: Grid, texture: np.ndarray) -> tuple[list[np.ndarray], dict]:
    """Background concentrations (H, E, residual planes, float32) of the tissue without nuclei.

    Returns the planes and the compartment memberships, with the smooth factors
    ``thickness`` (all stains) and ``h_uptake`` (haematoxylin) that :func:`render_region`
    applies once the nuclei are drawn.
    """
    raw = _upsampled_fields(world, grid)
    m = memberships(world, raw)
    tex = texture
    one = np.float32(1.0)
    f32 = np.float32
    stroma, epi, lym, lumen, fat = m["stroma"], m["epithelium"], m["lymphoid"], m["lumen"], m["fat"]
    # stroma: wavy collagen bundles of irregular width, broken by pale clefts (more in
    # loose stroma), fibrillar texture along them
    n = raw["phase"] * f32(2 * np.pi)
    bundle = np.sin(n) * f32(0.4) + np.sin(n * f32(1.618) + f32(1.3)) * f32(0.25)
    bundle += raw["fibre_noise"] * f32(1.8) + tex * f32(0.25)
    bundle += f32(0.3) - f32(1.6) * np.maximum(raw["loose"], f32(0.0))
    coll = np.clip(bundle * f32(0.85) + f32(0.5), 0.0, 1.0)
    e_str = f32(0.62) * (f32(0.32) + f32(0.68) * coll)
    # cytoplasm: amphophilic, granular, patchy
    gran = one + f32(0.25) * tex + f32(0.6) * raw["cyto"]
    # retraction clefts: white gaps in the stroma along parts of the nests' borders
    cleft = np.clip(one - np.abs(m["nest_level"] + f32(0.011)) * f32(1.0 / 0.006), 0.0, 1.0)
    cleft *= np.clip(raw["loose"] * f32(4.0) + f32(1.0), 0.0, 1.0)
    stroma = stroma * (one - cleft)
    ce = stroma * e_str + epi * (f32(0.42) * gran) + lym * f32(0.2) + lumen * f32(0.04)
    ch = stroma * (f32(0.015) + f32(0.045) * coll) + epi * (f32(0.22) * gran) + lym * f32(0.15) + lumen * f32(0.02)
    if float(np.max(epi)) > 0:
        # epithelial cell borders: Voronoi walls of the epithelial nuclei's lattice
        wall = None
        for layer in layers(world):
            if layer.kind != "epithelial":
                continue
            key, ang = layer_angle(world, layer)
            w = np.clip(one - _edges(world, grid, key, layer.spacing_um, layer.jitter, ang) * f32(1.0 / 0.7), 0, 1)
            if len(world.specs) > 1:
                les = m["lesion"] if layer.spec_index == 1 else one - m["lesion"]
                w = w * les
            wall = w if wall is None else np.maximum(wall, w)
        wall = wall * epi
        ce += f32(0.16) * wall
        ch += f32(0.05) * wall
    if float(np.max(fat)) > 0:
        walls = _edges(world, grid, world.key(0xFA7), _ADIPOCYTE_UM, 0.8, 0.0)
        wall = np.clip(one - walls * f32(1.0 / 0.9), 0.0, 1.0)
        ce += fat * (f32(0.42) * wall)
        ch += fat * (f32(0.03) * wall)
    # section thickness and haematoxylin uptake vary smoothly over the slide; applied by
    # render_region after the nuclei are drawn, to nuclei and background alike
    m["thickness"] = one + f32(0.22) * raw["thickness"]
    m["h_uptake"] = one + f32(0.15) * raw["h_uptake"]
    section = m["section"]
    cr = (f32(0.025) * (one + f32(0.3) * tex)) * (section - fat * f32(0.9))
    if cr.ndim == 0:
        cr = np.full(grid.shape, cr, dtype=np.float32)
    return [np.ascontiguousarray(ch, dtype=np.float32), np.ascontiguousarray(ce, dtype=np.float32),
            np.ascontiguousarray(cr, dtype=np.float32)], m


@dataclass(frozen=True)
class Region:
    """A rendered region's ground truth before the scanner (see :class:`SynthTile`)."""

    concentrations: np.ndarray
    instances: np.ndarray
    types: np.ndarray
    nuclei: pd.DataFrame
    regions: np.ndarray


def render_region(world: World, grid: Grid, *, nuclei: dict[str, np.ndarray] | None = None,
                  with_nuclei: bool = True) -> Region:
    """Concentrations and ground truth of ``grid`` (a window of ``world``).

    Parameters
    ----------
    world : World
        The tissue.
    grid : Grid
        The window: origin (µm), size (px) and mpp.
    nuclei : dict, optional
        Nuclei to draw instead of the world's own (as returned by
        :func:`~histolatent.synth.nuclei.sample_nuclei`, possibly filtered or extended).
    with_nuclei : bool
        False draws the tissue without any nucleus.
    """
    if nuclei is None and with_nuclei:
        r = MAX_RADIUS_UM
        nuclei = sample_nuclei(world, grid.x0 - r, grid.y0 - r, grid.x0 + grid.width * grid.mpp + r,
                               grid.y0 + grid.height * grid.mpp + r)
    pad = 4
    if nuclei is not None and len(nuclei["x_um"]):
        pad = int(np.ceil(extent_um(nuclei).max() / grid.mpp)) + 4
    big = Grid(grid.x0 - pad * grid.mpp, grid.y0 - pad * grid.mpp, grid.width + 2 * pad, grid.height + 2 * pad,
               grid.mpp)
    texture = fine_noise(world.key(0x7E7), big, _TEXTURE_UM)
    planes, m = tissue_concentrations(world, grid, texture[pad:pad + grid.height, pad:pad + grid.width])
    regions = region_map(m)
    if nuclei is None or not with_nuclei:
        nuclei = empty_nuclei()
    inst, tmap, table = rasterise(nuclei, grid, planes, texture, pad)
    thick = m["thickness"]
    planes[0] *= thick * m["h_uptake"]
    planes[1] *= thick
    planes[2] *= thick
    if len(table):  # the nuclei's mean H as rendered (thickness included)
        table["h_mean"] = table["h_mean"].to_numpy() * _at(thick * m["h_uptake"], table)
    conc = cv2.merge(planes)
    return Region(concentrations=conc, instances=inst, types=tmap, nuclei=table, regions=regions)


def _at(field: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """``field`` at the (rounded, clipped) centroids of a nucleus table."""
    h, w = field.shape
    y = np.clip(np.rint(table["y"].to_numpy()).astype(np.int64), 0, h - 1)
    x = np.clip(np.rint(table["x"].to_numpy()).astype(np.int64), 0, w - 1)
    return field[y, x]


def _noise_rng(world: World, grid: Grid, stain: Stain, extra: int = 0) -> np.random.Generator:
    gx = int(round(grid.x0 / grid.mpp))
    gy = int(round(grid.y0 / grid.mpp))
    return np.random.default_rng(seed32(world.seed, 0x5CA, stain.site, gx, gy, extra))


def render_tile(size_px: int | tuple[int, int] = 512, mpp: float = 0.5, seed: int = 0, stain: Stain | int | np.ndarray | None = None,
                tissue: TissueSpec | str | dict | None = None, *, scanner: Scanner | dict | bool | None = None,
                origin_um: tuple[float, float] = (0.0, 0.0), world: World | None = None) -> SynthTile:
    """Render one H&E tile with full ground truth.

    Parameters
    ----------
    size_px : int or (width, height)
        Tile size in pixels.
    mpp : float
        Microns per pixel (0.25 ≈ 40x, 0.5 ≈ 20x); the tissue is defined in µm, so the same
        seed at another mpp shows the same tissue at another resolution.
    seed : int
        World seed: same seed, same bytes.
    stain : Stain, int, (3, 3) array or None
        A stain, a site id (0 = reference, k > 0 = a perturbed lab, see
        :func:`~histolatent.synth.stain.site_stain`) or an OD matrix.
    tissue : TissueSpec, str, dict or None
        Composition (preset name: breast, tumour, normal, stroma, lymphoid, fat).
    scanner : Scanner, dict, None or False
        Acquisition effects (None = default blur + noise; False = none).
    origin_um : (float, float)
        World coordinates of the top-left corner.
    world : World, optional
        Render this world instead of ``World(seed, tissue)``.

    Returns
    -------
    SynthTile

    Examples
    --------
    >>> t = render_tile(256, mpp=0.5, seed=1)
    >>> t.rgb.shape, bool(t.instances.max() == len(t.nuclei))
    ((256, 256, 3), True)
    """
    w, h = _check_size(size_px)
    mpp = check_mpp(mpp)
    st = as_stain(stain)
    sc = as_scanner(scanner)
    if world is None:
        world = World(seed=int(seed), tissue=as_tissue(tissue))
    grid = Grid(float(origin_um[0]), float(origin_um[1]), w, h, mpp)
    reg = render_region(world, grid)
    rgb = rgb_from_concentrations(reg.concentrations, st, sc, mpp=mpp, rng=_noise_rng(world, grid, st))
    return SynthTile(rgb=rgb, instances=reg.instances, types=reg.types, nuclei=reg.nuclei,
                     concentrations=reg.concentrations, stain_matrix=st.matrix.copy(), mpp=mpp, regions=reg.regions,
                     stain=st, scanner=sc, origin_um=(grid.x0, grid.y0), world=world)


def rerender(tile: SynthTile, stain: Stain | int | np.ndarray | None = None, *,
             scanner: Scanner | dict | bool | None = None) -> SynthTile:
    """The same tissue (same concentrations and ground truth) under another stain and/or scanner.

    ``scanner=None`` keeps the tile's scanner. The returned tile shares no array with ``tile``.
    """
    st = as_stain(stain)
    sc = tile.scanner if scanner is None else as_scanner(scanner)
    h, w = tile.rgb.shape[:2]
    grid = Grid(tile.origin_um[0], tile.origin_um[1], w, h, tile.mpp)
    rgb = rgb_from_concentrations(tile.concentrations, st, sc, mpp=tile.mpp, rng=_noise_rng(tile.world, grid, st))
    return replace(tile, rgb=rgb, stain=st, scanner=sc, stain_matrix=st.matrix.copy(),
                   instances=tile.instances.copy(), types=tile.types.copy(), nuclei=tile.nuclei.copy(),
                   concentrations=tile.concentrations.copy(), regions=tile.regions.copy())


@dataclass(frozen=True)
class StainPair:
    """The same tissue under a source and a target stain (ground truth for normalisation).

    ``target`` is what a perfect normaliser would output for ``source``.
    """

    source: np.ndarray  # (H, W, 3) uint8
    target: np.ndarray  # (H, W, 3) uint8
    source_stain: Stain
    target_stain: Stain
    concentrations: np.ndarray  # (H, W, 3) float32, shared truth
    instances: np.ndarray
    nuclei: pd.DataFrame
    mpp: float
    seed: int

    @property
    def source_matrix(self) -> np.ndarray:
        return self.source_stain.matrix

    @property
    def target_matrix(self) -> np.ndarray:
        return self.target_stain.matrix


def stain_pair(seed: int = 0, size_px: int | tuple[int, int] = 256, mpp: float = 0.5, *,
               source: Stain | int | np.ndarray | None = 1, target: Stain | int | np.ndarray | None = 0,
               tissue: TissueSpec | str | dict | None = None, source_scanner: Scanner | dict | bool | None = None,
               target_scanner: Scanner | dict | bool | None = False) -> StainPair:
    """Render one tissue under ``source`` and ``target`` stains (same concentrations).

    By default the source goes through the default scanner (blur + noise) and the target
    is the exact Beer–Lambert image (``target_scanner=False``), i.e. the ideal output.
    """
    tile = render_tile(size_px, mpp, seed, source, tissue, scanner=source_scanner)
    tgt = rerender(tile, target, scanner=CLEAN if target_scanner is False else as_scanner(target_scanner))
    return StainPair(source=tile.rgb, target=tgt.rgb, source_stain=tile.stain, target_stain=tgt.stain,
                     concentrations=tile.concentrations, instances=tile.instances, nuclei=tile.nuclei, mpp=tile.mpp,
                     seed=int(seed))


def stain_pairs(n: int, size_px: int | tuple[int, int] = 256, mpp: float = 0.5, seed: int = 0, *,
                target: Stain | int | np.ndarray | None = 0, strength: float = 1.0,
                tissues: tuple[str, ...] = ("breast", "tumour", "normal", "lymphoid", "stroma")) -> Iterator[StainPair]:
    """Yield ``n`` stain pairs: each a different tissue under a different source site, one target.

    Pair ``i`` is a pure function of ``(seed, i)``: tissue preset, world seed and source site
    (a site id > 0 drawn from the hash) are derived from it.
    """
    if int(n) < 0:
        raise InputError(f"n: expected >= 0 pairs, got {n}")
    if not tissues:
        raise InputError("tissues: expected at least one preset name")
    tgt = as_stain(target, name="target")
    for i in range(int(n)):
        k = seed32(seed, 0x9A1, i)
        site = 1 + k % 1_000_000
        src = site_stain(site, strength=strength)
        yield stain_pair(k, size_px, mpp, source=src, target=tgt, tissue=tissues[i % len(tissues)])


def od_truth(concentrations: np.ndarray, stain: Stain) -> np.ndarray:
    """Exact OD (H, W, 3) of concentrations under ``stain`` (no scanner): ``c @ stain.matrix``."""
    return np.asarray(concentrations, dtype=np.float32) @ stain.matrix.astype(np.float32)


def clean_rgb(concentrations: np.ndarray, stain: Stain) -> np.ndarray:
    """Exact Beer–Lambert RGB (uint8, rounded) without any scanner effect."""
    return rgb_from_concentrations(concentrations, stain, CLEAN, mpp=1.0, rng=np.random.default_rng(0))


__all__ = ["Region", "StainPair", "SynthTile", "clean_rgb", "intensity_from_concentrations", "od_truth",
           "render_region", "render_tile", "rerender", "stain_pair", "stain_pairs"]
