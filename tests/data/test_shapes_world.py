"""Tests for the shapes world's scenes: colours, sampler rules, geometry, rendering, splits."""

from __future__ import annotations

import numpy as np
import pytest

from vqrae.data.shapes.colour import (
    COLOUR_NAMES,
    COLOURS,
    REFERENCE_LAB,
    delta_e,
    lab_to_srgb,
    min_reference_distance,
    nearest_colour,
    srgb_to_lab,
)
from vqrae.data.shapes.geometry import extent, unit_outline
from vqrae.data.shapes.render import render_scene
from vqrae.data.shapes.sampler import (
    PlacementError,
    SamplerConfig,
    boxes_apart,
    jitter_colour,
    place_objects,
    sample_scene,
)
from vqrae.data.shapes.scene import Ground, Scene, ShapeObject
from vqrae.data.shapes.splits import default_phrasings, split_rng
from vqrae.data.shapes.vocab import SHAPES, plural, with_article


def test_colours_are_genevals_ten_in_order():
    assert COLOUR_NAMES == (
        "red",
        "orange",
        "yellow",
        "green",
        "blue",
        "purple",
        "pink",
        "brown",
        "black",
        "white",
    )


def test_lab_round_trip_and_known_values():
    rgb = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [12, 200, 77]])
    lab = srgb_to_lab(rgb)
    np.testing.assert_allclose(lab[0], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(lab[1], [100, 0, 0], atol=1e-2)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)  # sRGB red, D65
    np.testing.assert_allclose(lab_to_srgb(lab), rgb, atol=1e-6)


def test_jittered_colours_stay_nearest_to_their_name():
    _, _, closest = min_reference_distance()
    assert closest > 40.0
    rng = np.random.default_rng(0)
    for name in COLOUR_NAMES:
        for _ in range(50):
            rgb = jitter_colour(rng, name, SamplerConfig().colour_jitter)
            assert max(abs(a - b) for a, b in zip(rgb, COLOURS[name], strict=True)) <= 10
            assert nearest_colour(srgb_to_lab(np.array(rgb)))[0] == name


def test_articles_and_plurals_follow_geneval():
    assert with_article("orange circle") == "an orange circle"
    assert with_article("hexagon") == "a hexagon"  # GenEval's rule looks at the letter only
    assert plural("cross") == "crosses"
    assert plural("star") == "stars"


@pytest.mark.parametrize("shape", SHAPES)
def test_outlines_fill_their_unit_box(shape):
    pts = unit_outline(shape)
    np.testing.assert_allclose(pts.min(axis=0), [0, 0], atol=1e-12)
    np.testing.assert_allclose(pts.max(axis=0), [1, 1], atol=1e-12)
    w, h = extent(shape)
    assert max(w, h) == 1.0


def test_extents_of_the_regular_shapes():
    assert extent("triangle")[1] == pytest.approx(np.sqrt(3) / 2)
    assert extent("hexagon")[1] == pytest.approx(np.sqrt(3) / 2)
    assert extent("star")[1] == pytest.approx(0.951, abs=1e-3)
    assert extent("circle") == (1.0, 1.0)


def test_sampled_scenes_obey_the_world_rules():
    config = SamplerConfig()
    grounds_de = []
    for i in range(60):
        scene = sample_scene(np.random.default_rng(i), config)
        counts = scene.counts()
        assert 1 <= len(scene.objects) <= 5
        assert all(1 <= c <= 4 for c in counts.values())
        for j, o in enumerate(scene.objects):
            assert 0.15 <= o.size <= 0.30
            x0, y0, x1, y1 = o.box()
            assert x0 >= config.margin - 1e-9 and y0 >= config.margin - 1e-9
            assert x1 <= 1 - config.margin + 1e-9 and y1 <= 1 - config.margin + 1e-9
            for other in scene.objects[j + 1 :]:
                assert boxes_apart(o.box(), other.box(), config.gap)
        for end in (scene.ground.start, scene.ground.end):
            grounds_de.append(delta_e(REFERENCE_LAB, srgb_to_lab(np.array(end))).min())
    assert min(grounds_de) >= config.ground_min_delta_e


def test_sampling_is_deterministic_per_seed():
    a = sample_scene(np.random.default_rng(5))
    b = sample_scene(np.random.default_rng(5))
    c = sample_scene(np.random.default_rng(6))
    assert a == b
    assert a != c


def test_scene_dict_round_trip():
    scene = sample_scene(np.random.default_rng(3))
    again = Scene.from_dict(scene.to_dict())
    assert again == scene
    assert again.ground == scene.ground


def test_invalid_objects_and_configs_name_the_field():
    with pytest.raises(ValueError, match="shape"):
        ShapeObject("oval", "red", 0.5, 0.5, 0.2, (1, 2, 3))
    with pytest.raises(ValueError, match="colour"):
        ShapeObject("star", "cyan", 0.5, 0.5, 0.2, (1, 2, 3))
    with pytest.raises(ValueError, match="max_per_kind"):
        SamplerConfig(max_per_kind=6)
    with pytest.raises(PlacementError):
        place_objects(np.random.default_rng(0), [("square", "red")] * 6)


def test_render_size_determinism_and_fill():
    obj = ShapeObject("square", "red", 0.5, 0.5, 0.3, COLOURS["red"])
    scene = Scene((obj,), sample_scene(np.random.default_rng(1)).ground)
    a = np.asarray(render_scene(scene, 100))
    assert a.shape == (100, 100, 3)
    np.testing.assert_array_equal(a, np.asarray(render_scene(scene, 100)))
    assert tuple(a[50, 50]) == COLOURS["red"]  # inside: the fill exactly
    assert tuple(a[2, 2]) != COLOURS["red"]
    inside = (a == np.array(COLOURS["red"])).all(-1).sum()
    assert 28 * 28 <= inside <= 30 * 30  # a 30 px square, its edge pixels blended
    b = np.asarray(render_scene(scene, 37))  # any size
    assert b.shape == (37, 37, 3)


def test_render_anti_aliases_edges():
    obj = ShapeObject("circle", "white", 0.5, 0.5, 0.5, (255, 255, 255))
    flat = Ground((100, 100, 100), (100, 100, 100), 0.0, 0.0, 0)
    a = np.asarray(render_scene(Scene((obj,), flat), 64))[..., 0].astype(int)
    partial = ((a > 100) & (a < 255)).sum()
    inside = (a == 255).sum()
    assert 60 <= partial <= 140  # about the circumference (100 px) is blended
    assert abs(inside + partial / 2 - np.pi * 16**2) < 12  # the disc's area, to a few pixels


def test_split_streams_differ_and_phrasings_are_held_out():
    a = split_rng(0, "train", "scene", 0).random(4)
    b = split_rng(0, "test", "scene", 0).random(4)
    c = split_rng(0, "train", "geneval", 0).random(4)
    assert not np.allclose(a, b) and not np.allclose(a, c)
    np.testing.assert_array_equal(a, split_rng(0, "train", "scene", 0).random(4))
    assert not set(default_phrasings("train")) & set(default_phrasings("test"))
    with pytest.raises(ValueError, match="split"):
        split_rng(0, "dev", "scene", 0)
