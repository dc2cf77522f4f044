"""Batch answering (LLaVA's model_vqa format, resumable) and the chat session."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from vqrae.mllm.answer import answer_questions, read_answered, read_questions
from vqrae.mllm.chat import ChatSession, run_chat
from vqrae.mllm.generate import GenerationSettings

SETTINGS = GenerationSettings(max_new_tokens=6)


@pytest.fixture
def question_file(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (56, 48), (80 * i, 40, 200)).save(images / f"{i}.png")
    lines = [
        {"question_id": i, "image": f"{i % 3}.png", "text": f"Is there a star? ({i})"}
        for i in range(5)
    ]
    lines.append({"question_id": 5, "image": "missing.png", "text": "Where is it?"})
    lines.append({"question_id": 6, "text": "A question without an image?"})
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path, images


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_answers_have_llava_fields_and_batches_equal_single_questions(
    tiny_mllm, question_file, tmp_path
) -> None:
    questions_path, images = question_file
    questions = read_questions(questions_path)
    failed = []
    run = answer_questions(
        tiny_mllm, questions, images, tmp_path / "a.jsonl", model_id="tiny", batch_size=4,
        settings=SETTINGS, on_failure=failed.append,
    )  # fmt: skip
    assert run.answered == 6 and [f.question_id for f in failed] == ["5"]
    answers = _lines(tmp_path / "a.jsonl")
    assert set(answers[0]) == {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}
    assert [a["question_id"] for a in answers] == [0, 1, 2, 3, 4, 6]
    assert answers[0]["prompt"] == "Is there a star? (0)" and answers[0]["model_id"] == "tiny"
    single = answer_questions(
        tiny_mllm, questions, images, tmp_path / "b.jsonl", model_id="tiny", batch_size=1,
        settings=SETTINGS,
    )  # fmt: skip
    assert single.answered == 6
    assert [a["text"] for a in _lines(tmp_path / "b.jsonl")] == [a["text"] for a in answers]


def test_questions_about_one_image_share_its_encoder_pass(tiny_mllm, question_file, tmp_path):
    questions_path, images = question_file
    questions = [q for q in read_questions(questions_path) if q["question_id"] < 5]
    encoded: list[int] = []
    hook = tiny_mllm.vision.register_forward_hook(lambda m, args, out: encoded.append(len(out)))
    try:
        answer_questions(
            tiny_mllm, questions, images, tmp_path / "a.jsonl", model_id="tiny", batch_size=5,
            settings=SETTINGS,
        )  # fmt: skip
    finally:
        hook.remove()
    assert encoded == [3]  # five questions, three distinct images, one pass


def test_an_interrupted_file_resumes_without_answering_twice(
    tiny_mllm, question_file, tmp_path
) -> None:
    questions_path, images = question_file
    questions = read_questions(questions_path)
    out = tmp_path / "a.jsonl"
    answer_questions(
        tiny_mllm, questions, images, out, model_id="m", batch_size=2, settings=SETTINGS
    )
    complete = out.read_text()
    first_two = "".join(complete.splitlines(keepends=True)[:2])
    out.write_text(first_two + '{"question_id": 2, "prompt": "Is th')  # a crash mid-write
    assert len(read_answered(out)) == 2 and out.read_text() == first_two
    run = answer_questions(
        tiny_mllm, questions, images, out, model_id="m", batch_size=2, settings=SETTINGS
    )
    assert run.skipped == 2 and run.answered == 4
    assert out.read_text() == complete


def test_a_chat_keeps_its_history_and_an_error_does_not_end_it(tiny_mllm, question_file) -> None:
    _, images = question_file
    session = ChatSession(tiny_mllm, GenerationSettings(max_new_tokens=5))
    session.set_image(images / "0.png")
    pieces: list[str] = []
    first = session.ask("What colour is the star?", pieces.append)
    assert first == "".join(pieces).strip()
    session.ask("And the circle?")
    assert [m["role"] for m in session.history] == ["user", "assistant"] * 2
    out, err = io.StringIO(), io.StringIO()
    lines = [
        "Hello?",
        f"/image {images / 'nope.png'}",
        "Still there?",
        "/reset",
        "/bogus",
        "/quit",
        "never read",
    ]
    errors = run_chat(session, lines, out, err)
    assert errors == 2
    assert err.getvalue().count("\n") == 2 and "nope.png" in err.getvalue()
    assert "(conversation cleared)" in out.getvalue()
    assert session.history == [] and session.image == images / "0.png"
