"""Synthetic colourful images and the training mix: deterministic, saturated, disjoint seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vqrae.data.shapes.render import render_scene
from vqrae.data.shapes.sampler import sample_scene
from vqrae.data.sources import open_source
from vqrae.data.synthetic import (
    SYNTHETIC_KINDS,
    TRAIN_SEED_LIMIT,
    MixConfig,
    draw_synthetic,
    sample_colour,
    write_mix,
)


@pytest.mark.parametrize("kind", SYNTHETIC_KINDS)
def test_every_kind_is_deterministic_rgb_of_the_asked_size(kind: str) -> None:
    a, b = draw_synthetic(kind, 3, 48), draw_synthetic(kind, 3, 48)
    assert a.mode == "RGB" and a.size == (48, 48)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(draw_synthetic(kind, 4, 48)))


def test_shapes_kind_is_the_shapes_world_scene_of_that_seed() -> None:
    expected = render_scene(sample_scene(np.random.default_rng(7)), 40)
    assert np.array_equal(np.asarray(draw_synthetic("shapes", 7, 40)), np.asarray(expected))


def test_colours_are_mostly_saturated() -> None:
    rng = np.random.default_rng(0)
    rgb = np.array([sample_colour(rng) for _ in range(2000)], np.float64)
    chroma = rgb.max(1) - rgb.min(1)  # HSV chroma in 0-255
    assert 0.7 < float(np.mean(chroma >= 100)) < 1.0  # saturated, with some muted ones


def test_unknown_kind_and_tiny_size_are_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        draw_synthetic("clouds", 0)
    with pytest.raises(ValueError, match="size"):
        draw_synthetic("chart", 0, 4)


def test_shapes_seeds_must_stay_below_the_evaluation_seeds() -> None:
    with pytest.raises(ValueError, match="shapes_seed_start"):
        MixConfig(shapes=10, shapes_seed_start=TRAIN_SEED_LIMIT - 5)


def test_write_mix_writes_pngs_links_photos_and_reads_as_a_folder(tmp_path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.new("RGB", (20, 20), (10 * i, 0, 0)).save(photos / f"p{i}.jpg")
    config = MixConfig(shapes=2, patches=1, charts=1, polygons=1, size=32, natural=str(photos))
    counts = write_mix(tmp_path / "mix", config)
    assert counts == {"shapes": 2, "patches": 1, "chart": 1, "polygons": 1, "natural": 3}
    links = sorted((tmp_path / "mix" / "natural").iterdir())
    assert all(p.is_symlink() for p in links) and len(links) == 3  # linked, never copied
    assert json.loads((tmp_path / "mix" / "mix.json").read_text())["counts"] == counts
    source = open_source(str(tmp_path / "mix"))
    assert len(source) == 8
    assert all(source.load(i).image is not None for i in range(len(source)))
    assert write_mix(tmp_path / "mix", config) == counts  # repeating it is harmless


def test_natural_holdout_leaves_out_the_trainers_held_out_photos(tmp_path) -> None:
    from vqrae.data.training import split_indices

    photos = tmp_path / "photos"
    photos.mkdir()
    names = [f"p{i}.png" for i in range(6)]
    for name in names:
        Image.new("RGB", (8, 8)).save(photos / name)
    config = MixConfig(0, 0, 0, 0, size=16, natural=str(photos), natural_holdout=2)
    assert write_mix(tmp_path / "mix", config)["natural"] == 4
    linked = {p.name for p in (tmp_path / "mix" / "natural").iterdir()}
    _, held_out = split_indices(6, 2, 0)
    assert linked == {names[i] for i in range(6) if i not in held_out}
