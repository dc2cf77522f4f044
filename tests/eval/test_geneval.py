"""Tests for GenEval scoring: the official rules, the files, the summary, and the shapes detector."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vqrae.data.shapes.corrupt import applicable_corruptions, corrupt_scene
from vqrae.data.shapes.geneval_prompts import (
    GENEVAL_TAGS,
    make_record,
    sample_geneval_prompt,
    write_geneval_prompt_dir,
)
from vqrae.data.shapes.render import render_scene
from vqrae.data.shapes.sampler import sample_scene
from vqrae.eval.geneval import (
    Detection,
    Detector,
    GenEvalConfig,
    ImageResult,
    compute_iou,
    eval_geneval,
    evaluate_metadata,
    format_report,
    group_detections,
    load_geneval_dir,
    load_results,
    score_image,
    summarize,
    validate_metadata,
)
from vqrae.eval.geneval_probe import format_probe, probe_geneval
from vqrae.eval.shapes_detector import ShapesDetector


def det(
    label: str, x: float, y: float, conf: float = 0.95, colour: str | None = "red", w: float = 10.0
) -> Detection:
    return Detection(label, (x, y, x + w, y + w), conf, colour)


class FixedDetector:
    """Returns the same detections for every image."""

    def __init__(self, detections: list[Detection]) -> None:
        self.detections = detections

    def detect(self, image: Image.Image) -> list[Detection]:
        return self.detections


def judge(detections: list[Detection], record: dict) -> tuple[bool, str]:
    return evaluate_metadata(group_detections(detections, record["tag"]), record)


# ----------------------------------------------------------------------------- rules
def test_thresholds_sorting_and_max_objects():
    dets = [
        det("star", 0, 0, 0.5),
        det("star", 20, 0, 0.95),
        det("star", 40, 0, 0.3),
        det("circle", 0, 0, 0.31),
    ]
    kept = group_detections(dets, "two_object")
    assert [d.confidence for d in kept["star"]] == [0.95, 0.5]  # > 0.3, not >= 0.3
    assert list(kept) == ["star", "circle"]
    assert [d.confidence for d in group_detections(dets, "counting")["star"]] == [
        0.95
    ]  # 0.9 for counting
    many = [det("star", i, 0, 0.5 + i / 100) for i in range(20)]
    assert len(group_detections(many, "single_object")["star"]) == 16
    assert group_detections(many, "single_object")["star"][0].confidence == pytest.approx(0.69)


def test_nms_only_when_max_overlap_below_one():
    dets = [det("star", 0, 0, 0.9), det("star", 1, 1, 0.8)]
    assert len(group_detections(dets, "single_object")["star"]) == 2
    assert len(group_detections(dets, "single_object", GenEvalConfig(max_overlap=0.5))["star"]) == 1
    assert compute_iou((0, 0, 9, 9), (0, 0, 9, 9)) == 1.0
    assert compute_iou((0, 0, 9, 9), (10, 0, 19, 9)) == 0.0


def test_counting_uses_exclude():
    record = make_record("counting", [{"class": "star", "count": 2}])
    assert judge([det("star", 0, 0), det("star", 20, 0)], record) == (True, "")
    ok, reason = judge([det("star", 0, 0), det("star", 20, 0), det("star", 40, 0)], record)
    assert not ok and reason == "expected star<3, found 3"
    ok, reason = judge([det("star", 0, 0)], record)
    assert not ok and reason == "expected star>=2, found 1"
    # a third star below the counting threshold does not count
    assert judge([det("star", 0, 0), det("star", 20, 0), det("star", 40, 0, 0.85)], record)[0]


def test_colour_is_checked_on_the_top_count_only():
    record = make_record("colors", [{"class": "star", "count": 1, "color": "blue"}])
    assert judge([det("star", 0, 0, 0.9, "blue"), det("star", 20, 0, 0.8, "red")], record)[0]
    ok, reason = judge([det("star", 0, 0, 0.9, "red"), det("star", 20, 0, 0.8, "blue")], record)
    assert not ok and reason == "expected blue star>=1, found 0 blue; and 1 red"


def test_color_attr_needs_both_colours_and_reports_swaps():
    record = make_record(
        "color_attr",
        [
            {"class": "circle", "count": 1, "color": "red"},
            {"class": "star", "count": 1, "color": "blue"},
        ],
    )
    assert judge(
        [det("circle", 0, 0, colour="red"), det("star", 20, 0, colour="blue")], record
    ) == (True, "")
    ok, reason = judge(
        [det("circle", 0, 0, colour="blue"), det("star", 20, 0, colour="red")], record
    )
    assert not ok
    assert reason.split("\n") == [
        "expected red circle>=1, found 0 red; and 1 blue",
        "expected blue star>=1, found 0 blue; and 1 red",
    ]


def test_position_rules_and_left_of_threshold():
    record = make_record(
        "position",
        [
            {"class": "square", "count": 1},
            {"class": "star", "count": 1, "position": ["left of", 0]},
        ],
    )
    square = det("square", 50, 50)
    assert judge([square, det("star", 30, 50)], record)[0]  # offset 20, shrink 2: dx = -0.9
    # offset 6 px left and 4 px up: shrunk dx = -(6 - 2) / hypot(6, 4) = -0.555 -> left of
    assert judge([square, det("star", 44, 46)], record)[0]
    # offset 5 px left and 4 px up: dx = -3 / hypot(5, 4) = -0.468 -> not left of (above? dy = -2/6.4)
    ok, reason = judge([square, det("star", 45, 46)], record)
    assert not ok and reason == "expected star left of target, found  target"
    ok, reason = judge([square, det("star", 70, 50)], record)
    assert reason == "expected star left of target, found right of target"
    ok, reason = judge([det("star", 30, 50)], record)  # no target detected
    assert reason.split("\n") == ["expected square>=1, found 0", "no target for star to be left of"]


def test_position_needs_every_target():
    record = {
        "tag": "position",
        "include": [
            {"class": "square", "count": 2},
            {"class": "star", "count": 1, "position": ["above", 0]},
        ],
        "prompt": "p",
    }
    squares = [det("square", 0, 50), det("square", 40, 50)]
    assert judge([*squares, det("star", 20, 0)], record)[0]
    assert not judge([det("square", 0, 50), det("square", 40, 0), det("star", 20, 0)], record)[0]


def test_validate_metadata_rejects_malformed_records():
    good = make_record("single_object", [{"class": "star", "count": 1}])
    assert validate_metadata(good, "x") is good
    with pytest.raises(ValueError, match="tag"):
        validate_metadata({**good, "tag": "spelling"}, "x")
    with pytest.raises(ValueError, match="count"):
        validate_metadata({**good, "include": [{"class": "star", "count": 0}]}, "x")
    bad_pos = {**good, "include": [{"class": "a", "count": 1, "position": ["left of", 0]}]}
    with pytest.raises(ValueError, match="position"):
        validate_metadata(bad_pos, "x")


# ----------------------------------------------------------------------------- files and summary
def _folder(tmp_path, records_and_images):
    for i, (record, images) in enumerate(records_and_images):
        write_geneval_prompt_dir(tmp_path, i, record, images)
    (tmp_path / "notes").mkdir()  # not a prompt folder: ignored as GenEval ignores it
    return tmp_path


def test_results_file_has_genevals_keys_and_summary_matches_its_print(tmp_path):
    blank = Image.new("RGB", (32, 32))
    single = make_record("single_object", [{"class": "star", "count": 1}])
    two = make_record(
        "two_object", [{"class": "star", "count": 1}, {"class": "circle", "count": 1}]
    )
    root = _folder(tmp_path / "imgs", [(single, [blank] * 3), (two, [blank] * 2)])
    (root / "00000" / "samples" / "readme.txt").write_text("not a sample")
    prompts = load_geneval_dir(root)
    assert [p.index for p in prompts] == ["00000", "00001"] and [
        len(p.images) for p in prompts
    ] == [3, 2]
    detector = FixedDetector([det("star", 0, 0)])
    assert isinstance(detector, Detector)
    report = eval_geneval(root, tmp_path / "results.jsonl", detector)
    lines = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 5
    assert {"filename", "tag", "prompt", "correct", "reason", "metadata", "details"} <= set(
        lines[0]
    )
    assert json.loads(lines[0]["metadata"]) == single
    assert json.loads(lines[0]["details"]) == {"star": [[0.0, 0.0, 10.0, 10.0, 0.95]]}
    assert [x["correct"] for x in lines] == [True, True, True, False, False]
    assert lines[3]["reason"] == "expected circle>=1, found 0"
    assert summarize(load_results(tmp_path / "results.jsonl")) == report
    assert format_report(report) == "\n".join(
        [
            "Summary",
            "=======",
            "Total images: 5",
            "Total prompts: 2",
            "% correct images: 60.00%",
            "% correct prompts: 50.00%",
            "",
            "Task breakdown",
            "==============",
            "single_object    = 100.00% (3 / 3)",
            "two_object       = 0.00% (0 / 2)",
            "",
            "Overall score (avg. over tasks): 0.50000",
        ]
    )


def test_overall_is_the_unweighted_mean_of_tags():
    def result(tag: str, ok: bool, i: int) -> ImageResult:
        return ImageResult(
            f"{i}.png", tag, "p", ok, "", json.dumps({"tag": tag, "i": i // 4}), "{}"
        )

    results = [result("counting", i < 9, i) for i in range(10)] + [
        result("colors", False, 10 + i) for i in range(2)
    ]
    report = summarize(results)
    assert report.image_accuracy == pytest.approx(9 / 12)
    assert report.overall == pytest.approx((0.9 + 0.0) / 2)
    assert list(report.tags) == ["counting", "colors"]  # order of first appearance


def test_load_geneval_dir_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_geneval_dir(tmp_path / "nope")
    (tmp_path / "00000").mkdir()
    with pytest.raises(ValueError, match="no metadata.jsonl"):
        load_geneval_dir(tmp_path)
    (tmp_path / "00000" / "metadata.jsonl").write_text('{"tag": "single_object"}\n')
    with pytest.raises(ValueError, match="prompt"):
        load_geneval_dir(tmp_path)


# ----------------------------------------------------------------------------- the detector
def test_detector_finds_class_colour_box_of_a_clean_render():
    scene = sample_scene(np.random.default_rng(11))
    found = ShapesDetector().detect(render_scene(scene, 128))
    assert len(found) == len(scene.objects)
    for obj in scene.objects:
        box = obj.box(128)
        match = min(found, key=lambda d: abs(d.box[0] - box[0]) + abs(d.box[1] - box[1]))
        assert (match.label, match.colour) == (obj.shape, obj.colour)
        assert max(abs(a - b) for a, b in zip(match.box, box, strict=True)) < 1.5
        assert match.confidence > 0.9  # passes GenEval's counting threshold


def test_detector_ignores_an_empty_ground_and_scores_blobs_low():
    scene = sample_scene(np.random.default_rng(2))
    empty = type(scene)((), scene.ground)
    assert ShapesDetector().detect(render_scene(empty, 96)) == []
    arr = np.asarray(render_scene(empty, 96)).copy()
    arr[20:70, 40:44] = (214, 32, 32)  # a thin bar: no shape of this world
    (bar,) = ShapesDetector().detect(Image.fromarray(arr))
    assert bar.confidence < 0.9 and bar.colour == "red"


def _verdicts(n: int, size: int, seed: int) -> tuple[int, int, int, int]:
    detector = ShapesDetector()
    ok_correct = n_correct = ok_corrupt = n_corrupt = 0
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        record, scene = sample_geneval_prompt(rng, GENEVAL_TAGS[i % 6])
        ok_correct += score_image(render_scene(scene, size), record, detector).correct
        n_correct += 1
        for kind in applicable_corruptions(record):
            bad = render_scene(corrupt_scene(rng, record, kind), size)
            ok_corrupt += not score_image(bad, record, detector).correct
            n_corrupt += 1
    return ok_correct, n_correct, ok_corrupt, n_corrupt


@pytest.mark.parametrize("size", [96, 160])
def test_scorer_verdicts_on_clean_renders_small_set(size):
    ok_c, n_c, ok_x, n_x = _verdicts(9, size, seed=size)
    assert (ok_c, ok_x) == (n_c, n_x)  # every correct image accepted, every corrupted one rejected


@pytest.mark.slow
@pytest.mark.parametrize("size", [128, 256])
def test_scorer_verdicts_on_clean_renders_at_least_99_percent(size):
    ok_c, n_c, ok_x, n_x = _verdicts(120, size, seed=1)
    assert n_c == 120 and n_x == 220
    assert ok_c / n_c >= 0.99 and ok_x / n_x >= 0.99


def test_probe_reports_rates_per_degradation():
    results = probe_geneval(n=6, size=96, seed=3, degradations=("clean", "jpeg50"))
    assert [r.degradation for r in results] == ["clean", "jpeg50"]
    assert results[0].accept_rate == 1.0 and results[0].reject_rate == 1.0
    assert results[0].correct_total == 6 and results[0].corrupt_total == 11
    assert "jpeg50" in format_probe(results)
