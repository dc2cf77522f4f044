"""The trained demo understanding model shipped under checkpoints/: size, the commands' default,
and its answers to held-out questions about held-out scenes, through ``vqrae answer``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vqrae import assets
from vqrae.mllm.model import DEMO_MLLM, find_mllm

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = assets.shipped_path(assets.get_spec(DEMO_MLLM))
pytestmark = pytest.mark.skipif(
    CHECKPOINT is None, reason=f"no checkpoints/{DEMO_MLLM} in this tree"
)

# Of the held-out questions about 6 test-split scenes (~50), the share that must be right. The
# shipped model scores 0.688 on 909 held-out questions; one that ignores the image gets about
# 0.4 (yes/no at chance, the open questions near the most common answer; BENCHMARKS.md,
# "Understanding: accuracy on held-out scenes"). 0.55 leaves two standard errors of ~50
# questions below the measured figure. The goal is 0.85: raise this with the model.
MIN_ACCURACY = 0.55
SCENES = 6


def test_shipped_model_is_small_references_its_parts_and_is_the_default() -> None:
    size = sum(f.stat().st_size for f in CHECKPOINT.rglob("*") if f.is_file())
    assert size <= 25 * 2**20
    record = json.loads((CHECKPOINT / "config.json").read_text())
    assert record["config"]["tokenizer"] == "vqrae-dinov2-s-demo"  # by reference, not copied
    assert record["config"]["lm"] == "smollm2-135m-instruct" and record["lm_weights"] == "lora"
    assert find_mllm() == CHECKPOINT


def test_answers_held_out_questions_through_the_default_model(tmp_path) -> None:
    from vqrae.data.shapes.writer import make_shapes_dataset
    from vqrae.eval.vqa import score_vqa
    from vqrae.utils.jsonl import read_jsonl

    data = tmp_path / "test"
    make_shapes_dataset(data, SCENES, seed=7, size=224, split="test", geneval_per_tag=1,
                        mme_per_subtask=1, dpg_items=1, hf=False)  # fmt: skip
    questions = data / "vqa" / "questions.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "vqrae.cli", "answer", "--questions", str(questions),
         "--image-folder", str(data), "--out", str(tmp_path / "answers.jsonl"),
         "--max-new-tokens", "8", "--batch-size", "16"],
        capture_output=True, text=True, env=env, timeout=900, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = score_vqa(read_jsonl(questions), read_jsonl(tmp_path / "answers.jsonl"))
    assert not report.missing
    assert report.accuracy >= MIN_ACCURACY, report.per_type
    assert report.yes_share is not None and 0.2 < report.yes_share < 0.8  # not one-sided
