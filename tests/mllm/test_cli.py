"""The understanding commands: chat through a pipe, answer, mme run, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vqrae.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_config) -> Path:
    from vqrae.mllm.model import MLLM

    path = tmp_path_factory.mktemp("mllm") / "model"
    MLLM.build(tiny_config, device="cpu", seed=0).save_pretrained(path)
    return path


def test_the_commands_are_registered() -> None:
    parser = build_parser()
    actions = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"train-mllm", "chat", "answer", "export-llava", "mme", "gqa", "dpg"} <= set(actions)
    args = parser.parse_args(
        ["gqa", "run", "--questions", "q", "--image-folder", "i", "--out", "o"]
    )
    assert args.subcommand == "run"
    assert parser.parse_args(["gqa", "score", "--questions", "q", "--predictions", "p"])


def test_chat_reads_a_pipe_streams_answers_and_survives_a_missing_image(
    model_dir, tmp_path
) -> None:
    image = tmp_path / "scene.png"
    Image.new("RGB", (60, 56), (200, 30, 30)).save(image)
    script = f"What colour is it?\n/image {tmp_path / 'missing.png'}\nAnd now?\n/reset\nHi\n"
    result = subprocess.run(
        [sys.executable, "-m", "vqrae.cli", "chat", "--image", str(image), "--model", str(model_dir),
         "--max-new-tokens", "4", "--device", "cpu"],
        input=script, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 1  # an error was reported, the session went on
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "missing.png" in errors[0] and "Traceback" not in result.stderr
    assert "(conversation cleared)" in result.stdout.splitlines()
    import io

    from vqrae.mllm.chat import ChatSession, run_chat
    from vqrae.mllm.generate import GenerationSettings
    from vqrae.mllm.model import MLLM

    session = ChatSession(MLLM.from_pretrained(model_dir, device="cpu"), GenerationSettings(4))
    session.set_image(image)
    expected = io.StringIO()
    run_chat(session, script.splitlines(), expected, io.StringIO())
    assert result.stdout == expected.getvalue()  # the answers, streamed, as in-process


def test_answer_writes_the_model_vqa_file_and_resumes(model_dir, tmp_path, capsys) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (56, 56), (10, 200, 10)).save(images / "a.png")
    questions = tmp_path / "q.jsonl"
    lines = [{"question_id": i, "image": "a.png", "text": f"Is it green? {i}"} for i in range(3)]
    questions.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "answers.jsonl"
    args = ["answer", "--questions", str(questions), "--image-folder", str(images), "--out",
            str(out), "--model", str(model_dir), "--max-new-tokens", "3", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["question_id"] for a in answers] == [0, 1, 2]
    assert {a["model_id"] for a in answers} == {model_dir.parent.name}
    assert main(args) == 0
    assert "3 answered before, skipped" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 3


def test_mme_run_scores_the_shapes_layout_from_the_command_line(
    model_dir, shapes_dir, tmp_path, capsys
) -> None:
    out = tmp_path / "mme"
    code = main(["mme", "run", "--mme", str(shapes_dir / "mme"), "--out", str(out), "--model",
                 str(model_dir), "--device", "cpu"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "existence" in printed and (out / "mme_scores.json").is_file()
    assert sorted(p.name for p in (out / "results").iterdir()) == [
        "color.txt",
        "count.txt",
        "existence.txt",
        "position.txt",
    ]


def test_user_errors_are_one_line(model_dir, tmp_path, capsys) -> None:
    assert main(["answer", "--questions", str(tmp_path / "none.jsonl"), "--image-folder", ".",
                 "--out", str(tmp_path / "a.jsonl"), "--model", str(model_dir)]) == 1  # fmt: skip
    assert main(["chat", "--model", str(tmp_path)]) == 1
    assert main(["export-llava", str(model_dir), "--out", str(tmp_path / "x")]) == 1  # normed
    assert main(["answer", "--questions", "q", "--image-folder", ".", "--out", "o", "--model",
                 "no-such-model"]) == 1  # fmt: skip
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 4 and all(line.startswith("vqrae ") for line in errors)
    assert "not found" in errors[0] and "encoder_final_norm" in errors[2]
    assert "--model no-such-model: no such model folder" in errors[3]


def test_an_unshipped_demo_model_is_one_line_that_says_how_to_train_one(
    monkeypatch, capsys
) -> None:
    from vqrae import assets

    def not_shipped(name, **_):
        raise assets.AssetError(f"{name}: not shipped")

    monkeypatch.setattr(assets, "resolve", not_shipped)
    assert main(["answer", "--questions", "q", "--image-folder", ".", "--out", "o"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("vqrae answer: error:") and "\n" not in error
    assert "not in this installation" in error and "vqrae train-mllm" in error


def test_demo_asks_held_out_questions_about_the_shapes_samples(model_dir, tmp_path, capsys):
    from vqrae.cli.demo import _visual_questions
    from vqrae.data.samples import shapes_sample_questions, write_shapes_samples

    write_shapes_samples(tmp_path / "inputs")
    assert _visual_questions(tmp_path, tmp_path / "inputs", str(model_dir), "cpu") == 0
    rows = shapes_sample_questions()
    answers = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [a["question_id"] for a in answers] == [r["question_id"] for r in rows]
    out = capsys.readouterr().out
    assert out.count("; truth ") == len(rows) and f"of {len(rows)} right" in out
    assert _visual_questions(tmp_path, tmp_path / "inputs", str(tmp_path / "none"), "cpu") == 0
    assert "visual questions skipped" in capsys.readouterr().out


def test_without_a_shipped_model_the_commands_say_how_to_train_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VQRAE_CHECKPOINTS", str(tmp_path))  # an installation without checkpoints
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question_id": 0, "image": "a.png", "text": "Is there a star?"}\n')
    assert main(["answer", "--questions", str(questions), "--image-folder", str(tmp_path),
                 "--out", str(tmp_path / "a.jsonl")]) != 0  # fmt: skip
    err = capsys.readouterr().err
    assert "vqrae-mllm-demo" in err and "vqrae train-mllm" in err
