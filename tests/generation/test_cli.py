"""The commands: generate.py and vqrae generate (images, reproducible seeds, one-line errors),
vqrae generation prepare, vqrae geneval generate / dpg generate on the shipped prompt files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vqrae.cli import main

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("VQRAE_SHARED_DATA", REPO.parent / "shared" / "data"))
GENEVAL_METADATA = SHARED / "bench" / "geneval" / "evaluation_metadata.jsonl"
DPG_PROMPTS = SHARED / "bench" / "dpg_bench" / "prompts"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, vqrae_dir) -> Path:
    from .conftest import make_generator

    return make_generator(vqrae_dir).save_pretrained(tmp_path_factory.mktemp("gen") / "model")


def _script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "generate.py"), *args],
        capture_output=True, text=True, env=env, timeout=300, cwd=REPO,
    )  # fmt: skip


def test_generate_script_writes_images_beside_prompts_and_repeats_a_seed(
    model_dir, tmp_path
) -> None:
    args = ["--prompt", "a red circle", "--prompt", "two stars", "--n", "2", "--seed", "3"]
    first = _script(*args, "--out", str(tmp_path / "a"), "--model", str(model_dir))
    assert first.returncode == 0, first.stderr
    assert "wrote 4 image(s) for 2 prompt(s)" in first.stdout
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["000.txt", "000_0.png", "000_1.png", "001.txt", "001_0.png", "001_1.png",
                     "images.jsonl", "vqrae_run.json"]  # fmt: skip
    assert (tmp_path / "a" / "001.txt").read_text() == "two stars\n"
    records = [json.loads(x) for x in (tmp_path / "a" / "images.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in records] == [3, 4, 3, 4]
    assert (
        main([*["generate", *args], "--out", str(tmp_path / "b"), "--model", str(model_dir)]) == 0
    )
    for name in ("000_0.png", "001_1.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--cfg", "-1"], "--cfg"),
        (["--n", "0"], "--n must be >= 1"),
        (["--model", "/no/such/generator"], "no such generator folder"),
        (["--out", "/proc/forbidden"], "cannot write there"),
        (["--top-p", "0"], "top_p"),
    ],
)
def test_bad_flags_are_one_line_errors(model_dir, tmp_path, capsys, flags, message) -> None:
    argv = [
        "generate",
        "--prompt",
        "a star",
        "--out",
        str(tmp_path / "o"),
        "--model",
        str(model_dir),
    ]
    assert main([*argv, *flags]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("vqrae generate: error:") and message in err and "\n" not in err


def test_the_demo_generator_s_absence_is_one_clear_line(tmp_path) -> None:
    env = {**os.environ, "VQRAE_CHECKPOINTS": str(tmp_path / "none"), "VQRAE_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(REPO / "generate.py"), "--prompt", "a star", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, env={**env, "PYTHONPATH": str(REPO)}, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not shipped yet" in result.stderr and "train-generator" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_over_long_prompt_is_cut_with_a_warning(model_dir, tmp_path, caplog) -> None:
    argv = ["generate", "--prompt", "a red circle " * 50, "--n", "1", "--out", str(tmp_path)]
    assert main([*argv, "--model", str(model_dir)]) == 0
    assert "prompt cut to its first" in caplog.text


def test_prepare_command_writes_codes_and_eval_prompts(vqrae_dir, tmp_path, capsys) -> None:
    out = tmp_path / "codes"
    argv = [
        "generation",
        "prepare",
        "--out",
        str(out),
        "--tokenizer",
        str(vqrae_dir),
        "--grid",
        "4",
    ]
    assert main([*argv, "--n", "6", "--eval-per-tag", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "6 rows (6 new) of 4x4 codes at 56 px" in printed
    assert (out / "eval" / "heldout_metadata.jsonl").is_file()
    assert main([*argv, "--grid", "5"]) == 1
    assert "made with other settings" in capsys.readouterr().err  # not mixed into OUT


@pytest.mark.skipif(not GENEVAL_METADATA.is_file(), reason=f"{GENEVAL_METADATA} not found")
def test_geneval_generate_writes_geneval_s_layout_on_its_prompts(
    model_dir, tmp_path, capsys
) -> None:
    from vqrae.eval.geneval import load_geneval_dir

    out = tmp_path / "geneval"
    argv = ["geneval", "generate", "--metadata", str(GENEVAL_METADATA), "--out", str(out)]
    argv += ["--limit", "2", "--n-samples", "2", "--model", str(model_dir)]
    assert main(argv) == 0
    prompts = load_geneval_dir(out)
    assert [p.index for p in prompts] == ["00000", "00001"]
    assert all(len(p.images) == 2 for p in prompts)
    first = json.loads(GENEVAL_METADATA.read_text().splitlines()[0])
    assert prompts[0].metadata == first
    assert main(argv) == 0 and "2 already complete" in capsys.readouterr().out


@pytest.mark.skipif(not DPG_PROMPTS.is_dir(), reason=f"{DPG_PROMPTS} not found")
def test_dpg_generate_writes_two_by_two_grids_named_by_id(model_dir, tmp_path, capsys) -> None:
    from PIL import Image

    out = tmp_path / "dpg"
    argv = ["dpg", "generate", "--prompts", str(DPG_PROMPTS), "--out", str(out), "--limit", "2"]
    assert main([*argv, "--model", str(model_dir)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["0.png", "1.png"]
    with Image.open(out / "0.png") as grid:
        assert grid.size == (112, 112)
    assert "cut to the generator's length" in capsys.readouterr().out  # DPG prompts are long


def test_shapes_records_are_drawn_then_scored_by_geneval_score(model_dir, tmp_path, capsys) -> None:
    from vqrae.generation.prepare import write_eval_metadata

    metadata = write_eval_metadata(tmp_path / "eval", per_tag=1)["heldout_metadata"]
    out = tmp_path / "images"
    argv = ["geneval", "generate", "--metadata", str(metadata), "--out", str(out)]
    assert main([*argv, "--n-samples", "1", "--model", str(model_dir)]) == 0
    assert main(["geneval", "score", str(out), "--out", str(tmp_path / "results.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert "Overall" in printed
    results = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(results) == 6 and {r["tag"] for r in results} == {
        "single_object", "two_object", "counting", "colors", "position", "color_attr",
    }  # fmt: skip


def test_demo_reconstructs_then_draws_each_prompt_beside_its_text(
    vqrae_dir, model_dir, tmp_path, capsys
) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--model", str(vqrae_dir), "--out", str(out), "--generator", str(model_dir),
            "--understanding", str(tmp_path / "no-mllm")]  # fmt: skip
    assert main([*argv, "--prompt", "a star", "--prompt", "two circles", "--n", "1"]) == 0
    assert any((out / "reconstructions").glob("*.png"))
    assert (out / "generated" / "001.txt").read_text() == "two circles\n"
    assert {p.name for p in (out / "generated").glob("*.png")} == {"000_0.png", "001_0.png"}
    missing = ["--generator", str(tmp_path / "no-generator")]
    assert "visual questions skipped" in capsys.readouterr().out
    assert main([*argv[:4], str(tmp_path / "again"), *argv[7:], *missing]) == 0
    assert "text to image skipped" in capsys.readouterr().out


def test_out_folder_check_holds_when_ranks_check_one_folder_at_once(tmp_path) -> None:
    """Every rank of a launch checks ``--out``; a shared probe file made one rank's unlink fail."""
    from concurrent.futures import ThreadPoolExecutor

    from vqrae.cli.generation import _writable_folder

    out = tmp_path / "run"
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: _writable_folder("--out", str(out)), range(64)))
    assert folders == [out] * 64
    assert list(out.iterdir()) == []
