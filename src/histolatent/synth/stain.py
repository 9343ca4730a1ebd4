"""Stains, sites and scanners: how concentrations become RGB (Beer–Lambert).

A pixel's transmitted intensity is ``I = I0 * 10 ** -(c_H h + c_E e + c_R r)`` per channel,
with concentrations ``c`` (decadic optical-density units, the convention of
:mod:`histolatent.stain`) and stain OD vectors ``h, e, r`` (rows of the 3x3 ``matrix``).
A row's norm is the stain's strength at that site (1 = the reference lab); unit rows are
the colours. So ``concentrations_from_od(od, stain.matrix)`` recovers the ground-truth
concentrations exactly (before scanner effects).

Defaults: haematoxylin and eosin are the published reference vectors of Macenko et al.
(2009) (:data:`histolatent.stain.HE_MACENKO_REF`); the residual channel is a neutral
(grey) absorber standing for unstained tissue density. A *site* (lab + scanner) perturbs
the vectors by small rotations in OD space, the strengths and the background ``I0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from scipy.special import ndtri

from histolatent.errors import InputError
from histolatent.stain.optical_density import HE_MACENKO_REF
from histolatent.synth.noise import seed32

#: Neutral residual absorber (unit vector).
RESIDUAL_OD = np.full(3, 1.0 / np.sqrt(3.0))

#: Reference stain matrix: rows haematoxylin, eosin, residual (unit OD vectors).
REFERENCE_MATRIX = np.vstack([HE_MACENKO_REF, RESIDUAL_OD]).astype(np.float64)

#: Reference background (glass) intensity per RGB channel.
REFERENCE_BACKGROUND = (244.0, 241.0, 246.0)


@dataclass(frozen=True)
class Stain:
    """A site's stain: OD per unit concentration (rows H, E, residual) and glass intensity.

    Parameters
    ----------
    matrix : ndarray, shape (3, 3)
        Row ``k`` is the OD (R, G, B) of one unit of stain ``k``; its norm is the stain's
        strength, its direction the colour.
    background : tuple of 3 floats
        ``I0`` per channel (grey levels, about 240–255).
    site : int
        Site id (0 = reference).
    """

    matrix: np.ndarray = field(default_factory=lambda: REFERENCE_MATRIX.copy())
    background: tuple[float, float, float] = REFERENCE_BACKGROUND
    site: int = 0

    def __post_init__(self) -> None:
        m = np.array(self.matrix, dtype=np.float64)  # a private copy: never alias the caller's
        if m.shape == (2, 3):
            m = np.vstack([m, RESIDUAL_OD])
        if m.shape != (3, 3) or not np.isfinite(m).all() or (m < 0).any():
            raise InputError(f"stain matrix: expected a non-negative finite (3, 3) or (2, 3) array, got {m.shape}")
        if np.linalg.matrix_rank(m) < 3:
            raise InputError("stain matrix: rows must be linearly independent")
        bg = tuple(float(b) for b in self.background)
        if len(bg) != 3 or not all(1.0 <= b <= 255.0 for b in bg):
            raise InputError(f"stain background: expected 3 grey levels in [1, 255], got {self.background!r}")
        m.setflags(write=False)
        object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "background", bg)

    @property
    def unit_matrix(self) -> np.ndarray:
        """Rows normalised to unit length (the stain colours)."""
        return self.matrix / np.linalg.norm(self.matrix, axis=1, keepdims=True)

    def to_dict(self) -> dict:
        return {"matrix": self.matrix.tolist(), "background": list(self.background), "site": self.site}


@dataclass(frozen=True)
class Scanner:
    """Acquisition effects applied after Beer–Lambert, in this order.

    Parameters
    ----------
    blur_um : float
        Gaussian point-spread sigma in µm (optics, focus); 0 disables.
    noise_std : float
        Sensor noise, grey levels (Gaussian, signal-independent); 0 disables.
    brightness : float
        Gain on intensity (lamp, exposure).
    jpeg_quality : int or None
        JPEG round trip at this quality (artefacts of a scanner's tile compression).
    """

    blur_um: float = 0.35
    noise_std: float = 1.5
    brightness: float = 1.0
    jpeg_quality: int | None = None

    def __post_init__(self) -> None:
        if not (0.0 <= self.blur_um <= 10.0):
            raise InputError(f"scanner blur_um: expected 0..10 µm, got {self.blur_um}")
        if not (0.0 <= self.noise_std <= 50.0):
            raise InputError(f"scanner noise_std: expected 0..50 grey levels, got {self.noise_std}")
        if not (0.2 <= self.brightness <= 2.0):
            raise InputError(f"scanner brightness: expected 0.2..2, got {self.brightness}")
        if self.jpeg_quality is not None and not (1 <= int(self.jpeg_quality) <= 100):
            raise InputError(f"scanner jpeg_quality: expected 1..100 or None, got {self.jpeg_quality}")

    def to_dict(self) -> dict:
        return {"blur_um": self.blur_um, "noise_std": self.noise_std, "brightness": self.brightness,
                "jpeg_quality": self.jpeg_quality}


#: Standard-normal quantiles of the 256 byte values (noise lookup table).
_NORMAL_LUT = ndtri((np.arange(256) + 0.5) / 256.0).astype(np.float32)

#: No acquisition effects at all: the exact Beer–Lambert image (rounded to uint8).
CLEAN = Scanner(blur_um=0.0, noise_std=0.0, brightness=1.0, jpeg_quality=None)


def _rotate_towards(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotate unit vector ``v`` by ``angle`` radians in the plane spanned by ``v`` and ``axis``."""
    w = axis - v * (axis @ v)
    n = np.linalg.norm(w)
    if n < 1e-9:
        return v
    w = w / n
    return np.cos(angle) * v + np.sin(angle) * w


def site_stain(site: int, *, strength: float = 1.0) -> Stain:
    """The stain of site ``site`` (0 = reference), a pure function of ``(site, strength)``.

    Each stain vector is rotated by up to ~``10 deg * strength`` towards a random direction
    in OD space, kept non-negative; strengths vary by ``±25 % * strength`` (log-normal);
    the background by a few grey levels. ``strength = 0`` returns the reference.
    """
    if site == 0 or strength == 0:
        return Stain(site=int(site))
    if strength < 0:
        raise InputError(f"stain strength: expected >= 0, got {strength}")
    rng = np.random.default_rng(seed32(0x57A1, site))
    rows = []
    for k, base in enumerate(REFERENCE_MATRIX):
        base = base / np.linalg.norm(base)
        d = rng.normal(size=3)
        ang = np.deg2rad(rng.uniform(3.0, 10.0 if k < 2 else 4.0)) * strength
        v = np.clip(_rotate_towards(base, d, ang), 0.02, None)
        v = v / np.linalg.norm(v)
        gain = float(np.exp(rng.normal(0.0, 0.12 * strength))) if k < 2 else 1.0
        rows.append(v * gain)
    bg = np.clip(np.array(REFERENCE_BACKGROUND) + rng.normal(0.0, 3.0 * strength, 3), 228.0, 254.0)
    return Stain(matrix=np.array(rows), background=tuple(bg), site=int(site))


def site_scanner(site: int, *, strength: float = 1.0) -> Scanner:
    """A site's scanner (blur, noise, brightness), a pure function of ``site``; JPEG off."""
    if site == 0 or strength == 0:
        return Scanner()
    rng = np.random.default_rng(seed32(0x5CA7, site))
    return Scanner(blur_um=float(np.clip(0.35 + rng.normal(0, 0.12 * strength), 0.1, 1.0)),
                   noise_std=float(np.clip(1.5 + rng.normal(0, 0.6 * strength), 0.3, 4.0)),
                   brightness=float(np.clip(1.0 + rng.normal(0, 0.03 * strength), 0.85, 1.1)))


def as_stain(stain: Stain | int | np.ndarray | None, *, name: str = "stain") -> Stain:
    """Accept a :class:`Stain`, a site id, a (2|3, 3) OD matrix, or None (reference)."""
    if stain is None:
        return Stain()
    if isinstance(stain, Stain):
        return stain
    if isinstance(stain, (int, np.integer)) and not isinstance(stain, bool):
        if stain < 0:
            raise InputError(f"{name}: site id must be >= 0, got {stain}")
        return site_stain(int(stain))
    try:
        return Stain(matrix=np.asarray(stain, dtype=np.float64))
    except (TypeError, ValueError) as err:
        if isinstance(err, InputError):
            raise InputError(f"{name}: {err}") from None
        raise InputError(f"{name}: expected a Stain, a site id or a (3, 3) matrix, got {type(stain).__name__}") from None


def as_scanner(scanner: Scanner | dict | bool | None) -> Scanner:
    """Accept a :class:`Scanner`, a dict of its fields, None (default) or False (:data:`CLEAN`)."""
    if scanner is None or scanner is True:
        return Scanner()
    if scanner is False:
        return CLEAN
    if isinstance(scanner, Scanner):
        return scanner
    if isinstance(scanner, dict):
        try:
            return replace(Scanner(), **scanner)
        except TypeError as err:
            raise InputError(f"scanner: {err}") from None
    raise InputError(f"scanner: expected a Scanner, a dict, None or False, got {type(scanner).__name__}")


def intensity_from_concentrations(c: np.ndarray, stain: Stain) -> np.ndarray:
    """Beer–Lambert: float32 intensities (H, W, 3), ``I0 * 10 ** -(c @ matrix)``.

    ``c`` is (H, W, 3) float32 concentrations (H, E, residual); the input is not modified.
    """
    c = np.ascontiguousarray(c, dtype=np.float32)
    m = (-np.log(10.0) * stain.matrix.T).astype(np.float32)  # OD channel j = sum_k c_k S[k, j]
    neg_ln = cv2.transform(c, m)  # (H, W, 3): -ln(10) * OD
    out = cv2.exp(neg_ln)
    return cv2.multiply(out, tuple(stain.background) + (0.0,))


def apply_scanner(intensity: np.ndarray, scanner: Scanner, *, mpp: float, rng: np.random.Generator) -> np.ndarray:
    """Scanner effects on float32 intensities -> uint8 RGB (blur, gain, noise, JPEG).

    A new array is returned; ``intensity`` is not modified.
    """
    img = intensity
    if scanner.blur_um > 0:
        sigma = scanner.blur_um / mpp
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    if scanner.brightness != 1.0:
        img = img * np.float32(scanner.brightness)
    if scanner.noise_std > 0:
        # normal noise quantised to 256 levels through a lookup table: ~10x cheaper than
        # standard_normal for a 1024^2 tile, indistinguishable at sensor-noise levels
        raw = np.frombuffer(rng.bytes(int(np.prod(img.shape))), dtype=np.uint8).reshape(img.shape)
        img = cv2.scaleAdd(cv2.LUT(raw, _NORMAL_LUT), float(scanner.noise_std), img)
    img = cv2.max(img, 0.0)  # (a new array when no step above made one)
    out = cv2.convertScaleAbs(img)  # round and saturate to uint8
    if scanner.jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(scanner.jpeg_quality)])
        if not ok:  # pragma: no cover - OpenCV failure
            raise RuntimeError("JPEG encoding failed")
        out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out


def rgb_from_concentrations(c: np.ndarray, stain: Stain, scanner: Scanner, *, mpp: float,
                            rng: np.random.Generator) -> np.ndarray:
    """Concentrations (H, W, 3) -> uint8 RGB (H, W, 3) under ``stain`` through ``scanner``."""
    return apply_scanner(intensity_from_concentrations(c, stain), scanner, mpp=mpp, rng=rng)
