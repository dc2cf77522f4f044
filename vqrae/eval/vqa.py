"""Accuracy of short answers to visual questions, per question type, with the yes/no balance.

Inputs are LLaVA's files: the questions as ``model_vqa`` reads them, each with its truth
(``{"question_id", "image", "text", "answer", "category"}`` JSON lines: the shapes world writes
them as ``vqa/questions.jsonl``), and the answers ``vqrae answer`` (or LLaVA's
``model_vqa.py``) writes (``{"question_id", "prompt", "text", ...}``).

An answer is right when, normalised, it equals the truth: lower case, surrounding spaces and
final full stops removed (LLaVA's ``convert_gqa_for_eval.py`` normalisation), articles dropped,
and number words up to twenty read as digits. A yes/no question (truth ``yes`` or ``no``)
takes the first word of the answer, as MME's ``calculation.py`` reads ``Yes, there is...``. A
question without an answer counts as wrong and is reported. For yes/no questions the report
gives the share of ``yes`` among the answers against the share among the truths: a model biased
to one side shows it there (and in the accuracies on ``yes`` and on ``no`` truths).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "VQAReport",
    "format_vqa_report",
    "normalise_short_answer",
    "score_vqa",
]

_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_NUMBERS)}
_ARTICLES = {"a", "an", "the"}


def normalise_short_answer(text: str) -> str:
    """``" The Red."`` -> ``"red"``; ``"Three"`` -> ``"3"``."""
    text = text.strip().rstrip(".").strip().lower()
    words = [_NUMBER_WORDS.get(w, w) for w in re.split(r"\s+", text) if w not in _ARTICLES]
    return " ".join(words)


def _yes_no(text: str) -> str:
    match = re.match(r"\s*([a-z]+)", text.lower())
    return match.group(1) if match else ""


@dataclass
class VQAReport:
    """What :func:`score_vqa` measured.

    Attributes:
        accuracy: right answers over questions, all types together.
        per_type: ``{category: (right, questions)}``.
        missing: question ids without an answer (counted wrong).
        yes_share: share of ``yes`` among the answers to yes/no questions (``None``: none).
        truth_yes_share: share of ``yes`` among their truths.
        yes_accuracy, no_accuracy: accuracy on yes/no questions whose truth is yes / no.
    """

    accuracy: float
    per_type: dict[str, tuple[int, int]]
    missing: list[Any] = field(default_factory=list)
    yes_share: float | None = None
    truth_yes_share: float | None = None
    yes_accuracy: float | None = None
    no_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "per_type": {
                k: {"right": r, "total": n, "accuracy": r / n if n else None}
                for k, (r, n) in self.per_type.items()
            },
            "missing": len(self.missing),
            "yes_share": self.yes_share,
            "truth_yes_share": self.truth_yes_share,
            "yes_accuracy": self.yes_accuracy,
            "no_accuracy": self.no_accuracy,
        }


def score_vqa(
    questions: Sequence[Mapping[str, Any]], answers: Sequence[Mapping[str, Any]]
) -> VQAReport:
    """Score ``answers`` against the truths carried by ``questions``.

    Raises:
        ValueError: a question without ``question_id`` or ``answer``, or no questions.
    """
    if not questions:
        raise ValueError("no questions to score")
    given = {a["question_id"]: str(a.get("text", "")) for a in answers if "question_id" in a}
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missing: list[Any] = []
    yes_no = {"yes": [0, 0], "no": [0, 0]}  # truth -> [right, total]
    said_yes = binary_missing = 0
    for q in questions:
        if "question_id" not in q or "answer" not in q:
            raise ValueError(f"question {q.get('question_id')!r}: needs question_id and answer")
        qid, truth = q["question_id"], normalise_short_answer(str(q["answer"]))
        category = str(q.get("category", "all"))
        counts[category][1] += 1
        if qid not in given:
            missing.append(qid)
            if truth in yes_no:
                yes_no[truth][1] += 1
                binary_missing += 1
            continue
        if truth in yes_no:
            said = _yes_no(given[qid])
            right = said == truth
            said_yes += said == "yes"
            yes_no[truth][0] += right
            yes_no[truth][1] += 1
        else:
            right = normalise_short_answer(given[qid]) == truth
        counts[category][0] += right
    total = sum(n for _, n in counts.values())
    report = VQAReport(
        accuracy=sum(r for r, _ in counts.values()) / total,
        per_type={k: (r, n) for k, (r, n) in sorted(counts.items())},
        missing=missing,
    )
    binary = yes_no["yes"][1] + yes_no["no"][1]
    if binary:
        report.yes_share = said_yes / max(1, binary - binary_missing)
        report.truth_yes_share = yes_no["yes"][1] / binary
        report.yes_accuracy = yes_no["yes"][0] / yes_no["yes"][1] if yes_no["yes"][1] else None
        report.no_accuracy = yes_no["no"][0] / yes_no["no"][1] if yes_no["no"][1] else None
    return report


def format_vqa_report(report: VQAReport) -> str:
    """A table of the per-type accuracies and the yes/no balance."""
    lines = ["| type | right | questions | accuracy |", "|---|---|---|---|"]
    for category, (right, n) in report.per_type.items():
        lines.append(f"| {category} | {right} | {n} | {right / n:.3f} |")
    n_all = sum(n for _, n in report.per_type.values())
    right_all = sum(r for r, _ in report.per_type.values())
    lines.append(f"| **all** | {right_all} | {n_all} | **{report.accuracy:.3f}** |")
    if report.yes_share is not None:
        yes_acc = "-" if report.yes_accuracy is None else f"{report.yes_accuracy:.3f}"
        no_acc = "-" if report.no_accuracy is None else f"{report.no_accuracy:.3f}"
        lines.append(
            f"yes/no: 'yes' in {report.yes_share:.3f} of the answers "
            f"({report.truth_yes_share:.3f} of the truths); accuracy {yes_acc} on yes, "
            f"{no_acc} on no"
        )
    if report.missing:
        lines.append(f"{len(report.missing)} question(s) without an answer, counted wrong")
    return "\n".join(lines)
