"""Tests for MME scoring: the reply rule, accuracy+, both layouts, and LLaVA-1.5-13B's number."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from vqrae.eval.mme import (
    COGNITION_SUBTASKS,
    PERCEPTION_SUBTASKS,
    SUBTASKS,
    MMERecord,
    eval_mme,
    format_report,
    load_llava_answers,
    load_results_dir,
    parse_reply,
    score_mme,
    write_results_dir,
)


def _shared_data() -> Path:
    env = os.environ.get("VQRAE_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


MME_DIR = _shared_data() / "bench" / "mme"
LLAVA_DIR = MME_DIR / "llava-v1.5-13b"
needs_mme = pytest.mark.skipif(
    not (MME_DIR / "ground_truth").is_dir() or not LLAVA_DIR.is_dir(),
    reason=f"MME data not found at {MME_DIR} (set VQRAE_SHARED_DATA to the shared data folder)",
)


def _official_scores(results_dir: Path) -> dict[str, float]:
    """An independent re-statement of the official calculation.py on a results folder.

    Lines are read unstripped (the reply keeps its newline), paired consecutively per image.
    """
    scores = {}
    for task in SUBTASKS:
        lines = open(results_dir / f"{task}.txt", encoding="utf-8").readlines()
        pairs = [lines[i : i + 2] for i in range(0, len(lines), 2)]
        right, plus = 0, 0
        for pair in pairs:
            assert len(pair) == 2
            ok = 0
            for line in pair:
                _, _, gt, pred = line.split("\t")
                gt, pred = gt.lower(), pred.lower()
                if pred not in ("yes", "no"):
                    pred = "yes" if "yes" in pred[:4] else "no" if "no" in pred[:4] else "other"
                ok += gt == pred
            right += ok
            plus += ok == 2
        scores[task] = 100 * right / len(lines) + 100 * plus / len(pairs)
    return scores


@pytest.mark.parametrize(
    ("reply", "label"),
    [
        ("Yes", "yes"),
        ("no", "no"),
        ("  YES \n", "yes"),
        ("Yes, there is a train.", "yes"),
        ("No.", "no"),
        ("Not really", "no"),  # 'no' in the first four characters
        ("None", "no"),
        ("The answer is yes", "other"),  # only the first four characters count
        ("Church", "other"),
        ("", "other"),
        ("ayes", "yes"),
        ("no yes", "no"),
        ("yesno", "yes"),  # 'yes' is checked first
    ],
)
def test_parse_reply(reply: str, label: str) -> None:
    assert parse_reply(reply) == label


def _full_records(reply_for: dict[tuple[str, int], Sequence[str]] | None = None) -> list[MMERecord]:
    """Two images per subtask, questions (Yes, No); replies correct unless overridden."""
    records = []
    for task in SUBTASKS:
        for img in range(2):
            replies = (reply_for or {}).get((task, img), ("Yes", "No"))
            for q, (gt, reply) in enumerate(zip(("Yes", "No"), replies, strict=True)):
                records.append(
                    MMERecord(task, f"{img}.jpg", f"Q{q}? Please answer yes or no.", gt, reply)
                )
    return records


def test_accuracy_plus_needs_both_questions_of_an_image() -> None:
    records = _full_records(
        {
            ("existence", 0): ("Yes", "Yes"),  # one wrong -> image fails acc+
            ("count", 0): ("No", "Yes"),  # both wrong
            ("count", 1): ("Maybe", "No"),  # 'other' counts as wrong
        }
    )
    report = score_mme(records)
    ex, cnt = report.subtasks["existence"], report.subtasks["count"]
    assert (ex.accuracy, ex.accuracy_plus, ex.score) == (75.0, 50.0, 125.0)
    assert (cnt.accuracy, cnt.accuracy_plus, cnt.score, cnt.num_other) == (25.0, 0.0, 25.0, 1)
    assert report.subtasks["OCR"].score == 200.0
    assert report.perception == pytest.approx(200 * 8 + 125 + 25)
    assert report.cognition == pytest.approx(800.0)
    assert report.total == pytest.approx(report.perception + report.cognition)
    assert "Perception" in format_report(report) and "count" in format_report(report)


def test_score_validation() -> None:
    records = _full_records()
    with pytest.raises(ValueError, match="duplicate question"):
        score_mme([*records, records[0]])
    with pytest.raises(ValueError, match="unknown MME subtask 'colour'"):
        score_mme([MMERecord("colour", "a.jpg", "Q", "Yes", "Yes")])
    with pytest.raises(ValueError, match="lack subtasks"):
        score_mme(records[2:][:-4])
    partial = score_mme(
        [r for r in records if r.subtask in ("OCR", "code_reasoning")], strict=False
    )
    assert partial.perception == 200.0 and partial.cognition == 200.0
    assert len(partial.missing) == 12
    with pytest.raises(ValueError, match="exactly 2 questions"):
        score_mme(records[1:])
    with pytest.raises(ValueError, match="'Yes' or 'No'"):
        score_mme([MMERecord("OCR", "a.jpg", "Q", "maybe", "Yes")], strict=False)


def test_results_dir_round_trip_and_errors(tmp_path: Path) -> None:
    records = _full_records({("scene", 1): ("Yes\tbecause\nreasons", "no")})
    write_results_dir(records, tmp_path / "res")
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == sorted(
        f"{t}.txt" for t in SUBTASKS
    )
    back = load_results_dir(tmp_path / "res")
    assert score_mme(back) == score_mme(records)
    assert back[0] == records[0]

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "OCR.txt").write_text("a.jpg\tQ\tYes\tYes\na.jpg\tQ2\tYes\n")
    with pytest.raises(ValueError, match=r"OCR\.txt:2: expected"):
        load_results_dir(bad)
    (bad / "OCR.txt").write_text("a.jpg\tQ\tYess\tYes\n")
    with pytest.raises(ValueError, match=r"OCR\.txt:1: ground truth"):
        load_results_dir(bad)
    (bad / "OCR.txt").unlink()
    (bad / "ocr.txt").write_text("a.jpg\tQ\tYes\tYes\n")
    with pytest.raises(ValueError, match=r"ocr\.txt: unknown MME subtask"):
        load_results_dir(bad)


def _write_tiny_llava(root: Path) -> tuple[Path, Path, Path]:
    """Two-subtask LLaVA layout, including a ground-truth question with two spaces."""
    gt = root / "gt"
    gt.mkdir()
    (gt / "color.txt").write_text(
        "c1.jpg\tIs it red?  Please answer yes or no.\tYes\n"
        "c1.jpg\tIs it blue? Please answer yes or no.\tNo\n"
    )
    (gt / "artwork.txt").write_text(
        "a1.jpg\tIs it old? Please answer yes or no.\tYes\n"
        "a1.jpg\tIs it new? Please answer yes or no.\tNo\n"
    )
    suffix = "\nAnswer the question using a single word or phrase."
    rows = [
        ("color/c1.jpg", "Is it red?", "color", "Yes"),
        ("color/c1.jpg", "Is it blue?", "color", "Yes"),
        ("artwork/images/a1.jpg", "Is it old?", "artwork", "Yes"),
        ("artwork/images/a1.jpg", "Is it new?", "artwork", "No"),
    ]
    q, a = root / "questions.jsonl", root / "answers.jsonl"
    q.write_text(
        "".join(
            json.dumps({"question_id": i, "image": i, "text": t + suffix, "category": c}) + "\n"
            for i, t, c, _ in rows
        )
    )
    a.write_text(
        "".join(
            json.dumps({"question_id": i, "prompt": t + suffix, "text": r}) + "\n"
            for i, t, _, r in rows
        )
    )
    return q, a, gt


def test_llava_layout_tiny(tmp_path: Path) -> None:
    q, a, gt = _write_tiny_llava(tmp_path)
    records = load_llava_answers(q, a, gt)
    assert records[0] == MMERecord(
        "color", "c1.jpg", "Is it red?  Please answer yes or no.", "Yes", "Yes"
    )
    assert records[2].image == "a1.jpg"
    report = score_mme(records, strict=False)
    assert report.subtasks["color"].score == 50.0
    assert report.subtasks["artwork"].score == 200.0


def test_llava_layout_errors(tmp_path: Path) -> None:
    q, a, gt = _write_tiny_llava(tmp_path)
    lines = a.read_text().splitlines(keepends=True)

    a.write_text("".join(lines) + lines[0])
    with pytest.raises(ValueError, match=r"answers\.jsonl:5: duplicate answer"):
        load_llava_answers(q, a, gt)
    stray = json.dumps({"question_id": "color/c1.jpg", "prompt": "Is it green?", "text": "No"})
    a.write_text("".join(lines[:2]) + stray + "\n")
    with pytest.raises(
        ValueError, match=r"answers\.jsonl:3: answer to 'color/c1.jpg' has no matching"
    ):
        load_llava_answers(q, a, gt)
    a.write_text("".join(lines[:3]))
    with pytest.raises(ValueError, match="1 questions have no answer"):
        load_llava_answers(q, a, gt)
    a.write_text("".join(lines[:3]) + "{not json\n")
    with pytest.raises(ValueError, match=r"answers\.jsonl:4: invalid JSON"):
        load_llava_answers(q, a, gt)
    a.write_text("".join(lines))

    q_lines = q.read_text().splitlines(keepends=True)
    q.write_text("".join(q_lines) + q_lines[1])
    with pytest.raises(ValueError, match=r"questions\.jsonl:5: duplicate question"):
        load_llava_answers(q, a, gt)
    q.write_text("".join(q_lines).replace('"category": "artwork"', '"category": "paintings"'))
    with pytest.raises(ValueError, match=r"questions\.jsonl:3: unknown MME subtask 'paintings'"):
        load_llava_answers(q, a, gt)
    q.write_text("".join(q_lines))

    (gt / "color.txt").write_text(
        "c1.jpg\tIs it red?  Please answer yes or no.\tYes\nc1.jpg\tIs it blue?\n"
    )
    with pytest.raises(ValueError, match=r"color\.txt:2: expected 'image<TAB>question<TAB>answer'"):
        load_llava_answers(q, a, gt)
    (gt / "color.txt").write_text("c1.jpg\tIs it red?  Please answer yes or no.\tYes\n")
    with pytest.raises(
        ValueError, match=r"answers\.jsonl:2: no ground truth for \(color, c1\.jpg\)"
    ):
        load_llava_answers(q, a, gt)


def test_eval_mme_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="together"):
        eval_mme(questions="q.jsonl")
    with pytest.raises(ValueError, match="give either"):
        eval_mme()


@needs_mme
def test_llava_15_13b_reproduces_published_perception(tmp_path: Path) -> None:
    report = eval_mme(
        questions=str(LLAVA_DIR / "questions.jsonl"),
        answers=str(LLAVA_DIR / "answers.jsonl"),
        ground_truth=str(MME_DIR / "ground_truth"),
        results_dir=str(tmp_path / "results"),
        out=str(tmp_path / "out"),
    )
    assert report.perception == pytest.approx(1531.3, abs=0.1)  # LLaVA-1.5 paper, Table 4
    assert report.cognition == pytest.approx(295.36, abs=0.01)
    assert sum(s.num_questions for s in report.subtasks.values()) == 2374
    assert set(report.subtasks) == set(PERCEPTION_SUBTASKS) | set(COGNITION_SUBTASKS)

    # The official layout written on the way scores identically, with our loader and with an
    # independent re-statement of the official tool's loop.
    again = eval_mme(results_dir=str(tmp_path / "results"))
    assert again == report
    official = _official_scores(tmp_path / "results")
    for task, score in official.items():
        assert report.subtasks[task].score == pytest.approx(score, abs=1e-9)

    saved = json.loads((tmp_path / "out" / "mme_scores.json").read_text())
    assert saved["perception"] == pytest.approx(report.perception)
    assert saved["subtasks"]["artwork"]["num_other"] == 11
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mme_scores.json"]
