"""GQA end to end: a questions JSON -> answers -> predictions -> the GQA scorer.

The balanced questions of a GQA questions file (``testdev_balanced_questions.json``, or the
shapes world's ``gqa/questions.json``) are asked as LLaVA-1.5 asks them (the question, a
newline, ``Answer the question using a single word or phrase.``), about ``<imageId>.jpg`` (or
``.png``) in the image folder; the answers (LLaVA's model_vqa format, resumable) become
predictions by LLaVA's ``convert_gqa_for_eval.py`` rule (``text.rstrip('.').lower()``), and
:func:`vqrae.eval.gqa.eval_gqa` scores them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vqrae.data.shapes.vqa import SHORT_ANSWER
from vqrae.eval.gqa import (
    GQAReport,
    eval_gqa,
    llava_answers_to_predictions,
    load_questions,
    write_predictions,
)
from vqrae.mllm.answer import AnswerFailure, AnswerRun, answer_questions
from vqrae.mllm.generate import GenerationSettings
from vqrae.mllm.model import MLLM
from vqrae.utils.files import atomic_write

__all__ = ["GQARun", "gqa_model_questions", "run_gqa"]

_EXTENSIONS = (".jpg", ".png", ".jpeg", ".JPEG", ".PNG")


@dataclass
class GQARun:
    """What :func:`run_gqa` wrote and scored."""

    report: GQAReport
    answers: AnswerRun
    predictions: Path
    scores: Path


def _image_file(folder: Path, image_id: str) -> str:
    for ext in _EXTENSIONS:
        if (folder / f"{image_id}{ext}").is_file():
            return f"{image_id}{ext}"
    return f"{image_id}.jpg"  # reported as unreadable when answered


def gqa_model_questions(
    questions_json: str | os.PathLike[str], image_folder: str | os.PathLike[str]
) -> list[dict[str, str]]:
    """The balanced questions as model_vqa question records (LLaVA-1.5's GQA prompt)."""
    folder = Path(image_folder)
    files: dict[str, str] = {}
    out = []
    for qid, q in load_questions(questions_json).items():
        if not q.balanced:
            continue
        if q.image_id not in files:
            files[q.image_id] = _image_file(folder, q.image_id)
        out.append(
            {
                "question_id": qid,
                "image": files[q.image_id],
                "text": f"{q.question}\n{SHORT_ANSWER}",
            }
        )
    return out


def run_gqa(
    model: MLLM,
    questions_json: str | os.PathLike[str],
    image_folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model_id: str,
    batch_size: int = 8,
    settings: GenerationSettings | None = None,
    on_failure: Callable[[AnswerFailure], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> GQARun:
    """Answer and score GQA; ``out`` gets ``questions.jsonl``, ``answers.jsonl``,
    ``predictions.json`` and ``gqa_scores.json``.

    Raises:
        ValueError: an invalid questions file, or balanced questions left without an answer
            (unreadable images), which the official scorer refuses too.
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = gqa_model_questions(questions_json, image_folder)
    text = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write(out_dir / "questions.jsonl", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    answers_path = out_dir / "answers.jsonl"
    run = answer_questions(
        model,
        records,
        image_folder,
        answers_path,
        model_id=model_id,
        batch_size=batch_size,
        settings=settings,
        on_failure=on_failure,
        on_batch=on_batch,
    )
    predictions = write_predictions(
        llava_answers_to_predictions(answers_path), out_dir / "predictions.json"
    )
    scores = out_dir / "gqa_scores.json"
    report = eval_gqa(questions_json, predictions, out=scores)
    return GQARun(report, run, predictions, scores)
