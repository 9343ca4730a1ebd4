"""Batched torch kernels behind the normalisers' tensor path (CPU or CUDA, no autograd needed).

Tensors here are ``(N, 3, P)``: N images, RGB, P pixels in raster order; masks ``(N, P)``
bool. Every estimate also returns ``ok`` ``(N,)``: False where the image has too little
tissue or degenerate stains, in which case its other outputs are finite placeholders and
the caller returns the image unchanged. The maths mirrors the numpy code in
:mod:`~histolatent.stain.macenko` and :mod:`~histolatent.stain.vahadane`, including the
raster-stride subsample and the histogram quantiles, so that both paths agree to within
one grey level. Per-pixel work is float32; 3 x 3 and 2 x 3 matrices are float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from histolatent.stain.estimation import (
    C_BINS,
    MAX_STAIN_COS,
    MIN_EIG_RATIO,
    PHI_BINS,
    PHI_RANGE,
    subsample_stride,
)
from histolatent.stain.lab import DELTA, RGB_TO_XYZ, WHITE_D65, XYZ_TO_RGB, linear_from_srgb
from histolatent.stain.optical_density import HE_RUIFROK
from histolatent.stain.quantile import binned_quantiles_torch, hist_quantile_torch

#: log2(10): OD in log2 units is this times OD in log10 units.
LOG2_10 = math.log2(10.0)


def od2_from_uint8_torch(x8: Tensor, background: float) -> Tensor:
    """Optical density in **log2** units, ``log2((I0 + 1) / (I + 1))``, float32, unclipped.

    The torch path works in log2 units because ``log2``/``exp2`` are vectorised on CPU
    where ``exp`` and table look-ups are an order of magnitude slower; stain directions
    do not depend on the base, and thresholds and concentrations are converted
    (:data:`LOG2_10`).
    """
    return x8.to(torch.float32).add_(1.0).log2_().neg_().add_(math.log2(background + 1.0))


def rgb255_from_od2_torch(od2: Tensor, background: float) -> Tensor:
    """``(I0 + 1) * 2**(-OD2) - 1`` (float32, unrounded, unclipped); consumes ``od2``."""
    return od2.neg_().exp2_().mul_(background + 1.0).sub_(1.0)


def stain_pixel_mask_torch(od2: Tensor, mask: Tensor | None, beta: float, background: float) -> Tensor:
    """Stained pixels ``(N, P)``: OD >= beta (log10 units) in every channel and not near black
    (some channel >= 8, i.e. the smallest OD below that of grey level 8)."""
    od_min = od2.amin(dim=1)
    dark = math.log2((background + 1.0) / 8.5)  # between the ODs of levels 7 and 8
    keep = (od_min >= beta * LOG2_10) & (od_min <= dark)
    return keep if mask is None else keep & mask


class Workspace:
    """Scratch tensors reused by the chunks of one batched call.

    On CPU a fresh multi-megabyte temporary costs a page fault per 4 KiB on first touch;
    in the Macenko path that was a third of the time. Buffers grow to the largest request
    and are handed out as views, so the chunks of one call touch the same pages.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        n = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != device:
            buf = torch.empty(n, dtype=dtype, device=device)
            self._buffers[name] = buf
        return buf[:n].view(shape)


def masked_cov_torch(x: Tensor, w: Tensor, ws: Workspace | None = None, count: Tensor | None = None) -> Tensor:
    """Weighted covariance ``(N, 3, 3)`` float64 of ``x`` ``(N, 3, P)`` with 0/1 weights ``w``
    (float, or a bool mask: no float copy of it is made); ``count`` = ``w.sum(1)`` if known."""
    n = (w.sum(dim=1) if count is None else count).to(torch.float64).clamp(min=2.0)
    xw = (x * w[:, None] if ws is None
          else torch.mul(x, w[:, None], out=ws.get("xw", tuple(x.shape), x.dtype, x.device)))
    s1 = xw.sum(dim=2).to(torch.float64)  # (N, 3)
    s2 = torch.bmm(xw, x.transpose(1, 2)).to(torch.float64)  # (N, 3, 3)
    mean = s1 / n[:, None]
    cov = (s2 - n[:, None, None] * mean[:, :, None] * mean[:, None, :]) / (n - 1)[:, None, None]
    return torch.where(torch.isfinite(cov), cov, torch.zeros_like(cov))


def log_intensity_torch(x8: Tensor, ws: Workspace | None = None) -> Tensor:
    """``ln(1 + I)`` of uint8 intensities ``(N, 3, P)`` as float32.

    The Macenko torch path works on this instead of OD: ``OD = ln(I0 + 1) - L`` (natural-log
    units) is affine in ``L``, so the offset and every unit conversion fold into the small
    matrices of the products that follow. A uint8 has 256 values: the logarithm is a lookup
    in a 256-entry table (a gather runs about twice as fast on CPU as ``log1p`` over every
    pixel; int32 indices are half the memory traffic of int64 and gather as fast).
    """
    lut = _LOG1P_LUT.get(x8.device)
    if lut is None:
        lut = _LOG1P_LUT[x8.device] = torch.arange(256, dtype=torch.float32, device=x8.device).log1p_()
    flat = x8.reshape(-1)
    if ws is None:
        return torch.index_select(lut, 0, flat.int()).view(x8.shape)
    idx = ws.get("lum_index", (flat.numel(),), torch.int32, x8.device).copy_(flat)
    out = ws.get("lum", tuple(x8.shape), torch.float32, x8.device)
    torch.index_select(lut, 0, idx, out=out.view(-1))
    return out


_LOG1P_LUT: dict[torch.device, Tensor] = {}


def macenko_estimate_torch(lum: Tensor, mask: Tensor | None, *, width: int, alpha: float,
                           beta: float, background: float, max_fit_pixels: int | None, min_fraction: float,
                           min_pixels: int, stained_percentile: bool = False, ws: Workspace | None = None
                           ) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image Macenko stain matrices.

    Parameters
    ----------
    lum : Tensor
        ``(N, 3, P)`` float32 log intensities (:func:`log_intensity_torch`).
    mask : Tensor, optional
        ``(N, P)`` bool user mask.
    width : int
        Image width (the subsample stride is made coprime with it).
    ws : Workspace, optional
        Scratch buffers to reuse across calls.

    Returns
    -------
    stains : Tensor
        ``(N, 2, 3)`` float64 unit rows (H, E).
    max_c : Tensor
        ``(N, 2)`` float64 99th-percentile concentrations (log10 units) over all pixels
        (inside ``mask``), or over the stained ones with ``stained_percentile``.
    ok : Tensor
        ``(N,)`` bool.
    """
    n, _, p = lum.shape
    ln_i0 = math.log(background + 1.0)
    k = subsample_stride(p, max_fit_pixels, width)
    ls = lum[:, :, ::k]
    msub = None if mask is None else mask[:, ::k]
    # stained: OD >= beta in every channel and not near black (some channel >= level 8)
    # (as float 0/1 weights, written straight by the comparison: 7x faster on CPU than two
    # bool comparisons, their "and" and a cast; their sum and product are 2x faster too)
    l_hi, l_lo = ln_i0 - beta * math.log(10.0), math.log(8.5)
    l_max = ls.amax(dim=1)
    w = torch.le(l_max.sub_((l_hi + l_lo) / 2).abs_(), (l_hi - l_lo) / 2, out=l_max)  # l_lo <= max L <= l_hi
    if msub is not None:
        w.mul_(msub)
    keep = w  # (N, Ps) float 0/1
    ps = ls.shape[2]
    cnt = w.sum(dim=1)  # exact below 2**24 pixels per image
    ok = (cnt >= min_pixels) & (cnt >= min_fraction * ps) & (cnt >= 3)
    cov = masked_cov_torch(ls, w, ws, cnt)  # cov(OD) = cov(-L)
    evals, evecs = torch.linalg.eigh(cov)
    ok &= (evals[:, 2] > 1e-12) & (evals[:, 1] > MIN_EIG_RATIO * evals[:, 2])
    e1 = evecs[..., 2]
    sign = torch.where(e1.sum(-1) < 0, -1.0, 1.0).to(e1.dtype)
    plane = torch.stack([evecs[..., 1], e1 * sign[:, None]], dim=-1)  # (N, 3, 2)
    proj = _affine_od(plane.transpose(1, 2), ls, ln_i0, ws=ws)  # (N, 2, Ps)
    phi = torch.atan2(proj[:, 1], proj[:, 0], out=None if ws is None else ws.get("phi", (n, ps), ls.dtype, ls.device))
    lo, hi = PHI_RANGE
    phi_scale = PHI_BINS / (hi - lo)
    pos = binned_quantiles_torch(phi.sub_(lo).mul_(phi_scale), keep,
                                 [alpha / 100.0, 1.0 - alpha / 100.0], bins=PHI_BINS)  # (2, N)
    v_lo, v_hi = ((plane @ torch.stack([torch.cos(a), torch.sin(a)], -1)[..., None])[..., 0]
                  for a in lo + pos / phi_scale)
    h_first = (v_lo[:, 0] > v_hi[:, 0])[:, None]
    s = torch.stack([torch.where(h_first, v_lo, v_hi), torch.where(h_first, v_hi, v_lo)], dim=1)
    s = s / s.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    ok &= ((s[:, 0] * s[:, 1]).sum(-1).abs() <= MAX_STAIN_COS) & torch.isfinite(s).flatten(1).all(1)
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=s.dtype, device=s.device)
    safe = torch.where(ok[:, None, None], s, eye)
    # concentrations in natural-log units, mapped straight to histogram bins over their
    # a-priori range (every OD in [OD(255), OD(0)]^3): (c - c_lo) * scale in one product
    q = torch.linalg.pinv(safe).transpose(1, 2)  # (N, 2, 3)
    od_lo, od_hi = math.log((background + 1.0) / 256.0), ln_i0
    a, b = q * od_lo, q * od_hi
    c_lo, c_hi = torch.minimum(a, b).sum(-1), torch.maximum(a, b).sum(-1)  # (N, 2)
    c_scale = C_BINS / (c_hi - c_lo)
    c_pos = _affine_od(q * c_scale[..., None], ls, ln_i0, offset=c_lo * c_scale, ws=ws)  # (N, 2, Ps)
    valid = keep if stained_percentile else msub
    valid2 = None if valid is None else valid[:, None, :].expand(n, 2, ps).reshape(2 * n, ps)
    c_q = binned_quantiles_torch(c_pos.reshape(2 * n, ps), valid2, [0.99], bins=C_BINS)[0].view(n, 2)
    max_c = (c_lo + c_q / c_scale) / math.log(10.0)
    ok &= (max_c > 1e-6).all(-1)
    if valid is not None:
        ok &= valid.any(dim=1)
    return safe, torch.where(ok[:, None], max_c, torch.ones_like(max_c)), ok


def _affine_od(rows: Tensor, lum: Tensor, ln_i0: float, offset: Tensor | None = None,
               ws: Workspace | None = None) -> Tensor:
    """``rows @ OD - offset`` with ``OD = ln_i0 - lum``: ``rows`` ``(N, k, 3)`` float64,
    ``offset`` ``(N, k)``; one batched fused multiply-add, float32 ``(N, k, P)``."""
    bias = ln_i0 * rows.sum(-1)
    if offset is not None:
        bias = bias - offset
    out = None if ws is None else ws.get("affine", (lum.shape[0], rows.shape[1], lum.shape[2]), lum.dtype,
                                         lum.device)
    return torch.baddbmm(bias[..., None].to(lum.dtype), rows.neg().to(lum.dtype), lum, out=out)


def macenko_apply_torch(lum: Tensor, m: Tensor, background: float, ws: Workspace | None = None) -> Tensor:
    """Normalised intensities ``(N, 3, P)`` from log intensities and per-image OD maps ``m``
    ``(N, 3, 3)`` (``OD_out = OD @ m``): ``I = (I0 + 1) 2^(-OD_out / ln 2) - 1``, rounded half
    up and clipped to [0, 255], with every constant folded into one ``baddbmm`` before a
    single ``exp2``.

    Returned as **int16** holding 0..255: the caller casts it once, into its output buffer
    (float -> int16 -> uint8 is 2.5x faster on CPU than float -> uint8, and the second cast
    is then the copy into the output that happens anyway)."""
    mt = m.transpose(1, 2) / math.log(2.0)  # log2 units
    ln_i0 = math.log(background + 1.0)
    # log2 I_out_plus_1 = log2(I0 + 1) - mt @ (ln_i0 - L)
    bias = math.log2(background + 1.0) - ln_i0 * mt.sum(-1)
    buf = None if ws is None else ws.get("xw", tuple(lum.shape), lum.dtype, lum.device)
    out = torch.baddbmm(bias[..., None].to(lum.dtype), mt.to(lum.dtype), lum, out=buf).exp2_()
    # (I + 0.5) truncated; exp2 > 0, so the lower clamp only keeps -0.5 < x < 0 from rounding to -0
    return out.sub_(0.5).clamp_(0.0, 255.5).to(torch.int16)


def nn_lasso2_torch(od: Tensor, stains: Tensor, lam: float) -> Tensor:
    """Batched exact two-stain non-negative LASSO (see :func:`~histolatent.stain.vahadane.nn_lasso2`).

    Parameters
    ----------
    od : Tensor
        ``(N, 3, P)`` optical density.
    stains : Tensor
        ``(N, 2, 3)`` stain rows.

    Returns
    -------
    Tensor
        ``(N, 2, P)`` concentrations >= 0, dtype of ``od``.
    """
    s = stains.to(od.dtype)
    g = (s @ s.transpose(1, 2)).to(torch.float64)  # (N, 2, 2)
    b = torch.bmm(s, od).sub_(lam)  # (N, 2, P)
    g00, g01, g11 = (g[:, 0, 0, None].to(od.dtype), g[:, 0, 1, None].to(od.dtype),
                     g[:, 1, 1, None].to(od.dtype))
    det = g00 * g11 - g01 * g01
    b0, b1 = b[:, 0], b[:, 1]
    both0 = (g11 * b0 - g01 * b1) / det
    both1 = (g00 * b1 - g01 * b0) / det
    h = b0.clamp(min=0) / g00  # only haematoxylin
    e = b1.clamp(min=0) / g11  # only eosin
    # objective 1/2 c G c - b c of each candidate
    f_h = 0.5 * g00 * h * h - b0 * h
    f_e = 0.5 * g11 * e * e - b1 * e
    f_both = 0.5 * (g00 * both0 * both0 + 2 * g01 * both0 * both1 + g11 * both1 * both1) \
        - b0 * both0 - b1 * both1
    f_both = torch.where((both0 >= 0) & (both1 >= 0), f_both, float("inf"))
    use_e = f_e < f_h
    c0 = torch.where(use_e, 0.0, h)
    c1 = torch.where(use_e, e, 0.0)
    use_both = f_both < torch.minimum(f_h, f_e)
    return torch.stack([torch.where(use_both, both0, c0), torch.where(use_both, both1, c1)], dim=1)


def vahadane_estimate_torch(od: Tensor, mask: Tensor | None, *, width: int, beta: float, background: float,
                            lambda1: float, lambda2: float, n_iter: int, max_fit_pixels: int | None,
                            min_fraction: float, min_pixels: int
                            ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-image Vahadane dictionaries and concentrations.

    Parameters
    ----------
    od : Tensor
        ``(N, 3, P)`` float32 OD in log10 units.

    Returns
    -------
    stains : Tensor
        ``(N, 2, 3)`` float64 (H, E).
    conc : Tensor
        ``(N, 2, P)`` float32 concentrations of every pixel (``lambda2``).
    max_c : Tensor
        ``(N, 2)`` float64 99th percentiles over all pixels inside ``mask``.
    ok : Tensor
        ``(N,)`` bool.
    """
    n, _, p = od.shape
    k = subsample_stride(p, max_fit_pixels, width)
    ods = od[:, :, ::k].contiguous()
    msub = None if mask is None else mask[:, ::k]
    keep = stain_pixel_mask_torch(ods * LOG2_10, msub, beta, background)  # (N, Ps)
    cnt = keep.sum(dim=1)
    ok = (cnt >= min_pixels) & (cnt >= min_fraction * ods.shape[2]) & (cnt >= 3)
    w = keep.to(ods.dtype)
    s = torch.as_tensor(HE_RUIFROK, dtype=torch.float64, device=od.device).expand(n, 2, 3).clone()
    for _ in range(n_iter):
        c = nn_lasso2_torch(ods, s, lambda1) * w[:, None]  # (N, 2, Ps), stained pixels only
        a = (c @ c.transpose(1, 2)).to(torch.float64)  # (N, 2, 2)
        b = (c @ ods.transpose(1, 2)).to(torch.float64)  # (N, 2, 3)
        old = s.clone()
        for j in range(2):  # block coordinate descent, projected on {s >= 0, |s| <= 1}
            ajj = a[:, j, j, None]
            u = (s[:, j] + (b[:, j] - (a[:, j, :, None] * s).sum(1)) / ajj.clamp(min=1e-12)).clamp(min=0)
            u = u / u.norm(dim=-1, keepdim=True).clamp(min=1.0)
            s[:, j] = torch.where(ajj > 1e-12, u, s[:, j])
        if bool(((s - old).abs().amax() < 1e-5).item()):
            break
    norms = s.norm(dim=-1, keepdim=True)
    ok &= (norms[..., 0] > 1e-6).all(-1)
    s = s / norms.clamp(min=1e-6)
    swap = (s[:, 0, 0] < s[:, 1, 0])[:, None, None]
    s = torch.where(swap, s.flip(1), s)
    ok &= torch.isfinite(s).flatten(1).all(1) & ((s[:, 0] * s[:, 1]).sum(-1).abs() <= MAX_STAIN_COS)
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=s.dtype, device=s.device)
    s = torch.where(ok[:, None, None], s, eye)
    conc = nn_lasso2_torch(od, s, lambda2)  # (N, 2, P)
    valid2 = None if mask is None else mask[:, None, :].expand(n, 2, p).reshape(2 * n, p)
    max_c = hist_quantile_torch(conc.reshape(2 * n, p), valid2, [0.99])[0].view(n, 2)
    ok &= (max_c > 1e-6).all(-1)
    if mask is not None:
        ok &= mask.any(dim=1)
    return s, conc, torch.where(ok[:, None], max_c, torch.ones_like(max_c)), ok


def lab_from_rgb8_torch(x8: Tensor) -> Tensor:
    """CIE L*a*b* (D65) of uint8 sRGB ``(N, 3, P)`` -> float32 ``(N, 3, P)`` (same formulas as
    :func:`~histolatent.stain.lab.lab_from_rgb`)."""
    lut = torch.as_tensor(linear_from_srgb(torch.arange(256).double().numpy() / 255.0),
                          dtype=torch.float32, device=x8.device)
    lin = lut[x8.to(torch.int64)]
    m = torch.as_tensor(RGB_TO_XYZ / WHITE_D65[:, None], dtype=torch.float32, device=x8.device)
    xyz = torch.einsum("ij,njp->nip", m, lin)
    f = torch.where(xyz > DELTA**3, xyz.clamp(min=0).pow(1.0 / 3.0), xyz / (3 * DELTA**2) + 4.0 / 29.0)
    return torch.stack([116.0 * f[:, 1] - 16.0, 500.0 * (f[:, 0] - f[:, 1]), 200.0 * (f[:, 1] - f[:, 2])], 1)


def rgb255_from_lab_torch(lab: Tensor) -> Tensor:
    """Inverse of :func:`lab_from_rgb8_torch`: float sRGB in [0, 255], unrounded."""
    fy = (lab[:, 0] + 16.0) / 116.0
    f = torch.stack([fy + lab[:, 1] / 500.0, fy, fy - lab[:, 2] / 200.0], 1)
    xyz = torch.where(f > DELTA, f**3, 3 * DELTA**2 * (f - 4.0 / 29.0))
    m = torch.as_tensor(XYZ_TO_RGB * WHITE_D65[None, :], dtype=torch.float32, device=lab.device)
    lin = torch.einsum("ij,njp->nip", m, xyz).clamp(0.0, 1.0)
    srgb = torch.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin.clamp(min=1e-12).pow(1.0 / 2.4) - 0.055)
    return 255.0 * srgb


def lab_from_rgb_torch(x: Tensor) -> Tensor:
    """CIE L*a*b* (D65) of float sRGB ``(N, 3, H, W)`` in [0, 1] -> ``(N, 3, H, W)`` float32
    (differentiable; same formulas as :func:`~histolatent.stain.lab.lab_from_rgb`)."""
    c = x.to(torch.float32).clamp(0.0, 1.0)
    lin = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055).clamp(min=1e-12).pow(2.4))
    m = torch.as_tensor(RGB_TO_XYZ / WHITE_D65[:, None], dtype=torch.float32, device=x.device)
    xyz = torch.einsum("ij,njhw->nihw", m, lin)
    f = torch.where(xyz > DELTA**3, xyz.clamp(min=1e-12).pow(1.0 / 3.0), xyz / (3 * DELTA**2) + 4.0 / 29.0)
    return torch.stack([116.0 * f[:, 1] - 16.0, 500.0 * (f[:, 0] - f[:, 1]), 200.0 * (f[:, 1] - f[:, 2])], 1)


def rgb_from_lab_torch(lab: Tensor) -> Tensor:
    """Inverse of :func:`lab_from_rgb_torch`: ``(N, 3, H, W)`` Lab -> sRGB in [0, 1]."""
    n, _, h, w = lab.shape
    return rgb255_from_lab_torch(lab.reshape(n, 3, h * w)).reshape(n, 3, h, w) / 255.0
