"""Nuclei: where they are, what they look like, and how they are drawn.

Four types a pathologist recognises (sizes are semi-axes, µm):

- **lymphocyte**: round, radius 2.9–4.1; dense, dark haematoxylin, fine texture.
- **epithelial / tumour**: oval (aspect ~1.35), semi-major ~5.8–7 µm (normal ducts, grade
  0: 4.6); vesicular chromatin (pale nucleoplasm, dark clumps, dark membrane rim) and an
  eosinophilic nucleolus. The pleomorphism p (0..1, from the grade) widens the spread of
  size (sd 0.45 + 1.3 p µm), shape (aspect sd 0.08 + 0.22 p, outline irregularity) and
  intensity (hyperchromasia), and makes nucleoli more frequent and larger.
- **fibroblast / stromal**: spindle (superellipse exponent 1.5), aspect 3–6, semi-minor
  1.0–1.7; dense chromatin; aligned with the local collagen fibres (±8°).
- **mitosis**: dark (H ~1.55), irregular ragged outline of condensed chromosomes; a
  grade-dependent fraction of epithelial nuclei.

Boundaries are superellipses perturbed by random Fourier modes (k = 2..6). The
orientation of a nucleus is its body angle ``theta`` in [0, 2 pi): the direction of its
first (major) axis, counter-clockwise as displayed; its outline is not symmetric, so a
rotation of the image by ``alpha`` changes ``theta`` by exactly ``alpha``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from histolatent.synth.noise import Grid, Points, hash_uniform
from histolatent.synth.tissue import (
    TYPE_IDS,
    TYPES,
    World,
    fibre_direction,
    layer_sites,
    layers,
    memberships,
    nest_gradient_angle,
    raw_fields,
)

#: Largest semi-axis any nucleus can have (µm), including its Fourier perturbation.
MAX_RADIUS_UM = 16.0
_CONFLICT = 0.8  # centres closer than this x (r_i + r_j) conflict; the later one is dropped
_N_MODES = 5  # Fourier modes k = 2..6


def _normal(u: np.ndarray, k: int) -> np.ndarray:
    """Standard normals from uniform channels k and k + 32 (Box–Muller); k < 32."""
    return np.sqrt(-2.0 * np.log1p(-u[:, k] * 0.999999)) * np.cos(2.0 * np.pi * u[:, k + 32])


def nucleus_params(kind: str, u: np.ndarray, pleo: float, grade: int, mitosis: float, theta: np.ndarray) -> dict:
    """Vectorised shape/appearance parameters for ``len(u)`` nuclei of one layer.

    ``u`` holds uniform channels (N, 64): channels < 32 are used once each, either as a
    uniform or as the first half of a normal (whose second half is channel k + 32); ``theta`` are body angles (radians).
    """
    n = len(u)
    type_id = np.full(n, TYPE_IDS[kind], dtype=np.uint8)
    sig_f = np.full(n, 0.03)
    nucleolus = np.zeros(n, dtype=bool)
    if kind == "lymphocyte":
        r = np.clip(3.45 + 0.25 * _normal(u, 4), 2.9, 4.1)
        e = 0.16 * u[:, 6]
        a, b = r * (1 + e / 2), r * (1 - e / 2)
        p_se = np.full(n, 2.0)
        dens = np.clip(1.05 + 0.12 * _normal(u, 7), 0.75, 1.4)
        chrom = np.full(n, 0.22)
        rim = np.full(n, 0.10)
        eosin = np.full(n, 0.04)
    elif kind == "fibroblast":
        b = 1.0 + 0.7 * u[:, 4]
        asp = 3.0 + 3.0 * u[:, 5]
        a = b * asp
        p_se = np.full(n, 1.5)  # superellipse exponent < 2: tapered spindle ends
        sig_f = np.full(n, 0.02)
        dens = np.clip(0.95 + 0.12 * _normal(u, 7), 0.65, 1.3)
        chrom = np.full(n, 0.18)
        rim = np.full(n, 0.05)
        eosin = np.full(n, 0.05)
    else:  # epithelial (possibly mitotic)
        if grade == 0:
            mu_a, sd_a, mu_asp, sd_asp = 4.6, 0.35, 1.35, 0.10
        else:
            mu_a, sd_a = 5.8 + 1.2 * pleo, 0.45 + 1.3 * pleo
            mu_asp, sd_asp = 1.35, 0.08 + 0.22 * pleo
        a = np.clip(mu_a + sd_a * _normal(u, 4), 3.6, 11.5)
        asp = np.clip(mu_asp + sd_asp * _normal(u, 6), 1.05, 2.4)
        b = np.maximum(a / asp, 2.6)
        p_se = np.full(n, 2.0)
        sig_f = 0.03 + 0.07 * pleo + np.zeros(n)
        if grade == 0:
            dens = np.clip(0.62 + 0.06 * _normal(u, 8), 0.45, 0.85)
            chrom = np.full(n, 0.35)
            rim = np.full(n, 0.2)
        else:
            dens = np.clip(0.78 + 0.15 * pleo + (0.08 + 0.12 * pleo) * _normal(u, 8), 0.4, 1.4)
            chrom = 0.5 + 0.25 * pleo + np.zeros(n)
            rim = np.full(n, 0.35)
        nucleolus = u[:, 10] < (0.1 if grade == 0 else 0.55 + 0.4 * pleo)
        eosin = np.full(n, 0.05)
        mit = u[:, 11] < mitosis
        if mit.any():
            type_id[mit] = TYPE_IDS["mitosis"]
            a[mit] = np.clip(5.6 + 0.6 * _normal(u, 12)[mit], 4.2, 7.5)
            b[mit] = a[mit] / (1.2 + 0.8 * u[mit, 14])
            sig_f[mit] = 0.16
            dens[mit] = np.clip(1.55 + 0.15 * _normal(u, 15)[mit], 1.2, 1.9)
            chrom[mit] = 0.5
            rim[mit] = 0.0
            nucleolus[mit] = False
            eosin[mit] = 0.1
    # Fourier boundary modes c_k = sig/k * (n1 + i n2)/sqrt(2), k = 2..6
    ks = np.arange(2, 2 + _N_MODES)
    re = np.stack([_normal(u, 16 + i) for i in range(_N_MODES)], axis=1)
    im = np.stack([_normal(u, 21 + i) for i in range(_N_MODES)], axis=1)
    four = (sig_f[:, None] / ks[None, :]) * (re + 1j * im) / np.sqrt(2.0)
    # nucleolus: radius and position in the body frame (fraction of the semi-axes)
    nuc_r = np.where(nucleolus, 0.55 + 0.45 * pleo + 0.15 * _normal(u, 30), 0.0).clip(0.0, 1.6)
    nuc_du = (u[:, 26] - 0.5) * 0.7
    nuc_dv = (u[:, 27] - 0.5) * 0.7
    return {"type_id": type_id, "a": a, "b": b, "theta": np.mod(theta, 2 * np.pi), "p": p_se, "fourier": four,
            "density": dens, "chromatin": chrom, "rim": rim, "eosin": eosin, "nucleolus_r": nuc_r,
            "nucleolus_u": nuc_du, "nucleolus_v": nuc_dv}


def sample_nuclei(world: World, x0: float, y0: float, x1: float, y1: float) -> dict[str, np.ndarray]:
    """All nuclei whose centres lie in [x0, x1) x [y0, y1) µm, in drawing order.

    Sites are generated in a margin around the window so that conflict resolution (two
    centres too close: the later layer's nucleus is dropped) is the same whichever
    window a nucleus is seen from.
    """
    margin = 2.5 * MAX_RADIUS_UM
    parts = []
    for layer in layers(world):
        spec = world.specs[layer.spec_index]
        sites = layer_sites(world, layer, x0 - margin, y0 - margin, x1 + margin, y1 + margin)
        if len(sites["x"]) == 0:
            continue
        pts = Points(sites["x"], sites["y"])
        m = memberships(world, raw_fields(world, pts))
        w = np.ones(len(sites["x"]))
        if len(world.specs) > 1:
            lesion = np.asarray(m["lesion"], dtype=np.float64)
            w = lesion if layer.spec_index == 1 else 1.0 - lesion
        if layer.kind == "epithelial":
            prob = spec.epithelial_density * m["epithelium"] * w
        elif layer.kind == "lymphocyte":
            prob = (0.92 * m["lymphoid"] + spec.stroma_lymphocytes * m["stroma"] + 0.03 * m["epithelium"]) * w
        else:
            prob = spec.fibroblast_density * m["stroma"] * w
        u_acc = hash_uniform(sites["key"], sites["ix"], sites["iy"], 2)
        keep = u_acc < prob
        if not keep.any():
            continue
        ix, iy = sites["ix"][keep], sites["iy"][keep]
        x, y = sites["x"][keep], sites["y"][keep]
        chans = np.arange(64)
        u = hash_uniform(sites["key"], ix[:, None], iy[:, None], 100 + chans[None, :])
        if layer.kind == "fibroblast":
            theta = fibre_direction(world, x, y) + np.deg2rad(8.0) * _normal(u, 0) + np.pi * (u[:, 2] < 0.5)
        elif layer.kind == "epithelial":
            # gland nuclei stand perpendicular to the lumen (basal polarity); nests: random
            gland = np.asarray(m["gland"])[keep] if np.ndim(m["gland"]) else np.full(len(x), float(m["gland"]))
            polar = nest_gradient_angle(world, x, y) + np.deg2rad(20.0) * _normal(u, 0) + np.pi * (u[:, 2] < 0.5)
            theta = np.where(u[:, 3] < gland * 0.8, polar, 2 * np.pi * u[:, 1])
        else:
            theta = 2 * np.pi * u[:, 1]
        p = nucleus_params(layer.kind, u, spec.pleo, spec.grade, spec.mitosis, theta)
        p.update({"x_um": x, "y_um": y, "priority": np.full(len(x), layer.priority),
                  "gid": (np.int64(layer.priority) << 56) | ((iy.astype(np.int64) & 0xFFFFFFF) << 28)
                  | (ix.astype(np.int64) & 0xFFFFFFF),
                  "grade": np.full(len(x), spec.grade, dtype=np.int8),
                  "pleomorphism": np.full(len(x), spec.pleo),
                  "spec_index": np.full(len(x), layer.spec_index, dtype=np.int8)})
        parts.append(p)
    out = _concat(parts)
    if len(out["x_um"]) == 0:
        return out
    order = np.lexsort((out["gid"], out["priority"]))
    out = {k: v[order] for k, v in out.items()}
    # conflicts: a nucleus too close to an earlier one (in drawing order) is dropped
    r_eq = np.sqrt(out["a"] * out["b"])
    tree = cKDTree(np.column_stack([out["x_um"], out["y_um"]]))
    pairs = tree.query_pairs(2 * _CONFLICT * r_eq.max(), output_type="ndarray")
    if len(pairs):
        i, j = pairs[:, 0], pairs[:, 1]
        d = np.hypot(out["x_um"][i] - out["x_um"][j], out["y_um"][i] - out["y_um"][j])
        bad = d < _CONFLICT * (r_eq[i] + r_eq[j])
        drop = np.zeros(len(r_eq), dtype=bool)
        drop[np.maximum(i[bad], j[bad])] = True
        out = {k: v[~drop] for k, v in out.items()}
    inside = (out["x_um"] >= x0) & (out["x_um"] < x1) & (out["y_um"] >= y0) & (out["y_um"] < y1)
    return {k: v[inside] for k, v in out.items()}


def empty_nuclei() -> dict[str, np.ndarray]:
    """A nuclei dict with no nucleus."""
    return _concat([])


def _concat(parts: list[dict]) -> dict[str, np.ndarray]:
    if not parts:
        keys = ["x_um", "y_um", "a", "b", "theta", "p", "density", "chromatin", "rim", "eosin", "nucleolus_r",
                "nucleolus_u", "nucleolus_v", "pleomorphism"]
        out = {k: np.zeros(0) for k in keys}
        out.update({"type_id": np.zeros(0, np.uint8), "fourier": np.zeros((0, _N_MODES), complex),
                    "priority": np.zeros(0, np.int64), "gid": np.zeros(0, np.int64),
                    "grade": np.zeros(0, np.int8), "spec_index": np.zeros(0, np.int8)})
        return out
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def subset(nuc: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in nuc.items()}


def extent_um(nuc: dict[str, np.ndarray]) -> np.ndarray:
    """Radius (µm) of a disc that holds each nucleus' outline."""
    return nuc["a"] * 1.05 * (1.0 + np.abs(nuc["fourier"]).sum(axis=1))


def _stacks(nuc: dict[str, np.ndarray], idx: np.ndarray, grid: Grid, size: int, texture: np.ndarray,
            pad: int) -> dict[str, np.ndarray]:
    """Per-nucleus local images (len(idx), size, size): alpha, inside, H and E concentrations."""
    mpp = grid.mpp
    xc = (nuc["x_um"][idx] - grid.x0) / mpp - 0.5  # centre in pixel-index coordinates
    yc = (nuc["y_um"][idx] - grid.y0) / mpp - 0.5
    px0 = np.floor(xc).astype(np.int64) - size // 2 + 1
    py0 = np.floor(yc).astype(np.int64) - size // 2 + 1
    k = np.arange(size)
    X = ((px0[:, None] + k[None, :]) - xc[:, None]) * mpp  # (n, S) µm from the centre
    Y = ((py0[:, None] + k[None, :]) - yc[:, None]) * mpp
    X = X.astype(np.float32)[:, None, :]
    Y = Y.astype(np.float32)[:, :, None]
    th = nuc["theta"][idx]
    c = np.cos(th).astype(np.float32)[:, None, None]
    s = np.sin(th).astype(np.float32)[:, None, None]
    u = X * c - Y * s  # along the body axis (displayed CCW angle theta; image y points down)
    v = -X * s - Y * c
    rho = np.sqrt(u * u + v * v) + np.float32(1e-4)
    inv = np.float32(1.0) / rho
    c1, s1 = u * inv, v * inv  # cos, sin of the polar angle in the body frame
    a = nuc["a"][idx].astype(np.float32)[:, None, None]
    b = nuc["b"][idx].astype(np.float32)[:, None, None]
    p = nuc["p"][idx]
    if np.all(p == 2.0):
        r = np.float32(1.0) / np.sqrt((c1 / a) ** 2 + (s1 / b) ** 2)
    elif np.all(p == 1.5):  # q^1.5 = q sqrt(q); r = (sum)^(-2/3)
        qa, qb = np.abs(c1) / a, np.abs(s1) / b
        r = np.cbrt(qa * np.sqrt(qa) + qb * np.sqrt(qb))
        r = np.float32(1.0) / (r * r)
    else:
        p32 = p.astype(np.float32)[:, None, None]
        r = np.power(np.power(np.abs(c1) / a, p32) + np.power(np.abs(s1) / b, p32), -np.float32(1.0) / p32)
    # Fourier modes k = 2..6 by the multiple-angle recurrence (real arithmetic)
    ck = c1 * c1 - s1 * s1
    sk = 2 * c1 * s1
    four = nuc["fourier"][idx]
    pert = np.zeros_like(rho)
    for m in range(_N_MODES):
        re = four[:, m].real.astype(np.float32)[:, None, None]
        im = four[:, m].imag.astype(np.float32)[:, None, None]
        pert += re * ck - im * sk
        if m + 1 < _N_MODES:
            ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
    # chromatin texture: the world's fine texture field under this nucleus
    rows = (py0[:, None] + pad + k[None, :])[:, :, None]
    cols = (px0[:, None] + pad + k[None, :])[:, None, :]
    tex = texture[np.clip(rows, 0, texture.shape[0] - 1), np.clip(cols, 0, texture.shape[1] - 1)]
    types = nuc["type_id"][idx]
    mit = (types == TYPE_IDS["mitosis"])[:, None, None]
    if mit.any():
        pert = pert + np.where(mit, np.float32(0.3) * tex - np.float32(0.05), np.float32(0.0))
    r = r * (1.0 + pert)
    d_edge = r - rho  # µm inside the outline (> 0 inside)
    alpha = np.clip(d_edge * np.float32(1.0 / mpp) + np.float32(0.5), 0.0, 1.0)
    inside = d_edge > 0
    dens = nuc["density"][idx].astype(np.float32)[:, None, None]
    chrom = nuc["chromatin"][idx].astype(np.float32)[:, None, None]
    rim = nuc["rim"][idx].astype(np.float32)[:, None, None]
    # vesicular chromatin: pale nucleoplasm with coarse dark clumps where texture peaks
    clump = np.clip(tex * np.float32(1.8) - np.float32(0.25), 0.0, 1.0)
    h = dens * (np.float32(1.0) + chrom * (np.float32(1.6) * clump - np.float32(0.45)))
    h = h + rim * np.exp(-np.maximum(d_edge, 0.0) * np.float32(1.0 / 0.45))
    e = np.broadcast_to(nuc["eosin"][idx].astype(np.float32)[:, None, None], h.shape).copy()
    nr = nuc["nucleolus_r"][idx]
    if (nr > 0).any():
        nu = (nuc["nucleolus_u"][idx] * nuc["a"][idx]).astype(np.float32)[:, None, None]
        nv = (nuc["nucleolus_v"][idx] * nuc["b"][idx]).astype(np.float32)[:, None, None]
        nr32 = np.maximum(nr, 1e-3).astype(np.float32)[:, None, None]
        blob = np.exp(-((u - nu) ** 2 + (v - nv) ** 2) / (2 * nr32 * nr32)) * (nr32 > 0.01)
        h = h + np.float32(0.55) * blob
        e = e + np.float32(0.45) * blob
    h = np.maximum(h, 0.0)
    full = inside.sum(axis=(1, 2))
    h_mean = (h * inside).sum(axis=(1, 2)) / np.maximum(full, 1)
    return {"px0": px0, "py0": py0, "alpha": alpha, "inside": inside, "h": h, "e": e, "full": full,
            "h_mean": h_mean}


def rasterise(nuc: dict[str, np.ndarray], grid: Grid, planes: list[np.ndarray], texture: np.ndarray,
              pad: int, *, first_id: int = 1) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Draw nuclei into concentration planes (H, E modified in place; private arrays).

    Nuclei are drawn in order; a pixel belongs to the first nucleus that covers it (its
    instance id), and later nuclei are composited *under* earlier ones (they never paint
    over an earlier nucleus' pixels), so colours and masks agree. ``h_mean`` is the mean
    true haematoxylin concentration over the nucleus' full outline. Returns the instance map (int32), the type map (uint8) and the table of
    nuclei with at least one visible pixel.
    """
    H, W = grid.shape
    inst = np.zeros((H, W), dtype=np.int32)
    tmap = np.zeros((H, W), dtype=np.uint8)
    ch, ce = planes[0], planes[1]
    n = len(nuc["x_um"])
    rows: dict[str, list] = {k: [] for k in ("index", "instance_id", "x", "y", "area_px", "full_px", "h_mean")}
    if n == 0:
        return inst, tmap, _table(nuc, rows, grid)
    ext_px = extent_um(nuc) / grid.mpp
    sizes = (2 * np.ceil(ext_px) + 3).astype(np.int64)
    # bucket by size so that a few big nuclei do not inflate every stack
    bucket = np.ceil(np.log(sizes) / np.log(1.3)).astype(np.int64) * 4 + np.searchsorted([1.5, 2.0], nuc["p"])
    where = np.empty(n, dtype=np.int64)
    stacks = []
    for bi, bkey in enumerate(np.unique(bucket)):
        idx = np.flatnonzero(bucket == bkey)
        stacks.append(_stacks(nuc, idx, grid, int(sizes[idx].max()), texture, pad))
        where[idx] = (bi << 32) | np.arange(len(idx))
    next_id = first_id
    for i in range(n):
        st = stacks[where[i] >> 32]
        j = int(where[i] & 0xFFFFFFFF)
        size = st["alpha"].shape[1]
        x0, y0 = int(st["px0"][j]), int(st["py0"][j])
        gx0, gy0 = max(x0, 0), max(y0, 0)
        gx1, gy1 = min(x0 + size, W), min(y0 + size, H)
        if gx0 >= gx1 or gy0 >= gy1:
            continue
        ls = (j, slice(gy0 - y0, gy1 - y0), slice(gx0 - x0, gx1 - x0))
        gs = (slice(gy0, gy1), slice(gx0, gx1))
        sub = inst[gs]
        free = sub == 0
        m = st["inside"][ls] & free
        cnt = int(np.count_nonzero(m))
        if cnt == 0:
            continue
        # composite under earlier nuclei: their pixels are blocked, soft edges blend
        w = st["alpha"][ls] * free
        sh = ch[gs]
        sh += w * (st["h"][ls] - sh)
        se = ce[gs]
        se += w * (st["e"][ls] - se)
        sub[m] = next_id
        tmap[gs][m] = nuc["type_id"][i]
        rows["index"].append(i)
        rows["instance_id"].append(next_id)
        rows["x"].append(float(m.sum(axis=0) @ np.arange(gx0, gx1)) / cnt)
        rows["y"].append(float(m.sum(axis=1) @ np.arange(gy0, gy1)) / cnt)
        rows["area_px"].append(cnt)
        rows["full_px"].append(int(st["full"][j]))
        rows["h_mean"].append(float(st["h_mean"][j]))
        next_id += 1
    return inst, tmap, _table(nuc, rows, grid)


#: Column order of nucleus tables.
COLUMNS = ["instance_id", "type", "type_id", "x", "y", "x_um", "y_um", "orientation", "axis_angle",
           "major_axis_um", "minor_axis_um", "aspect", "area_px", "area_um2", "truncated", "h_mean",
           "nucleolus", "grade", "pleomorphism", "in_lesion", "gid"]


def _table(nuc: dict[str, np.ndarray], rows: dict[str, list], grid: Grid) -> pd.DataFrame:
    idx = np.asarray(rows["index"], dtype=np.int64)
    tid = nuc["type_id"][idx].astype(np.int64)
    names = np.array(("",) + TYPES, dtype=object)
    area_px = np.asarray(rows["area_px"], dtype=np.int64)
    df = pd.DataFrame({
        "instance_id": np.asarray(rows["instance_id"], dtype=np.int32),
        "type": names[tid].astype(str) if len(idx) else np.zeros(0, dtype=str),
        "type_id": tid.astype(np.uint8),
        "x": np.asarray(rows["x"], dtype=np.float64),
        "y": np.asarray(rows["y"], dtype=np.float64),
        "x_um": nuc["x_um"][idx],
        "y_um": nuc["y_um"][idx],
        "orientation": nuc["theta"][idx],
        "axis_angle": np.mod(nuc["theta"][idx], np.pi),
        "major_axis_um": 2.0 * nuc["a"][idx],
        "minor_axis_um": 2.0 * nuc["b"][idx],
        "aspect": nuc["a"][idx] / nuc["b"][idx],
        "area_px": area_px,
        "area_um2": area_px * grid.mpp**2,
        "truncated": area_px < np.asarray(rows["full_px"], dtype=np.int64),
        "h_mean": np.asarray(rows["h_mean"], dtype=np.float64),
        "nucleolus": nuc["nucleolus_r"][idx] > 0,
        "grade": nuc["grade"][idx].astype(np.int64),
        "pleomorphism": nuc["pleomorphism"][idx],
        "in_lesion": nuc["spec_index"][idx] == 1,
        "gid": nuc["gid"][idx],
    })
    return df[COLUMNS]
