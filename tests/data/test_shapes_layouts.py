"""Tests for the shapes world's benchmark layouts: LLaVA, MME, GQA, DPG, and the data set writer."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from vqrae.data.shapes.colour import COLOUR_NAMES
from vqrae.data.shapes.dpg_items import (
    DPG_COLUMNS,
    dpg_rows,
    proposition_holds,
    relayout,
    rows_to_csv,
)
from vqrae.data.shapes.gqa_questions import STRUCTURAL_TYPES, gqa_questions
from vqrae.data.shapes.mme_layout import MME_SUBTASKS, YES_NO_SUFFIX, MMEItem, mme_pair, write_mme
from vqrae.data.shapes.question_phrasings import PHRASING_SETS, YES_NO
from vqrae.data.shapes.render import render_scene
from vqrae.data.shapes.sampler import sample_ground, sample_scene
from vqrae.data.shapes.scene import Scene, ShapeObject
from vqrae.data.shapes.vocab import SHAPES
from vqrae.data.shapes.vqa import (
    QA,
    QA_KINDS,
    SHORT_ANSWER,
    llava_record,
    scene_questions,
    without_giveaways,
)
from vqrae.data.shapes.writer import make_shapes_dataset
from vqrae.eval import mme
from vqrae.eval.vqa import score_vqa
from vqrae.utils.jsonl import read_jsonl


def _scene(*objects: tuple[str, str, float, float]) -> Scene:
    objs = tuple(ShapeObject(s, c, x, y, 0.2, (0, 0, 0)) for s, c, x, y in objects)
    return Scene(objs, sample_ground(np.random.default_rng(0)))


PAIR = _scene(
    ("star", "blue", 0.15, 0.5), ("square", "white", 0.8, 0.5), ("square", "white", 0.8, 0.15)
)


def test_vqa_answers_are_true_of_the_scene():
    qas = scene_questions(np.random.default_rng(0), PAIR, phrasings="train")
    assert {qa.kind for qa in qas} == set(QA_KINDS) - {"position"}  # two squares: no single pair
    truth = {"squares": "2", "stars": "1", "shapes": "3", "objects": "3"}
    for qa in (qa for qa in qas if qa.kind == "count"):
        (word,) = [w for w in truth if w in qa.question] or ["absent"]
        assert qa.answer == truth.get(word, "0"), qa
    yes_no = [qa.answer for qa in qas if qa.kind == "existence"]
    assert yes_no.count("Yes") == yes_no.count("No") == 2
    assert {qa.suffix for qa in qas if qa.kind == "existence"} <= {SHORT_ANSWER, YES_NO}
    assert {qa.suffix for qa in qas if qa.kind != "existence"} == {SHORT_ANSWER}
    two = _scene(("star", "blue", 0.15, 0.5), ("square", "white", 0.8, 0.5))
    for seed in range(8):
        pos = [
            qa for qa in scene_questions(np.random.default_rng(seed), two) if qa.kind == "position"
        ]
        assert sorted(q.answer for q in pos) == ["No", "Yes"]
        for q in pos:
            star_first = q.question.index("star") < q.question.index("square")
            says_left = "to the left of" in q.question
            assert (q.answer == "Yes") == (says_left == star_first), q


def test_a_turn_s_position_in_the_conversation_says_nothing_of_its_answer():
    """Yes/no questions come in pairs; in a fixed order the first would always be "Yes"."""
    rng = np.random.default_rng(0)
    firsts = []
    for _ in range(200):
        qas = [qa for qa in scene_questions(rng, sample_scene(rng)) if qa.answer in ("Yes", "No")]
        firsts.append(qas[0].answer == "Yes")
    assert 0.35 < np.mean(firsts) < 0.65


def test_a_conversation_never_answers_a_turn_before_it_is_asked():
    kept = without_giveaways(
        [
            QA("existence", "Is there a brown triangle?", "Yes"),
            QA("shape", "What shape is the brown object?", "Triangle"),
            QA("existence", "Is there a cross?", "No"),
            QA("count", "How many crosses are there?", "0"),
            QA("count", "How many objects are there in total?", "3"),
            QA("position", "Is the triangle above the star?", "Yes"),
            QA("position", "Is the triangle below the star?", "No"),
            QA("colour", "What colour is the star?", "Red"),
        ]
    )
    # left out: the shape and the cross count (given away), the opposite position question,
    # then the position question itself (a second "Yes" against one "No")
    assert [qa.question for qa in kept] == [
        "Is there a brown triangle?",
        "Is there a cross?",
        "How many objects are there in total?",
        "What colour is the star?",
    ]


def test_conversations_keep_no_giveaway_and_stay_balanced():
    """Over many scenes: no earlier turn names an open answer (a colour or a shape) together
    with what the question asks about ("yellow" and "star" for "Which shape is the yellow
    object? Star"), and "Yes" and "No" stay equally many in each conversation."""
    rng = np.random.default_rng(1)
    kinds = set()
    for _ in range(300):
        qas = without_giveaways(scene_questions(rng, sample_scene(rng)))
        assert qas
        earlier: list[set[str]] = []
        for qa in qas:
            words = set(qa.question.lower().rstrip("?").split())
            if qa.kind in ("colour", "shape"):
                subject = words & (set(COLOUR_NAMES) | set(SHAPES))
                assert not any({qa.answer.lower(), *subject} <= said for said in earlier), qa
            earlier.append(words | {qa.answer.lower()})
            kinds.add(qa.kind)
        answers = [qa.answer for qa in qas]
        assert answers.count("Yes") == answers.count("No")
    assert kinds == set(QA_KINDS)


def test_vqa_wordings_of_the_two_sets_never_meet():
    """Held-out questions are worded as no training question is, for every scene."""
    rng = np.random.default_rng(0)
    train, heldout = set(), set()
    for _ in range(60):
        scene = sample_scene(rng)
        train |= {qa.question for qa in scene_questions(rng, scene, phrasings="train")}
        heldout |= {qa.question for qa in scene_questions(rng, scene, phrasings="heldout")}
    assert len(heldout) > 100 and not train & heldout
    for form, wordings in PHRASING_SETS["heldout"].items():
        assert not set(wordings) & set(PHRASING_SETS["train"][form]), form
    with pytest.raises(ValueError, match="unknown"):
        scene_questions(rng, PAIR, phrasings="test")  # type: ignore[arg-type]


def test_written_vqa_questions_score_perfectly_as_their_own_answers(tmp_path):
    make_shapes_dataset(
        tmp_path,
        6,
        size=32,
        split="test",
        geneval_per_tag=1,
        mme_per_subtask=1,
        dpg_items=1,
        hf=False,
    )
    questions = read_jsonl(tmp_path / "vqa" / "questions.jsonl")
    assert {"question_id", "image", "text", "answer", "category"} <= set(questions[0])
    assert all((tmp_path / q["image"]).is_file() for q in questions)
    train_wordings = {t.split("{")[0] for ts in PHRASING_SETS["train"].values() for t in ts}
    assert not any(q["text"].split("\n")[0] in train_wordings for q in questions)
    right = [{"question_id": q["question_id"], "text": q["answer"] + "."} for q in questions]
    assert score_vqa(questions, right).accuracy == 1.0


def test_llava_record_format():
    qas = scene_questions(np.random.default_rng(0), PAIR)
    rec = llava_record("000001", "images/000001.png", qas)
    assert list(rec) == ["id", "image", "conversations"]
    turns = rec["conversations"]
    assert [t["from"] for t in turns] == ["human", "gpt"] * len(qas)
    assert turns[0]["value"].startswith("<image>\n") and turns[0]["value"].endswith(
        f"\n{qas[0].suffix}"
    )
    assert sum("<image>" in t["value"] for t in turns) == 1


def test_mme_layout_scores_perfect_answers_at_the_maximum(tmp_path):
    rng = np.random.default_rng(0)
    items, images = [], []
    for subtask in MME_SUBTASKS:
        while sum(i.subtask == subtask for i in items) < 3:
            scene = sample_scene(rng)
            pair = mme_pair(rng, scene, subtask)
            if pair is not None:
                items.append(MMEItem(subtask, f"{len(items):06d}.png", scene, pair))
                images.append(render_scene(scene, 32))
    paths = write_mme(tmp_path, items, images)
    assert sorted(p.name for p in paths["ground_truth"].iterdir()) == sorted(
        f"{s}.txt" for s in MME_SUBTASKS
    )
    assert (tmp_path / "count" / items[3].image).is_file()
    questions = [json.loads(line) for line in paths["questions"].read_text().splitlines()]
    gt = {
        (s, img, q): a
        for (s, img, _), (q, a) in mme.load_ground_truth(paths["ground_truth"]).items()
    }
    assert all(q.endswith(YES_NO_SUFFIX) for (_, _, q) in gt)
    answers = []
    for q in questions:
        subtask, image = q["question_id"].split("/")
        truth = [
            a
            for (s, img, text), a in gt.items()
            if s == subtask and img == image and text.startswith(q["text"].split("\n")[0])
        ]
        assert len(truth) == 1
        answers.append({"question_id": q["question_id"], "prompt": q["text"], "text": truth[0]})
    answers_path = tmp_path / "answers.jsonl"
    answers_path.write_text("".join(json.dumps(a) + "\n" for a in answers))
    records = mme.load_llava_answers(paths["questions"], answers_path, paths["ground_truth"])
    report = mme.score_mme(records, strict=False)
    assert set(report.subtasks) == set(MME_SUBTASKS)
    assert all(s.score == 200.0 and s.num_images == 3 for s in report.subtasks.values())
    assert report.perception == 800.0
    # flipping one reply costs exactly that subtask's accuracy and accuracy+
    answers[0]["text"] = "No" if answers[0]["text"] == "Yes" else "Yes"
    answers_path.write_text("".join(json.dumps(a) + "\n" for a in answers))
    worse = mme.score_mme(
        mme.load_llava_answers(paths["questions"], answers_path, paths["ground_truth"]),
        strict=False,
    )
    assert worse.subtasks["existence"].score == pytest.approx(100 * 5 / 6 + 100 * 2 / 3)


def test_mme_pairs_are_true_then_false():
    rng = np.random.default_rng(3)
    yes, no = mme_pair(rng, PAIR, "count")
    assert yes in (
        f"Are there two squares in the image? {YES_NO_SUFFIX}",
        f"Is there only one star in the image? {YES_NO_SUFFIX}",
    )
    assert yes != no
    assert mme_pair(rng, PAIR, "position") is None  # one star but two squares: no single pair
    full = _scene(
        *[
            (s, "red", 0.1 + 0.16 * i, 0.5)
            for i, s in enumerate(["circle", "square", "triangle", "star", "hexagon", "cross"])
        ]
    )
    assert mme_pair(rng, full, "existence") is None  # nothing absent


def test_gqa_questions_format_and_truth():
    scene = _scene(("star", "blue", 0.15, 0.5), ("square", "white", 0.8, 0.5))
    qs = gqa_questions(np.random.default_rng(0), scene, "img7", first_qid=10)
    assert list(qs)[0] == "10"
    for qid, q in qs.items():
        assert q["imageId"] == "img7" and q["equivalent"] == [qid]
        assert {"question", "answer", "types", "isBalanced", "semantic", "groups"} <= set(q)
        assert q["types"]["structural"] in STRUCTURAL_TYPES
        assert q["answer"] == q["answer"].lower()
        if q["types"]["structural"] in ("verify", "logical", "compare"):
            assert q["answer"] in ("yes", "no")
    by_type = {q["types"]["detailed"]: q for q in qs.values()}
    assert by_type["queryColor"]["answer"] in ("blue", "white")
    assert by_type["chooseRel"]["answer"] in ("left", "right")
    compare = by_type.get("sameColor") or by_type["diffColor"]  # blue and white: different
    assert compare["answer"] == ("no" if "sameColor" in by_type else "yes")


def test_dpg_rows_dependencies_and_truth():
    scene = _scene(
        ("star", "blue", 0.15, 0.5), ("square", "white", 0.8, 0.5), ("square", "white", 0.8, 0.15)
    )
    rows = dpg_rows(scene, "shapes0")
    assert [r["proposition_id"] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
    tuples = [r["tuple"] for r in rows]
    assert tuples == [
        "entity - whole (square)",
        "other - count (square, ==2)",
        "attribute - color (square, white)",
        "entity - whole (star)",
        "attribute - color (star, blue)",
    ]
    assert [r["dependency"] for r in rows] == ["0", "1", "1", "0", "4"]
    assert all(proposition_holds(scene, t) for t in tuples)
    assert not proposition_holds(scene, "other - count (square, ==3)")
    assert not proposition_holds(scene, "attribute - color (star, red)")
    text = rows_to_csv(rows)
    parsed = list(csv.DictReader(text.splitlines()))
    assert tuple(parsed[0]) == DPG_COLUMNS and parsed == rows


def test_relayout_keeps_every_proposition():
    scene = _scene(("star", "blue", 0.15, 0.5), ("square", "white", 0.8, 0.5))
    rows = dpg_rows(scene, "x")
    assert any(r["category_broad"] == "relation" for r in rows)
    again = relayout(np.random.default_rng(0), scene)
    assert again.objects != scene.objects
    assert all(proposition_holds(again, r["tuple"]) for r in rows)


def test_make_shapes_dataset_writes_every_layout(tmp_path):
    summary = make_shapes_dataset(
        tmp_path, n=6, seed=1, size=48, split="test", geneval_samples=2, hf=True
    )
    assert summary.phrasings[0] == "drawing"  # held-out phrasings for evaluation splits
    assert summary.counts["scenes"] == 6
    assert summary.counts["geneval_prompts"] == 6 and summary.counts["mme_images"] == 4
    assert len(list((tmp_path / "images").glob("*.png"))) == 6
    assert len(list((tmp_path / "geneval" / "reference").iterdir())) == 6
    assert len(list((tmp_path / "geneval" / "reference" / "00003" / "samples").iterdir())) == 2
    assert len((tmp_path / "geneval" / "evaluation_metadata.jsonl").read_text().splitlines()) == 6
    assert json.loads((tmp_path / "manifest.json").read_text())["counts"] == summary.counts
    gqa = json.loads((tmp_path / "gqa" / "questions.json").read_text())
    assert len(gqa) == summary.counts["gqa_questions"] and all(
        (tmp_path / "images" / f"{q['imageId']}.png").is_file() for q in gqa.values()
    )
    grid = tmp_path / "dpg" / "images" / "shapes0.png"
    from PIL import Image

    assert Image.open(grid).size == (96, 96)
    import datasets

    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert ds.num_rows == 6 and ds[0]["image"].size == (48, 48)
    assert Scene.from_dict(json.loads(ds[0]["scene"])).objects
    # same seed and split: the same scenes; another split: others
    again = tmp_path / "again"
    make_shapes_dataset(
        again,
        n=2,
        seed=1,
        size=48,
        split="test",
        geneval_per_tag=1,
        mme_per_subtask=1,
        dpg_items=1,
        hf=False,
    )
    first = [
        json.loads(line)["scene"]
        for line in (tmp_path / "scenes.jsonl").read_text().splitlines()[:2]
    ]
    assert [
        json.loads(line)["scene"] for line in (again / "scenes.jsonl").read_text().splitlines()
    ] == first
    other = tmp_path / "train"
    make_shapes_dataset(
        other,
        n=2,
        seed=1,
        size=48,
        split="train",
        geneval_per_tag=1,
        mme_per_subtask=1,
        dpg_items=1,
        hf=False,
    )
    assert [
        json.loads(line)["scene"] for line in (other / "scenes.jsonl").read_text().splitlines()
    ] != first


def test_make_shapes_dataset_rejects_bad_arguments(tmp_path: Path):
    with pytest.raises(ValueError, match="phrasings"):
        make_shapes_dataset(tmp_path, 1, phrasings=["haiku"], hf=False)
    with pytest.raises(ValueError, match="split"):
        make_shapes_dataset(tmp_path, 1, split="dev", hf=False)
