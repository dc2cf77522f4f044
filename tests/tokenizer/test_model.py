"""The VQRAE model: invariants, persistence, gradients, registry, config validation."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import vqrae
from vqrae.tokenizer.model import VQRAE, VQRAEConfig


@pytest.fixture
def model() -> VQRAE:
    torch.manual_seed(0)
    return vqrae.create_model("vqrae-test-tiny").eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 3, 56, 56, generator=torch.Generator().manual_seed(0))


def test_shapes_and_named_outputs(model: VQRAE, images: torch.Tensor) -> None:
    out = model(images)
    assert out.recon.shape == images.shape
    assert out.features.shape == (3, 16, 32)
    assert out.indices.shape == (3, 16) and out.indices.dtype == torch.long
    assert out.quantizer.codes.shape == (3, 16, 48)
    assert 0.0 <= out.recon.min() and out.recon.max() <= 1.0
    assert torch.isfinite(out.quantizer.loss)


def test_decode_indices_of_tokenize_equals_decode_of_quantized_codes(
    model: VQRAE, images: torch.Tensor
) -> None:
    via_indices = model.decode_indices(model.tokenize(images))
    via_codes = model.decode(model.quantize(model.encode(images)).codes)
    assert torch.equal(via_indices, via_codes)
    assert torch.equal(model.reconstruct(images), via_codes)


def test_save_load_round_trip_is_exact(model: VQRAE, images: torch.Tensor, tmp_path) -> None:
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["model_type"] == "vqrae" and config["codebook_size"] == 64
    loaded = VQRAE.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(loaded(images).recon, model(images).recon)
    assert torch.equal(loaded.tokenize(images), model.tokenize(images))
    assert set(load_file(str(tmp_path / "ckpt" / "model.safetensors"))) == set(model.state_dict())


def test_half_precision_save_loads_back_to_float32(
    model: VQRAE, images: torch.Tensor, tmp_path
) -> None:
    model.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    loaded = VQRAE.from_pretrained(tmp_path / "fp16")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert torch.allclose(loaded(images).recon, model(images).recon, atol=2e-2)


def test_every_trainable_parameter_receives_a_gradient(model: VQRAE, images: torch.Tensor) -> None:
    model.train()
    out = model(images)
    loss = (out.recon - images).square().mean() + out.quantizer.loss
    loss.backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert missing == []


def test_deterministic_construction_and_forward(images: torch.Tensor) -> None:
    torch.manual_seed(3)
    a = vqrae.create_model("vqrae-test-tiny").eval()
    torch.manual_seed(3)
    b = vqrae.create_model("vqrae-test-tiny").eval()
    assert torch.equal(a(images).recon, b(images).recon)


def test_non_default_resolution_round_trip(model: VQRAE) -> None:
    x = torch.rand(1, 3, 70, 42)
    out = model(x)
    assert out.recon.shape == x.shape
    assert torch.equal(model.decode_indices(out.indices, grid_size=(5, 3)), out.recon)


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="codebook_dim"):
        vqrae.create_model("vqrae-test-tiny", codebook_dim=16)
    with pytest.raises(ValueError, match="unknown encoder"):
        VQRAEConfig(encoder="nope")
    with pytest.raises(ValueError, match="codebook_size"):
        VQRAEConfig(codebook_size=1)
    with pytest.raises(ValueError, match="unknown VQRAE config keys: colour"):
        VQRAEConfig.from_dict({"colour": "red"})


def test_registry_lists_paper_and_offline_variants() -> None:
    names = vqrae.list_models()
    for name in (
        "vqrae-siglip2-so400m-256",
        "vqrae-siglip2-so400m-512",
        "vqrae-internvit-300m-448",
        "vqrae-dinov2-s",
    ):
        assert name in names
    with pytest.raises(ValueError, match="known models"):
        vqrae.create_model("vqrae-nope")


@pytest.mark.parametrize(
    ("name", "size", "tokens", "dim"),
    [
        ("vqrae-siglip2-so400m-256", 256, 256, 1152),
        ("vqrae-siglip2-so400m-512", 512, 1024, 1152),
        ("vqrae-internvit-300m-448", 448, 1024, 1024),
    ],
)
def test_paper_scale_variants_shape_check_on_meta(
    name: str, size: int, tokens: int, dim: int
) -> None:
    model = vqrae.create_model(name, device="meta")
    assert model.config.codebook_size == 16384 and model.config.codebook_dim == 1536
    assert len(model.decoder.blocks) == len(model.encoder.blocks)  # mirrored decoder
    out = model(torch.empty(1, 3, size, size, device="meta"))
    assert out.recon.shape == (1, 3, size, size)
    assert out.features.shape == (1, tokens, dim)


def test_from_pretrained_rejects_unknown_paths() -> None:
    with pytest.raises(ValueError, match="neither a checkpoint directory"):
        VQRAE.from_pretrained("/no/such/dir")


def test_calibration_whitens_the_projection_and_spreads_the_codes(model: VQRAE) -> None:
    torch.manual_seed(0)
    # Anisotropic features with a shared offset, like VFM tokens.
    features = torch.randn(64, 16, 32) * torch.logspace(0, -2, 32) + torch.randn(32) * 3.0
    before = model.quantize(features).indices.unique().numel()
    model.calibrate_quantizer_input(features, gain=4.0, floor=0.0)
    z = model.quant_proj(features.reshape(-1, 32)).double()
    assert z.mean(0).abs().max() < 1e-4
    cov = torch.cov(z.T) * 48 / 16  # whitened: eigenvalues gain^2 / e on a 32-dim subspace
    eigenvalues = torch.linalg.eigvalsh(cov)[-32:]
    assert torch.allclose(eigenvalues, torch.ones(32, dtype=torch.float64), rtol=1e-3)
    assert model.quantize(features).indices.unique().numel() > 2 * before


def test_compact_save_omits_the_regenerable_codebook_and_reloads_exactly(
    model: VQRAE, images: torch.Tensor, tmp_path
) -> None:
    model.save_pretrained(tmp_path / "compact", compact=True)
    saved = load_file(str(tmp_path / "compact" / "model.safetensors"))
    assert "quantizer.codebook" not in saved
    config = json.loads((tmp_path / "compact" / "config.json").read_text())
    assert "encoder" not in config["omitted_weights"]  # the tiny encoder has no pretrained weights
    loaded = VQRAE.from_pretrained(tmp_path / "compact")
    assert torch.equal(loaded(images).recon, model(images).recon)
    config["omitted_weights"]["codebook_checksum"] = "0" * 64
    (tmp_path / "compact" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="checksum"):
        VQRAE.from_pretrained(tmp_path / "compact")


def test_compact_save_references_an_unchanged_pretrained_encoder(tmp_path) -> None:
    model = vqrae.create_model("vqrae-dinov2-s-demo", decoder_depth=1).eval()
    model.save_pretrained(tmp_path / "c", compact=True, dtype=torch.float16)
    saved = load_file(str(tmp_path / "c" / "model.safetensors"))
    assert not any(k.startswith("encoder.") for k in saved)
    loaded = VQRAE.from_pretrained(tmp_path / "c")
    assert torch.equal(
        loaded.encoder.blocks[3].mlp.fc1.weight, model.encoder.blocks[3].mlp.fc1.weight
    )
    with torch.no_grad():
        model.encoder.blocks[-1].mlp.fc1.weight.add_(1e-3)  # a fine-tuned tensor is kept
    model.save_pretrained(tmp_path / "d", compact=True)
    saved = load_file(str(tmp_path / "d" / "model.safetensors"))
    last = len(model.encoder.blocks) - 1
    assert [k for k in saved if k.startswith("encoder.")] == [
        f"encoder.blocks.{last}.mlp.fc1.weight"
    ]
    loaded = VQRAE.from_pretrained(tmp_path / "d")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_half_precision_compact_save_stores_trained_encoder_matrices_as_int8_deltas(
    tmp_path,
) -> None:
    model = vqrae.create_model("vqrae-dinov2-s-demo", decoder_depth=1).eval()
    last = model.encoder.blocks[-1]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a fine-tuned block: small changes, one row changed much more
        last.mlp.fc1.weight.add_(1e-3 * torch.randn(last.mlp.fc1.weight.shape, generator=generator))
        last.mlp.fc1.weight[0].add_(0.1)
        last.mlp.fc1.bias.add_(1e-3)
    model.save_pretrained(tmp_path / "h", compact=True, dtype=torch.float16)
    saved = load_file(str(tmp_path / "h" / "model.safetensors"))
    n = len(model.encoder.blocks) - 1
    assert sorted(k for k in saved if k.startswith("encoder")) == [
        f"encoder.blocks.{n}.mlp.fc1.bias",  # vectors stay in float16
        f"encoder_delta.blocks.{n}.mlp.fc1.weight.q",
        f"encoder_delta.blocks.{n}.mlp.fc1.weight.scale",
    ]
    assert saved[f"encoder_delta.blocks.{n}.mlp.fc1.weight.q"].dtype == torch.int8
    loaded = VQRAE.from_pretrained(tmp_path / "h")
    reference = vqrae.create_model("vqrae-dinov2-s-demo", decoder_depth=1).encoder.blocks[-1]
    trained, restored = last.mlp.fc1.weight, loaded.encoder.blocks[-1].mlp.fc1.weight
    step = (trained - reference.mlp.fc1.weight).abs().amax(dim=1) / 127  # one step per row
    error = (restored - trained).abs()
    assert (error <= step[:, None] / 2 + 1e-7).all()
    assert error[1:].max() < 4e-5 < error[0].max()  # the outlier row has its own, coarser scale
    assert torch.equal(
        loaded.encoder.blocks[0].mlp.fc1.weight, model.encoder.blocks[0].mlp.fc1.weight
    )


def test_finer_code_grid_with_merged_decoder_tokens(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = vqrae.create_model("vqrae-test-tiny", encoder_scale=2, decoder_merge=2).eval()
    assert model.pixels_per_token == 7 and model.size_multiple == 14
    out = model(images)
    assert out.features.shape == (3, 64, 32)  # 56 px read at 112 px: an 8x8 grid
    assert out.recon.shape == images.shape
    assert model.decoder.grid_size == (4, 4) and model.decoder.patch_size == 14
    indices = model.tokenize(images)
    assert torch.equal(model.decode_indices(indices, (8, 8)), out.recon)
    # The encoder sees the image upsampled: the same features as encoding it at 112 px.
    upsampled = torch.nn.functional.interpolate(images, scale_factor=2, mode="bicubic")
    assert torch.allclose(out.features, model.encoder(upsampled.clamp(0, 1)), atol=1e-6)
    with pytest.raises(ValueError, match="encoder_scale 3 does not divide"):
        vqrae.create_model("vqrae-test-tiny", encoder_scale=3)  # 14/3 px decoder patches


def test_fractional_code_pixels_with_whole_decoder_patches(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = vqrae.create_model("vqrae-test-tiny", encoder_scale=3, decoder_merge=3).eval()
    assert model.pixels_per_token == pytest.approx(14 / 3) and model.size_multiple == 14
    out = model(images)
    assert out.features.shape == (3, 144, 32)  # 56 px read at 168 px: a 12x12 grid
    assert out.recon.shape == images.shape
    assert model.decoder.grid_size == (4, 4) and model.decoder.patch_size == 14
    assert model.grid_for(images) == (12, 12)
    indices = model.tokenize(images)
    assert torch.equal(model.decode_indices(indices, (12, 12)), out.recon)
    with pytest.raises(ValueError, match="not divisible by decoder_merge 3"):
        vqrae.create_model("vqrae-test-tiny", decoder_merge=3)


def test_codebook_calibration_draws_codes_from_the_features(model: VQRAE) -> None:
    torch.manual_seed(0)
    features = torch.randn(64, 16, 32) * torch.logspace(0, -2, 32) + torch.randn(32) * 3.0
    held_out = torch.randn(8, 16, 32) * torch.logspace(0, -2, 32) + features.mean((0, 1))
    before = model.quantize(held_out)
    model.calibrate_codebook(features)
    with torch.no_grad():
        z = model.quant_proj(features.reshape(-1, 32)).double()  # (T, e)
    assert z.mean(0).abs().max() < 1e-5
    assert z.pow(2).sum(1).mean() == pytest.approx(1.0, rel=1e-4)  # unit total variance
    codebook = model.quantizer.codebook.double()
    # Every code is one of the projected feature vectors; W is the identity.
    assert torch.cdist(codebook, z).min(dim=1).values.max() < 1e-4
    assert torch.equal(model.quantizer.codebook_transform.weight, torch.eye(48))
    with torch.no_grad():
        after = model.quantize(held_out)
        z_held = model.quant_proj(held_out)
    relative_error = (after.codes - z_held).pow(2).sum() / (z_held - z.float().mean(0)).pow(2).sum()
    assert relative_error < 0.7  # 64 codes for 16-dim-ish data: most of the variance kept
    assert after.indices.unique().numel() > before.indices.unique().numel()
    with pytest.raises(ValueError, match="at least 64 feature vectors"):
        model.calibrate_codebook(features[:3])


def test_compact_save_keeps_a_calibrated_codebook(
    model: VQRAE, images: torch.Tensor, tmp_path
) -> None:
    model.calibrate_codebook(torch.randn(8, 16, 32))
    model.save_pretrained(tmp_path / "c", compact=True)
    assert "quantizer.codebook" in load_file(str(tmp_path / "c" / "model.safetensors"))
    loaded = VQRAE.from_pretrained(tmp_path / "c")
    assert torch.equal(loaded(images).recon, model(images).recon)


def test_conv_refiner_starts_as_the_identity_and_trains(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    plain = vqrae.create_model("vqrae-test-tiny").eval()
    refined = vqrae.create_model("vqrae-test-tiny", decoder_refine_channels=4).eval()
    missing, unexpected = refined.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("decoder.refiner.") for k in missing)
    with torch.no_grad():
        assert torch.equal(refined(images).recon, plain(images).recon)
    refined.train()
    refined(images, clamp=False).recon.square().mean().backward()
    last = refined.decoder.refiner.net[-1]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="decoder_refine_channels"):
        VQRAEConfig(encoder="tiny-test", decoder_refine_channels=-1)
