"""P_N / SE(2,N) group convolutions: lifting, group, transposed, projection, norm, pooling.

The discretised roto-translation group SE(2,N) = R^2 x| SO(2,N) samples SO(2) at the N angles
``theta_r = 2 pi r / N`` (paper 0, §4.2; Cohen & Welling 2016; Bekkers et al. 2018). A feature
map on SE(2,N) is stored as a tensor of shape ``(B, C, N, H, W)``: channel, orientation, space.

Group action (left-regular representation, paper 0 §4): rotating an image by ``theta_t``
(counter-clockwise as displayed, i.e. :func:`torch.rot90` with ``k=1`` on ``(H, W)`` for
``theta = 90°``) acts on an SE(2,N) map by rotating every orientation plane and rolling the
orientation axis by ``+t``::

    (L_t f)[c, r](u) = f[c, r - t](R_t^{-1} u)

Every layer here commutes with that action (exactly for multiples of 90° when 4 divides N,
up to interpolation error otherwise): see :func:`rotate_group` and :func:`equivariance_error`.

Kernels are rotated by a precomputed bilinear interpolation matrix around the kernel centre
(exact for multiples of 90°, a permutation then) with an optional disk mask of radius
``k / 2`` (Bekkers' SE(2) CNNs; radius ``k // 2 + 0.5`` for odd ``k``). The rotated filter bank
is built once per forward pass with a single (dense or sparse) matmul of the weights with that
matrix, then applied by one :func:`torch.nn.functional.conv2d`; in ``eval()`` the bank is
cached until the weights change. :meth:`export` turns a layer into a plain
``nn.Conv2d``/``nn.ConvTranspose2d`` for inference.

The interpolation matrix is a cached function of ``(kernel_size, n_rotations, disk)``
(:func:`rotation_matrix`), shared by all layers and models (the SE(2,N)-VAE's 5x5 kernels,
TARGET-VAE's 28x28 lifting kernels with R = 4/8/16).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "GroupBatchNorm",
    "GroupConv2d",
    "GroupConvTranspose2d",
    "GroupMaxPool2d",
    "GroupAvgPool2d",
    "GroupProjection",
    "GroupUpsample",
    "LiftingConv2d",
    "LiftingConvTranspose2d",
    "disk_mask",
    "equivariance_error",
    "project_orientations",
    "rotate_group",
    "rotate_image",
    "rotation_matrix",
]

# Above this many entries, the (R k^2, k^2) interpolation matrix is kept sparse: a 64x64 kernel
# with R = 16 would need 268 M dense entries, but has only 4 non-zeros per row.
_DENSE_MAX_ENTRIES = 1 << 22


# --------------------------------------------------------------------------------------------
# Pure maths: kernel rotation matrices
# --------------------------------------------------------------------------------------------
def disk_mask(kernel_size: int) -> np.ndarray:
    """Boolean ``(k, k)`` mask of the pixels whose centre lies within radius ``k / 2`` of the centre."""
    c = (kernel_size - 1) / 2
    yy, xx = np.mgrid[:kernel_size, :kernel_size]
    return (yy - c) ** 2 + (xx - c) ** 2 <= (kernel_size / 2) ** 2 + 1e-9


def _rotation_triplets(kernel_size: int, n_rotations: int, disk: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO entries ``(rows, cols, vals)`` of the ``(R k^2, k^2)`` bilinear rotation matrix (float64)."""
    k = kernel_size
    c = (k - 1) / 2
    mask = disk_mask(k).ravel() if disk else np.ones(k * k, dtype=bool)
    yy, xx = np.mgrid[:k, :k]
    dy, dx = (yy - c).ravel(), (xx - c).ravel()
    rows, cols, vals = [], [], []
    for r in range(n_rotations):
        theta = 2 * math.pi * r / n_rotations
        cos, sin = math.cos(theta), math.sin(theta)
        # out(u) = in(R_theta^{-1} u) in display coordinates (y down): theta = 90° is np.rot90.
        sx = dx * cos - dy * sin + c
        sy = dx * sin + dy * cos + c
        # snap near-integers so that multiples of 90° are exact permutations
        sx = np.where(np.abs(sx - np.round(sx)) < 1e-6, np.round(sx), sx)
        sy = np.where(np.abs(sy - np.round(sy)) < 1e-6, np.round(sy), sy)
        x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
        fx, fy = sx - x0, sy - y0
        for ox, oy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                          (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xs, ys = x0 + ox, y0 + oy
            ok = (w > 1e-12) & (xs >= 0) & (xs < k) & (ys >= 0) & (ys < k) & mask
            src = np.clip(ys, 0, k - 1) * k + np.clip(xs, 0, k - 1)
            ok &= mask[src]
            out_idx = np.nonzero(ok)[0]
            rows.append(r * k * k + out_idx)
            cols.append(src[out_idx])
            vals.append(w[out_idx])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


@functools.lru_cache(maxsize=64)
def rotation_matrix(kernel_size: int, n_rotations: int, disk: bool = True) -> Tensor:
    """Bilinear kernel-rotation matrix ``M`` of shape ``(R * k * k, k * k)``, float32, CPU.

    ``(M @ w.reshape(k * k)).reshape(R, k, k)[r]`` is the ``k x k`` kernel ``w`` rotated by
    ``2 pi r / R`` about its centre (counter-clockwise as displayed; ``r = R/4`` equals
    ``torch.rot90(w, 1)`` exactly when 4 divides R). With ``disk=True`` pixels outside the disk
    of radius ``k / 2`` are dropped before and after rotation. Dense for small kernels, sparse
    COO above ``2**22`` entries. Cached: computed once per ``(kernel_size, n_rotations, disk)``;
    treat the result as read-only.
    """
    if kernel_size < 1 or n_rotations < 1:
        raise ValueError(f"kernel_size ({kernel_size}) and n_rotations ({n_rotations}) must be >= 1")
    rows, cols, vals = _rotation_triplets(kernel_size, n_rotations, disk)
    shape = (n_rotations * kernel_size**2, kernel_size**2)
    idx = torch.from_numpy(np.stack([rows, cols]))
    m = torch.sparse_coo_tensor(idx, torch.from_numpy(vals).float(), shape, check_invariants=True).coalesce()
    if shape[0] * shape[1] <= _DENSE_MAX_ENTRIES:
        m = m.to_dense()
    return m


def _rotate_kernels(w: Tensor, n_rotations: int, disk: bool) -> Tensor:
    """Rotate a stack of kernels ``(..., k, k)`` into ``(..., R, k, k)`` with one matmul."""
    k = w.shape[-1]
    lead = w.shape[:-2]
    if k == 1:
        return w.unsqueeze(-3).expand(*lead, n_rotations, 1, 1)
    m = rotation_matrix(k, n_rotations, disk)
    if m.device != w.device:
        m = _matrix_on(k, n_rotations, disk, w.device)
    flat = w.reshape(-1, k * k).float()  # (P, k^2)
    if m.is_sparse:
        rot = torch.sparse.mm(m, flat.t()).t()  # (P, R k^2)
    else:
        rot = flat @ m.t()  # (P, R k^2)
    return rot.reshape(*lead, n_rotations, k, k).to(w.dtype)


@functools.lru_cache(maxsize=64)
def _matrix_on(kernel_size: int, n_rotations: int, disk: bool, device: torch.device) -> Tensor:
    return rotation_matrix(kernel_size, n_rotations, disk).to(device)


@functools.lru_cache(maxsize=64)
def _shift_index(n: int) -> Tensor:
    """``idx[r, s] = (s - r) mod n`` (the cyclic shift of the orientation axis of a group kernel)."""
    r = torch.arange(n)[:, None]
    s = torch.arange(n)[None, :]
    return (s - r) % n


def group_filter_bank(weight: Tensor, n_rotations: int, *, disk: bool = True) -> Tensor:
    """Rotated and cyclically shifted group kernels.

    Parameters
    ----------
    weight : ``(A, B, N, k, k)`` — ``A`` output-side channels, ``B`` input-side channels,
        ``N`` relative orientations.

    Returns
    -------
    ``(A, N, B, N, k, k)`` with ``bank[a, r, b, s] = rot_r(weight[a, b, (s - r) mod N])``.
    """
    a, b, n, k, _ = weight.shape
    if n != n_rotations:
        raise ValueError(f"weight has {n} orientations, expected {n_rotations}")
    rot = _rotate_kernels(weight, n, disk)  # (A, B, N_j, R, k, k)
    rot = rot.permute(3, 2, 0, 1, 4, 5)  # (R, N_j, A, B, k, k)
    idx = _shift_index(n).to(weight.device)
    bank = rot[torch.arange(n, device=weight.device)[:, None], idx]  # (R, N_s, A, B, k, k)
    return bank.permute(2, 0, 3, 1, 4, 5)  # (A, R, B, N_s, k, k)


# --------------------------------------------------------------------------------------------
# Group actions on tensors (for tests, guarantees and figures)
# --------------------------------------------------------------------------------------------
def rotate_image(x: Tensor, angle: float) -> Tensor:
    """Rotate ``(..., H, W)`` by ``angle`` radians counter-clockwise (as displayed) about the centre.

    Multiples of 90° use :func:`torch.rot90` (exact); other angles bilinear resampling with
    zero fill (so compare only inside the inscribed disk).
    """
    quarter = angle / (math.pi / 2)
    if abs(quarter - round(quarter)) < 1e-9:
        return torch.rot90(x, int(round(quarter)) % 4, dims=(-2, -1))
    shape = x.shape
    h, w = shape[-2:]
    flat = x.reshape(-1, 1, h, w)
    cos, sin = math.cos(angle), math.sin(angle)
    # affine_grid maps output (x, y) in [-1, 1] (y down) to input coordinates; same convention
    # as rotation_matrix: src_x = x cos - y sin, src_y = x sin + y cos.
    theta = torch.tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]], dtype=torch.float32)
    grid = F.affine_grid(theta[None].expand(flat.shape[0], 2, 3).to(x.device), list(flat.shape),
                         align_corners=False)
    out = F.grid_sample(flat.float(), grid.to(flat.dtype if flat.is_floating_point() else torch.float32),
                        mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.to(x.dtype).reshape(shape)


def rotate_group(x: Tensor, steps: int, n_rotations: int | None = None) -> Tensor:
    """Act on an SE(2,N) map ``(B, C, N, H, W)`` by the rotation ``2 pi steps / N``.

    Rotates every orientation plane spatially by ``2 pi steps / N`` and rolls the orientation
    axis by ``+steps``.
    """
    n = x.shape[2] if n_rotations is None else n_rotations
    return torch.roll(rotate_image(x, 2 * math.pi * steps / n), shifts=steps, dims=2)


def _disk_region(h: int, w: int, device: torch.device) -> Tensor:
    yy, xx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    r = min(h, w) / 2 - 1.5
    return ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r


@torch.no_grad()
def equivariance_error(layer: nn.Module, x: Tensor, steps: int = 1, n_rotations: int | None = None) -> float:
    """Relative equivariance error ``||f(g x) - g f(x)|| / ||f(x)||`` of a layer.

    ``g`` is the rotation by ``2 pi steps / N``. ``x`` is an image ``(B, C, H, W)`` (lifting) or
    an SE(2,N) map ``(B, C, N, H, W)``; outputs are SE(2,N) maps or, for a projection, images.
    For angles that are not multiples of 90° the comparison is restricted to the inscribed disk
    (the corners are lost to the rotation) and includes the interpolation error of rotating
    images; for multiples of 90° it is over the whole map.
    """
    n = n_rotations or getattr(layer, "n_rotations", None)
    if n is None:
        raise ValueError("n_rotations is needed for a layer without an n_rotations attribute")
    angle = 2 * math.pi * steps / n

    def act(t: Tensor) -> Tensor:
        return rotate_group(t, steps, n) if t.dim() == 5 else rotate_image(t, angle)

    y = layer(x)
    y_rot_in = layer(act(x))
    y_rot_out = act(y)
    diff = y_rot_in - y_rot_out
    ref = y
    quarter = steps * 4 / n
    if abs(quarter - round(quarter)) > 1e-9:
        m = _disk_region(y.shape[-2], y.shape[-1], y.device)
        diff, ref = diff[..., m], ref[..., m]
    return float(diff.float().norm() / ref.float().norm().clamp_min(1e-12))


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------
def _pair_int(v: int, name: str) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"{name} must be square, got {v}")
        v = v[0]
    return int(v)


class _BankCache:
    """Holds the eval-mode filter bank of a layer until its weight changes."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.bank: Tensor | None = None

    def get(self, key: tuple) -> Tensor | None:
        return self.bank if self.key == key else None

    def put(self, key: tuple, bank: Tensor) -> None:
        self.key, self.bank = key, bank


class _GroupConvBase(nn.Module):
    """Common machinery: weight, bias, init, filter-bank construction with eval caching."""

    transposed: bool = False
    lifting: bool = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_rotations: int, *,
                 padding: int = 0, bias: bool = True, disk: bool = True, weight_shape: tuple[int, ...],
                 fan_in: int) -> None:
        super().__init__()
        if n_rotations < 1:
            raise ValueError(f"n_rotations must be >= 1, got {n_rotations}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair_int(kernel_size, "kernel_size")
        self.n_rotations = n_rotations
        self.padding = _pair_int(padding, "padding")
        self.disk = disk and self.kernel_size > 1
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self._fan_in = fan_in
        self._cache = _BankCache()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal init, std sqrt(2 / fan_in) with fan_in counting the disk (Bekkers' SE(2) CNNs)."""
        with torch.no_grad():
            self.weight.normal_(0.0, math.sqrt(2.0 / max(self._fan_in, 1)))
            if self.disk:
                self.weight.mul_(torch.from_numpy(disk_mask(self.kernel_size)).to(self.weight))
            if self.bias is not None:
                self.bias.zero_()

    def _build_bank(self) -> Tensor:
        raise NotImplementedError

    def filter_bank(self) -> Tensor:
        """The rotated filter bank as a plain conv weight.

        Built (differentiably) on every call in training mode; in ``eval()`` built once without
        gradient and cached until the weight changes (in place or by ``load_state_dict``).
        """
        with torch.autocast(self.weight.device.type, enabled=False):
            if self.training:
                return self._build_bank()
            key = (self.weight._version, self.weight.data_ptr(), self.weight.dtype, self.weight.device)
            bank = self._cache.get(key)
            if bank is None:
                with torch.no_grad():
                    bank = self._build_bank()
                self._cache.put(key, bank)
            return bank

    def _bias(self) -> Tensor | None:
        if self.bias is None:
            return None
        return self.bias.repeat_interleave(self.n_rotations)  # shared by the N orientations

    def train(self, mode: bool = True):
        self._cache = _BankCache()
        return super().train(mode)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"n_rotations={self.n_rotations}, padding={self.padding}, disk={self.disk}, "
                f"bias={self.bias is not None}")

    def export(self) -> nn.Sequential:
        """A plain-torch module computing the same map (the current filter bank frozen in)."""
        bank = self.filter_bank().detach().clone()
        bias = self._bias()
        cls = nn.ConvTranspose2d if self.transposed else nn.Conv2d
        if self.transposed:
            cin, cout = bank.shape[0], bank.shape[1]
        else:
            cout, cin = bank.shape[0], bank.shape[1]
        conv = cls(cin, cout, self.kernel_size, padding=self.padding, bias=bias is not None)
        with torch.no_grad():
            conv.weight.copy_(bank)
            if bias is not None:
                conv.bias.copy_(bias.detach())
        layers: list[nn.Module] = []
        if not self.lifting:
            layers.append(nn.Flatten(1, 2))
        layers += [conv, nn.Unflatten(1, (self.out_channels, self.n_rotations))]
        return nn.Sequential(*layers).to(self.weight.device)


class LiftingConv2d(_GroupConvBase):
    """Lifting convolution R^2 -> SE(2,N): ``(B, C_in, H, W) -> (B, C_out, N, H', W')``.

    ``out[o, r] = sum_i in_i * rot_r(w[o, i])`` (cross-correlation), so rotating the input by
    ``2 pi t / N`` rotates the output and rolls its orientation axis by ``t``. Any kernel size
    (odd or even, e.g. TARGET-VAE's 28 with padding 8), any ``N``; ``H' = H + 2 p - k + 1``.

    Parameters
    ----------
    in_channels, out_channels : channels (orientations not counted).
    kernel_size : spatial size ``k``.
    n_rotations : ``N``, the number of sampled rotations.
    padding : zero padding on each side.
    disk : mask the kernel to the disk of radius ``k / 2`` (recommended unless N divides 4).
    """

    lifting = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_rotations: int, *,
                 padding: int = 0, bias: bool = True, disk: bool = True) -> None:
        k = _pair_int(kernel_size, "kernel_size")
        area = int(disk_mask(k).sum()) if disk else k * k
        super().__init__(in_channels, out_channels, k, n_rotations, padding=padding, bias=bias, disk=disk,
                         weight_shape=(out_channels, in_channels, k, k), fan_in=in_channels * area)

    def _build_bank(self) -> Tensor:
        rot = _rotate_kernels(self.weight, self.n_rotations, self.disk)  # (O, I, R, k, k)
        o, i, r, k, _ = rot.shape
        return rot.permute(0, 2, 1, 3, 4).reshape(o * r, i, k, k)  # out channel index o * R + r

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, N, H', W')``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"LiftingConv2d expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        y = F.conv2d(x, self.filter_bank(), self._bias(), padding=self.padding)  # (B, O R, H', W')
        return y.unflatten(1, (self.out_channels, self.n_rotations))


class GroupConv2d(_GroupConvBase):
    """Group convolution SE(2,N) -> SE(2,N): ``(B, C_in, N, H, W) -> (B, C_out, N, H', W')``.

    ``out[o, r] = sum_{i, s} in[i, s] * rot_r(w[o, i, (s - r) mod N])``: the kernel is rotated
    spatially and its orientation axis rolled (Cohen & Welling 2016; paper 0 §4.2).
    ``kernel_size=1`` gives a 1x1 group conv (mixes channels and orientations, no interpolation).

    Parameters
    ----------
    orientation_size : number of relative orientations the kernel spans (odd, centred on 0);
        ``None`` (default) spans all ``N``; ``1`` mixes channels only, orientation by orientation
        (TARGET-VAE's pointwise "3-D" 1x1 layers).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_rotations: int, *,
                 padding: int = 0, bias: bool = True, disk: bool = True,
                 orientation_size: int | None = None) -> None:
        k = _pair_int(kernel_size, "kernel_size")
        n_o = n_rotations if orientation_size is None else int(orientation_size)
        if not 1 <= n_o <= n_rotations or (n_o != n_rotations and n_o % 2 == 0):
            raise ValueError(f"orientation_size must be odd and <= {n_rotations} (or None), got {orientation_size}")
        self.orientation_size = n_o
        area = int(disk_mask(k).sum()) if (disk and k > 1) else k * k
        shape = (out_channels, in_channels, n_o, k, k)
        if self.transposed:
            shape = (in_channels, out_channels, n_o, k, k)
        fan_in = in_channels * n_o * area
        super().__init__(in_channels, out_channels, k, n_rotations, padding=padding, bias=bias, disk=disk,
                         weight_shape=shape, fan_in=fan_in)

    def _full_orientation_weight(self) -> Tensor:
        """``(A, B, N, k, k)``: the local orientation kernel placed at offsets ``-n_o//2 .. n_o//2``."""
        n, n_o = self.n_rotations, self.orientation_size
        if n_o == n:
            return self.weight
        full = self.weight.new_zeros(*self.weight.shape[:2], n, *self.weight.shape[3:])
        offsets = [(d - n_o // 2) % n for d in range(n_o)]
        return full.index_copy(2, torch.tensor(offsets, device=self.weight.device), self.weight)

    def _build_bank(self) -> Tensor:
        bank = group_filter_bank(self._full_orientation_weight(), self.n_rotations, disk=self.disk)
        a, r, b, s, k, _ = bank.shape
        return bank.reshape(a * r, b * s, k, k)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, N, H, W) -> (B, C_out, N, H', W')``."""
        if x.dim() != 5 or x.shape[1] != self.in_channels or x.shape[2] != self.n_rotations:
            raise ValueError(f"{type(self).__name__} expects (B, {self.in_channels}, {self.n_rotations}, H, W), "
                             f"got {tuple(x.shape)}")
        y = F.conv2d(x.flatten(1, 2), self.filter_bank(), self._bias(), padding=self.padding)
        return y.unflatten(1, (self.out_channels, self.n_rotations))


class GroupConvTranspose2d(GroupConv2d):
    """Transposed group convolution SE(2,N) -> SE(2,N) (decoders): ``H' = H + k - 1 - 2 p``.

    The adjoint of :class:`GroupConv2d` with the same rotated/rolled bank
    ``bank[i, r, o, s] = rot_r(w[i, o, (s - r) mod N])``; each input location stamps its kernel,
    which commutes with rotations of the grid and rolls of the orientation axis.
    """

    transposed = True

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, N, H, W) -> (B, C_out, N, H + k - 1 - 2p, W + k - 1 - 2p)``."""
        if x.dim() != 5 or x.shape[1] != self.in_channels or x.shape[2] != self.n_rotations:
            raise ValueError(f"GroupConvTranspose2d expects (B, {self.in_channels}, {self.n_rotations}, H, W), "
                             f"got {tuple(x.shape)}")
        y = F.conv_transpose2d(x.flatten(1, 2), self.filter_bank(), self._bias(), padding=self.padding)
        return y.unflatten(1, (self.out_channels, self.n_rotations))


class LiftingConvTranspose2d(_GroupConvBase):
    """Transposed lifting convolution R^2 -> SE(2,N): ``(B, C_in, H, W) -> (B, C_out, N, H', W')``.

    ``out[o, r] = sum_i convT(in_i, rot_r(w[i, o]))``, ``H' = H + k - 1 - 2 p``.
    """

    lifting = True
    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_rotations: int, *,
                 padding: int = 0, bias: bool = True, disk: bool = True) -> None:
        k = _pair_int(kernel_size, "kernel_size")
        area = int(disk_mask(k).sum()) if disk else k * k
        super().__init__(in_channels, out_channels, k, n_rotations, padding=padding, bias=bias, disk=disk,
                         weight_shape=(in_channels, out_channels, k, k), fan_in=in_channels * area)

    def _build_bank(self) -> Tensor:
        rot = _rotate_kernels(self.weight, self.n_rotations, self.disk)  # (I, O, R, k, k)
        i, o, r, k, _ = rot.shape
        return rot.reshape(i, o * r, k, k)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"LiftingConvTranspose2d expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        y = F.conv_transpose2d(x, self.filter_bank(), self._bias(), padding=self.padding)
        return y.unflatten(1, (self.out_channels, self.n_rotations))


def project_orientations(x: Tensor, mode: Literal["mean", "max"] = "mean") -> Tensor:
    """Projection SE(2,N) -> R^2: mean or max over the orientation axis, ``(B, C, N, H, W) -> (B, C, H, W)``.

    Invariant to rolls of the orientation axis, hence equivariant to rotations of the input.
    """
    if mode == "mean":
        return x.mean(dim=2)
    if mode == "max":
        return x.amax(dim=2)
    raise ValueError(f"projection mode must be 'mean' or 'max', got {mode!r}")


class GroupProjection(nn.Module):
    """Module form of :func:`project_orientations`."""

    def __init__(self, mode: Literal["mean", "max"] = "mean") -> None:
        super().__init__()
        if mode not in ("mean", "max"):
            raise ValueError(f"projection mode must be 'mean' or 'max', got {mode!r}")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        return project_orientations(x, self.mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class GroupBatchNorm(nn.BatchNorm2d):
    """Batch norm of SE(2,N) maps with statistics over batch, orientation and space.

    One mean/variance and one affine pair per channel, shared by all orientations (so the layer
    commutes with rolls of the orientation axis; paper 0 §5.1). ``(B, C, N, H, W)`` in and out.
    """

    def forward(self, x: Tensor) -> Tensor:
        b, c, n, h, w = x.shape
        return super().forward(x.reshape(b, c, n * h, w)).reshape(b, c, n, h, w)


class GroupMaxPool2d(nn.Module):
    """Spatial max pooling of each orientation plane: ``(B, C, N, H, W) -> (B, C, N, H // s, W // s)``.

    Exactly rotation-equivariant for 90° when the pooled size divides ``H`` and ``W``.
    """

    def __init__(self, kernel_size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride or kernel_size

    def forward(self, x: Tensor) -> Tensor:
        y = F.max_pool2d(x.flatten(1, 2), self.kernel_size, self.stride)
        return y.unflatten(1, x.shape[1:3])


class GroupAvgPool2d(GroupMaxPool2d):
    """Spatial average pooling of each orientation plane (see :class:`GroupMaxPool2d`)."""

    def forward(self, x: Tensor) -> Tensor:
        y = F.avg_pool2d(x.flatten(1, 2), self.kernel_size, self.stride)
        return y.unflatten(1, x.shape[1:3])


class GroupUpsample(nn.Module):
    """Spatial up-sampling ("up-pooling") of each orientation plane: ``H -> scale * H``."""

    def __init__(self, scale_factor: int = 2, mode: str = "nearest") -> None:
        super().__init__()
        self.scale_factor = scale_factor
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        s = self.scale_factor
        if self.mode == "nearest" and isinstance(s, int):
            # expand + reshape: same values as F.interpolate, with a much faster backward on CPU
            b, c, n, h, w = x.shape
            return x[..., :, None, :, None].expand(b, c, n, h, s, w, s).reshape(b, c, n, h * s, w * s)
        y = F.interpolate(x.flatten(1, 2), scale_factor=s, mode=self.mode)
        return y.unflatten(1, x.shape[1:3])
