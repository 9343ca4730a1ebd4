"""The :class:`StainNormalizer` protocol: ``fit`` / ``transform`` / ``to_dict`` / ``from_dict``.

Every normaliser (Macenko, Reinhard, Vahadane, and the neural colorisation normaliser
that lives in :mod:`histolatent.train.colorizer`) takes the same inputs:

* **numpy**: one ``(H, W, 3)`` image, an ``(N, H, W, 3)`` stack, or a list of images;
  uint8, uint16 (scaled by 1/257), or float in [0, 1], greyscale replicated to RGB
  (:func:`histolatent.io.image.rgb8_from_any`); RGBA keeps its alpha as it is. The result is uint8 RGB(A) of the same layout. The caller's
  arrays are never modified.
* **torch**: a ``(N, 3, H, W)`` or ``(3, H, W)`` tensor, uint8 or float in [0, 1], on any
  device; the result has the same shape, dtype and device. Normalisers with a batched
  path (Macenko, Vahadane, Reinhard) process the whole batch at once and agree with the
  numpy path to within one grey level.

Optional ``masks`` (bool, ``(H, W)`` per image; True = tissue) exclude background from the
estimation. An image with too little tissue (or whose stains are degenerate: grey,
single-coloured, all-white or all-black) is returned unchanged and counted in
:attr:`StainNormalizer.n_skipped`; it never raises and never yields NaN.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from histolatent.errors import InputError
from histolatent.io.image import rgb8_from_any
from histolatent.registry import Registry
from histolatent.stain.optical_density import check_stain_matrix

NORMALIZERS: Registry[type[StainNormalizer]] = Registry("stain normalizer")

#: Format version of :meth:`StainNormalizer.to_dict` output.
FORMAT_VERSION = 1


def register_normalizer(name: str):
    """Class decorator: register a :class:`StainNormalizer` subclass under ``name``."""

    def deco(cls: type[StainNormalizer]) -> type[StainNormalizer]:
        cls.method = name
        return NORMALIZERS.register(name)(cls)

    return deco


class StainNormalizer(ABC):
    """Base class of stain normalisers.

    Parameters
    ----------
    min_tissue_fraction : float
        Images whose fraction of stained pixels (estimation pixels) is below this are
        returned unchanged and counted.
    min_tissue_pixels : int
        Same, as an absolute number of pixels (guards tiny images).

    Attributes
    ----------
    n_transformed, n_skipped : int
        Running counts of images normalised and images returned unchanged.
    last_skipped : numpy.ndarray
        ``(N,)`` bool: which images of the last ``transform`` call were returned unchanged.
    """

    method: ClassVar[str] = ""
    #: images per chunk on the batched torch path: 8 tiles of 256 x 256 keep each
    #: intermediate (N, 3, P) array at 6 MiB, in cache (twice as fast as 32 on CPU)
    batch_chunk: ClassVar[int] = 8

    def __init__(self, *, min_tissue_fraction: float = 0.02, min_tissue_pixels: int = 100) -> None:
        if not 0.0 <= min_tissue_fraction <= 1.0:
            raise InputError(f"min_tissue_fraction must lie in [0, 1], got {min_tissue_fraction}")
        if min_tissue_pixels < 1:
            raise InputError(f"min_tissue_pixels must be >= 1, got {min_tissue_pixels}")
        self.min_tissue_fraction = float(min_tissue_fraction)
        self.min_tissue_pixels = int(min_tissue_pixels)
        self.n_transformed = 0
        self.n_skipped = 0
        self.last_skipped = np.zeros(0, dtype=bool)
        self.source_: Any = None
        #: scratch buffers shared by the chunks of one batched torch call (see torch_ops.Workspace)
        self._workspace: Any = None

    # -- subclass hooks ---------------------------------------------------------------------
    @abstractmethod
    def _fit(self, images: list[np.ndarray], masks: list[np.ndarray | None]) -> None:
        """Fit the target from validated uint8 RGB images (raise InputError if impossible)."""

    @abstractmethod
    def _transform_one(self, rgb: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """Normalise one uint8 ``(H, W, 3)`` image; None = too little tissue (unchanged)."""

    def _transform_batch_torch(self, x8, mask):
        """Batched torch path: ``(N, 3, H, W)`` uint8 -> (intensities, skipped ``(N,)`` bool).

        Intensities are float32 (unrounded and unclipped, but never NaN) or an integer dtype
        already rounded into 0..255 (uint8, or int16 that the caller casts once). The default
        runs the numpy path image by image; subclasses with a batched path override it."""
        import torch

        outs, skipped = [], []
        for i in range(x8.shape[0]):
            rgb = x8[i].permute(1, 2, 0).cpu().numpy()
            m = None if mask is None else mask[i].cpu().numpy()
            out = self._transform_one(rgb, m)
            skipped.append(out is None)
            outs.append(torch.from_numpy(rgb if out is None else out).permute(2, 0, 1))
        out = torch.stack(outs).to(device=x8.device, dtype=torch.float32)
        return out, torch.tensor(skipped, dtype=torch.bool, device=x8.device)

    def _source_estimate(self, images: list[np.ndarray], masks: list[np.ndarray | None]) -> Any:
        """The per-image estimate (stains, moments) pooled over ``images``; see :meth:`fix_source`."""
        raise InputError(f"{type(self).__name__}: fixing the source is not supported")

    def _params(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-ready)."""
        return {"min_tissue_fraction": self.min_tissue_fraction,
                "min_tissue_pixels": self.min_tissue_pixels}

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """Fitted state (JSON-ready)."""

    @abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None:
        """Restore fitted state from :meth:`_state` output (validate it)."""

    @property
    @abstractmethod
    def fitted(self) -> bool:
        """Whether a target has been fitted or loaded."""

    # -- public API -------------------------------------------------------------------------
    def fix_source(self, images: Any, *, masks: Any = None) -> StainNormalizer:
        """Estimate the *source* once, from ``images`` pooled, and use that estimate for every
        later image instead of estimating each one; ``fix_source(None)`` goes back.

        For a whole slide: fix the source on a sample of its tissue tiles, then normalise
        tile by tile without seams between tiles whose own estimates would differ.
        Images with too little tissue are then normalised too (not skipped). Tensors take
        the numpy path while a source is fixed.
        """
        if images is None:
            self.source_ = None
            return self
        rgbs, _, _ = _as_image_list(images, "source")
        self.source_ = self._source_estimate(rgbs, _as_mask_list(masks, rgbs, "source masks"))
        return self

    def fit(self, images: Any, *, masks: Any = None) -> StainNormalizer:
        """Fit the target style from one or more images (pooled).

        Parameters
        ----------
        images : array or list of arrays or tensor
            The target image(s), in any layout :meth:`transform` accepts.
        masks : optional
            Bool ``(H, W)`` tissue masks, one per image.

        Returns
        -------
        StainNormalizer
            ``self``.
        """
        rgbs, _, _ = _as_image_list(images, "target")
        self._fit(rgbs, _as_mask_list(masks, rgbs, "target masks"))
        return self

    def transform(self, images: Any, *, masks: Any = None) -> Any:
        """Normalise images to the fitted target (see the module docstring for layouts).

        Returns
        -------
        Same layout as ``images``: numpy uint8 RGB(A), or a tensor of the input's dtype.
        """
        self._check_fitted()
        if _is_tensor(images):
            return self._transform_tensor(images, masks)
        rgbs, alphas, layout = _as_image_list(images, "images")
        mlist = _as_mask_list(masks, rgbs, "masks")
        outs, skipped = [], []
        for rgb, alpha, m in zip(rgbs, alphas, mlist, strict=True):
            out = self._transform_one(rgb, m) if rgb.size else None
            if out is not None and not np.isfinite(out).all():  # pragma: no cover - defensive
                out = None
            skipped.append(out is None)
            out = rgb.copy() if out is None else out
            outs.append(out if alpha is None else np.concatenate([out, alpha], axis=-1))
        self._count(np.asarray(skipped, dtype=bool))
        if layout == "single":
            return outs[0]
        if layout == "stack":
            return np.stack(outs)
        return outs

    __call__ = transform

    def fit_transform(self, target: Any, images: Any, **kwargs: Any) -> Any:
        return self.fit(target).transform(images, **kwargs)

    def _transform_tensor(self, x: Any, masks: Any) -> Any:
        import torch

        single = x.ndim == 3
        xb = x.unsqueeze(0) if single else x
        if xb.ndim != 4 or xb.shape[1] != 3:
            raise InputError(f"images: expected a (N, 3, H, W) or (3, H, W) tensor, got shape {tuple(x.shape)}")
        if xb.dtype == torch.uint8:
            x8 = xb
        elif xb.dtype.is_floating_point:
            if not torch.isfinite(xb).all():
                raise InputError("images: tensor contains NaN or inf")
            if xb.numel() and (xb.min() < 0 or xb.max() > 1):
                raise InputError(f"images: float tensors must lie in [0, 1], got "
                                 f"[{float(xb.min()):.3g}, {float(xb.max()):.3g}]")
            x8 = (xb.to(torch.float32) * 255.0).round_().to(torch.uint8)
        else:
            raise InputError(f"images: unsupported tensor dtype {xb.dtype}")
        mask = None
        if masks is not None:
            mask = torch.as_tensor(masks, device=xb.device)
            if mask.ndim == 2 and single:
                mask = mask.unsqueeze(0)
            if tuple(mask.shape) != (xb.shape[0], xb.shape[2], xb.shape[3]):
                raise InputError(f"masks: expected shape {(xb.shape[0], xb.shape[2], xb.shape[3])}, "
                                 f"got {tuple(mask.shape)}")
            mask = mask.to(torch.bool)
        if xb.shape[0] == 0:
            self._count(np.zeros(0, dtype=bool))
            return x.clone()
        out = torch.empty_like(x8)
        skipped = torch.zeros(xb.shape[0], dtype=torch.bool, device=xb.device)
        from histolatent.stain.torch_ops import Workspace

        self._workspace = Workspace()
        try:
            with torch.inference_mode():  # cheaper per op than no_grad; outputs are plain data
                for i in range(0, xb.shape[0], self.batch_chunk):
                    xc = x8[i:i + self.batch_chunk].contiguous()
                    batch_fn = (StainNormalizer._transform_batch_torch if self.source_ is not None
                                else type(self)._transform_batch_torch)
                    oc, sc = batch_fn(self, xc, None if mask is None else mask[i:i + self.batch_chunk])
                    if oc.is_floating_point():  # clamp first: +inf -> 255; never NaN (finite matrices)
                        oc = oc.clamp_(0, 255).add_(0.5).to(torch.uint8)
                    # integer results (uint8, or int16 already within 0..255) are cast by the copy below
                    if bool(sc.any()):
                        oc = torch.where(sc[:, None, None, None], xc, oc)
                    out[i:i + self.batch_chunk] = oc
                    skipped[i:i + self.batch_chunk] = sc
        finally:  # never keep the buffers (or a half-used workspace) past the call
            self._workspace = None
        self._count(skipped.cpu().numpy())
        if xb.dtype == torch.uint8:
            res = out
        else:  # skipped images come back exactly as given, not rounded to 8 bits
            res = torch.where(skipped[:, None, None, None], xb, (out.to(torch.float32) / 255.0).to(xb.dtype))
        return res[0] if single else res

    def _count(self, skipped: np.ndarray) -> None:
        self.last_skipped = skipped
        self.n_skipped += int(skipped.sum())
        self.n_transformed += int((~skipped).sum())

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise InputError(f"{type(self).__name__}: not fitted; call fit(target) or load a fitted one")

    def _too_little_tissue(self, n_tissue: int, n_total: int) -> bool:
        return n_tissue < self.min_tissue_pixels or n_tissue < self.min_tissue_fraction * n_total

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{"method", "version", "params", "state"}``, JSON-ready."""
        return {"method": self.method, "version": FORMAT_VERSION, "params": self._params(),
                "state": self._state() if self.fitted else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StainNormalizer:
        """Rebuild a normaliser from :meth:`to_dict` output (any registered method when called
        on the base class)."""
        if not isinstance(data, dict) or "method" not in data:
            raise InputError("stain normalizer: expected a mapping with a 'method' key")
        target = NORMALIZERS.get(str(data["method"])) if cls is StainNormalizer else cls
        if target.method != data["method"]:
            raise InputError(f"stain normalizer: data is for {data['method']!r}, not {target.method!r}")
        if data.get("version", FORMAT_VERSION) > FORMAT_VERSION:
            raise InputError(f"stain normalizer: format version {data['version']} is newer than "
                             f"this histolatent ({FORMAT_VERSION})")
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise InputError("stain normalizer: 'params' must be a mapping")
        try:
            obj = target(**params)
        except TypeError as err:
            raise InputError(f"stain normalizer {target.method!r}: bad params ({err})") from None
        if data.get("state") is not None:
            obj._set_state(data["state"])
        return obj

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON (atomically)."""
        from histolatent.io.atomic import write_text_atomic

        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> StainNormalizer:
        """Read a JSON file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"stain normalizer {str(path)!r}: file does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"stain normalizer {str(path)!r}: not valid JSON ({err})") from None
        try:
            return cls.from_dict(data)
        except InputError as err:
            raise InputError(f"{path}: {err}") from None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params}){'' if self.fitted else ' [not fitted]'}"


def create_normalizer(name: str, **params: Any) -> StainNormalizer:
    """Build a registered normaliser by name (``"macenko"``, ``"reinhard"``, ``"vahadane"``;
    ``"colorizer"`` once :mod:`histolatent.train` is imported).

    The classical ones are registered by ``histolatent/stain/__init__.py``, which Python runs
    before this module, so they are always there.
    """
    return NORMALIZERS.get(name)(**params)


def list_normalizers() -> list[str]:
    return NORMALIZERS.names()


def load_normalizer(path: str | os.PathLike) -> StainNormalizer:
    """Read any normaliser saved with :meth:`StainNormalizer.save`."""
    return StainNormalizer.load(path)


# -- input handling -------------------------------------------------------------------------
def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "dtype") and hasattr(x, "ndim")


def _split_alpha(img: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4):
        raise InputError(f"{name}: expected HxWx3 RGB, HxWx4 RGBA or HxW grey, got shape {arr.shape}")
    if arr.dtype == bool:
        raise InputError(f"{name}: boolean arrays are masks, not images")
    if arr.ndim == 3 and arr.shape[-1] == 4:  # the alpha is kept as it is, not composited
        return rgb8_from_any(arr[..., :3], name=name), rgb8_from_any(arr[..., 3], name=name)[..., :1]
    return rgb8_from_any(arr, name=name), None


def _as_image_list(images: Any, name: str) -> tuple[list[np.ndarray], list[np.ndarray | None], str]:
    """Validate numpy images -> (uint8 RGB list, alpha list, layout)."""
    if _is_tensor(images):
        t = images.detach()
        if t.ndim == 3:
            t = t.unsqueeze(0)
        if t.ndim != 4 or t.shape[1] != 3:
            raise InputError(f"{name}: expected a (N, 3, H, W) tensor, got shape {tuple(images.shape)}")
        arr = t.permute(0, 2, 3, 1).cpu().numpy()
        rgbs = [rgb8_from_any(a, name=name) for a in arr]
        return rgbs, [None] * len(rgbs), "stack"
    if isinstance(images, (list, tuple)):
        if not images:
            raise InputError(f"{name}: empty list")
        pairs = [_split_alpha(im, f"{name}[{i}]") for i, im in enumerate(images)]
        return [p[0] for p in pairs], [p[1] for p in pairs], "list"
    arr = np.asarray(images)
    if arr.dtype == object:
        raise InputError(f"{name}: expected an image array, got an object array")
    if arr.ndim == 4:
        pairs = [_split_alpha(im, f"{name}[{i}]") for i, im in enumerate(arr)]
        return [p[0] for p in pairs], [p[1] for p in pairs], "stack"
    if arr.ndim in (2, 3):
        rgb, alpha = _split_alpha(arr, name)
        return [rgb], [alpha], "single"
    raise InputError(f"{name}: expected an image (H, W[, C]), a stack (N, H, W, C) or a list, "
                     f"got shape {arr.shape}")


def _as_mask_list(masks: Any, rgbs: list[np.ndarray], name: str) -> list[np.ndarray | None]:
    if masks is None:
        return [None] * len(rgbs)
    if _is_tensor(masks):
        masks = masks.detach().cpu().numpy()
    if isinstance(masks, (list, tuple)):
        mlist = list(masks)
    else:
        arr = np.asarray(masks)
        mlist = [arr] if arr.ndim == 2 else list(arr)
    if len(mlist) != len(rgbs):
        raise InputError(f"{name}: got {len(mlist)} masks for {len(rgbs)} images")
    out = []
    for i, (m, rgb) in enumerate(zip(mlist, rgbs, strict=True)):
        if m is None:
            out.append(None)
            continue
        m = np.asarray(m)
        if m.shape != rgb.shape[:2]:
            raise InputError(f"{name}[{i}]: shape {m.shape} does not match its image {rgb.shape[:2]}")
        out.append(m.astype(bool))
    return out


class StainMatrixNormalizer(StainNormalizer):
    """A normaliser fitted as a ``(2, 3)`` H&E stain matrix plus the 99th-percentile
    concentrations (Macenko, Vahadane). Subclasses provide the per-image pixel sets
    (:meth:`_od_parts`) and the estimate from them (:meth:`_estimate`); pooling over several
    images, fitting, the fitted state and its serialisation are shared."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stain_matrix_: np.ndarray | None = None
        self.max_concentrations_: np.ndarray | None = None

    @abstractmethod
    def _od_parts(self, rgb: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
        """(stained OD pixels ``(n, 3)`` for the stain vectors, OD pixels ``(m, 3)`` for the
        concentration percentile, number of pixels looked at)."""

    @abstractmethod
    def _estimate(self, od_t: np.ndarray, od_c: np.ndarray, n_total: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(stain matrix, 99th-percentile concentrations), or None (too little tissue, degenerate)."""

    def _pooled(self, images: list[np.ndarray], masks: list[np.ndarray | None], what: str
                ) -> tuple[np.ndarray, np.ndarray]:
        parts = [self._od_parts(rgb, m) for rgb, m in zip(images, masks, strict=True)]
        od_t = np.concatenate([p[0] for p in parts])
        total = sum(p[2] for p in parts)
        est = self._estimate(od_t, np.concatenate([p[1] for p in parts]), total)
        if est is None:
            raise InputError(f"{self.method.capitalize()} {what}: too few stained pixels ({od_t.shape[0]} of "
                             f"{total}) or degenerate colours; cannot estimate stain vectors")
        return est

    def _fit(self, images: list[np.ndarray], masks: list[np.ndarray | None]) -> None:
        self.stain_matrix_, self.max_concentrations_ = self._pooled(images, masks, "target")

    def _source_estimate(self, images: list[np.ndarray], masks: list[np.ndarray | None]) -> Any:
        return self._pooled(images, masks, "source")

    def _image_estimate(self, rgb: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """The fixed source estimate if there is one, else this image's own."""
        return self.source_ if self.source_ is not None else self._estimate(*self._od_parts(rgb, mask))

    @property
    def fitted(self) -> bool:
        return self.stain_matrix_ is not None

    def _state(self) -> dict[str, Any]:
        return {"stain_matrix": self.stain_matrix_.tolist(),
                "max_concentrations": self.max_concentrations_.tolist()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.stain_matrix_ = check_stain_matrix(as_matrix(state, "stain_matrix", (2, 3)),
                                                name=f"{self.method} state: stain_matrix", rows=2)
        self.max_concentrations_ = as_matrix(state, "max_concentrations", (2,))
        if np.any(self.max_concentrations_ <= 0):
            raise InputError(f"{self.method} state: max_concentrations must be positive")


def as_matrix(state: Any, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """``state[key]`` as a finite float64 array of ``shape``, or a clear InputError."""
    if not isinstance(state, dict) or key not in state:
        raise InputError(f"stain normalizer state: missing {key!r}")
    try:
        arr = np.asarray(state[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"stain normalizer state: {key!r} is not numeric") from None
    if arr.shape != shape or not np.isfinite(arr).all():
        raise InputError(f"stain normalizer state: {key!r} must be a finite array of shape {shape}, "
                         f"got {arr.shape}")
    return arr
