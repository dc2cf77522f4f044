"""GQA scoring (Hudson & Manning, 2019), faithful to the official ``eval.py`` for accuracy.

Inputs are the official formats:

* questions JSON ``{qid: {"imageId", "question", "answer", "isBalanced", "types":
  {"structural", "semantic", "detailed"}, ...}}`` (e.g. ``testdev_balanced_questions.json``);
* predictions JSON ``[{"questionId": qid, "prediction": text}, ...]``, which LLaVA's
  ``convert_gqa_for_eval.py`` writes from its answers file with ``text.rstrip('.').lower()``
  (:func:`llava_answers_to_predictions` does the same).

Scoring, as ``eval.py`` does it: only balanced questions count (``isBalanced``; absent means
balanced); every one of them needs a prediction; a prediction is right when it equals the gold
answer exactly; ``open`` questions are those of structural type ``query``, all others are
``binary``; accuracy is also reported per structural and per semantic type. Consistency,
validity, plausibility, grounding and distribution need files testdev does not ship and are not
computed.

One option differs from ``eval.py``: ``normalise=True`` (the default) applies LLaVA's
normalisation to every prediction before comparing. It changes nothing for predictions that
LLaVA's conversion wrote (the normalisation is idempotent); ``normalise=False`` compares the raw
strings as ``eval.py`` does.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqrae.utils.files import atomic_write

__all__ = [
    "GQAQuestion",
    "GQAReport",
    "TypeScore",
    "eval_gqa",
    "format_report",
    "llava_answers_to_predictions",
    "load_predictions",
    "load_questions",
    "normalise_answer",
    "score_gqa",
    "write_predictions",
]


@dataclass(frozen=True)
class GQAQuestion:
    """One question of a GQA questions file."""

    qid: str
    image_id: str
    question: str
    answer: str
    structural: str
    semantic: str
    detailed: str
    balanced: bool = True


@dataclass(frozen=True)
class TypeScore:
    """Accuracy (percent) over the questions of one type."""

    name: str
    num_questions: int
    accuracy: float


@dataclass(frozen=True)
class GQAReport:
    """Accuracies in percent, as the official ``eval.py`` prints them."""

    accuracy: float
    binary: float
    open: float
    num_questions: int
    num_binary: int
    num_open: int
    structural: dict[str, TypeScore] = field(default_factory=dict)
    semantic: dict[str, TypeScore] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "accuracy": self.accuracy,
            "binary": self.binary,
            "open": self.open,
            "num_questions": self.num_questions,
            "num_binary": self.num_binary,
            "num_open": self.num_open,
            "structural": {k: vars(v) for k, v in self.structural.items()},
            "semantic": {k: vars(v) for k, v in self.semantic.items()},
        }


def normalise_answer(text: str) -> str:
    """LLaVA's ``convert_gqa_for_eval.py``: ``text.rstrip('.').lower()``."""
    return text.rstrip(".").lower()


def load_questions(path: str | os.PathLike[str]) -> dict[str, GQAQuestion]:
    """Read a questions JSON.

    Raises:
        ValueError: Not a JSON object of objects, or a question without ``question``,
            ``answer`` or ``types.structural`` / ``types.semantic``.
    """
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON ({err.msg})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{qid: question}}")
    out = {}
    for qid, q in data.items():
        where = f"{path}: question {qid!r}"
        if not isinstance(q, dict):
            raise ValueError(f"{where}: expected an object")
        types = q.get("types")
        if not isinstance(q.get("question"), str) or not isinstance(q.get("answer"), str):
            raise ValueError(f"{where}: needs string 'question' and 'answer'")
        if not isinstance(types, dict) or not all(
            isinstance(types.get(k), str) for k in ("structural", "semantic")
        ):
            raise ValueError(f"{where}: needs 'types' with string 'structural' and 'semantic'")
        out[str(qid)] = GQAQuestion(
            qid=str(qid),
            image_id=str(q.get("imageId", "")),
            question=q["question"],
            answer=q["answer"],
            structural=types["structural"],
            semantic=types["semantic"],
            detailed=str(types.get("detailed", "")),
            balanced=bool(q.get("isBalanced", True)),
        )
    return out


def load_predictions(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a predictions JSON (a list of ``{"questionId", "prediction"}``).

    Raises:
        ValueError: Not a list, entries without the two string fields, or duplicate ids.
    """
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON ({err.msg})") from err
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {{questionId, prediction}}")
    out: dict[str, str] = {}
    for i, p in enumerate(data):
        if (
            not isinstance(p, dict)
            or not isinstance(p.get("prediction"), str)
            or "questionId" not in p
        ):
            raise ValueError(f"{path}: entry {i} needs 'questionId' and a string 'prediction'")
        qid = str(p["questionId"])
        if qid in out:
            raise ValueError(f"{path}: duplicate prediction for question {qid!r}")
        out[qid] = p["prediction"]
    return out


def llava_answers_to_predictions(answers_jsonl: str | os.PathLike[str]) -> list[dict[str, str]]:
    """LLaVA's ``convert_gqa_for_eval.py``: answers lines ``{question_id, text}`` -> predictions."""
    preds = []
    with open(answers_jsonl, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            obj = json.loads(line)
            if "question_id" not in obj or not isinstance(obj.get("text"), str):
                raise ValueError(
                    f"{answers_jsonl}:{lineno}: needs 'question_id' and a string 'text'"
                )
            preds.append(
                {"questionId": str(obj["question_id"]), "prediction": normalise_answer(obj["text"])}
            )
    return preds


def write_predictions(
    predictions: Sequence[Mapping[str, str]], path: str | os.PathLike[str]
) -> Path:
    """Write a predictions JSON (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(list(predictions))
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _pct(values: Sequence[bool]) -> float:
    return 100.0 * sum(values) / len(values) if values else 0.0


def score_gqa(
    questions: Mapping[str, GQAQuestion], predictions: Mapping[str, str], normalise: bool = True
) -> GQAReport:
    """Accuracy overall, binary / open, and per structural and semantic type (balanced only).

    Raises:
        ValueError: A balanced question has no prediction (the official tool stops there too).
    """
    missing = [qid for qid, q in questions.items() if q.balanced and qid not in predictions]
    if missing:
        raise ValueError(
            f"{len(missing)} balanced questions have no prediction (first: {missing[0]!r})"
        )
    overall: list[bool] = []
    kinds: dict[str, list[bool]] = {"binary": [], "open": []}
    structural: dict[str, list[bool]] = defaultdict(list)
    semantic: dict[str, list[bool]] = defaultdict(list)
    for qid, q in questions.items():
        if not q.balanced:
            continue
        pred = predictions[qid]
        ok = (normalise_answer(pred) if normalise else pred) == q.answer
        overall.append(ok)
        kinds["open" if q.structural == "query" else "binary"].append(ok)
        structural[q.structural].append(ok)
        semantic[q.semantic].append(ok)
    return GQAReport(
        accuracy=_pct(overall),
        binary=_pct(kinds["binary"]),
        open=_pct(kinds["open"]),
        num_questions=len(overall),
        num_binary=len(kinds["binary"]),
        num_open=len(kinds["open"]),
        structural={k: TypeScore(k, len(v), _pct(v)) for k, v in sorted(structural.items())},
        semantic={k: TypeScore(k, len(v), _pct(v)) for k, v in sorted(semantic.items())},
    )


def format_report(report: GQAReport) -> str:
    """The accuracy lines as ``eval.py`` prints them (types sorted by name)."""
    lines = [
        f"Binary: {report.binary:.2f}%",
        f"Open: {report.open:.2f}%",
        f"Accuracy: {report.accuracy:.2f}%",
        "",
    ]
    for title, table in (
        ("Accuracy / structural type", report.structural),
        ("Accuracy / semantic type", report.semantic),
    ):
        lines.append(f"{title}:")
        lines += [
            f"  {t.name}: {t.accuracy:.2f}% ({t.num_questions} questions)" for t in table.values()
        ]
    return "\n".join(lines)


def eval_gqa(
    questions: str | os.PathLike[str],
    predictions: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    normalise: bool = True,
) -> GQAReport:
    """Score a predictions file against a questions file; write ``out`` (JSON) when given."""
    report = score_gqa(load_questions(questions), load_predictions(predictions), normalise)
    if out is not None:
        payload = json.dumps(
            {
                "benchmark": "GQA",
                **report.to_dict(),
                "inputs": {"questions": str(questions), "predictions": str(predictions)},
            },
            indent=2,
        )
        out_path = Path(out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out_path, lambda tmp: tmp.write_text(payload + "\n", encoding="utf-8"))
    return report
