"""Batch answering in LLaVA's ``model_vqa`` format, resumable.

Questions are JSON lines ``{"question_id", "image", "text", ...}`` (``image`` relative to an
image folder; absent for a text-only question); answers are JSON lines::

    {"question_id", "prompt": <the question text>, "text": <the answer>, "answer_id",
     "model_id", "metadata": {}}

as LLaVA's ``model_vqa_loader.py`` writes them (``answer_id`` is a deterministic digest of
model, question id and prompt here, where LLaVA draws a random ``shortuuid``). Questions are
answered in file order, ``batch_size`` at a time (left-padded, one generation pass per batch,
greedy unless told otherwise). Each batch's answers are appended to the output with one write
of whole lines, flushed and synced; on a restart the answered ``(question_id, prompt)`` pairs
are read back and skipped, and a torn last line left by a crash is dropped first. A question
whose image cannot be read is reported through ``on_failure`` and not answered (so a later run
retries it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vqrae.data.images import ImageReadError
from vqrae.mllm.generate import GenerationSettings, generate
from vqrae.mllm.model import MLLM
from vqrae.mllm.prompts import prompt_ids
from vqrae.utils.jsonl import iter_jsonl

__all__ = [
    "AnswerFailure",
    "AnswerRun",
    "answer_batch",
    "answer_questions",
    "read_answered",
    "read_questions",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnswerFailure:
    """A question that could not be answered (its image is unreadable)."""

    question_id: str
    error: str


@dataclass
class AnswerRun:
    """What :func:`answer_questions` did."""

    out: Path
    answered: int = 0
    skipped: int = 0
    failures: list[AnswerFailure] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the terminal."""
        text = f"answered {self.answered} question(s) into {self.out}"
        if self.skipped:
            text += f" ({self.skipped} answered before, skipped)"
        if self.failures:
            text += f"; {len(self.failures)} failed (unreadable images)"
        return text


def read_questions(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Question lines; each needs ``question_id`` and a string ``text``.

    Raises:
        ValueError: a missing file, invalid JSON, or a line without the two fields.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"question file {path} not found")
    questions = []
    for lineno, record in iter_jsonl(path):
        if "question_id" not in record or not isinstance(record.get("text"), str):
            raise ValueError(f"{path}:{lineno}: needs 'question_id' and a string 'text'")
        questions.append(record)
    return questions


def _repair_tail(path: Path) -> None:
    """Drop a last line a crash left without its end (or not valid JSON)."""
    data = path.read_bytes()
    if not data:
        return
    keep = data if data.endswith(b"\n") else data[: data.rfind(b"\n") + 1]
    lines = keep.splitlines(keepends=True)
    while lines:
        try:
            json.loads(lines[-1])
            break
        except json.JSONDecodeError:
            lines.pop()
    repaired = b"".join(lines)
    if repaired != data:
        log.warning("%s: dropped an incomplete last answer line", path)
        with open(path, "r+b") as fh:
            fh.truncate(len(repaired))


def read_answered(path: str | os.PathLike[str]) -> set[tuple[str, str]]:
    """The ``(question_id, prompt)`` pairs already in an answers file (repairing its tail)."""
    path = Path(path)
    if not path.is_file():
        return set()
    _repair_tail(path)
    done = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                done.add((str(record["question_id"]), str(record.get("prompt", ""))))
    return done


def _answer_id(model_id: str, question_id: str, prompt: str) -> str:
    digest = hashlib.sha256(f"{model_id}\0{question_id}\0{prompt}".encode()).hexdigest()
    return digest[:22]


def answer_batch(
    model: MLLM,
    turns: Sequence[str],
    images: Sequence[torch.Tensor | None],
    settings: GenerationSettings | None = None,
) -> list[str]:
    """Answer one question per row: ``turns[i]`` about ``images[i]`` (a preprocessed
    (3, S, S) image, or ``None`` for a text-only question). Rows holding the same tensor object
    share one encoder pass."""
    has = [img is not None for img in images]
    prompts = [
        prompt_ids(
            model.tokenizer,
            model.config,
            [{"role": "user", "content": text}],
            has_image=h,
            image_token_id=model.image_token_id,
            num_image_tokens=model.num_image_tokens,
        )
        for text, h in zip(turns, has, strict=True)
    ]
    features = None
    if any(has):
        # Each distinct image is encoded once: questions about one image share its tensor.
        row_of: dict[int, int] = {}
        distinct: list[torch.Tensor] = []
        for img in images:
            if img is not None and id(img) not in row_of:
                row_of[id(img)] = len(distinct)
                distinct.append(img)
        computed = model.vision(torch.stack(distinct).to(model.device))  # (u, N, d)
        rows = torch.tensor([row_of[id(img)] if img is not None else 0 for img in images])
        features = computed[rows.to(computed.device)]  # (b, N, d)
        features[~torch.tensor(has, device=computed.device)] = 0
    outputs = generate(model, prompts, features, settings)
    return [model.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in outputs]


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def answer_questions(
    model: MLLM,
    questions: Sequence[dict[str, Any]],
    image_folder: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    *,
    model_id: str,
    batch_size: int = 8,
    settings: GenerationSettings | None = None,
    on_failure: Callable[[AnswerFailure], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> AnswerRun:
    """Answer every question not yet in ``out`` (see the module docstring).

    Args:
        model: the understanding model (eval mode).
        questions: records from :func:`read_questions`.
        image_folder: where ``image`` paths are relative to.
        out: the answers file (appended; created with its folder).
        model_id: the ``model_id`` field of every answer.
        batch_size: questions per generation pass.
        settings: decoding settings (default greedy).
        on_failure: called for each question whose image cannot be read.
        on_batch: called with the number of questions handled after each batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = read_answered(out_path)
    run = AnswerRun(out_path)
    pending = [q for q in questions if (str(q["question_id"]), q["text"]) not in done]
    run.skipped = len(questions) - len(pending)
    folder = Path(image_folder) if image_folder is not None else None
    for batch in _batches(pending, batch_size):
        ready, images = [], []
        loaded: dict[Path, torch.Tensor] = {}  # questions about one image share its tensor
        for q in batch:
            image = None
            if q.get("image"):
                path = folder / q["image"] if folder is not None else Path(q["image"])
                try:
                    image = loaded.get(path)
                    if image is None:
                        image = loaded[path] = model.vision.load(path)
                except ImageReadError as exc:
                    failure = AnswerFailure(str(q["question_id"]), str(exc))
                    run.failures.append(failure)
                    if on_failure is not None:
                        on_failure(failure)
                    continue
            ready.append(q)
            images.append(image)
        if ready:
            texts = answer_batch(model, [q["text"] for q in ready], images, settings)
            lines = "".join(
                json.dumps(
                    {
                        "question_id": q["question_id"],
                        "prompt": q["text"],
                        "text": text,
                        "answer_id": _answer_id(model_id, str(q["question_id"]), q["text"]),
                        "model_id": model_id,
                        "metadata": {},
                    }
                )
                + "\n"
                for q, text in zip(ready, texts, strict=True)
            )
            with open(out_path, "a", encoding="utf-8") as fh:
                fh.write(lines)
                fh.flush()
                os.fsync(fh.fileno())
            run.answered += len(ready)
        if on_batch is not None:
            on_batch(len(batch))
    return run
