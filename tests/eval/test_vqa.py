"""Tests for the short-answer VQA scorer and ``vqrae vqa score``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vqrae.eval.vqa import format_vqa_report, normalise_short_answer, score_vqa

QUESTIONS = [
    {"question_id": "a", "text": "Is there a star?", "answer": "Yes", "category": "existence"},
    {"question_id": "b", "text": "Is there a cross?", "answer": "No", "category": "existence"},
    {"question_id": "c", "text": "How many stars?", "answer": "3", "category": "count"},
    {"question_id": "d", "text": "What color?", "answer": "Red", "category": "colour"},
]


def test_normalisation_reads_number_words_articles_and_full_stops():
    assert normalise_short_answer(" The Red. ") == "red"
    assert normalise_short_answer("Three") == "3"
    assert normalise_short_answer("a hexagon") == "hexagon"
    assert normalise_short_answer("red star") == "red star"  # words are kept, not matched loosely


def test_scores_per_type_and_reads_yes_no_from_the_first_word():
    answers = [
        {"question_id": "a", "text": "Yes, there is one."},
        {"question_id": "b", "text": "no"},
        {"question_id": "c", "text": "three"},
        {"question_id": "d", "text": "Blue"},
    ]
    report = score_vqa(QUESTIONS, answers)
    assert report.per_type == {"colour": (0, 1), "count": (1, 1), "existence": (2, 2)}
    assert report.accuracy == 0.75
    assert report.yes_share == 0.5 and report.truth_yes_share == 0.5
    assert "| **all** | 3 | 4 | **0.750** |" in format_vqa_report(report)


def test_a_model_that_always_says_yes_shows_its_bias():
    answers = [{"question_id": q["question_id"], "text": "Yes"} for q in QUESTIONS]
    report = score_vqa(QUESTIONS, answers)
    assert report.yes_share == 1.0 and report.yes_accuracy == 1.0 and report.no_accuracy == 0.0
    assert report.per_type["existence"] == (1, 2)


def test_missing_answers_count_wrong_and_are_reported():
    report = score_vqa(QUESTIONS, [{"question_id": "a", "text": "Yes"}])
    assert report.accuracy == 0.25 and sorted(report.missing) == ["b", "c", "d"]
    assert report.yes_share == 1.0  # of the one answered yes/no question
    assert "3 question(s) without an answer" in format_vqa_report(report)
    with pytest.raises(ValueError, match="no questions"):
        score_vqa([], [])
    with pytest.raises(ValueError, match="needs question_id and answer"):
        score_vqa([{"question_id": "x", "text": "?"}], [])


def _vqrae(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vqrae.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_scores_and_rejects_bad_files_in_one_line(tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    answers = tmp_path / "a.jsonl"
    answers.write_text("".join(json.dumps({**q, "text": q["answer"]}) + "\n" for q in QUESTIONS))
    out = tmp_path / "scores.json"
    done = _vqrae("vqa", "score", "--questions", str(questions), "--answers", str(answers),
                  "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["accuracy"] == 1.0
    answers.write_text("not json\n")
    done = _vqrae("vqa", "score", "--questions", str(questions), "--answers", str(answers))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "a.jsonl:1: invalid JSON" in done.stderr
