"""Reconstruction evaluation: metrics.json, report, streaming invariance, data sources, limits."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vqrae
from tests.odd_images import write_bad_files, write_odd_images
from vqrae.cli import main
from vqrae.data.sources import open_source
from vqrae.eval.fid import fid_from_features
from vqrae.eval.recon import (
    PSNR_CAP_DB,
    evaluate_reconstruction,
    frechet_distance_low_rank,
    json_safe,
    resolve_size,
    write_metrics,
)

REQUIRED_KEYS = {
    "psnr",
    "ssim",
    "lpips",
    "rfid",
    "codebook_usage",
    "codebook_perplexity",
    "num_images",
    "num_failed",
    "image_size",
    "model",
    "timing",
}


def _strict_json(path: Path) -> dict:
    def reject(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token} in {path}")

    return json.loads(path.read_text(), parse_constant=reject)


def _smooth_images(n: int, size: int = 64, seed: int = 0) -> list[Image.Image]:
    """Colourful gradients (more natural than noise for SSIM and Inception)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        a, b, c = rng.random((3, 3))
        rgb = np.stack([a[i] * xx + b[i] * yy + c[i] * xx * yy for i in range(3)], -1)
        images.append(Image.fromarray((np.clip(rgb / 2, 0, 1) * 255).astype(np.uint8)))
    return images


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    return vqrae.VQRAE.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="module")
def metric_nets(fid_inception_dir, lpips_vgg16_dir):
    from vqrae.eval.inception import load_fid_inception
    from vqrae.eval.perceptual import load_lpips

    return {"inception": load_fid_inception(), "lpips": load_lpips()}


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory, tiny_checkpoint, metric_nets):
    """One CLI run over the odd and bad files; returns (exit code, stderr, folders)."""
    root = tmp_path_factory.mktemp("odd")
    good = write_odd_images(root / "in")
    bad = write_bad_files(root / "in" / "sub")
    capture = io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(capture):
        code = main(
            [
                "eval-recon",
                "--model",
                str(tiny_checkpoint),
                "--data",
                str(root / "in"),
                "--out",
                str(root / "out"),
                "--batch-size",
                "3",
                "--examples",
                "4",
            ]
        )
    return code, capture.getvalue(), good, bad, root / "out"


def test_eval_recon_writes_valid_metrics_and_counts_failures(odd_run) -> None:
    code, stderr, good, bad, out = odd_run
    assert code == 0  # at least one image was evaluated; failures are listed, not fatal
    m = _strict_json(out / "metrics.json")
    assert REQUIRED_KEYS <= set(m)
    assert m["num_images"] == len(good) and m["num_failed"] == len(bad)
    assert sorted(f["name"] for f in m["failures"]) == sorted(f"sub/{p.name}" for p in bad.values())
    assert np.isfinite(m["psnr"]) and 0 < m["psnr"] < PSNR_CAP_DB
    assert -1.0 <= m["ssim"] <= 1.0 and m["lpips"] >= 0.0
    assert m["rfid"] is not None and m["rfid"] >= 0.0 and "2048" in m["rfid_note"]
    assert 0.0 < m["codebook_usage"] <= 1.0 and 1.0 <= m["codebook_perplexity"] <= 64
    assert m["image_size"] == 56 and m["model"].endswith("tiny")
    assert m["timing"]["total_s"] > 0
    error_lines = [line for line in stderr.splitlines() if "error:" in line]
    for path in bad.values():
        assert sum(path.name in line for line in error_lines) == 1
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == len(good) and {"name", "psnr", "ssim", "lpips"} <= set(rows[0])
    assert _strict_json(out / "vqrae_run.json")["command"] == "eval-recon"


def test_report_links_only_existing_files(odd_run) -> None:
    *_, out = odd_run
    page = (out / "report.html").read_text()
    links = re.findall(r"(?:src|href)='([^']+)'", page)
    images = [link for link in links if link.endswith(".png")]
    assert len(images) >= 2 + 2 * 4  # two plots, >= 4 original/reconstruction pairs
    for link in links:
        assert not link.startswith(("/", "http")), link  # relative: the folder can move
        assert (out / link).is_file(), link
    assert "Worst 4 by PSNR" in page and "rFID on" in page  # small-sample caveat shown


def test_batch_size_does_not_change_anything(tmp_path, tiny_model, metric_nets) -> None:
    for i, image in enumerate(_smooth_images(3)):
        image.save(tmp_path / f"img{i}.png")
    runs = [
        evaluate_reconstruction(
            tiny_model,
            open_source(tmp_path),
            batch_size=bs,
            progress=False,
            keep_examples=2,
            **metric_nets,
        )
        for bs in (2, 7)
    ]
    a, b = runs
    np.testing.assert_array_equal(a.code_counts, b.code_counts)
    for key in ("psnr", "ssim", "lpips", "rfid", "codebook_usage", "codebook_perplexity"):
        assert a.metrics[key] == pytest.approx(b.metrics[key], rel=1e-5, abs=1e-6), key
    assert [s.name for s in a.scores] == [s.name for s in b.scores]
    for sa, sb in zip(a.scores, b.scores, strict=True):
        assert sa.psnr == pytest.approx(sb.psnr, abs=1e-6)
    # bounded example buffers: the first two, and the two worst by PSNR, worst first
    assert [e.score.index for e in a.first] == [0, 1]
    worst = sorted(a.scores, key=lambda s: s.psnr)[:2]
    assert [e.score.name for e in a.worst] == [s.name for s in worst]


def test_saved_hf_dataset_works_as_data(tmp_path, tiny_checkpoint, metric_nets) -> None:
    datasets = pytest.importorskip("datasets")
    cells = []
    for image in _smooth_images(2, seed=1):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        cells.append({"bytes": buffer.getvalue(), "path": None})
    cells.append({"bytes": b"\x89PNG broken", "path": None})
    features = datasets.Features({"image": datasets.Image()})
    datasets.Dataset.from_dict({"image": cells}, features=features).save_to_disk(tmp_path / "ds")
    code = main(
        ["eval-recon", "--model", str(tiny_checkpoint), "--data", str(tmp_path / "ds")]
        + ["--out", str(tmp_path / "out"), "--examples", "2"]
    )
    assert code == 0
    m = _strict_json(tmp_path / "out" / "metrics.json")
    assert (m["num_images"], m["num_failed"]) == (2, 1)
    assert m["failures"][0]["name"] == "2"


def test_perfect_reconstruction_scores_perfectly(
    tmp_path, tiny_model, metric_nets, monkeypatch
) -> None:
    for i, image in enumerate(_smooth_images(3, seed=2)):
        image.save(tmp_path / f"img{i}.png")
    forward = tiny_model.forward

    def identity_forward(images, clamp=None):  # the real codes, a perfect reconstruction
        return dataclasses.replace(forward(images, clamp), recon=images)

    # The evaluation takes reconstruction and codes from one model(...) call, so "perfect"
    # is patched into forward (patching reconstruct() would not be exercised).
    monkeypatch.setattr(tiny_model, "forward", identity_forward)
    result = evaluate_reconstruction(
        tiny_model, open_source(tmp_path), progress=False, **metric_nets
    )
    m = result.metrics
    assert m["psnr"] == PSNR_CAP_DB and m["num_psnr_capped"] == 3  # inf capped at 100 dB
    assert m["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert m["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert m["rfid"] == pytest.approx(0.0, abs=1e-6)
    _strict_json(write_metrics(result, tmp_path / "out"))


def test_cli_errors_are_one_line(tmp_path, tiny_checkpoint, capsys) -> None:
    write_bad_files(tmp_path / "bad")
    args = ["eval-recon", "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o")]
    assert main([*args, "--data", str(tmp_path / "bad")]) == 1
    assert "none of the 3 item(s) could be read" in capsys.readouterr().err
    write_odd_images(tmp_path / "good")
    assert main([*args, "--data", str(tmp_path / "good"), "--size", "50"]) == 1
    err = capsys.readouterr().err
    assert "nearest valid sizes: 42 or 56" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--data", str(tmp_path / "nothing")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_resolve_size_defaults_to_the_model_size(tiny_model) -> None:
    assert resolve_size(tiny_model, None) == 56
    assert resolve_size(tiny_model, 28) == 28
    with pytest.raises(ValueError, match="224 or 238"):
        resolve_size(tiny_model, 230)


def test_low_rank_frechet_distance_is_exact() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((60, 16))
    b = 0.5 * rng.standard_normal((45, 16)) + 0.3
    assert frechet_distance_low_rank(a, b) == pytest.approx(fid_from_features(a, b), rel=1e-8)
    # fewer samples than dimensions: compare with an eigenvalue formulation
    a, b = rng.standard_normal((10, 64)), rng.standard_normal((7, 64)) + 1
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sa)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    trace = np.sqrt(np.clip(np.linalg.eigvalsh(root @ sb @ root), 0, None)).sum()
    mean = ((a.mean(0) - b.mean(0)) ** 2).sum()
    expected = mean + np.trace(sa) + np.trace(sb) - 2 * trace
    assert frechet_distance_low_rank(a, b) == pytest.approx(expected, rel=1e-7)
    assert frechet_distance_low_rank(a, a) == pytest.approx(0.0, abs=1e-9)


def test_json_safe_replaces_non_finite_values() -> None:
    data = {"a": float("inf"), "b": [float("nan"), 1.5], "c": {"d": -float("inf")}}
    assert json_safe(data) == {"a": None, "b": [None, 1.5], "c": {"d": None}}
