"""Colour and verdict fidelity on held-out shapes scenes: exact on an identity round trip, and
it notices colours that drift and objects that vanish."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vqrae.eval.shapes_colours import (
    KEPT_DELTA_E,
    check_ciede2000,
    ciede2000,
    held_out_scenes,
    measure,
)
from vqrae.eval.shapes_detector import ShapesDetector


@pytest.fixture(scope="module")
def scenes():
    return held_out_scenes(6)


def test_ciede2000_matches_the_published_pairs() -> None:
    check_ciede2000()
    assert float(ciede2000(np.array([50.0, 0, 0]), np.array([50.0, 0, 0]))) == 0.0


def test_identity_round_trip_keeps_every_colour_and_verdict(scenes) -> None:
    result = measure(list, "identity", scenes, 112, ShapesDetector(), codes="-")
    assert result.objects == sum(len(s.scene.objects) for s in scenes)
    assert result.mean_delta_e < 0.5 and result.within_10 == 1.0
    assert result.ground_delta_e < 0.5 and result.agreement == 1.0
    assert result.records == sum(len(s.records) for s in scenes)


def test_drifting_colours_and_lost_objects_are_measured(scenes) -> None:
    def desaturate(images: list[Image.Image]) -> list[Image.Image]:
        out = []
        for image in images:
            rgb = np.asarray(image, np.float64)
            grey = rgb.mean(axis=2, keepdims=True)
            out.append(Image.fromarray((0.4 * rgb + 0.6 * grey).round().astype(np.uint8)))
        return out

    def blank(images: list[Image.Image]) -> list[Image.Image]:
        return [Image.new("RGB", image.size, (128, 128, 128)) for image in images]

    detector = ShapesDetector()
    faded = measure(desaturate, "faded", scenes, 112, detector)
    assert faded.mean_delta_e > KEPT_DELTA_E and faded.within_10 < 0.5
    assert faded.agreement < 1.0  # colour verdicts change
    empty = measure(blank, "blank", scenes, 112, detector)
    assert empty.agreement < 0.7  # nothing is found: only the corrupted records still agree
