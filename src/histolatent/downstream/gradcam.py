"""Grad-CAM on compressed slides (Selvaraju et al., ICCV 2017; NIC paper §3.3, Eq. 7).

For a CNN ``S`` applied to a compressed slide ``ω'`` (a ``(C, H, W)`` grid of tile codes,
:mod:`histolatent.embed.grid`) and one convolutional layer with activations ``A`` of shape
``(K, h, w)``, Grad-CAM weighs each feature map by the spatial mean of the gradient of the
class score ``y`` with respect to it and keeps the positive part of the weighted sum:

    α_k = mean_ij ∂y / ∂A_k(ij),        cam = ReLU(Σ_k α_k A_k)

then resamples ``cam`` to the grid's ``(H, W)`` (bilinear), so a heatmap has one value per
grid cell and the grid's level-0 affine. The NIC paper writes the weighted sum without the
ReLU (Eq. 7) and applies it to the first convolutional layer to keep the resolution; here
the layer is the model's ``cam_layer`` attribute unless another is named.

:func:`grad_cam` works on a batch of tensors. :func:`grid_heatmap` works on a whole grid
store in overlapping windows, so that memory is bounded by the window and not by the slide
(the 782 x 782 grid of a 100k x 100k-pixel slide: about 16 MB of peak memory with 128-cell
windows, 119 MB in one pass, for a tiny two-layer model); its docstring says when the
windowed map equals the whole-grid map exactly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from histolatent.embed.encode import module_device
from histolatent.errors import InputError
from histolatent.progress import progress as progress_meter

__all__ = ["cam_layer_of", "grad_cam", "grid_heatmap", "window_spans"]


def cam_layer_of(model: torch.nn.Module, layer: str | torch.nn.Module | None = None) -> torch.nn.Module:
    """The layer Grad-CAM reads: ``layer`` (a module or a submodule name), else ``model.cam_layer``."""
    if isinstance(layer, torch.nn.Module):
        return layer
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            raise InputError(f"layer: {type(model).__name__} has no submodule {layer!r}") from None
    if layer is not None:
        raise InputError(f"layer: expected a module, a submodule name or None, got {type(layer).__name__}")
    found = getattr(model, "cam_layer", None)
    if not isinstance(found, torch.nn.Module):
        raise InputError(f"model {type(model).__name__}: no cam_layer attribute; pass layer= (a module or the "
                         "name of a convolutional submodule)")
    return found


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run in eval mode (batch-norm running statistics, no dropout); give the caller's mode back."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@contextmanager
def _captured(layer: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """The outputs of ``layer`` during the block, one per forward call."""
    seen: list[torch.Tensor] = []

    def hook(module: Any, _inputs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            raise InputError(f"cam layer {type(module).__name__}: expected a (N, K, h, w) output, got "
                             f"{getattr(out, 'shape', type(out).__name__)}")
        seen.append(out)

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _logits(output: Any, n: int) -> torch.Tensor:
    """``(N, K)`` logits from a model output: ``(N,)``, ``(N, 1)`` or ``(N, K)``, a tuple led by one,
    or a mapping of named parts with ``"logits"`` (histolatent's slide models)."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if isinstance(output, Mapping):
        if "logits" not in output:
            raise InputError(f"model output: a mapping without 'logits' (parts {sorted(output)})")
        output = output["logits"]
    if not isinstance(output, torch.Tensor) or output.shape[:1] != (n,) or output.ndim > 2:
        raise InputError(f"model output: expected logits (N,), (N, 1) or (N, K) with N = {n}, got "
                         f"{getattr(output, 'shape', type(output).__name__)}")
    return output[:, None] if output.ndim == 1 else output


def _scores(logits: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    """``(N,)`` class scores: column ``target`` of ``(N, K)`` logits (default: each row's argmax)."""
    n, k = logits.shape
    if target is None:
        idx = logits.argmax(1)
    else:
        idx = torch.as_tensor(target, device=logits.device).long().expand(n)
        if int(idx.min()) < 0 or int(idx.max()) >= k:
            raise InputError(f"target: expected a class index in [0, {k}), got {target}")
    return logits.gather(1, idx[:, None])[:, 0]


def _forward(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, target: Any
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations ``A`` ``(N, K, h, w)`` of ``layer`` and the gradients of the scores with respect to them."""
    with torch.enable_grad(), _captured(layer) as seen:
        out = _logits(model(x), x.shape[0])
        if len(seen) != 1:
            raise InputError(f"cam layer: expected it to run once per forward pass, it ran {len(seen)} times")
        act = seen[0]
        if not act.requires_grad:
            raise InputError("cam layer: its output does not depend on the model's parameters or input")
        (grad,) = torch.autograd.grad(_scores(out, target).sum(), act)
    return act.detach(), grad.detach()


def _stride(size: tuple[int, int], cam_size: tuple[int, int]) -> tuple[int, int] | None:
    """The cam layer's integer stride ``s`` per axis (``ceil(size / s) == cam_size``), or None."""
    out = []
    for n, m in zip(size, cam_size, strict=True):
        s = max(1, round(n / m))
        if math.ceil(n / s) != m:
            return None
        out.append(s)
    return out[0], out[1]


def _upsample(cam: torch.Tensor, size: tuple[int, int], stride: tuple[int, int] | None) -> torch.Tensor:
    """``(N, h, w)`` -> ``(N, H, W)``, bilinear.

    With an integer stride the scale is exactly the stride (cam cell ``k`` covers input
    cells ``[k s, (k + 1) s)``), so windows that start at multiples of the stride agree
    with the whole grid; otherwise the output size sets the scale.
    """
    if tuple(cam.shape[-2:]) == tuple(size):
        return cam
    if stride is None:
        return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    up = F.interpolate(cam[:, None], scale_factor=stride, mode="bilinear", align_corners=False,
                       recompute_scale_factor=False)[:, 0]
    return up[:, :size[0], :size[1]]


def grad_cam(model: torch.nn.Module, x: torch.Tensor, *, layer: str | torch.nn.Module | None = None,
             target: int | torch.Tensor | None = None) -> torch.Tensor:
    """Grad-CAM maps of a batch, at the input's resolution.

    Parameters
    ----------
    model : torch.nn.Module
        Maps float ``(N, C, H, W)`` to logits ``(N,)``, ``(N, 1)`` or ``(N, K)`` (or a tuple
        led by those). Run in eval mode; its mode and its parameters' ``.grad`` are left as
        they were.
    x : Tensor
        ``(N, C, H, W)`` (or ``(C, H, W)``), e.g. a compressed slide as a batch of one.
    layer : module or str, optional
        The convolutional layer (or its name in ``model``); default ``model.cam_layer``.
    target : int or Tensor, optional
        The class whose score is explained; default: the single output, or each row's argmax.

    Returns
    -------
    Tensor
        ``(N, H, W)`` float32 on the CPU: ``ReLU(Σ_k α_k A_k)`` upsampled bilinearly, not
        normalised.

    Examples
    --------
    >>> conv = torch.nn.Conv2d(1, 1, 1, bias=False); _ = conv.weight.data.fill_(2.0)
    >>> model = torch.nn.Sequential(conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(1, 1))
    >>> _ = model[3].weight.data.fill_(1.0)
    >>> x = torch.tensor([[[[1.0, -1.0], [0.0, 3.0]]]])
    >>> grad_cam(model, x, layer=model[0])   # alpha = 1/4, A = 2x: ReLU(x / 2)
    tensor([[[0.5000, 0.0000],
             [0.0000, 1.5000]]])
    """
    cam_layer = cam_layer_of(model, layer)
    x = torch.as_tensor(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise InputError(f"x: expected (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    x = x.to(module_device(model), torch.float32)
    with _eval_mode(model):
        act, grad = _forward(model, cam_layer, x, target)
    alpha = grad.mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
    cam = torch.relu((alpha * act).sum(1))  # (N, h, w)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    return _upsample(cam, size, _stride(size, (int(cam.shape[-2]), int(cam.shape[-1])))).float().cpu()


# -- whole grids in windows -----------------------------------------------------------------
def window_spans(n: int, window: int, overlap: int, align: int = 1) -> list[tuple[int, int, int, int]]:
    """Overlapping windows along one axis: ``(start, stop, core_start, core_stop)`` each.

    Windows are ``window`` cells long (the last one ends at ``n`` and may be up to
    ``align - 1`` cells longer), start at multiples of ``align`` and share at least
    ``overlap`` cells with the next one. The cores tile ``[0, n)``; each core boundary lies
    in the middle of an overlap, so a core keeps at least ``overlap // 2`` cells away from
    every window edge that faces another window. One window ``(0, n, 0, n)`` when
    ``n <= window``.

    >>> window_spans(10, 6, 2)
    [(0, 6, 0, 5), (4, 10, 5, 10)]
    """
    if n <= window:
        return [(0, n, 0, n)]
    step = (window - overlap) // align * align
    if step < 1:
        raise InputError(f"window {window} and overlap {overlap}: the window must exceed the overlap by at least "
                         f"{align} cell(s), the cam layer's stride")
    starts = list(range(0, n - window, step))
    last = (n - window) // align * align  # the last window ends at n, aligned like the others
    if last > starts[-1]:
        starts.append(last)
    stops = [s + window for s in starts[:-1]] + [n]
    bounds = [0] + [s + (prev - s) // 2 for s, prev in zip(starts[1:], stops[:-1], strict=True)] + [n]
    return [(a, b, bounds[k], bounds[k + 1]) for k, (a, b) in enumerate(zip(starts, stops, strict=True))]


class _Crop:
    """The identity copy ``arr[0, :, :h, :w]`` of a dihedral store, sliced lazily."""

    def __init__(self, arr: Any, h: int, w: int) -> None:
        self.arr, self.shape = arr, (int(arr.shape[1]), int(h), int(w))

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        return self.arr[(0, *key)]


def _open_grid(grid: Any) -> tuple[Any, np.ndarray | None]:
    """``(lazy (C, H, W) array, the store's (H, W) bool mask or None)`` of a store path or an array."""
    if not isinstance(grid, (str, os.PathLike)):
        if not hasattr(grid, "shape") or len(grid.shape) != 3:
            raise InputError(f"grid: expected a grid store path or a (C, H, W) array, got {type(grid).__name__}")
        return grid, None
    import zarr

    path = Path(grid)
    try:
        root = zarr.open_group(str(path), mode="r")
        arr, stored = root["grid"], root["mask"]
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise InputError(f"grid {str(path)!r}: not a slide grid store ({err})") from None
    if arr.ndim == 4:  # a dihedral store: the identity copy, in its own frame
        h, w = root.attrs["dihedral_shapes"][0]
        return _Crop(arr, h, w), np.asarray(stored[0, :h, :w], dtype=bool)
    return arr, np.asarray(stored[...], dtype=bool)


def grid_heatmap(model: torch.nn.Module, grid: str | os.PathLike | Any, *, layer: str | torch.nn.Module | None = None,
                 target: int | None = None, window: int = 256, overlap: int = 32, mask: np.ndarray | None = None,
                 normalize: bool = True, device: str | torch.device | None = None,
                 progress: bool | None = None) -> np.ndarray:
    """The Grad-CAM heatmap of a whole grid, at grid resolution, in bounded memory.

    A grid no larger than ``window`` on both axes takes one forward and backward pass
    (:func:`grad_cam`). A larger one is read in overlapping windows (:func:`window_spans`,
    aligned to the cam layer's stride) in two passes:

    1. each window's forward and backward pass gives ``g_w = Σ_ij ∂y_w / ∂A^w(ij)``; the
       channel weights are ``α = Σ_w g_w / (n_windows · N)``, ``N`` the number of cam-layer
       positions of the whole grid;
    2. each window's forward pass gives its activations; ``ReLU(Σ_k α_k A_k)`` is upsampled
       and the window's core (less half the overlap on each inner side) written out.

    That is Grad-CAM of the mean of the window scores (the NIC paper scores a slide by
    averaging crops, §3.2), each cell's activations taken from the window where it is most
    central. Memory holds one window's activations and the ``(H, W)`` output.

    **When windowed equals whole.** A core cell's activations are exact when
    ``overlap // 2`` is at least the cam layer's receptive-field radius in grid cells plus
    one cam-layer stride (for the bilinear upsampling). The weights are the whole grid's
    when the model's head after the cam layer is global average pooling and then an affine
    map: ``g_w`` is then the same for every window. Both hold -> the windowed heatmap equals
    :func:`grad_cam` on the whole grid up to float rounding (tested). With a nonlinear head
    the weights are the mean of the windows' head gradients rather than the gradient at the
    whole slide's pooled features.

    Parameters
    ----------
    model : torch.nn.Module
        See :func:`grad_cam`; run in eval mode on its device (or ``device``).
    grid : path or array
        A slide grid store (:func:`histolatent.embed.grid.compress_slide`; a dihedral
        store's identity copy) or a ``(C, H, W)`` array; read one window at a time.
    layer, target
        See :func:`grad_cam`. A model with several outputs needs ``target``.
    window, overlap : int
        Window side and the cells that neighbouring windows share, in grid cells.
    mask : ndarray, optional
        ``(H, W)`` bool tissue cells (default: the store's mask; every cell of an array).
    normalize : bool
        Divide by the maximum over the tissue cells, so that the heatmap lies in [0, 1].
    device : str, optional
        Move the model there first (default: leave it where it is).
    progress : bool, optional
        A bar on a terminal (default: when stderr is one).

    Returns
    -------
    ndarray
        ``(H, W)`` float32, 0 on background (mask False).
    """
    cam_layer = cam_layer_of(model, layer)
    window, overlap = int(window), int(overlap)
    if window < 1 or overlap < 0:
        raise InputError(f"window and overlap: expected window >= 1 and overlap >= 0, got {window}, {overlap}")
    arr, stored = _open_grid(grid)
    c, h, w = (int(v) for v in arr.shape)
    if mask is None:
        mask = stored if stored is not None else np.ones((h, w), bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (h, w):
        raise InputError(f"mask: expected shape {(h, w)} (the grid's), got {mask.shape}")
    if device is not None:
        model.to(device)
    dev = module_device(model)

    def read(r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        block = np.asarray(arr[:, r0:r1, c0:c1], dtype=np.float32)  # (C, h, w)
        return torch.from_numpy(block)[None].to(dev)

    out = np.zeros((h, w), np.float32)
    with _eval_mode(model):
        if h <= window and w <= window:
            out[:] = grad_cam(model, read(0, h, 0, w), layer=cam_layer, target=target)[0].numpy()
        else:
            _windowed(model, cam_layer, read, out, c, window, overlap, target, progress)
    out[~mask] = 0.0
    if normalize and mask.any():
        top = float(out[mask].max())
        if top > 0:
            out /= top
    return out


def _windowed(model: torch.nn.Module, cam_layer: torch.nn.Module, read: Callable[..., torch.Tensor],
              out: np.ndarray, channels: int, window: int, overlap: int, target: int | None,
              progress: bool | None) -> None:
    """The two passes of :func:`grid_heatmap` over windows, each window's core written into ``out``."""
    h, w = out.shape
    size = (min(h, window), min(w, window))
    first = read(0, size[0], 0, size[1])
    with torch.no_grad(), _captured(cam_layer) as seen:  # the cam layer's stride and the outputs, from one window
        logits = _logits(model(first), 1)
    probe = (int(seen[0].shape[-2]), int(seen[0].shape[-1]))
    if target is None and logits.shape[1] > 1:
        raise InputError(f"target: the model has {logits.shape[1]} outputs; name the class to explain (each "
                         "window would otherwise explain its own argmax)")
    stride = _stride(size, probe)
    ay, ax = stride or (1, 1)
    rows = window_spans(h, window, overlap, ay)
    cols = window_spans(w, window, overlap, ax)
    n_windows = len(rows) * len(cols)
    if stride is None:  # cam positions of the whole grid, from the probe's ratio
        n_cam = max(1, round(h * w * probe[0] * probe[1] / (size[0] * size[1])))
    else:
        n_cam = math.ceil(h / ay) * math.ceil(w / ax)
    grad_sum = torch.zeros(int(seen[0].shape[1]), dtype=torch.float64, device=first.device)
    del first, seen
    with progress_meter(2 * n_windows, "grad-cam windows", unit="windows", enabled=progress) as bar:
        for r0, r1, _, _ in rows:
            for c0, c1, _, _ in cols:
                _, grad = _forward(model, cam_layer, read(r0, r1, c0, c1), target)
                grad_sum += grad.sum(dim=(0, 2, 3), dtype=torch.float64)
                bar.advance(1)
        alpha = (grad_sum / (n_windows * n_cam)).float()[None, :, None, None]
        for r0, r1, i0, i1 in rows:
            for c0, c1, j0, j1 in cols:
                with torch.no_grad(), _captured(cam_layer) as seen:
                    model(read(r0, r1, c0, c1))
                cam = torch.relu((alpha * seen[0]).sum(1))
                up = _upsample(cam, (r1 - r0, c1 - c0), stride)[0]
                out[i0:i1, j0:j1] = up[i0 - r0:i1 - r0, j0 - c0:j1 - c0].float().cpu().numpy()
                bar.advance(1)
