"""A classical detector for the shapes world: ground model, segmentation, shape and colour fits.

Steps, per image (pure numpy / scipy / Pillow):

1. **Ground.** A plane per RGB channel (the world's grounds are linear gradients) is fitted by
   least squares, first to a border strip, then twice more to every pixel whose colour lies
   within ``ground_delta_e`` of the current fit (trimming the objects away).
2. **Segmentation.** The CIE76 distance of each pixel (3x3 median-filtered) to the fitted
   ground; pixels farther than ``foreground_delta_e`` are foreground. Connected components
   (8-connected) smaller than ``min_area`` of the image are dropped.
3. **Colour.** Each pixel of a component's core (the component eroded once) is named by its
   nearest reference colour in CIELAB; the component's colour is the name of the core's median
   Lab colour. A component whose core holds a second colour on ``split_fraction`` of its pixels
   or more is two touching objects and is split by colour.
4. **Shape.** The component's coverage ``alpha`` (each pixel's position between the ground and
   the fill colour, projected in RGB: exact for anti-aliased edges) is compared with every
   shape outline fitted to the component's box and drawn anti-aliased on the same pixel grid
   (the world's outlines plus variants: pointed-top hexagons, fatter stars, thinner and thicker
   crosses). The class is the outline with the best fit: the soft IoU ``sum(min) / sum(max)``,
   times a penalty when the box's aspect ratio is more than 15% off the outline's own (the
   world's shapes are regular: a bar fits a stretched square well, but is no square).
   Each side of the box is first moved by sub-pixel steps while the IoU improves (for the two
   best outlines), since a pixel threshold cuts the tips of stars and triangles short; the
   final fit also tries the outline blurred by 0.6 and 1.2 px, so soft edges (blur, JPEG,
   reconstructions) do not lower it.
5. **Confidence.** ``clip((fit - 0.5) / 0.4, 0, 1)``. Clean renders fit their outline with soft
   IoU >= 0.94 at 128 px (>= 0.89 at 64 px; 0.97-0.999 at 256 px), confidence 1, so they
   pass GenEval's counting threshold (0.9, i.e. IoU 0.86); a blob that fits no outline
   (IoU below 0.5) scores 0 and is dropped by every threshold.

Measured accuracy (GenEval verdicts on clean renders and their corruptions, and under blur,
noise and JPEG) is reported by :mod:`vqrae.eval.geneval_probe`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from vqrae.data.shapes.colour import COLOUR_NAMES, REFERENCE_LAB, delta_e, srgb_to_lab
from vqrae.data.shapes.geometry import aspect, unit_outline
from vqrae.data.shapes.vocab import SHAPES
from vqrae.eval.geneval import Detection

__all__ = ["DetectorConfig", "ShapesDetector", "fit_ground", "template_variants"]


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of :class:`ShapesDetector` (distances are CIE76, areas fractions of the image).

    Attributes:
        foreground_delta_e: Distance from the ground above which a pixel is foreground.
        ground_delta_e: Distance within which a pixel counts as ground when refitting.
        noisy_ground: Median distance to the fitted ground above which the image counts as
            noisy (5x5 median filter instead of 3x3; threshold at least twice that median).
        border: Width of the border strip of the first ground fit (fraction of the side).
        min_area: Smallest component kept.
        split_fraction: Share of a component's core in a second colour that splits it.
        supersample: Supersampling of the outline templates.
        refine_top: Outlines (best first) whose box is refined before the final choice.
        aspect_tolerance: Relative aspect-ratio error a fit tolerates without penalty.
        edge_blur: Gaussian blurs (pixels) of the fitted outline also tried for the final fit,
            so soft edges (blur, JPEG chroma, reconstructions) keep their confidence.
        iou_floor: Soft IoU mapped to confidence 0.
        iou_span: Soft IoU above the floor mapped to confidence 1.
    """

    foreground_delta_e: float = 14.0
    noisy_ground: float = 6.0
    ground_delta_e: float = 8.0
    border: float = 0.04
    min_area: float = 0.0015
    split_fraction: float = 0.25
    supersample: int = 4
    refine_top: int = 2
    aspect_tolerance: float = 0.15
    edge_blur: tuple[float, ...] = (0.6, 1.2)
    iou_floor: float = 0.5
    iou_span: float = 0.4

    def __post_init__(self) -> None:
        if self.foreground_delta_e <= 0 or self.ground_delta_e <= 0:
            raise ValueError("foreground_delta_e and ground_delta_e must be > 0")
        if not 0 < self.border < 0.5:
            raise ValueError(f"border: must be in (0, 0.5), got {self.border}")
        if self.supersample < 1 or self.iou_span <= 0:
            raise ValueError("supersample must be >= 1 and iou_span > 0")


def template_variants() -> list[tuple[str, np.ndarray, float]]:
    """``(class, unit outline, box aspect w/h)`` for every outline the detector tries."""
    options: list[tuple[str, dict[str, Any]]] = [(shape, {}) for shape in SHAPES]
    options += [
        ("hexagon", {"hexagon_pointed_top": True}),
        ("star", {"star_inner": 0.5}),
        ("cross", {"cross_arm": 0.22}),
        ("cross", {"cross_arm": 0.45}),
    ]
    return [(shape, unit_outline(shape, **kw), aspect(shape, **kw)) for shape, kw in options]


def _design(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([np.ones(h * w), xs.ravel() / w, ys.ravel() / h], axis=1)  # (H*W, 3)


def fit_ground(image: np.ndarray, config: DetectorConfig | None = None) -> np.ndarray:
    """The fitted ground ``(H, W, 3)`` (float RGB) of an image ``(H, W, 3)`` in 0-255.

    The fit runs on a grid of at most about 128 x 128 pixels (the ground is smooth), then the
    plane is evaluated at every pixel.
    """
    config = config or DetectorConfig()
    h, w, _ = image.shape
    step = max(1, min(h, w) // 128)
    sub = image[::step, ::step]
    sh, sw, _ = sub.shape
    design = _design(sh, sw) * np.array([1.0, sw * step / w, sh * step / h])  # full-image units
    pixels = sub.reshape(-1, 3)
    lab = srgb_to_lab(pixels)
    b = max(1, int(round(config.border * min(sh, sw))))
    use = np.zeros((sh, sw), bool)
    use[:b], use[-b:], use[:, :b], use[:, -b:] = True, True, True, True
    use = use.ravel()
    coef = np.zeros((3, 3))
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(design[use], pixels[use], rcond=None)  # (3, 3)
        dist = delta_e(lab, srgb_to_lab(design @ coef))
        # Trim at a robust spread of the ground's own noise, but never tighter than the setting.
        inliers = dist[use]
        spread = np.median(inliers) + 3 * 1.4826 * np.median(np.abs(inliers - np.median(inliers)))
        use = dist < max(config.ground_delta_e, spread)
    return (_design(h, w) @ coef).reshape(h, w, 3)


class ShapesDetector:
    """Finds the shapes world's objects (class, colour, box, confidence) in an RGB image."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self._variants = template_variants()

    # ------------------------------------------------------------------ public
    def detect(self, image: Image.Image) -> list[Detection]:
        """All objects found in ``image`` (see the module docstring)."""
        rgb = np.asarray(image.convert("RGB"), dtype=np.float64)  # (H, W, 3)
        h, w, _ = rgb.shape
        ground = fit_ground(rgb, self.config)
        lab = srgb_to_lab(rgb)
        raw = delta_e(lab, srgb_to_lab(ground))  # (H, W)
        # Noisy grounds (a stand-in for generated images) get a wider median and a threshold
        # above their own noise: the median distance of a clean ground is 1-3, of sigma-20
        # RGB noise about 15.
        noise = float(np.median(raw))
        size = 3 if noise < self.config.noisy_ground else 5
        dist = ndimage.median_filter(raw, size=size)
        mask = dist > max(self.config.foreground_delta_e, 2.0 * noise)
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
        min_px = self.config.min_area * h * w
        detections: list[Detection] = []
        for index, piece in enumerate(ndimage.find_objects(labels), start=1):
            if piece is None:
                continue
            component = labels[piece] == index
            if component.sum() < min_px:
                continue
            for sub in self._split_by_colour(component, lab[piece], min_px):
                det = self._classify(rgb, ground, lab, piece, sub)
                if det is not None:
                    detections.append(det)
        return detections

    # ------------------------------------------------------------------ steps
    @staticmethod
    def _core(component: np.ndarray) -> np.ndarray:
        core = ndimage.binary_erosion(component)
        return core if core.sum() >= 4 else component

    @staticmethod
    def _colour_labels(lab: np.ndarray) -> np.ndarray:
        return np.argmin(delta_e(lab[..., None, :], REFERENCE_LAB), axis=-1)  # (...,)

    def _split_by_colour(
        self, component: np.ndarray, lab: np.ndarray, min_px: float
    ) -> list[np.ndarray]:
        core = self._core(component)
        names = self._colour_labels(lab[core])
        counts = np.bincount(names, minlength=len(COLOUR_NAMES))
        order = np.argsort(counts)[::-1]
        if counts[order[1]] < self.config.split_fraction * core.sum():
            return [component]
        per_pixel = self._colour_labels(lab)
        pieces = []
        for colour in order[:2]:
            region = component & (per_pixel == colour)
            sub_labels, m = ndimage.label(region, structure=np.ones((3, 3), bool))
            for j in range(1, m + 1):
                piece = sub_labels == j
                if piece.sum() >= min_px:
                    pieces.append(ndimage.binary_dilation(piece) & component)
        return pieces or [component]

    def _classify(
        self,
        rgb: np.ndarray,
        ground: np.ndarray,
        lab: np.ndarray,
        piece: tuple[slice, slice],
        component: np.ndarray,
    ) -> Detection | None:
        h, w, _ = rgb.shape
        # A window one pixel larger than the component on each side.
        ys, xs = np.nonzero(component)
        y0, y1 = max(piece[0].start + ys.min() - 1, 0), min(piece[0].start + ys.max() + 2, h)
        x0, x1 = max(piece[1].start + xs.min() - 1, 0), min(piece[1].start + xs.max() + 2, w)
        local = np.zeros((y1 - y0, x1 - x0), bool)
        local[ys + piece[0].start - y0, xs + piece[1].start - x0] = True
        core = self._core(local)
        patch, base, patch_lab = rgb[y0:y1, x0:x1], ground[y0:y1, x0:x1], lab[y0:y1, x0:x1]
        fill = np.median(patch[core], axis=0)  # (3,)
        colour_lab = np.median(patch_lab[core], axis=0)
        colour = COLOUR_NAMES[int(np.argmin(delta_e(REFERENCE_LAB, colour_lab[None, :])))]
        # Coverage of each pixel by the object: its position between ground and fill in RGB.
        span = fill[None, None, :] - base  # (h, w, 3)
        denom = np.maximum((span**2).sum(-1), 1e-6)
        alpha = np.clip(((patch - base) * span).sum(-1) / denom, 0.0, 1.0)
        alpha = alpha * ndimage.binary_dilation(local, iterations=1)  # ignore other objects
        solid = alpha > 0.5
        if solid.sum() < 4:
            return None
        sy, sx = np.nonzero(solid)
        box = (
            float(sx.min()),
            float(sy.min()),
            float(sx.max() + 1),
            float(sy.max() + 1),
        )  # window coords
        scored = sorted(
            ((self._iou(alpha, v[1], box), i) for i, v in enumerate(self._variants)), reverse=True
        )
        best_label, best_fit, best_box = "", -1.0, box
        for _, i in scored[: self.config.refine_top]:
            label, outline, ratio = self._variants[i]
            fitted, iou = self._refine(alpha, outline, box)
            iou = max(iou, self._soft_iou(alpha, outline, fitted))
            fit = iou * self._aspect_factor(ratio, fitted)
            if fit > best_fit:
                best_label, best_fit, best_box = label, fit, fitted
        box = best_box
        confidence = float(
            np.clip((best_fit - self.config.iou_floor) / self.config.iou_span, 0.0, 1.0)
        )
        return Detection(
            label=best_label,
            box=(box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0),
            confidence=confidence,
            colour=colour,
        )

    def _iou(self, alpha: np.ndarray, outline: np.ndarray, box: Sequence[float]) -> float:
        """Soft IoU of the coverage with the outline drawn in ``box``."""
        template = self._draw(outline, box, alpha.shape)
        inter = np.minimum(alpha, template).sum()
        return float(inter / max(np.maximum(alpha, template).sum(), 1e-9))

    def _soft_iou(self, alpha: np.ndarray, outline: np.ndarray, box: Sequence[float]) -> float:
        """The best soft IoU with the outline blurred as blurred images are (``edge_blur``)."""
        template = self._draw(outline, box, alpha.shape)
        best = 0.0
        for sigma in self.config.edge_blur:
            soft = ndimage.gaussian_filter(template, sigma)
            inter = np.minimum(alpha, soft).sum()
            best = max(best, float(inter / max(np.maximum(alpha, soft).sum(), 1e-9)))
        return best

    def _aspect_factor(self, ratio: float, box: Sequence[float]) -> float:
        """1 while the box's aspect ratio is within ``aspect_tolerance`` of the outline's, then
        falling in proportion (a bar fits a stretched square well, but is no square)."""
        r = (box[2] - box[0]) / max(box[3] - box[1], 1e-9) / ratio
        return min(1.0, min(r, 1.0 / r) / (1.0 - self.config.aspect_tolerance))

    def _refine(
        self, alpha: np.ndarray, outline: np.ndarray, box: tuple[float, float, float, float]
    ) -> tuple[tuple[float, float, float, float], float]:
        """Move each side of the box by sub-pixel steps while the soft IoU improves."""
        best, best_iou = list(box), self._iou(alpha, outline, box)
        for step in (1.0, 0.5, 0.25):
            improved = True
            while improved:
                improved = False
                for side in range(4):
                    for sign in (-1.0, 1.0):
                        trial = list(best)
                        trial[side] += sign * step
                        if trial[2] - trial[0] < 2 or trial[3] - trial[1] < 2:
                            continue
                        iou = self._iou(alpha, outline, trial)
                        if iou > best_iou + 1e-6:
                            best, best_iou, improved = trial, iou, True
        return (best[0], best[1], best[2], best[3]), best_iou

    def _draw(
        self, outline: np.ndarray, box: Sequence[float], shape: tuple[int, int]
    ) -> np.ndarray:
        ss = self.config.supersample
        canvas = Image.new("L", (shape[1] * ss, shape[0] * ss), 0)
        xs = (box[0] + outline[:, 0] * (box[2] - box[0])) * ss
        ys = (box[1] + outline[:, 1] * (box[3] - box[1])) * ss
        ImageDraw.Draw(canvas).polygon(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=255)
        small = canvas.resize((shape[1], shape[0]), Image.Resampling.BOX)
        return np.asarray(small, dtype=np.float64) / 255.0
