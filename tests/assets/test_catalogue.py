"""The catalogue holds each weight's facts once; trained checkpoints resolve through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from vqrae import assets
from vqrae.tokenizer.encoders import get_encoder_spec, list_encoders
from vqrae.tokenizer.model import VQRAE, trained_checkpoints


def test_encoders_read_their_facts_from_the_catalogue() -> None:
    for name in list_encoders():
        spec = get_encoder_spec(name)
        if spec.asset is None:
            continue
        config = assets.get_spec(spec.asset).config
        assert spec.architecture == config["architecture"]
        assert spec.pos_embed_antialias == config["pos_embed_resample"]["antialias"]
        assert len(config["mean"]) == len(config["std"]) == 3


def test_trained_checkpoint_resolves_shipped_then_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "vqrae-dinov2-s-demo" in trained_checkpoints()
    spec = assets.get_spec("vqrae-dinov2-s-demo")
    monkeypatch.setenv("VQRAE_CHECKPOINTS", str(tmp_path / "shipped"))
    monkeypatch.setenv("VQRAE_HOME", str(tmp_path / "home"))
    assert assets.shipped_path(spec) is None and not assets.is_cached(spec.name)
    with pytest.raises(assets.AssetError, match="not shipped"):
        assets.resolve(spec.name)
    folder = tmp_path / "shipped" / spec.name
    folder.mkdir(parents=True)
    for name in spec.files:
        (folder / name).write_text("{}")
    assert assets.resolve(spec.name) == folder and assets.is_cached(spec.name)


def test_untrained_variant_is_refused_for_inference() -> None:
    with pytest.raises(ValueError, match="vqrae.create_model"):
        VQRAE.from_pretrained("vqrae-test-tiny")
