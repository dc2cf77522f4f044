"""Tests for GenEval relations, records, prompt-only sampling and corruptions of the shapes world."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from vqrae.data.shapes.captions import (
    HELDOUT_PHRASINGS,
    PHRASINGS,
    TRAIN_PHRASINGS,
    caption,
    captions,
)
from vqrae.data.shapes.corrupt import (
    CORRUPTIONS,
    applicable_corruptions,
    corrupt_record,
    corrupt_scene,
)
from vqrae.data.shapes.geneval_prompts import (
    GENEVAL_TAGS,
    make_record,
    record_holds,
    records_for_scene,
    sample_geneval_prompt,
    sample_record,
    write_geneval_prompt_dir,
)
from vqrae.data.shapes.relations import relation_scores, relative_position
from vqrae.data.shapes.render import render_scene
from vqrae.data.shapes.sampler import sample_ground
from vqrae.data.shapes.scene import Scene, ShapeObject


def _shared_data() -> Path:
    env = os.environ.get("VQRAE_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


GENEVAL_METADATA = _shared_data() / "bench" / "geneval" / "evaluation_metadata.jsonl"
needs_geneval = pytest.mark.skipif(
    not GENEVAL_METADATA.is_file(),
    reason=f"GenEval metadata not found at {GENEVAL_METADATA} (set VQRAE_SHARED_DATA to the shared data folder)",
)


# ----------------------------------------------------------------------------- relations
def test_relation_threshold_is_after_shrinking_by_a_tenth_of_the_sizes():
    b = (0.0, 0.0, 10.0, 10.0)  # centre (5, 5)
    # a 10x10 box 3 px left: shrink 0.1 * 20 = 2 -> 1 px; dx = -1 / 3 -> not left (needs < -0.5)
    assert relative_position((-3.0, 0.0, 7.0, 10.0), b) == set()
    # 5 px left with 1 px down: dx = -(5 - 2) / hypot(5, 1) = -0.588 -> left of
    assert relative_position((-5.0, 1.0, 5.0, 11.0), b) == {"left of"}
    # 4 px left, 1 px down: dx = -2 / hypot(4, 1) = -0.485 -> nothing
    assert relative_position((-4.0, 1.0, 6.0, 11.0), b) == set()


def test_relations_signs_and_diagonals():
    b = (40.0, 40.0, 60.0, 60.0)
    assert relative_position((80, 40, 100, 60), b) == {"right of"}
    assert relative_position((40, 0, 60, 20), b) == {"above"}  # y points down
    assert relative_position((40, 80, 60, 100), b) == {"below"}
    assert relative_position((0, 0, 20, 20), b) == {"left of", "above"}  # 45 degrees: both
    assert relative_position(b, b) == set()  # same centre: no relation
    scores = relation_scores((0, 0, 20, 20), b)
    assert scores is not None and scores["left of"] == pytest.approx(-scores["right of"])


# ----------------------------------------------------------------------------- records
@needs_geneval
def test_record_structure_matches_genevals_file():
    real = [json.loads(line) for line in GENEVAL_METADATA.read_text().splitlines() if line.strip()]
    by_tag = {}
    for r in real:
        by_tag.setdefault(r["tag"], r)
    assert set(by_tag) == set(GENEVAL_TAGS)
    rng = np.random.default_rng(0)

    def shape_of(rec):
        return (
            list(rec),
            [sorted(x) for x in rec["include"]],
            [sorted(x) for x in rec.get("exclude", [])],
            [type(x.get("position", [None, None])[1]).__name__ for x in rec["include"]],
        )

    for tag, example in by_tag.items():
        assert shape_of(sample_record(rng, tag)) == shape_of(example), tag
    # prompts for real classes come out exactly as GenEval wrote them
    for r in real:
        assert make_record(r["tag"], r["include"]) == r


def test_prompts_use_genevals_templates():
    assert make_record("colors", [{"class": "circle", "count": 1, "color": "orange"}])[
        "prompt"
    ] == ("a photo of an orange circle")
    counting = make_record("counting", [{"class": "cross", "count": 3}])
    assert counting["prompt"] == "a photo of three crosses"
    assert counting["exclude"] == [{"class": "cross", "count": 4}]
    assert list(counting) == ["tag", "include", "exclude", "prompt"]
    position = make_record(
        "position",
        [
            {"class": "square", "count": 1},
            {"class": "star", "count": 1, "position": ["left of", 0]},
        ],
    )
    assert position["prompt"] == "a photo of a star left of a square"
    assert json.loads(json.dumps(position))["include"][1]["position"] == ["left of", 0]


@pytest.mark.parametrize("tag", GENEVAL_TAGS)
def test_sampled_prompt_scenes_satisfy_their_record_and_corruptions_do_not(tag):
    rng = np.random.default_rng(GENEVAL_TAGS.index(tag))
    for _ in range(5):
        record, scene = sample_geneval_prompt(rng, tag)
        assert record_holds(scene, record, position_margin=0.15)
        wanted = sum(r["count"] for r in record["include"])
        assert len(scene.objects) == wanted  # exactly the named objects
        for kind in applicable_corruptions(record):
            bad = corrupt_scene(rng, record, kind)
            assert not record_holds(bad, record), (record, kind)
            assert bad.meta["corruption"] == kind


def test_corruptions_change_the_right_field():
    rng = np.random.default_rng(1)
    ca = make_record(
        "color_attr",
        [
            {"class": "circle", "count": 1, "color": "red"},
            {"class": "star", "count": 1, "color": "blue"},
        ],
    )
    swapped = corrupt_record(rng, ca, "swapped_colours")["include"]
    assert [x["color"] for x in swapped] == ["blue", "red"]
    assert [x["class"] for x in swapped] == ["circle", "star"]
    wrong = corrupt_record(rng, ca, "wrong_colour")["include"]
    assert sum(x["color"] not in ("red", "blue") for x in wrong) == 1
    count = corrupt_record(
        rng, make_record("counting", [{"class": "star", "count": 4}]), "wrong_count"
    )
    assert count["include"][0]["count"] in (3, 5)
    assert set(CORRUPTIONS) == {k for t in GENEVAL_TAGS for k in applicable_corruptions({"tag": t})}
    with pytest.raises(ValueError, match="does not apply"):
        corrupt_record(rng, ca, "wrong_side")


def _scene(*objects: tuple[str, str, float, float]) -> Scene:
    objs = tuple(ShapeObject(s, c, x, y, 0.2, (0, 0, 0)) for s, c, x, y in objects)
    return Scene(objs, sample_ground(np.random.default_rng(0)))


def test_records_for_scene_lists_exactly_the_unambiguous_ones():
    scene = _scene(
        ("circle", "red", 0.2, 0.5), ("star", "blue", 0.8, 0.5), ("star", "blue", 0.8, 0.15)
    )
    records = records_for_scene(scene)
    prompts = {r["prompt"] for r in records}
    assert "a photo of two stars" in prompts
    assert "a photo of a blue star" in prompts  # both stars are blue
    assert "a photo of a red circle and a blue star" in prompts
    assert not any(r["tag"] == "position" for r in records)  # two stars: no single target
    mixed = _scene(("circle", "red", 0.2, 0.5), ("circle", "green", 0.8, 0.5))
    assert not any(r["tag"] in ("colors", "color_attr") for r in records_for_scene(mixed))
    assert all(record_holds(scene, r) for r in records)


def test_record_holds_applies_exclude_and_all_choices():
    scene = _scene(
        ("circle", "red", 0.2, 0.2), ("circle", "red", 0.8, 0.2), ("circle", "blue", 0.5, 0.8)
    )
    assert not record_holds(
        scene, make_record("counting", [{"class": "circle", "count": 2}])
    )  # 3 >= exclude 3
    assert record_holds(scene, make_record("counting", [{"class": "circle", "count": 3}]))
    assert not record_holds(
        scene, make_record("colors", [{"class": "circle", "count": 1, "color": "red"}])
    )


def test_geneval_prompt_dir_layout(tmp_path):
    record, scene = sample_geneval_prompt(np.random.default_rng(0), "two_object")
    folder = write_geneval_prompt_dir(tmp_path, 7, record, [render_scene(scene, 32)] * 2)
    assert folder.name == "00007"
    assert json.loads((folder / "metadata.jsonl").read_text()) == record
    assert sorted(p.name for p in (folder / "samples").iterdir()) == ["0000.png", "0001.png"]


# ----------------------------------------------------------------------------- captions
def test_captions_name_counts_colours_and_relations():
    scene = _scene(
        ("circle", "red", 0.2, 0.5), ("circle", "red", 0.2, 0.15), ("cross", "orange", 0.8, 0.5)
    )
    assert caption(scene) == "a photo of two red circles and an orange cross"
    assert caption(scene, "geneval_plain") == "a photo of two circles and a cross"
    assert caption(scene, "count_total") == "three shapes: two red circles and an orange cross"
    pair = _scene(("star", "blue", 0.15, 0.5), ("square", "white", 0.8, 0.5))
    assert caption(pair, "position") == "a photo of a blue star left of a white square"
    assert len(captions(pair, TRAIN_PHRASINGS)) == len(TRAIN_PHRASINGS)
    assert set(TRAIN_PHRASINGS) | set(HELDOUT_PHRASINGS) == set(PHRASINGS)
    with pytest.raises(ValueError, match="phrasing"):
        caption(pair, "sonnet")
