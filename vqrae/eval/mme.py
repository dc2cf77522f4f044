"""MME benchmark scoring (Fu et al., 2023), faithful to the official eval tool.

MME asks two yes/no questions per image (one true, one false) in 14 subtasks. Per subtask:

* accuracy: percent of questions answered correctly;
* accuracy+: percent of images whose questions are *all* answered correctly;
* score = accuracy + accuracy+ (so at most 200).

Perception is the sum of the 10 perception subtask scores (max 2000), cognition the sum of the 4
cognition subtask scores (max 800).

Two input layouts are supported and give identical scores:

* LLaVA's layout (:func:`load_llava_answers`): ``questions.jsonl`` lines ``{"question_id":
  "<subtask>/[images/]<image>", "image": ..., "text": "<question>\\n<instruction>", "category":
  "<subtask>"}`` and ``answers.jsonl`` lines ``{"question_id": ..., "prompt": <question text>,
  "text": <reply>, ...}``, plus the ground-truth folder with one ``<subtask>.txt`` per subtask
  (lines ``image<TAB>question<TAB>Yes|No``, the eval tool's ``Your_Results`` templates).
  Answers are joined to questions by ``(question_id, prompt)`` and then to the ground truth by
  ``(subtask, image file name, question)`` as LLaVA's ``convert_answer_to_mme.py`` does: the
  instruction LLaVA appended is removed and the question is compared with the ground truth's up
  to whitespace and the ``Please answer yes or no.`` suffix (LLaVA tries one and then two spaces
  before that suffix, because seven ground-truth questions in ``color``, ``count`` and
  ``position`` have two).
* The official eval-tool layout (:func:`load_results_dir`, written by
  :func:`write_results_dir`): one ``<subtask>.txt`` per subtask with lines
  ``image<TAB>question<TAB>ground truth<TAB>reply``.

LLaVA-1.5-13B's published answers give perception 1531.3 with this scorer, as its paper reports.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vqrae.utils.jsonl import iter_jsonl

__all__ = [
    "COGNITION_SUBTASKS",
    "PERCEPTION_SUBTASKS",
    "SUBTASKS",
    "MMERecord",
    "MMEReport",
    "SubtaskScore",
    "eval_mme",
    "format_report",
    "load_ground_truth",
    "load_llava_answers",
    "load_results_dir",
    "parse_reply",
    "score_mme",
    "write_results_dir",
]

PERCEPTION_SUBTASKS: tuple[str, ...] = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
COGNITION_SUBTASKS: tuple[str, ...] = (
    "commonsense_reasoning",
    "numerical_calculation",
    "text_translation",
    "code_reasoning",
)
SUBTASKS: tuple[str, ...] = PERCEPTION_SUBTASKS + COGNITION_SUBTASKS

#: Instructions that LLaVA-style evaluation appends to MME questions (removed before matching).
LLAVA_INSTRUCTIONS: tuple[str, ...] = ("Answer the question using a single word or phrase.",)
_YES_NO_SUFFIX = "Please answer yes or no."
SCORES_FILENAME = "mme_scores.json"


@dataclass(frozen=True)
class MMERecord:
    """One answered MME question.

    Attributes:
        subtask: One of :data:`SUBTASKS`.
        image: Image file name (no folders), e.g. ``000000006040.jpg``.
        question: The official question text, ending in ``Please answer yes or no.``.
        ground_truth: ``"Yes"`` or ``"No"`` (as in the ground-truth files; compared lower-cased).
        reply: The model's raw reply.
    """

    subtask: str
    image: str
    question: str
    ground_truth: str
    reply: str


@dataclass(frozen=True)
class SubtaskScore:
    """Scores of one subtask; accuracies and score are in percent points."""

    subtask: str
    num_questions: int
    num_images: int
    accuracy: float
    accuracy_plus: float
    score: float
    num_other: int  # replies parsed as neither yes nor no


@dataclass(frozen=True)
class MMEReport:
    """MME result: per-subtask scores and the perception / cognition / total sums."""

    subtasks: dict[str, SubtaskScore]
    perception: float
    cognition: float
    total: float
    missing: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (subtasks in the official order)."""
        return {
            "perception": self.perception,
            "cognition": self.cognition,
            "total": self.total,
            "subtasks": {name: asdict(s) for name, s in self.subtasks.items()},
            "missing_subtasks": list(self.missing),
        }


def parse_reply(reply: str) -> str:
    """Map a free-form reply to ``"yes"``, ``"no"`` or ``"other"`` like the official tool.

    The official ``calculation.py`` lower-cases the reply, accepts an exact ``yes`` / ``no``,
    and otherwise looks at the first four characters only: ``yes`` in them means yes, else ``no``
    in them means no, else other. (So ``"Yes, it is"`` is yes, ``"Not really"`` and ``"None"``
    are no, ``"I think yes"`` is other.)

    One deliberate difference: the reply is stripped of surrounding whitespace here. The official
    tool reads it with its trailing newline and does not strip, which gives the same label for
    every reply except those starting with two or more whitespace characters (official: mostly
    ``other``).
    """
    pred = reply.strip().lower()
    if pred in ("yes", "no"):
        return pred
    prefix = pred[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def _question_key(text: str) -> str:
    """Normalise a question for matching: drop LLaVA's instruction and the yes/no suffix."""
    for instruction in LLAVA_INSTRUCTIONS:
        text = text.replace(instruction, " ")
    text = text.replace(_YES_NO_SUFFIX, " ")
    return " ".join(text.split())


def _check_subtask(name: str, where: str) -> str:
    if name not in SUBTASKS:
        raise ValueError(f"{where}: unknown MME subtask {name!r}; expected one of {list(SUBTASKS)}")
    return name


def _normalise_answer(value: str, where: str) -> str:
    if value.strip().lower() not in ("yes", "no"):
        raise ValueError(f"{where}: ground truth must be 'Yes' or 'No', got {value!r}")
    return value.strip()


def _read_lines(path: Path) -> Iterable[tuple[int, str]]:
    """Yield ``(line number, line without its end-of-line)`` for the non-blank lines of a file."""
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if line.strip():
                yield lineno, line


def _subtask_files(directory: str | os.PathLike[str], kind: str) -> list[tuple[str, Path]]:
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"{kind} folder {root} does not exist")
    files = sorted(root.glob("*.txt"))
    if not files:
        raise ValueError(f"{kind} folder {root} holds no <subtask>.txt files")
    found = [(_check_subtask(f.stem, str(f)), f) for f in files]
    return sorted(found, key=lambda item: SUBTASKS.index(item[0]))  # official order


def load_ground_truth(
    ground_truth_dir: str | os.PathLike[str],
) -> dict[tuple[str, str, str], tuple[str, str]]:
    """Read the ground truth: one ``<subtask>.txt`` per subtask, lines ``image, question, answer``.

    Columns are tab-separated.

    Returns:
        ``{(subtask, image, question key): (question, answer)}`` where the key is the question
        normalised for matching (see the module docstring).

    Raises:
        ValueError: Malformed lines, unknown subtask files, non yes/no answers, or two questions
            of one image that normalise to the same key.
    """
    table: dict[tuple[str, str, str], tuple[str, str]] = {}
    for subtask, path in _subtask_files(ground_truth_dir, "ground-truth"):
        for lineno, line in _read_lines(path):
            where = f"{path}:{lineno}"
            fields = line.split("\t")
            if len(fields) != 3:
                raise ValueError(
                    f"{where}: expected 'image<TAB>question<TAB>answer', got {len(fields)} fields"
                )
            image, question, answer = fields
            key = (subtask, image, _question_key(question))
            if key in table:
                raise ValueError(f"{where}: duplicate question for image {image!r}: {question!r}")
            table[key] = (question, _normalise_answer(answer, where))
    return table


def _read_jsonl(path: Path, required: Sequence[str]) -> Iterable[tuple[str, dict[str, Any]]]:
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        for field in required:
            if not isinstance(obj.get(field), str):
                raise ValueError(f"{where}: missing string field {field!r}")
        yield where, obj


def load_llava_answers(
    questions_jsonl: str | os.PathLike[str],
    answers_jsonl: str | os.PathLike[str],
    ground_truth_dir: str | os.PathLike[str],
) -> list[MMERecord]:
    """Load answers in LLaVA's layout and attach the ground truth.

    Args:
        questions_jsonl: LLaVA's ``llava_mme.jsonl``-style question file (``question_id``,
            ``text``, optional ``category``).
        answers_jsonl: The model's answers (``question_id``, ``prompt``, ``text``).
        ground_truth_dir: Folder with one ``<subtask>.txt`` per subtask.

    Returns:
        One :class:`MMERecord` per question, in question-file order, carrying the official
        question text and ground truth.

    Raises:
        ValueError: Naming the file and line for malformed JSON, duplicate questions or answers,
            answers without a matching question, questions without an answer, unknown
            subtasks, and questions absent from the ground truth.
    """
    q_path, a_path = Path(questions_jsonl), Path(answers_jsonl)
    gt = load_ground_truth(ground_truth_dir)

    questions: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for where, obj in _read_jsonl(q_path, ("question_id", "text")):
        key = (obj["question_id"], obj["text"])
        if key in questions:
            raise ValueError(
                f"{where}: duplicate question {key[0]!r}: {key[1]!r} (first at {questions[key][0]})"
            )
        questions[key] = (where, obj)

    replies: dict[tuple[str, str], tuple[str, str]] = {}
    for where, obj in _read_jsonl(a_path, ("question_id", "prompt", "text")):
        key = (obj["question_id"], obj["prompt"])
        if key not in questions:
            raise ValueError(
                f"{where}: answer to {key[0]!r} has no matching question in {q_path}: {key[1]!r}"
            )
        if key in replies:
            raise ValueError(
                f"{where}: duplicate answer to {key[0]!r}: {key[1]!r} (first at {replies[key][0]})"
            )
        replies[key] = (where, obj["text"])

    unanswered = [questions[k][0] for k in questions if k not in replies]
    if unanswered:
        raise ValueError(
            f"{a_path}: {len(unanswered)} questions have no answer (first: {unanswered[0]})"
        )

    records = []
    for key, (q_where, obj) in questions.items():
        question_id, text = key
        a_where, reply = replies[key]
        subtask = obj.get("category") or question_id.split("/")[0]
        _check_subtask(subtask, q_where)
        image = question_id.split("/")[-1]
        match = gt.get((subtask, image, _question_key(text)))
        if match is None:
            raise ValueError(
                f"{a_where}: no ground truth for ({subtask}, {image}) question {text!r} "
                f"in {ground_truth_dir}"
            )
        question, answer = match
        records.append(MMERecord(subtask, image, question, answer, reply))
    return records


def load_results_dir(results_dir: str | os.PathLike[str]) -> list[MMERecord]:
    """Load the official eval-tool layout: ``<subtask>.txt`` files with 4 tab-separated columns.

    Lines are ``image<TAB>question<TAB>ground truth<TAB>reply``; the reply may be empty.

    Raises:
        ValueError: Naming the file and line for a wrong number of columns or a ground truth
            other than yes/no, and naming the file for unknown subtasks.
    """
    records = []
    for subtask, path in _subtask_files(results_dir, "results"):
        for lineno, line in _read_lines(path):
            where = f"{path}:{lineno}"
            fields = line.split("\t")
            if len(fields) != 4:
                raise ValueError(
                    f"{where}: expected 'image<TAB>question<TAB>ground truth<TAB>reply', "
                    f"got {len(fields)} fields"
                )
            image, question, answer, reply = fields
            records.append(
                MMERecord(subtask, image, question, _normalise_answer(answer, where), reply)
            )
    return records


def _clean_field(text: str) -> str:
    """Make a reply safe for one tab-separated line (tabs and line breaks become spaces)."""
    return re.sub(r"[\t\r\n]", " ", text)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_results_dir(records: Sequence[MMERecord], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write records in the official eval-tool layout (one ``<subtask>.txt`` per subtask).

    Record order is kept within each subtask. Tabs and line breaks inside replies are replaced
    by spaces so every answer stays on one line; this never changes its parsed label.

    Returns:
        The files written, in the official subtask order.
    """
    by_subtask: dict[str, list[MMERecord]] = defaultdict(list)
    for i, r in enumerate(records):
        by_subtask[_check_subtask(r.subtask, f"record {i}")].append(r)
    written = []
    for subtask in SUBTASKS:
        if subtask not in by_subtask:
            continue
        lines = [
            "\t".join((r.image, r.question, r.ground_truth, _clean_field(r.reply))) + "\n"
            for r in by_subtask[subtask]
        ]
        path = Path(out_dir) / f"{subtask}.txt"
        _atomic_write_text(path, "".join(lines))
        written.append(path)
    return written


def score_mme(records: Sequence[MMERecord], strict: bool = True) -> MMEReport:
    """Score MME records.

    Accuracy+ groups questions by image within a subtask (the official tool pairs consecutive
    lines, which is the same for its files: two adjacent questions per image).

    Args:
        records: Answered questions, in any order.
        strict: Require all 14 subtasks and exactly two questions per image, as MME defines
            them. With ``strict=False`` absent subtasks are listed in ``MMEReport.missing`` and
            the sums run over the subtasks present.

    Returns:
        An :class:`MMEReport`.

    Raises:
        ValueError: Unknown subtasks, duplicate questions, ground truths other than yes/no, and
            (strict) missing subtasks or images without exactly two questions.
    """
    grouped: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    others: dict[str, int] = defaultdict(int)
    seen: set[tuple[str, str, str]] = set()
    for i, r in enumerate(records):
        where = f"record {i} ({r.subtask}/{r.image})"
        _check_subtask(r.subtask, where)
        key = (r.subtask, r.image, r.question)
        if key in seen:
            raise ValueError(f"{where}: duplicate question {r.question!r}")
        seen.add(key)
        truth = _normalise_answer(r.ground_truth, where).lower()
        pred = parse_reply(r.reply)
        others[r.subtask] += pred == "other"
        grouped[r.subtask][r.image].append(pred == truth)

    missing = tuple(s for s in SUBTASKS if s not in grouped)
    if strict and missing:
        raise ValueError(
            f"MME results lack subtasks {list(missing)} (use strict=False to score a subset)"
        )
    scores: dict[str, SubtaskScore] = {}
    for subtask in SUBTASKS:
        images = grouped.get(subtask)
        if not images:
            continue
        if strict:
            odd = [img for img, v in images.items() if len(v) != 2]
            if odd:
                raise ValueError(
                    f"{subtask}: {len(odd)} images do not have exactly 2 questions "
                    f"(first: {odd[0]!r})"
                )
        n_q = sum(len(v) for v in images.values())
        acc = 100.0 * sum(sum(v) for v in images.values()) / n_q
        acc_plus = 100.0 * sum(all(v) for v in images.values()) / len(images)
        scores[subtask] = SubtaskScore(
            subtask, n_q, len(images), acc, acc_plus, acc + acc_plus, others[subtask]
        )
    perception = sum(s.score for name, s in scores.items() if name in PERCEPTION_SUBTASKS)
    cognition = sum(s.score for name, s in scores.items() if name in COGNITION_SUBTASKS)
    return MMEReport(scores, perception, cognition, perception + cognition, missing)


def format_report(report: MMEReport) -> str:
    """Render a report as a fixed-width table for the terminal."""
    header = f"{'subtask':<24}{'questions':>10}{'acc':>9}{'acc+':>9}{'score':>9}{'other':>7}"
    rule = "-" * len(header)
    lines = [header, rule]

    def block(names: Sequence[str], title: str, total: float) -> None:
        present = [n for n in names if n in report.subtasks]
        if not present:
            return
        for n in present:
            s = report.subtasks[n]
            lines.append(
                f"{n:<24}{s.num_questions:>10d}{s.accuracy:>9.2f}{s.accuracy_plus:>9.2f}"
                f"{s.score:>9.2f}{s.num_other:>7d}"
            )
        lines.append(f"{title:<24}{'':>10}{'':>9}{'':>9}{total:>9.2f}")
        lines.append(rule)

    block(PERCEPTION_SUBTASKS, "Perception", report.perception)
    block(COGNITION_SUBTASKS, "Cognition", report.cognition)
    lines.append(f"{'Total':<24}{'':>10}{'':>9}{'':>9}{report.total:>9.2f}")
    if report.missing:
        lines.append(f"missing subtasks: {', '.join(report.missing)}")
    return "\n".join(lines)


def eval_mme(
    questions: str | None = None,
    answers: str | None = None,
    ground_truth: str | None = None,
    results_dir: str | None = None,
    out: str | None = None,
) -> MMEReport:
    """Score MME from LLaVA-layout answers or from an official results folder.

    Args:
        questions: LLaVA question file (``.jsonl``). Give with ``answers`` and ``ground_truth``.
        answers: LLaVA answer file (``.jsonl``).
        ground_truth: Folder of ``<subtask>.txt`` ground-truth files.
        results_dir: Official eval-tool folder of ``<subtask>.txt`` results. Read when no LLaVA
            files are given; written (the conversion to the official layout) when they are.
        out: Output folder; ``mme_scores.json`` is written there atomically.

    Returns:
        The :class:`MMEReport`.
    """
    if questions is not None or answers is not None or ground_truth is not None:
        if questions is None or answers is None or ground_truth is None:
            raise ValueError("questions, answers and ground_truth must be given together")
        records = load_llava_answers(questions, answers, ground_truth)
        if results_dir is not None:
            write_results_dir(records, results_dir)
    elif results_dir is not None:
        records = load_results_dir(results_dir)
    else:
        raise ValueError("give either questions, answers and ground_truth, or results_dir")
    report = score_mme(records)
    if out is not None:
        payload = {
            "benchmark": "MME",
            **report.to_dict(),
            "inputs": {
                "questions": questions,
                "answers": answers,
                "ground_truth": ground_truth,
                "results_dir": results_dir,
            },
        }
        _atomic_write_text(Path(out) / SCORES_FILENAME, json.dumps(payload, indent=2) + "\n")
    return report
