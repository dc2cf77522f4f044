"""A classical detector for the shapes world: ground model, segmentation, shape and colour fits.

Steps, per image (pure numpy / scipy / Pillow):

1. **Ground.** A plane per RGB channel (the world's grounds are linear gradients) is fitted by
   least squares, first to a border strip, then twice more to every pixel whose colour lies
   within ``ground_delta_e`` of the current fit (trimming the objects away).
2. **Segmentation.** The CIE76 distance of each pixel (3x3 median-filtered) to the fitted
   ground; pixels farther than ``foreground_delta_e`` are foreground. Connected components
   (8-connected) smaller than ``min_area`` of the image are dropped.
3. **Colour.** A component's colour is the name of the median RGB of its core (the component
   eroded once): the name of the nearest *prototype* in Oklab (:func:`name_colours`). Each of
   GenEval's ten names has two prototypes, this world's reference and CSS's named colour
   (:data:`COLOUR_PROTOTYPES`), because other renderings of the same names differ most from this
   world's there (CSS brown is a dark red, pink is pale); Oklab rather than CIELAB because
   CIELAB bends saturated blue towards purple, which would put pure blue (0, 0, 255) next to
   the purples. GenEval itself names colours with CLIP on the object's masked crop, so a name
   is whatever CLIP finds nearest; here it is the nearest of the twenty prototypes.
4. **Touching objects.** A component with thick regions (``seed_radius``) of two or more
   colours is tried as touching objects split among those regions; one that fits no outline
   well (below ``split_below``) is tried as touching objects of one colour, split where its
   coverage dips (the gap between two objects, however narrow) or where erosion cuts a neck.
   A split is kept when its parts fit outlines at least as well as the whole (see
   :meth:`ShapesDetector._explain`); parts are split again, up to ``max_splits`` deep.
5. **Shape.** The component's coverage ``alpha`` (each pixel's position between the ground and
   the fill colour, projected in RGB: exact for anti-aliased edges) is compared with every
   shape outline fitted to the component's box and drawn anti-aliased on the same pixel grid
   (:func:`template_variants`: the world's outlines; pointed-top hexagons; triangles in an
   equilateral box or one as tall as wide; stars with inner radius 0.38-0.5 of the outer and
   crosses with arms 0.22-0.45 of their size). The class is the outline with the best fit:
   the soft IoU ``sum(min) / sum(max)``, times a penalty when the box's aspect ratio is more
   than 15% off the outline's own (the world's shapes are regular: a bar fits a stretched
   square well, but is no square). For the two best classes, each side of the box is first
   moved by sub-pixel steps while the IoU improves (a pixel threshold cuts the tips of stars
   and triangles short), then a star's inner radius or a cross's arm width is moved the same
   way (:data:`PARAM_RANGE`), so a shape drawn between two stock outlines still fits closely;
   the final fit also tries the outline blurred by 0.6 and 1.2 px, so soft edges (blur, JPEG,
   reconstructions) do not lower it.
6. **Confidence.** ``clip((fit - 0.5) / 0.4, 0, 1)``. Clean renders fit their outline with soft
   IoU >= 0.94 at 128 px (>= 0.89 at 64 px; 0.97-0.999 at 256 px), confidence 1, so they
   pass GenEval's counting threshold (0.9, i.e. IoU 0.86); a blob that fits no outline
   (IoU below 0.5) scores 0 and is dropped by every threshold.

Measured accuracy (GenEval verdicts on clean renders and their corruptions, and under blur,
noise and JPEG) is reported by :mod:`vqrae.eval.geneval_probe`; on scenes from an independent
renderer of the world's spec, with other drawing conventions and colour references, by
``benchmarks/independent_shapes.py`` (BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from vqrae.data.shapes.colour import COLOUR_NAMES, COLOURS, delta_e, srgb_to_lab
from vqrae.data.shapes.geometry import aspect, unit_outline
from vqrae.eval.geneval import Detection

__all__ = [
    "COLOUR_PROTOTYPES",
    "CSS_COLOURS",
    "DetectorConfig",
    "ShapesDetector",
    "Variant",
    "fit_ground",
    "name_colour",
    "name_colours",
    "srgb_to_oklab",
    "template_variants",
]

#: CSS's named colours for GenEval's ten names (CSS Color Module Level 4): the other common
#: reading of each name, and the one furthest from this world's references (CSS brown is a dark
#: red, pink is pale, green is dark, orange is yellowish).
CSS_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "orange": (255, 165, 0),
    "yellow": (255, 255, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "purple": (128, 0, 128),
    "pink": (255, 192, 203),
    "brown": (165, 42, 42),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
}
#: ``(name, sRGB)`` prototypes of the colour names: this world's reference and CSS's, per name.
COLOUR_PROTOTYPES: tuple[tuple[str, tuple[int, int, int]], ...] = tuple(
    (name, table[name]) for name in COLOUR_NAMES for table in (COLOURS, CSS_COLOURS)
)
_OKLAB_M1 = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ]
)
_OKLAB_M2 = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ]
)


def srgb_to_oklab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0-255 ``(..., 3)`` to Oklab (Ottosson 2020) ``(..., 3)``, scaled by 100.

    Oklab's hues stay put where CIELAB's bend (saturated blue drifts towards purple in CIELAB),
    so nearest-prototype naming holds across the different RGBs people pick for a name.
    """
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return 100.0 * (np.cbrt(lin @ _OKLAB_M1.T) @ _OKLAB_M2.T)


_PROTOTYPE_OKLAB = srgb_to_oklab(np.array([rgb for _, rgb in COLOUR_PROTOTYPES], np.float64))
_PROTOTYPE_NAME = np.array([COLOUR_NAMES.index(name) for name, _ in COLOUR_PROTOTYPES])


def name_colours(rgb: np.ndarray) -> np.ndarray:
    """The index (into ``COLOUR_NAMES``) of the colour name of each sRGB ``(..., 3)``: the name
    of the nearest prototype (:data:`COLOUR_PROTOTYPES`) in Oklab."""
    lab = srgb_to_oklab(rgb)
    d = np.linalg.norm(lab[..., None, :] - _PROTOTYPE_OKLAB, axis=-1)  # (..., P)
    return _PROTOTYPE_NAME[np.argmin(d, axis=-1)]


def name_colour(rgb: np.ndarray | tuple[float, float, float]) -> str:
    """GenEval's colour name for one sRGB triple in 0-255 (see :func:`name_colours`)."""
    return COLOUR_NAMES[int(name_colours(np.asarray(rgb, np.float64)))]


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
        split_below: Fit (soft IoU times the aspect factor) below which a component is tried
            as several touching objects (split by colour, then by shape).
        seed_radius: Smallest inscribed radius (pixels) of a one-colour region that seeds an
            object of its own in a colour split (thinner regions are blends along edges).
        max_splits: Deepest nesting of splits (a chain of touching objects splits in turn).
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
    split_below: float = 0.86
    seed_radius: float = 1.5
    max_splits: int = 3
    supersample: int = 4
    refine_top: int = 2
    aspect_tolerance: float = 0.15
    edge_blur: tuple[float, ...] = (0.6, 1.2)
    iou_floor: float = 0.5
    iou_span: float = 0.4

    def __post_init__(self) -> None:
        """Reject settings out of range."""
        if self.foreground_delta_e <= 0 or self.ground_delta_e <= 0:
            raise ValueError("foreground_delta_e and ground_delta_e must be > 0")
        if not 0 < self.border < 0.5:
            raise ValueError(f"border: must be in (0, 0.5), got {self.border}")
        if self.supersample < 1 or self.iou_span <= 0:
            raise ValueError("supersample must be >= 1 and iou_span > 0")
        if not 0 < self.split_below <= 1 or self.seed_radius < 0 or self.max_splits < 0:
            raise ValueError("split_below must be in (0, 1], seed_radius and max_splits >= 0")


@dataclass(frozen=True)
class Variant:
    """One outline the detector fits.

    Attributes:
        label: The class it stands for.
        outline: Unit outline ``(K, 2)`` in its own box (see :func:`unit_outline`).
        aspects: Box aspect ratios (w/h) the class may have with this outline (a triangle's
            outline fits an equilateral box and one as tall as wide).
        param: The outline's free parameter (``star_inner`` or ``cross_arm``), refined
            continuously for the final fit; ``None`` for fixed outlines.
        value: The parameter's value for this outline.
    """

    label: str
    outline: np.ndarray
    aspects: tuple[float, ...]
    param: str | None = None
    value: float = 0.0


#: The range a free parameter is refined over (the spec's conventions, and some room).
PARAM_RANGE: dict[str, tuple[float, float]] = {
    "star_inner": (0.30, 0.60),
    "cross_arm": (0.14, 0.52),
}
#: The starting values of the free parameters (spaced so one is always near the truth).
_STARTS: dict[str, tuple[float, ...]] = {
    "star_inner": (0.382, 0.44, 0.5),
    "cross_arm": (0.22, 0.28, 1.0 / 3.0, 0.39, 0.45),
}


def _param_shape(param: str) -> str:
    """The class whose outline a free parameter shapes."""
    return "star" if param == "star_inner" else "cross"


def template_variants() -> list[Variant]:
    """Every outline the detector tries: the world's, pointed-top hexagons, triangles as tall
    as wide, and stars and crosses over their range of inner radius and arm width."""
    variants = [
        Variant("circle", unit_outline("circle"), (1.0,)),
        Variant("square", unit_outline("square"), (1.0,)),
        Variant("triangle", unit_outline("triangle"), (aspect("triangle"), 1.0)),
        Variant("hexagon", unit_outline("hexagon"), (aspect("hexagon"),)),
        Variant(
            "hexagon",
            unit_outline("hexagon", hexagon_pointed_top=True),
            (aspect("hexagon", hexagon_pointed_top=True),),
        ),
    ]
    for param, starts in _STARTS.items():
        shape = _param_shape(param)
        for value in starts:
            kw: dict[str, Any] = {param: value}
            variants.append(
                Variant(shape, unit_outline(shape, **kw), (aspect(shape, **kw),), param, value)
            )
    return variants


def _design(h: int, w: int) -> np.ndarray:
    """The plane's design matrix ``(H*W, 3)``: 1, x / w, y / h per pixel."""
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
        """Build the outline variants once."""
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
            found = self._explain(rgb, ground, piece, component, min_px, 0)
            detections.extend(det for det, _ in found)
        return detections

    # ------------------------------------------------------------------ steps
    @staticmethod
    def _core(component: np.ndarray) -> np.ndarray:
        """The component eroded once (the component itself when that leaves under 4 pixels)."""
        core = ndimage.binary_erosion(component)
        return core if core.sum() >= 4 else component

    def _explain(
        self,
        rgb: np.ndarray,
        ground: np.ndarray,
        piece: tuple[slice, slice],
        component: np.ndarray,
        min_px: float,
        depth: int,
    ) -> list[tuple[Detection, float]]:
        """``(detection, fit)`` of the objects in one component (coordinates of ``piece``).

        A component holding thick regions of two or more colours (:meth:`_colour_seeds`) is
        tried as touching objects of those colours first: the split is kept when every part
        that fits an outline at all fits as well as the whole, or ``split_below`` (a whole's
        coverage is measured against its own colour, so a neighbour of another colour is
        invisible to its fit). A component that fits no outline well is then tried as touching
        objects of one colour (:meth:`_shape_seeds`), kept when every part fits better than the
        whole. Parts are explained in turn, up to ``max_splits`` deep.
        """
        whole = self._classify(rgb, ground, piece, component)
        whole_fit = whole[1] if whole is not None else 0.0
        if depth < self.config.max_splits:
            seeds = self._colour_seeds(component, rgb[piece], min_px)
            need = min(whole_fit, self.config.split_below)
            found = self._split(rgb, ground, piece, component, seeds, min_px, depth, need)
            if found is not None:
                return found
            if whole_fit < self.config.split_below:
                seeds = self._shape_seeds(rgb, ground, piece, component, min_px)
                found = self._split(rgb, ground, piece, component, seeds, min_px, depth, whole_fit)
                if found is not None:
                    return found
        return [whole] if whole is not None else []

    def _split(
        self,
        rgb: np.ndarray,
        ground: np.ndarray,
        piece: tuple[slice, slice],
        component: np.ndarray,
        seeds: np.ndarray,
        min_px: float,
        depth: int,
        need: float,
    ) -> list[tuple[Detection, float]] | None:
        """The component split among its seeds (every pixel to its nearest seed), each part
        explained; ``None`` unless two or more parts fit an outline (above ``iou_floor``) and
        all of those fit at least ``need``."""
        if seeds.max() < 2:
            return None
        _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
        owner = seeds[iy, ix]
        found: list[tuple[Detection, float]] = []
        for k in range(1, int(seeds.max()) + 1):
            part = component & (owner == k)
            if part.sum() >= min_px:
                found += self._explain(rgb, ground, piece, part, min_px, depth + 1)
        kept = [(det, fit) for det, fit in found if fit > self.config.iou_floor]
        if len(kept) >= 2 and min(fit for _, fit in kept) >= need:
            return kept
        return None

    def _colour_seeds(self, component: np.ndarray, rgb: np.ndarray, min_px: float) -> np.ndarray:
        """Labels (0: none) of the one-colour regions of a component that can be objects: at
        least ``min_px / 2`` pixels and ``seed_radius`` thick."""
        names = name_colours(rgb)
        seeds = np.zeros(component.shape, np.int32)
        n = 0
        for colour in np.unique(names[component]):
            region = component & (names == colour)
            regions, m = ndimage.label(region, structure=np.ones((3, 3), bool))
            if m == 0:
                continue
            depth = ndimage.distance_transform_edt(region)
            sizes = ndimage.sum_labels(region, regions, index=np.arange(1, m + 1))
            radii = ndimage.maximum(depth, regions, index=np.arange(1, m + 1))
            for j in range(m):
                if sizes[j] >= min_px / 2 and radii[j] >= self.config.seed_radius:
                    n += 1
                    seeds[regions == j + 1] = n
        return seeds

    def _shape_seeds(
        self,
        rgb: np.ndarray,
        ground: np.ndarray,
        piece: tuple[slice, slice],
        component: np.ndarray,
        min_px: float,
    ) -> np.ndarray:
        """Labels (0: none) of the cores of touching objects of one colour: the component's
        coverage cut at rising levels (a gap between two objects, however narrow, is a valley
        of coverage), then eroded (a neck between them), until it falls apart into two or more
        regions of at least ``min_px / 2`` pixels."""
        window = self._window(rgb, ground, piece, component)
        seeds = np.zeros(component.shape, np.int32)
        if window is None:
            return seeds
        (y0, x0), local, alpha, _ = window
        trials = [local & (alpha > level) for level in (0.6, 0.75, 0.9)]
        solid = local & (alpha > 0.5)
        trials += [ndimage.binary_erosion(solid, iterations=k) for k in (1, 2, 3)]
        for trial in trials:
            regions, m = ndimage.label(trial, structure=np.ones((3, 3), bool))
            if m < 2:
                continue
            sizes = ndimage.sum_labels(trial, regions, index=np.arange(1, m + 1))
            big = [j + 1 for j in range(m) if sizes[j] >= min_px / 2]
            if len(big) < 2:
                continue
            oy, ox = y0 - piece[0].start, x0 - piece[1].start
            for n, j in enumerate(big, start=1):
                ys, xs = np.nonzero(regions == j)
                seeds[ys + oy, xs + ox] = n
            return seeds
        return seeds

    def _window(
        self,
        rgb: np.ndarray,
        ground: np.ndarray,
        piece: tuple[slice, slice],
        component: np.ndarray,
    ) -> tuple[tuple[int, int], np.ndarray, np.ndarray, np.ndarray] | None:
        """``((y0, x0), mask, coverage, fill)`` over a window one pixel larger than the
        component on each side: the component's mask in the window, each pixel's coverage by
        the object (its position between ground and fill colour, projected in RGB; zero off the
        component's one-pixel dilation, so other objects are ignored) and the fill colour (the
        median of the component's core); ``None`` for an empty component."""
        h, w, _ = rgb.shape
        ys, xs = np.nonzero(component)
        if ys.size == 0:
            return None
        y0, y1 = max(piece[0].start + ys.min() - 1, 0), min(piece[0].start + ys.max() + 2, h)
        x0, x1 = max(piece[1].start + xs.min() - 1, 0), min(piece[1].start + xs.max() + 2, w)
        local = np.zeros((y1 - y0, x1 - x0), bool)
        local[ys + piece[0].start - y0, xs + piece[1].start - x0] = True
        core = self._core(local)
        patch, base = rgb[y0:y1, x0:x1], ground[y0:y1, x0:x1]
        fill = np.median(patch[core], axis=0)  # (3,)
        span = fill[None, None, :] - base  # (h, w, 3)
        denom = np.maximum((span**2).sum(-1), 1e-6)
        alpha = np.clip(((patch - base) * span).sum(-1) / denom, 0.0, 1.0)
        alpha = alpha * ndimage.binary_dilation(local, iterations=1)
        return (int(y0), int(x0)), local, alpha, fill

    def _classify(
        self,
        rgb: np.ndarray,
        ground: np.ndarray,
        piece: tuple[slice, slice],
        component: np.ndarray,
    ) -> tuple[Detection, float] | None:
        """The best outline for one component: ``(detection, fit)``, or ``None`` when the
        component has under four solid pixels."""
        window = self._window(rgb, ground, piece, component)
        if window is None:
            return None
        (y0, x0), _, alpha, fill = window
        colour = name_colour(fill)
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
        # The best outline of each class at the pixel box; the best classes are refined.
        per_class: dict[str, tuple[float, int]] = {}
        for i, variant in enumerate(self._variants):
            iou = self._iou(alpha, variant.outline, box)
            if iou > per_class.get(variant.label, (-1.0, -1))[0]:
                per_class[variant.label] = (iou, i)
        ranked = sorted(per_class.values(), reverse=True)[: self.config.refine_top]
        best_label, best_fit, best_box = "", -1.0, box
        for _, i in ranked:
            variant = self._variants[i]
            fitted, iou = self._refine(alpha, variant.outline, box)
            outline = variant.outline
            if variant.param is not None:
                outline, fitted, iou = self._refine_param(alpha, variant, fitted, iou)
            iou = max(iou, self._soft_iou(alpha, outline, fitted))
            fit = iou * max(self._aspect_factor(r, fitted) for r in variant.aspects)
            if fit > best_fit:
                best_label, best_fit, best_box = variant.label, fit, fitted
        box = best_box
        confidence = float(
            np.clip((best_fit - self.config.iou_floor) / self.config.iou_span, 0.0, 1.0)
        )
        det = Detection(
            label=best_label,
            box=(box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0),
            confidence=confidence,
            colour=colour,
        )
        return det, best_fit

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

    def _refine_param(
        self,
        alpha: np.ndarray,
        variant: Variant,
        box: tuple[float, float, float, float],
        iou: float,
    ) -> tuple[np.ndarray, tuple[float, float, float, float], float]:
        """Move the outline's free parameter by shrinking steps while the soft IoU improves,
        then refit the box; returns ``(outline, box, iou)``."""
        assert variant.param is not None
        shape, (lo, hi) = _param_shape(variant.param), PARAM_RANGE[variant.param]
        value, outline, moved = variant.value, variant.outline, False
        for step in (0.04, 0.02, 0.01):
            improved = True
            while improved:
                improved = False
                for sign in (-1.0, 1.0):
                    trial = value + sign * step
                    if not lo <= trial <= hi:
                        continue
                    candidate = unit_outline(shape, **{variant.param: trial})
                    trial_iou = self._iou(alpha, candidate, box)
                    if trial_iou > iou + 1e-6:
                        value, outline, iou = trial, candidate, trial_iou
                        improved = moved = True
        if moved:
            box, iou = self._refine(alpha, outline, box)
        return outline, box, iou

    def _draw(
        self, outline: np.ndarray, box: Sequence[float], shape: tuple[int, int]
    ) -> np.ndarray:
        """The outline filled in ``box`` on a ``shape`` grid, anti-aliased by supersampling."""
        ss = self.config.supersample
        canvas = Image.new("L", (shape[1] * ss, shape[0] * ss), 0)
        xs = (box[0] + outline[:, 0] * (box[2] - box[0])) * ss
        ys = (box[1] + outline[:, 1] * (box[3] - box[1])) * ss
        ImageDraw.Draw(canvas).polygon(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=255)
        small = canvas.resize((shape[1], shape[0]), Image.Resampling.BOX)
        return np.asarray(small, dtype=np.float64) / 255.0
