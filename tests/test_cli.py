"""The vqrae command: outputs, per-file errors without tracebacks, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors import safe_open

import vqrae
from tests.odd_images import write_bad_files, write_odd_images
from vqrae.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vqrae.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_reconstruct_writes_one_png_per_readable_input_and_reports_bad_ones(
    tmp_path, tiny_checkpoint
) -> None:
    good = write_odd_images(tmp_path / "in")
    bad = write_bad_files(tmp_path / "in")
    result = _run(
        "reconstruct",
        str(tmp_path / "in"),
        str(tmp_path / "missing.png"),
        "--model",
        str(tiny_checkpoint),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == len(bad) + 1
    for path in [*bad.values(), tmp_path / "missing.png"]:
        assert sum(path.name in line for line in error_lines) == 1
    written = sorted(p.stem for p in (tmp_path / "out").glob("*.png"))
    assert written == sorted(p.stem for p in good.values())
    record = json.loads((tmp_path / "out" / "vqrae_run.json").read_text())
    assert record["command"] == "reconstruct"


def test_reconstruct_succeeds_with_exit_zero_on_good_files(tmp_path, tiny_checkpoint) -> None:
    good = write_odd_images(tmp_path / "in")
    code = main(
        [
            "reconstruct",
            str(good["rgb_jpeg"]),
            str(good["tall"]),
            "--model",
            str(tiny_checkpoint),
            "--out",
            str(tmp_path / "out"),
            "--size",
            "28",
        ]
    )
    assert code == 0
    from PIL import Image

    assert Image.open(tmp_path / "out" / "rgb.png").size == (28, 28)


def test_tokenize_writes_indices_with_source_names(tmp_path, tiny_checkpoint) -> None:
    good = write_odd_images(tmp_path / "in")
    out = tmp_path / "codes.safetensors"
    code = main(
        ["tokenize", str(tmp_path / "in"), "--model", str(tiny_checkpoint), "--out", str(out)]
    )
    assert code == 0
    with safe_open(str(out), "pt") as f:
        indices = f.get_tensor("indices")
        meta = f.metadata()
    files = json.loads(meta["files"])
    assert indices.shape == (len(good), 16) and indices.dtype == torch.int32
    assert sorted(Path(f).name for f in files) == sorted(p.name for p in good.values())
    assert meta["grid"] == "4,4"
    model = vqrae.VQRAE.from_pretrained(tiny_checkpoint)
    recon = model.decode_indices(indices.long())
    assert recon.shape == (len(good), 3, 56, 56)


def test_user_errors_are_one_line_without_traceback(tmp_path, tiny_checkpoint) -> None:
    cases = [
        ("reconstruct", str(tmp_path / "nothing.png"), "--model", "no-such-model"),
        ("reconstruct", str(tmp_path), "--model", str(tiny_checkpoint)),  # empty folder
        ("reconstruct", str(tmp_path), "--model", str(tiny_checkpoint), "--size", "30"),
        ("tokenize", str(tmp_path), "--model", str(tiny_checkpoint)),  # --out missing
    ]
    for args in cases:
        result = _run(*args)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr, args
        assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1, args


def test_models_lists_registry(capsys) -> None:
    assert main(["models"]) == 0
    assert "vqrae-siglip2-so400m-256" in capsys.readouterr().out


def test_export_writes_a_compact_half_precision_copy(tmp_path, tiny_checkpoint) -> None:
    assert main(["export", str(tiny_checkpoint), "--out", str(tmp_path / "small")]) == 0
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "small" / "model.safetensors"))
    assert "quantizer.codebook" not in saved
    assert saved["decoder.head.weight"].dtype == torch.float16
    assert (
        main(["export", str(tiny_checkpoint), "--out", str(tmp_path / "x"), "--dtype", "int3"]) == 1
    )


def test_shapes_make_then_benchmark_scorers_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "shapes"
    assert main(["shapes", "make", "--out", str(out), "--n", "12", "--size", "128", "--no-hf"]) == 0
    results = tmp_path / "results.jsonl"
    assert (
        main(["geneval", "score", str(out / "geneval" / "reference"), "--out", str(results)]) == 0
    )
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert lines and all(line["correct"] for line in lines)  # the references are correct renders
    assert "Overall score" in capsys.readouterr().out
    dpg = ["dpg", "score", "--images", str(out / "dpg" / "images")]
    assert main([*dpg, "--csv", str(out / "dpg" / "dpg_bench.csv"), "--judge", "oracle"]) == 0
    assert "DPG-Bench score: 100.00" in capsys.readouterr().out
    assert main(["shapes", "make", "--out", str(out), "--n", "0"]) == 1
