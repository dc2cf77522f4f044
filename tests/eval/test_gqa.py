"""Tests for GQA scoring: formats, balanced-only accuracy, binary/open split, LLaVA normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vqrae.data.shapes.gqa_questions import gqa_questions
from vqrae.data.shapes.sampler import sample_scene
from vqrae.eval.gqa import (
    eval_gqa,
    format_report,
    llava_answers_to_predictions,
    load_predictions,
    load_questions,
    normalise_answer,
    score_gqa,
    write_predictions,
)


def _q(answer: str, structural: str, semantic: str, balanced: bool = True) -> dict:
    return {
        "imageId": "n1",
        "question": "q?",
        "answer": answer,
        "isBalanced": balanced,
        "types": {"structural": structural, "semantic": semantic, "detailed": "d"},
    }


QUESTIONS = {
    "1": _q("yes", "verify", "obj"),
    "2": _q("red", "query", "attr"),
    "3": _q("left", "choose", "rel"),
    "4": _q("no", "logical", "obj"),
    "5": _q("circle", "query", "cat"),
    "6": _q("yes", "compare", "attr", balanced=False),  # not counted
}


@pytest.fixture
def questions_file(tmp_path):
    path = tmp_path / "questions.json"
    path.write_text(json.dumps(QUESTIONS))
    return path


def test_llava_normalisation():
    assert normalise_answer("Yes.") == "yes"
    assert normalise_answer("Red...") == "red"
    assert normalise_answer(" Left") == " left"  # LLaVA strips only full stops


def test_accuracy_binary_open_and_types(questions_file, tmp_path):
    preds = [
        {"questionId": "1", "prediction": "Yes."},
        {"questionId": "2", "prediction": "blue"},
        {"questionId": "3", "prediction": "left"},
        {"questionId": "4", "prediction": "no"},
        {"questionId": "5", "prediction": "circle"},
        {"questionId": "6", "prediction": "no"},
    ]
    write_predictions(preds, tmp_path / "p.json")
    report = eval_gqa(questions_file, tmp_path / "p.json", out=tmp_path / "gqa.json")
    assert report.num_questions == 5 and report.num_open == 2 and report.num_binary == 3
    assert report.accuracy == pytest.approx(80.0)
    assert report.open == pytest.approx(50.0) and report.binary == pytest.approx(100.0)
    assert report.structural["query"].accuracy == pytest.approx(50.0)
    assert report.semantic["attr"].num_questions == 1  # the unbalanced one is left out
    assert json.loads((tmp_path / "gqa.json").read_text())["accuracy"] == pytest.approx(80.0)
    raw = score_gqa(
        load_questions(questions_file), load_predictions(tmp_path / "p.json"), normalise=False
    )
    assert raw.accuracy == pytest.approx(60.0)  # "Yes." != "yes" as the official eval compares
    text = format_report(report)
    assert text.splitlines()[:3] == ["Binary: 100.00%", "Open: 50.00%", "Accuracy: 80.00%"]
    assert "  query: 50.00% (2 questions)" in text


def test_missing_and_duplicate_predictions(questions_file, tmp_path):
    (tmp_path / "p.json").write_text(json.dumps([{"questionId": "1", "prediction": "yes"}]))
    with pytest.raises(ValueError, match="no prediction"):
        eval_gqa(questions_file, tmp_path / "p.json")
    (tmp_path / "d.json").write_text(json.dumps([{"questionId": "1", "prediction": "a"}] * 2))
    with pytest.raises(ValueError, match="duplicate"):
        load_predictions(tmp_path / "d.json")
    (tmp_path / "bad.json").write_text(json.dumps({"1": {"question": "q"}}))
    with pytest.raises(ValueError, match="answer"):
        load_questions(tmp_path / "bad.json")


def test_llava_answers_conversion(tmp_path):
    lines = [{"question_id": "7", "text": "Red."}, {"question_id": 8, "text": "No"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert llava_answers_to_predictions(tmp_path / "a.jsonl") == [
        {"questionId": "7", "prediction": "red"},
        {"questionId": "8", "prediction": "no"},
    ]


def test_shapes_questions_score_100_with_their_answers_and_balance_yes_no(tmp_path):
    qs = {}
    for i in range(40):
        qs.update(
            gqa_questions(
                np.random.default_rng([1, i]),
                sample_scene(np.random.default_rng(i)),
                f"{i:06d}",
                len(qs),
            )
        )
    (tmp_path / "q.json").write_text(json.dumps(qs))
    questions = load_questions(tmp_path / "q.json")
    perfect = score_gqa(questions, {k: q["answer"].capitalize() + "." for k, q in qs.items()})
    assert perfect.accuracy == 100.0 and perfect.num_questions == len(qs)
    always_yes = score_gqa(questions, dict.fromkeys(qs, "yes"))
    yes_no = [q["answer"] for q in qs.values() if q["answer"] in ("yes", "no")]
    assert 0.3 < yes_no.count("yes") / len(yes_no) < 0.7  # "yes" is not the better guess
    assert always_yes.open == 0.0
    assert always_yes.accuracy == pytest.approx(100 * yes_no.count("yes") / len(qs))
