"""MME, GQA and DPG-Bench end to end on the shapes world's layouts, with a tiny model."""

from __future__ import annotations

import csv
import io
import json

import pytest

from vqrae.data.shapes.mme_layout import YES_NO_SUFFIX
from vqrae.eval.mme import load_results_dir
from vqrae.mllm.dpg_judge import MLLMJudge, run_dpg
from vqrae.mllm.generate import GenerationSettings
from vqrae.mllm.gqa_run import gqa_model_questions, run_gqa
from vqrae.mllm.mme_run import mme_prompt, read_mme_folder, run_mme

SETTINGS = GenerationSettings(max_new_tokens=3)


def test_the_mme_folder_is_read_in_both_layouts(shapes_dir, tmp_path) -> None:
    flat = read_mme_folder(shapes_dir / "mme")
    assert {q.subtask for q in flat} == {"existence", "count", "position", "color"}
    assert all(q.question.endswith(YES_NO_SUFFIX) for q in flat)
    assert [q.answer for q in flat[:2]] == ["Yes", "No"]
    nested = tmp_path / "artwork"
    (nested / "images").mkdir(parents=True)
    (nested / "questions_answers_YN").mkdir()
    (nested / "images" / "10002.jpg").write_bytes(b"")
    (nested / "questions_answers_YN" / "10002.txt").write_text(
        f"Is this artwork created by Dürer? {YES_NO_SUFFIX}\tYes\n"
    )
    (q,) = read_mme_folder(tmp_path)
    assert (q.subtask, q.question_id) == ("artwork", "artwork/images/10002.jpg")
    question = f"Is there a star in this image? {YES_NO_SUFFIX}"
    assert mme_prompt(question, "mme") == question
    assert mme_prompt(question, "llava") == (
        "Is there a star in this image?\nAnswer the question using a single word or phrase."
    )
    with pytest.raises(ValueError, match="no MME subtask"):
        read_mme_folder(tmp_path / "artwork")


def test_mme_runs_end_to_end_into_the_eval_tools_layout(tiny_mllm, shapes_dir, tmp_path) -> None:
    result = run_mme(
        tiny_mllm, shapes_dir / "mme", tmp_path / "mme", model_id="tiny", settings=SETTINGS
    )
    questions = read_mme_folder(shapes_dir / "mme")
    assert result.answers.answered == len(questions) == 16
    records = load_results_dir(result.results_dir)
    assert len(records) == 16 and {r.ground_truth for r in records} == {"Yes", "No"}
    assert set(result.report.subtasks) == {"existence", "count", "position", "color"}
    scores = json.loads(result.scores.read_text())
    assert scores["perception"] == pytest.approx(result.report.perception)
    again = run_mme(
        tiny_mllm, shapes_dir / "mme", tmp_path / "mme", model_id="tiny", settings=SETTINGS
    )
    assert again.answers.answered == 0 and again.report.perception == result.report.perception


def test_gqa_runs_end_to_end(tiny_mllm, shapes_dir, tmp_path) -> None:
    questions = json.loads((shapes_dir / "gqa" / "questions.json").read_text())
    subset = dict(list(questions.items())[:10])
    path = tmp_path / "questions.json"
    path.write_text(json.dumps(subset))
    records = gqa_model_questions(path, shapes_dir / "images")
    assert records[0]["image"].endswith(".png")
    assert records[0]["text"].endswith("\nAnswer the question using a single word or phrase.")
    result = run_gqa(
        tiny_mllm, path, shapes_dir / "images", tmp_path / "gqa", model_id="tiny", settings=SETTINGS
    )
    assert result.report.num_questions == 10
    predictions = json.loads(result.predictions.read_text())
    assert {p["questionId"] for p in predictions} == set(subset)
    assert all(p["prediction"] == p["prediction"].lower().rstrip(".") for p in predictions)


def test_the_model_judges_dpg_grids(tiny_mllm, shapes_dir, tmp_path) -> None:
    dpg = shapes_dir / "dpg"
    rows = list(csv.DictReader(io.StringIO((dpg / "dpg_bench.csv").read_text())))
    first = rows[0]["item_id"]
    kept = [r for r in rows if r["item_id"] == first]
    path = tmp_path / "dpg.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    report = run_dpg(tiny_mllm, dpg / "images", path, out=tmp_path / "dpg.json")
    assert report.num_images == 1 and 0.0 <= report.score <= 100.0
    assert json.loads((tmp_path / "dpg.json").read_text())["num_images"] == 1
    judge = MLLMJudge(tiny_mllm, max_new_tokens=2)
    from PIL import Image

    tile = Image.new("RGB", (56, 56), (200, 10, 10))
    assert isinstance(judge.answer(tile, "Is there a circle?"), str)
    judge.answer(tile, "Is there a square?")
    assert judge.asked == 2  # the tile's features were computed once (cached key)
