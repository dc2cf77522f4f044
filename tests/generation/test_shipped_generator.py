"""The trained demo generator shipped under checkpoints/: size, a standard Hugging Face folder,
generate.py's default, and what it draws for shapes-world prompts it was never trained on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vqrae import assets
from vqrae.generation.api import DEMO_GENERATOR

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = assets.shipped_path(assets.get_spec(DEMO_GENERATOR))
pytestmark = pytest.mark.skipif(
    CHECKPOINT is None, reason=f"no checkpoints/{DEMO_GENERATOR} in this tree"
)

# Unseen prompts (held-out scenes in held-out phrasings) with what GenEval's rules ask of them.
UNSEEN = (
    ("a simple drawing of a red circle", [{"class": "circle", "count": 1, "color": "red"}]),
    ("there is a square on a muted background", [{"class": "square", "count": 1}]),
    ("a blue star, shown on a soft gradient", [{"class": "star", "count": 1, "color": "blue"}]),
    ("a simple drawing of a green hexagon", [{"class": "hexagon", "count": 1, "color": "green"}]),
)
# Of the 4 prompts x 4 images, how many must pass. The shipped generator is the recipe stopped at
# step 1,100, early in its training: it drew 3 of these 16 right (the square three times), 44% of
# the held-out single objects (BENCHMARKS.md, "The demo generator"); an untrained or broken
# sampler draws none. Raise this with the model.
MIN_CORRECT = 2
SAMPLES = 4


def test_shipped_generator_is_small_and_a_standard_causal_lm_folder() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    size = sum(f.stat().st_size for f in CHECKPOINT.iterdir() if f.is_file())
    assert size <= 25 * 2**20
    lm = AutoModelForCausalLM.from_pretrained(CHECKPOINT)
    tokenizer = AutoTokenizer.from_pretrained(CHECKPOINT)
    assert lm.get_input_embeddings().num_embeddings >= len(tokenizer)
    assert "<|begin_of_image|>" in tokenizer.get_vocab()


def test_generate_script_uses_the_shipped_generator_and_repeats_a_seed(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for name in ("a", "b"):
        result = subprocess.run(
            [sys.executable, str(REPO / "generate.py"), "--prompt", "a photo of a red circle",
             "--n", "1", "--seed", "7", "--out", str(tmp_path / name)],
            capture_output=True, text=True, env=env, timeout=600, cwd=REPO,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    first, second = (tmp_path / n / "000_0.png" for n in ("a", "b"))
    assert first.read_bytes() == second.read_bytes()


def test_shipped_generator_draws_unseen_prompts_that_geneval_s_rules_accept(
    dinov2_small_dir,
) -> None:
    from vqrae.eval.geneval import score_image
    from vqrae.eval.shapes_detector import ShapesDetector
    from vqrae.generation.api import generate

    prompts = [p for p, _ in UNSEEN]
    images = generate(prompts, n=SAMPLES, seed=0)
    detector = ShapesDetector()
    correct = 0
    for i, (prompt, include) in enumerate(UNSEEN):
        metadata = {"tag": "single_object", "include": include, "prompt": prompt}
        if "color" in include[0]:
            metadata["tag"] = "colors"
        for image in images[SAMPLES * i : SAMPLES * (i + 1)]:
            correct += score_image(image, metadata, detector).correct
    assert correct >= MIN_CORRECT
