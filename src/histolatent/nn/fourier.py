"""Coordinate grids, rigid transforms of coordinates and random Fourier features.

Spatial generators (spatial-VAE, Bepler et al. 2019; TARGET-VAE, Nasiri & Bepler 2022, §3.1 and
§3.3.2) map a pixel coordinate to a pixel value. Coordinates live on ``[-1, 1]^2`` centred on the
image, as ``(x, y)`` with ``x`` to the right and ``y`` *down* (row index), the display convention
of :mod:`histolatent.nn.groupconv`. The pixel spacing of a ``D``-pixel side is ``2 / (D - 1)``.

Pose convention (shared by every model that renders with these coordinates): an object with
canonical image ``g`` seen at rotation ``theta`` (radians, counter-clockwise as displayed) and
position ``t`` is

    image(u) = g(M(theta) (u - t)),   M(theta) = [[cos, -sin], [sin, cos]]  (x, y-down)

which is TARGET-VAE's Eq. 2 with the pixel coordinates shifted by ``-t`` then rotated (rotating
by ``theta = pi / 2`` equals :func:`torch.rot90` with ``k = 1`` on ``(H, W)``).

Random Fourier features (Rahimi & Recht 2007; TARGET-VAE §3.3.2) embed a coordinate ``v`` as
``cos(W v / sigma + b)`` with ``W ~ N(0, I)`` of shape ``(F, 2)``, ``b ~ U(0, 2 pi)`` and ``sigma``
the pixel spacing. :func:`transformed_fourier_features` evaluates them at the transformed
coordinates of every pixel of every image of a batch without materialising the coordinates: the
transform is folded into the frequencies, ``W M(theta) / sigma``, and the phase (always float32:
phases reach ~10^2 rad, far beyond bfloat16's resolution) is recomputed in the backward pass
instead of being stored, so the only ``(B, P, F)`` tensor kept for autograd is the output, in the
matmul dtype (bfloat16 under autocast).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "RandomFourierFeatures",
    "at_least_float32",
    "SpatialGenerator",
    "coordinate_grid",
    "grid_axes",
    "pixel_spacing",
    "rotation_matrices",
    "transform_coordinates",
    "transformed_fourier_features",
    "wrap_angle",
]


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` as float32 if it is half or bfloat16 (autocast outputs), unchanged if float32/float64."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def wrap_angle(theta: Tensor) -> Tensor:
    """Wrap radians to ``(-pi, pi]`` (the convention of every ``theta`` a model returns)."""
    return math.pi - torch.remainder(math.pi - theta, 2 * math.pi)


def pixel_spacing(size: int) -> float:
    """Spacing ``2 / (D - 1)`` of a ``D``-pixel side on ``[-1, 1]``."""
    return 2.0 / max(size - 1, 1)


@functools.lru_cache(maxsize=32)
def _grid_cpu(height: int, width: int, spacing: float | None) -> Tensor:
    sy = spacing if spacing is not None else pixel_spacing(height)
    sx = spacing if spacing is not None else pixel_spacing(width)
    ys = (torch.arange(height, dtype=torch.float64) - (height - 1) / 2) * sy
    xs = (torch.arange(width, dtype=torch.float64) - (width - 1) / 2) * sx
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(height * width, 2)  # float64, cast on request


def coordinate_grid(height: int, width: int | None = None, *, spacing: float | None = None,
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel-centre coordinates ``(H * W, 2)`` as ``(x, y)``, centred on the image, row-major (y down).

    By default the image spans ``[-1, 1]`` (spacing ``2 / (W - 1)`` along x, ``2 / (H - 1)`` along
    y); with ``spacing`` every pixel step is ``spacing`` (a larger canvas, or a pooled image, in the
    coordinate units of a training image). Cached per size (read-only).
    """
    width = height if width is None else width
    sp = None if spacing is None else float(spacing)
    return _grid_cpu(int(height), int(width), sp).to(device=device, dtype=dtype)


def grid_axes(height: int, width: int | None = None, *, spacing: float | None = None,
              device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """The axes ``(ys (H,), xs (W,))`` of :func:`coordinate_grid` (same spacing and centring)."""
    width = height if width is None else width
    g = coordinate_grid(height, width, spacing=spacing, device=device, dtype=dtype).reshape(height, width, 2)
    return g[:, 0, 1].contiguous(), g[0, :, 0].contiguous()


def rotation_matrices(theta: Tensor) -> Tensor:
    """``M(theta)``: ``(B,) -> (B, 2, 2)``, ``[[cos, -sin], [sin, cos]]`` (see the module docstring)."""
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def transform_coordinates(coords: Tensor, theta: Tensor, t: Tensor) -> Tensor:
    """``M(theta) (u - t)`` for every pixel ``u``: coords ``(P, 2)``, theta ``(B,)``, t ``(B, 2)`` -> ``(B, P, 2)``."""
    m = rotation_matrices(theta)  # (B, 2, 2)
    return torch.einsum("bij,bpj->bpi", m, coords[None] - t[:, None, :])


class _TransformedCos(torch.autograd.Function):
    """``cos(u @ A_b^T + c_b)`` for ``u (P, 2)``, ``A (B, F, 2)``, ``c (B, F)`` -> ``(B, P, F)``.

    Phases in the dtype of ``A`` (float32 or float64), chunked over the batch; the backward recomputes the phase (no (B, P, F)
    float32 tensor is saved) and returns gradients for ``A`` and ``c`` only.
    """

    @staticmethod
    def forward(ctx, coords: Tensor, a: Tensor, c: Tensor, out_dtype: torch.dtype, chunk: int) -> Tensor:
        b, p, f = a.shape[0], coords.shape[0], a.shape[1]
        out = torch.empty(b, p, f, dtype=out_dtype, device=a.device)
        u = coords.to(a.dtype)
        work = torch.empty(min(chunk, b), p, f, dtype=a.dtype, device=a.device)  # reused phase buffer
        for lo in range(0, b, chunk):
            hi = min(b, lo + chunk)
            phase = torch.baddbmm(c[lo:hi, None, :], u.expand(hi - lo, p, 2), a[lo:hi].transpose(1, 2),
                                  out=work[: hi - lo])  # (b', P, F)
            torch.cos(phase, out=out[lo:hi])
        ctx.save_for_backward(coords, a, c)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        coords, a, c = ctx.saved_tensors
        b, p, f = a.shape[0], coords.shape[0], a.shape[1]
        # [u_x, u_y, 1]^T: one GEMM gives d/dA (rows 0-1) and d/dc (row 2)
        u1 = torch.cat([coords.to(a.dtype), torch.ones(p, 1, dtype=a.dtype, device=a.device)], 1).t()  # (3, P)
        grad = torch.empty(b, 3, f, dtype=a.dtype, device=a.device)
        work = torch.empty(min(ctx.chunk, b), p, f, dtype=a.dtype, device=a.device)
        for lo in range(0, b, ctx.chunk):
            hi = min(b, lo + ctx.chunk)
            phase = torch.baddbmm(c[lo:hi, None, :], u1[:2].t().expand(hi - lo, p, 2), a[lo:hi].transpose(1, 2),
                                  out=work[: hi - lo])
            g = phase.sin_().mul_(grad_out[lo:hi]).neg_()  # d cos(phase) / d phase * grad, (b', P, F)
            torch.matmul(u1, g, out=grad[lo:hi])  # (b', 3, F)
        return None, grad[:, :2].transpose(1, 2), grad[:, 2], None, None


class _GridTransformedCos(torch.autograd.Function):
    """:class:`_TransformedCos` for a regular grid ``u = (x_j, y_i)``, with no per-pixel transcendental.

    The phase is separable, ``A u + c = alpha_j + beta_i`` with ``alpha = A_x x + c`` ``(B, W, F)`` and
    ``beta = A_y y`` ``(B, H, F)``, so ``cos(alpha + beta) = cos a cos b - sin a sin b`` from four
    small tables: two passes over the output (a multiply, then a fused multiply-subtract written
    straight in the output dtype). The backward builds ``sin(alpha + beta)`` the same way and
    reduces it with the gradient in one ``(3, H W) @ (H W, F)`` matmul per image.
    """

    @staticmethod
    def forward(ctx, ys: Tensor, xs: Tensor, a: Tensor, c: Tensor, out_dtype: torch.dtype, chunk: int) -> Tensor:
        y, x = ys.to(a.dtype), xs.to(a.dtype)
        alpha = x[None, :, None] * a[:, None, :, 0] + c[:, None, :]  # (B, W, F)
        beta = y[None, :, None] * a[:, None, :, 1]  # (B, H, F)
        ca, sa, cb, sb = alpha.cos(), alpha.sin(), beta.cos(), beta.sin()
        b, h, w, f = a.shape[0], y.shape[0], x.shape[0], a.shape[1]
        out = torch.empty(b, h, w, f, dtype=out_dtype, device=a.device)
        torch.mul(cb[:, :, None, :], ca[:, None, :, :], out=out)
        out.addcmul_(sb[:, :, None, :], sa[:, None, :, :], value=-1.0)
        ctx.save_for_backward(y, x, ca, sa, cb, sb)
        ctx.chunk = chunk
        return out.view(b, h * w, f)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        y, x, ca, sa, cb, sb = ctx.saved_tensors
        b, h, w, f = ca.shape[0], y.shape[0], x.shape[0], ca.shape[2]
        weights = torch.stack([torch.ones(h, w, dtype=x.dtype, device=x.device), x[None, :].expand(h, w),
                               y[:, None].expand(h, w)]).reshape(3, h * w)  # [1, x_j, y_i]
        grad = torch.empty(b, 3, f, dtype=ca.dtype, device=ca.device)
        work = torch.empty(min(ctx.chunk, b), h, w, f, dtype=ca.dtype, device=ca.device)
        g = grad_out.view(b, h, w, f)
        for lo in range(0, b, ctx.chunk):
            hi = min(b, lo + ctx.chunk)
            s = work[: hi - lo]
            torch.mul(sb[lo:hi, :, None, :], ca[lo:hi, None, :, :], out=s)
            s.addcmul_(cb[lo:hi, :, None, :], sa[lo:hi, None, :, :])  # sin(alpha + beta)
            s.mul_(g[lo:hi])
            torch.matmul(weights, s.view(hi - lo, h * w, f), out=grad[lo:hi])  # (b', 3, F)
        grad.neg_()  # d cos / d phase = -sin
        return None, None, grad[:, 1:].transpose(1, 2), grad[:, 0], None, None


def transformed_fourier_features(coords: Tensor | tuple[Tensor, Tensor], freqs: Tensor, phases: Tensor,
                                 theta: Tensor, t: Tensor, *, out_dtype: torch.dtype | None = None,
                                 chunk: int = 8) -> Tensor:
    """Fourier features of transformed coordinates, ``cos(W M(theta) (u - t) + b)``.

    Parameters
    ----------
    coords : ``(P, 2)`` pixel coordinates ``u`` (constant, no gradient), or a regular grid given
        as ``(ys (H,), xs (W,))`` — then ``P = H W`` in row-major order, and the features are
        computed without any per-pixel cos/sin (see :class:`_GridTransformedCos`).
    freqs : ``(F, 2)`` frequencies ``W / sigma`` (a buffer: no gradient is returned for it).
    phases : ``(F,)`` offsets ``b``.
    theta : ``(B,)`` rotations; t : ``(B, 2)`` translations (both differentiable).
    out_dtype : dtype of the result (default: the autocast dtype if autocast is on, else float32).

    Returns
    -------
    ``(B, P, F)`` features; equal to ``cos(transform_coordinates(u, theta, t) @ freqs.T + phases)``.
    """
    dev = theta.device.type
    cd = torch.promote_types(theta.dtype, torch.float32)  # phases: float32 at least, never bf16
    if out_dtype is None:
        out_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else cd
    with torch.autocast(dev, enabled=False):
        m = rotation_matrices(theta.to(cd))  # (B, 2, 2)
        a = torch.einsum("fi,bij->bfj", freqs.to(cd), m)  # (B, F, 2): W M / sigma
        c = phases.to(cd)[None] - torch.einsum("bfj,bj->bf", a, t.to(cd))  # (B, F): b - W M t
        if isinstance(coords, tuple):
            ys, xs = coords
            return _GridTransformedCos.apply(ys, xs, a.contiguous(), c.contiguous(), out_dtype, chunk)
        return _TransformedCos.apply(coords, a.contiguous(), c.contiguous(), out_dtype, chunk)


class RandomFourierFeatures(nn.Module):
    """Fixed random Fourier features ``v (..., 2) -> cos(W v / sigma + b) (..., F)``.

    ``W ~ N(0, I)``, ``b ~ U(0, 2 pi)`` drawn once from ``seed`` and stored as buffers (so they
    travel with the weights). ``sigma`` is in coordinate units; TARGET-VAE uses the pixel spacing.
    """

    def __init__(self, n_features: int, sigma: float, *, in_dim: int = 2, seed: int = 0) -> None:
        super().__init__()
        if n_features < 1 or sigma <= 0:
            raise ValueError(f"n_features ({n_features}) must be >= 1 and sigma ({sigma}) > 0")
        g = torch.Generator().manual_seed(seed)
        self.n_features, self.sigma = n_features, float(sigma)
        self.register_buffer("freqs", torch.randn(n_features, in_dim, generator=g) / sigma)  # W / sigma
        self.register_buffer("phases", torch.rand(n_features, generator=g) * (2 * math.pi))

    def forward(self, v: Tensor) -> Tensor:
        """``(..., 2) -> (..., F)`` (float32 phases)."""
        with torch.autocast(v.device.type, enabled=False):
            return torch.cos(v.float() @ self.freqs.t() + self.phases)

    def transformed(self, coords: Tensor | tuple[Tensor, Tensor], theta: Tensor, t: Tensor, *,
                    out_dtype: torch.dtype | None = None) -> Tensor:
        """Features of ``M(theta) (u - t)``: ``(P, 2)`` or a grid ``(ys, xs)``, ``(B,)``, ``(B, 2)`` -> ``(B, P, F)``."""
        return transformed_fourier_features(coords, self.freqs, self.phases, theta, t, out_dtype=out_dtype)

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, sigma={self.sigma:.4g}"


class SpatialGenerator(nn.Module):
    """Coordinate MLP ``p(y_i | z, M(theta)(x_i - t))`` (TARGET-VAE §3.3.2, Eq. 2; spatial-VAE).

    Fourier features of the transformed pixel coordinates -> ``Linear(F, H)``; ``z -> Linear(Z, H)``
    without bias; summed -> LeakyReLU -> ``(n_layers - 1)`` x [``Linear(H, H)`` -> LeakyReLU] ->
    ``Linear(H, out_dim)`` per pixel. All ``B * P`` pixels of a batch go through each layer as one
    matmul (in the autocast dtype when autocast is on; the Fourier phases stay float32).
    ``fourier_features=0`` feeds the raw coordinates instead (spatial-VAE).

    Parameters
    ----------
    z_dim : size of the content code ``z``.
    out_dim : outputs per pixel (channels x 1 for Bernoulli logits or x 2 for Gaussian mean and
        log-std).
    fourier_features : ``F`` (0 disables the expansion).
    sigma : Fourier scale in coordinate units (TARGET-VAE: the pixel spacing).
    hidden, n_layers : width ``H`` and number of hidden layers (TARGET-VAE digits: 512, 2).
    leaky_slope : LeakyReLU slope.
    seed : seed of the random features.
    """

    def __init__(self, z_dim: int, out_dim: int, *, fourier_features: int = 1024, sigma: float = 2.0 / 49,
                 hidden: int = 512, n_layers: int = 2, leaky_slope: float = 0.01, seed: int = 0) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.fourier = RandomFourierFeatures(fourier_features, sigma, seed=seed) if fourier_features else None
        self.coord = nn.Linear(fourier_features or 2, hidden)
        self.latent = nn.Linear(z_dim, hidden, bias=False) if z_dim else None
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_layers - 1))
        self.out = nn.Linear(hidden, out_dim)
        self.slope = leaky_slope

    def forward(self, z: Tensor | None, theta: Tensor, t: Tensor, coords: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        """``z (B, Z), theta (B,), t (B, 2)`` and pixel coordinates ``(P, 2)`` or a regular grid
        ``(ys (H,), xs (W,))`` (``P = H W``, row-major) -> ``(B, P, out_dim)``, float32 or float64."""
        if self.fourier is not None:
            feats = self.fourier.transformed(coords, theta, t)  # (B, P, F)
        else:
            if isinstance(coords, tuple):
                ys, xs = coords
                coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1).reshape(-1, 2)
            feats = transform_coordinates(coords.to(at_least_float32(theta).dtype), at_least_float32(theta),
                                          at_least_float32(t))  # (B, P, 2)
        # Out-of-place ops only: linear on (B, P, .) returns a view, and an in-place op on it
        # would cost a full copy of the activation in the backward pass (CopySlices).
        h = self.coord(feats)  # (B, P, H)
        if self.latent is not None and z is not None:
            h = h + self.latent(z)[:, None, :].to(h.dtype)
        h = F.leaky_relu(h, self.slope)
        for layer in self.hidden:
            h = F.leaky_relu(layer(h), self.slope)
        return at_least_float32(self.out(h))  # under autocast the logits are rounded to bf16 (rel. 2^-8)
