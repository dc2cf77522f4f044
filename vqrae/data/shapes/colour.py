"""GenEval's ten colour names, their reference RGBs in this world, and sRGB <-> CIELAB.

The ten names and their order are GenEval's (``evaluate_images.py`` ``COLORS``). The reference
RGBs are this world's choice: saturated and well apart in CIELAB (the closest pair, blue and
purple, is 42 CIE76 units apart; :func:`min_reference_distance`), so that the sampler's jitter of
a few units per channel never moves a colour nearer to another name.

Lab conversions use the sRGB transfer curve and the D65 white point (CIE 1976 L*a*b*);
distances are CIE76 (Euclidean in Lab), which is enough to name saturated colours.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "COLOURS",
    "COLOUR_NAMES",
    "REFERENCE_LAB",
    "delta_e",
    "lab_to_srgb",
    "min_reference_distance",
    "nearest_colour",
    "srgb_to_lab",
]

#: GenEval's colours in GenEval's order, each with this world's reference sRGB (0-255).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 32, 32),
    "orange": (247, 134, 16),
    "yellow": (248, 220, 30),
    "green": (36, 164, 64),
    "blue": (20, 100, 230),
    "purple": (140, 36, 160),
    "pink": (244, 132, 190),
    "brown": (122, 70, 32),
    "black": (18, 18, 18),
    "white": (246, 246, 246),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_EPS = (6.0 / 29.0) ** 3


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0-255 (any shape ``(..., 3)``, any numeric dtype) to CIELAB ``(..., 3)`` float."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((np.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB_TO_XYZ.T / _WHITE_D65  # (..., 3), white-normalised
    f = np.where(xyz > _EPS, np.cbrt(xyz), xyz / (3 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB ``(..., 3)`` to sRGB in 0-255 as float (out-of-gamut values are clipped)."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > 6.0 / 29.0, f**3, 3 * (6.0 / 29.0) ** 2 * (f - 4.0 / 29.0)) * _WHITE_D65
    lin = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    c = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(c * 255.0, 0.0, 255.0)


def delta_e(lab_a: np.ndarray, lab_b: np.ndarray) -> np.ndarray:
    """CIE76 colour difference (Euclidean distance in Lab), broadcasting over leading axes."""
    return np.linalg.norm(np.asarray(lab_a) - np.asarray(lab_b), axis=-1)


#: The reference colours in Lab, ``(10, 3)``, in :data:`COLOUR_NAMES` order.
REFERENCE_LAB: np.ndarray = srgb_to_lab(np.array([COLOURS[n] for n in COLOUR_NAMES]))


def nearest_colour(lab: np.ndarray) -> tuple[str, float]:
    """Name the reference colour nearest to one Lab triple; returns ``(name, distance)``."""
    d = delta_e(REFERENCE_LAB, np.asarray(lab, dtype=np.float64)[None, :])  # (10,)
    i = int(np.argmin(d))
    return COLOUR_NAMES[i], float(d[i])


def min_reference_distance() -> tuple[str, str, float]:
    """The closest pair of reference colours and their CIE76 distance."""
    d = delta_e(REFERENCE_LAB[:, None, :], REFERENCE_LAB[None, :, :])  # (10, 10)
    np.fill_diagonal(d, np.inf)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return COLOUR_NAMES[i], COLOUR_NAMES[j], float(d[i, j])
