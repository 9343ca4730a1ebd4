"""The image-input policy: one set of rules for every array or tensor a user hands us.

Every function of histolatent that takes an image passes it through :func:`rgb8_from_any`
(numpy side) and, where a model needs it, :func:`tensor_from_rgb8` (torch side); every
physical scale passes through :func:`check_mpp`. The rules:

- **Layout.** ``(H, W)`` grey, ``(H, W, 1)``, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA; with
  ``batch=True`` also ``(N, H, W, C)``. Grey is replicated to RGB.
- **Alpha.** Composited on white: a transparent pixel is glass, as openslide renders it.
- **dtype.** ``uint8`` as is; ``uint16`` divided by 257; ``bool`` and floats must lie in
  [0, 1] (a float image in 0..255 is an error, never silently clipped to white); NaN or inf
  is an error. Any other dtype is an error.
- **Ownership.** The caller's array is never modified. An input that is already a C-contiguous
  ``uint8`` RGB array is returned as it is (no copy); everything else is a new array.
- **Files.** :func:`open_image_file` opens PNG/JPEG/BMP/TIFF files through PIL without its
  decompression-bomb limit (a 15,000 x 15,000 ROI is a legitimate input) but refuses an
  image whose decoded pixels would not fit in the memory available; every PIL error becomes
  an :class:`~histolatent.errors.InputError` naming the file.

Example
-------
>>> import numpy as np
>>> from histolatent.io.image import rgb8_from_any, tensor_from_rgb8, check_mpp
>>> rgb8_from_any(np.full((2, 2), 0.5)).tolist()[0][0]
[128, 128, 128]
>>> tensor_from_rgb8(np.zeros((4, 5, 3), np.uint8)).shape
torch.Size([1, 3, 4, 5])
>>> check_mpp(0.5)
0.5
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from histolatent.errors import InputError

if TYPE_CHECKING:  # torch is imported only by the functions that return tensors
    import torch

__all__ = ["MPP_RANGE", "PATCH_PRESETS", "PatchSpec", "available_memory", "check_mpp", "open_image_file", "patch_spec",
           "rgb8_from_any", "rgb8_from_tensor", "tensor_from_rgb8"]

#: The one valid range of a physical scale, in µm per pixel: from 0.01 (beyond any optical
#: scanner) to 1,000 (a slide grid of 2,000-px tiles at 0.5 µm/px). Anything outside it is a
#: unit mistake (nm, mm, a pyramid level, a magnification).
MPP_RANGE = (0.01, 1000.0)


def check_mpp(mpp: Any, *, name: str = "mpp", optional: bool = False) -> float | None:
    """Validate a physical scale in µm per pixel and return it as a float.

    Parameters
    ----------
    mpp : number or None
        The scale to check.
    name : str
        How the error names the input (``"--mpp"``, ``"slide 'a.svs': mpp"``).
    optional : bool
        Accept ``None`` (and return it).

    Raises
    ------
    InputError
        If ``mpp`` is not a finite number within :data:`MPP_RANGE`.
    """
    if mpp is None and optional:
        return None
    if isinstance(mpp, bool):
        raise InputError(f"{name}: expected a number of µm per pixel, got {mpp!r}")
    try:
        value = float(mpp)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a number of µm per pixel, got {mpp!r}") from None
    lo, hi = MPP_RANGE
    if not (math.isfinite(value) and lo <= value <= hi):
        raise InputError(f"{name}: expected {lo:g} to {hi:g} µm per pixel, got {mpp!r}")
    return value


@dataclass(frozen=True)
class PatchSpec:
    """Patch geometry: ``size_px`` square pixels of ``mpp`` µm (field of view ``size_px * mpp`` µm)."""

    size_px: int
    mpp: float

    def __post_init__(self) -> None:
        if isinstance(self.size_px, bool) or int(self.size_px) < 1:
            raise InputError(f"size_px: expected >= 1, got {self.size_px}")
        object.__setattr__(self, "size_px", int(self.size_px))
        object.__setattr__(self, "mpp", check_mpp(self.mpp))

    @property
    def field_um(self) -> float:
        return self.size_px * self.mpp


#: The one table of named patch geometries (SynthPath cells and patches read from slides).
PATCH_PRESETS: dict[str, PatchSpec] = {
    # paper 0 (SE(2,N)-VAE, TUPAC-ROI / CRCHP): 68 x 68 px at ~0.25 µm/px, 17 µm across
    "se2n-vae": PatchSpec(68, 0.25),
    # Yuan & Suh 2018 §2.3 (paper 4's InfoGAN): 40 x 40 crops of nuclei from 40x images; a
    # 20 µm field at 0.5 µm/px holds the largest nuclei whole
    "infogan-40": PatchSpec(40, 0.5),
}


def patch_spec(preset: str | None = None, *, size_px: int | None = None, mpp: float | None = None) -> PatchSpec:
    """A :class:`PatchSpec` from a preset name and/or explicit ``size_px`` / ``mpp`` (which win).

    >>> patch_spec("infogan-40", mpp=0.25)
    PatchSpec(size_px=40, mpp=0.25)
    """
    if preset is not None:
        if preset not in PATCH_PRESETS:
            raise InputError(f"preset: unknown patch preset {preset!r}; known: {sorted(PATCH_PRESETS)}")
        base = PATCH_PRESETS[preset]
        return PatchSpec(size_px if size_px is not None else base.size_px, mpp if mpp is not None else base.mpp)
    if size_px is None or mpp is None:
        raise InputError("patch geometry: give a preset, or both size_px and mpp")
    return PatchSpec(size_px, mpp)


def rgb8_from_any(image: Any, *, name: str = "image", batch: bool = False) -> np.ndarray:
    """Any supported image array -> ``uint8`` RGB (``(H, W, 3)``, or ``(N, H, W, 3)`` with ``batch``).

    See the module docstring for the rules. ``name`` is used in error messages.

    >>> rgb8_from_any(np.array([[[0, 0, 0, 0]]], np.uint8)).tolist()   # transparent -> white
    [[[255, 255, 255]]]
    """
    arr = np.asarray(image)
    ndims = (2, 3, 4) if batch else (2, 3)
    if arr.ndim not in ndims or arr.size == 0:
        want = "(H, W), (H, W, C) or (N, H, W, C)" if batch else "(H, W) or (H, W, C)"
        raise InputError(f"{name}: expected an image of shape {want}, got shape {arr.shape}")
    if arr.ndim == 2 or (batch and arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4)):
        arr = arr[..., None]
    if arr.shape[-1] not in (1, 3, 4):
        raise InputError(f"{name}: expected 1 (grey), 3 (RGB) or 4 (RGBA) channels, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        a8 = arr
    elif arr.dtype == np.uint16:
        a8 = np.rint(arr / 257.0).astype(np.uint8)
    elif arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.floating):
        a = arr.astype(np.float32, copy=False)
        if not np.isfinite(a).all():
            raise InputError(f"{name}: contains NaN or inf")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(f"{name}: a {arr.dtype} image must lie in [0, 1], got values {lo:g}..{hi:g} "
                             "(for 0..255 data pass a uint8 array)")
        a8 = np.rint(a * 255.0).astype(np.uint8)
    else:
        raise InputError(f"{name}: unsupported dtype {arr.dtype} (expected uint8, uint16, bool or float in [0, 1])")
    c = a8.shape[-1]
    if c == 1:
        return np.repeat(a8, 3, axis=-1)
    if c == 4:
        alpha = a8[..., 3:4].astype(np.float32) / 255.0
        return np.rint(a8[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    if a8 is arr and arr.flags.c_contiguous:
        return arr
    return np.ascontiguousarray(a8[..., :3])


def tensor_from_rgb8(image: np.ndarray, *, device: Any = None, dtype: Any = None) -> torch.Tensor:
    """``uint8`` ``(H, W, 3)`` or ``(N, H, W, 3)`` -> float ``(N, 3, H, W)`` in [0, 1] (a new tensor).

    Any input :func:`rgb8_from_any` accepts (with ``batch=True``) is accepted. ``dtype``
    defaults to float32.
    """
    import torch

    rgb = rgb8_from_any(image, batch=True)
    if rgb.ndim == 3:
        rgb = rgb[None]
    with warnings.catch_warnings():  # a read-only array (a memory map, a zarr read) is never written:
        # the uint8 view is only read by the cast to float below, which makes the new tensor
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device=device)
    return x.permute(0, 3, 1, 2).to(dtype or torch.float32).div_(255.0)  # (N, 3, H, W)


def rgb8_from_tensor(x: torch.Tensor) -> np.ndarray:
    """float ``(N, 3, H, W)`` (or ``(3, H, W)``) in [0, 1] -> ``uint8`` ``(N, H, W, 3)`` (or ``(H, W, 3)``).

    Values are clamped to [0, 1] and rounded: a model's output may overshoot a little.
    """
    import torch

    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise InputError(f"expected a (N, 3, H, W) or (3, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    y = x.detach().float().clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)
    return y.movedim(-3, -1).cpu().numpy()


_PIL_LIMIT = threading.Lock()


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``), or None when unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return None


@contextlib.contextmanager
def open_image_file(path: str | os.PathLike, *, what: str = "image") -> Iterator[Any]:
    """A PIL image of ``path``, loaded, with a memory check instead of PIL's pixel limit.

    Parameters
    ----------
    path : path-like
        A PNG, JPEG, BMP or (untiled) TIFF file.
    what : str
        How errors name the input (``"image"``, ``"mask"``).

    Raises
    ------
    InputError
        The file is missing, unreadable, truncated or corrupt, or decoding it would need more
        memory than is available (twice its decoded size: the decode and one conversion).
    """
    from PIL import Image, UnidentifiedImageError

    name = f"{what} {str(path)!r}"
    try:
        with _PIL_LIMIT:
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{name}: unreadable, truncated or corrupt ({err})") from None
    with im:
        w, h = im.size
        need = 2 * w * h * max(len(im.getbands()), 3) * (2 if im.mode.startswith("I;16") else 1)
        free = available_memory()
        if free is not None and need > free:
            raise InputError(f"{name}: {w} x {h} px needs about {need / 2**30:.1f} GiB to decode, but only "
                             f"{free / 2**30:.1f} GiB of memory is available; convert it to a tiled pyramidal TIFF")
        try:
            im.load()
        except (OSError, SyntaxError, ValueError, MemoryError) as err:
            raise InputError(f"{name}: unreadable, truncated or corrupt ({type(err).__name__}: {err})") from None
        yield im
