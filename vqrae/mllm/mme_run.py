"""MME end to end: the benchmark's folder layout -> answers -> the eval tool's layout -> score.

MME's release folder holds one folder per subtask in one of two layouts, both read here:

* flat: ``<subtask>/<image>.<ext>`` with ``<subtask>/<image>.txt`` beside it;
* nested: ``<subtask>/images/<image>.<ext>`` with ``<subtask>/questions_answers_YN/<image>.txt``;

each ``.txt`` holding ``question<TAB>answer`` lines (two per image, ``Yes`` and ``No``; the
questions end in ``Please answer yes or no.``). The shapes world writes the flat layout
(:mod:`vqrae.data.shapes.mme_layout`). The questions are answered in LLaVA's model_vqa format
(``questions.jsonl`` -> ``answers.jsonl``, resumable), the replies are written in the official
eval tool's layout (``results/<subtask>.txt``: image, question, ground truth, reply), read back and scored by
:func:`vqrae.eval.mme.score_mme` (strictly, MME's 14 subtasks, when the folder holds them all;
a subset such as the shapes world's four is scored with the others listed as missing).

The prompt is MME's own question, which carries ``Please answer yes or no.`` (``instruction:
"mme"``, the default), or LLaVA-1.5's evaluation prompt: the suffix replaced by ``Answer the
question using a single word or phrase.`` (``"llava"``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vqrae.data.images import IMAGE_EXTENSIONS
from vqrae.data.shapes.mme_layout import YES_NO_SUFFIX
from vqrae.data.shapes.vqa import SHORT_ANSWER
from vqrae.eval.mme import (
    SCORES_FILENAME,
    SUBTASKS,
    MMERecord,
    MMEReport,
    load_results_dir,
    score_mme,
    write_results_dir,
)
from vqrae.mllm.answer import AnswerFailure, AnswerRun, answer_questions
from vqrae.mllm.generate import GenerationSettings
from vqrae.mllm.model import MLLM
from vqrae.utils.files import atomic_write

__all__ = ["MMEQuestion", "MMERun", "mme_prompt", "read_mme_folder", "run_mme"]

Instruction = Literal["mme", "llava"]


@dataclass(frozen=True)
class MMEQuestion:
    """One MME question with its ground truth.

    Attributes:
        subtask: the subtask (folder name).
        image: the image path relative to the benchmark root.
        question: the official question (with ``Please answer yes or no.``).
        answer: ``Yes`` or ``No``.
    """

    subtask: str
    image: str
    question: str
    answer: str

    @property
    def question_id(self) -> str:
        """LLaVA's id: the image path relative to the root (``<subtask>/[images/]<file>``)."""
        return self.image


@dataclass
class MMERun:
    """What :func:`run_mme` wrote and scored."""

    report: MMEReport
    answers: AnswerRun
    questions: Path
    results_dir: Path
    scores: Path


def _image_beside(text_file: Path, image_dir: Path) -> Path | None:
    for candidate in sorted(image_dir.glob(f"{text_file.stem}.*")):
        if candidate.suffix.lower() in IMAGE_EXTENSIONS:
            return candidate
    return None


def read_mme_folder(root: str | os.PathLike[str]) -> list[MMEQuestion]:
    """Every question of an MME folder, subtasks in the official order.

    Raises:
        ValueError: no subtask folder, a question file without its image, or a line that is
            not ``question<TAB>Yes|No``.
    """
    root = Path(root)
    out: list[MMEQuestion] = []
    for subtask in SUBTASKS:
        folder = root / subtask
        if not folder.is_dir():
            continue
        nested = (folder / "questions_answers_YN").is_dir()
        text_dir = folder / "questions_answers_YN" if nested else folder
        image_dir = folder / "images" if nested else folder
        for text_file in sorted(text_dir.glob("*.txt")):
            image = _image_beside(text_file, image_dir)
            if image is None:
                raise ValueError(f"{text_file}: no image {text_file.stem}.* in {image_dir}")
            for lineno, line in enumerate(text_file.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                question, sep, answer = line.rpartition("\t")
                if not sep or answer.strip().lower() not in ("yes", "no"):
                    raise ValueError(f"{text_file}:{lineno}: expected question<TAB>Yes|No")
                relative = image.relative_to(root).as_posix()
                out.append(MMEQuestion(subtask, relative, question.strip(), answer.strip()))
    if not out:
        raise ValueError(f"{root}: no MME subtask folders ({', '.join(SUBTASKS[:4])}, ...)")
    return out


def mme_prompt(question: str, instruction: Instruction) -> str:
    """The text the model is asked (see the module docstring)."""
    if instruction == "mme":
        return question
    if instruction == "llava":
        return f"{question.replace(YES_NO_SUFFIX, '').strip()}\n{SHORT_ANSWER}"
    raise ValueError(f"instruction must be 'mme' or 'llava', got {instruction!r}")


def run_mme(
    model: MLLM,
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model_id: str,
    instruction: Instruction = "mme",
    batch_size: int = 8,
    settings: GenerationSettings | None = None,
    on_failure: Callable[[AnswerFailure], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> MMERun:
    """Answer and score an MME folder; ``out`` gets ``questions.jsonl``, ``answers.jsonl``,
    ``results/`` (the eval tool's layout) and ``mme_scores.json``.

    Raises:
        ValueError: see :func:`read_mme_folder`; questions left unanswered (unreadable images)
            are scored as missing replies by the scorer's rules.
    """
    root, out_dir = Path(root), Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    questions = read_mme_folder(root)
    records = [
        {
            "question_id": q.question_id,
            "image": q.image,
            "text": mme_prompt(q.question, instruction),
            "category": q.subtask,
        }
        for q in questions
    ]
    questions_path = out_dir / "questions.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write(questions_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    answers_path = out_dir / "answers.jsonl"
    run = answer_questions(
        model,
        records,
        root,
        answers_path,
        model_id=model_id,
        batch_size=batch_size,
        settings=settings,
        on_failure=on_failure,
        on_batch=on_batch,
    )
    replies: dict[tuple[str, str], str] = {}
    with open(answers_path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                a = json.loads(line)
                replies[(str(a["question_id"]), a["prompt"])] = a["text"]
    scored = [
        MMERecord(
            subtask=q.subtask,
            image=Path(q.image).name,
            question=q.question,
            ground_truth=q.answer,
            reply=replies.get((q.question_id, r["text"]), ""),
        )
        for q, r in zip(questions, records, strict=True)
    ]
    results_dir = out_dir / "results"
    write_results_dir(scored, results_dir)
    records_read = load_results_dir(results_dir)  # scored from the eval tool's layout
    complete = {q.subtask for q in questions} == set(SUBTASKS)
    report = score_mme(records_read, strict=complete)
    payload = {
        "benchmark": "MME",
        **report.to_dict(),
        "inputs": {"mme": str(root), "results_dir": str(results_dir), "instruction": instruction},
    }
    scores = out_dir / SCORES_FILENAME
    body = json.dumps(payload, indent=2) + "\n"
    atomic_write(scores, lambda tmp: tmp.write_text(body, encoding="utf-8"))
    return MMERun(report, run, questions_path, results_dir, scores)
