"""Encoders: patch tokens only, layer choice, final-norm options, any divisible resolution."""

from __future__ import annotations

import pytest
import timm
import torch

from vqrae.tokenizer.encoders import ENCODERS, VFMEncoder, get_encoder_spec, list_encoders

TINY = get_encoder_spec("tiny-test")


def _tiny_timm() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(
        TINY.architecture, pretrained=False, num_classes=0, **TINY.arch_overrides
    ).eval()


def test_matches_timm_forward_features_without_prefix_tokens() -> None:
    vit = _tiny_timm()
    enc = VFMEncoder(TINY, image_size=56, final_norm="affine", state_dict=vit.state_dict()).eval()
    x = torch.rand(2, 3, 56, 56)
    ref = vit.forward_features((x - enc.mean) / enc.std)[:, vit.num_prefix_tokens :]
    assert torch.allclose(enc(x), ref, atol=1e-6)
    assert enc(x).shape == (2, 16, 32)


def test_no_affine_final_norm_gives_unit_tokens() -> None:
    enc = VFMEncoder(TINY, image_size=56, final_norm="no_affine")
    tokens = enc(torch.rand(1, 3, 56, 56))
    assert torch.allclose(tokens.mean(-1), torch.zeros(1, 16), atol=1e-5)
    assert torch.allclose(tokens.var(-1, unbiased=False), torch.ones(1, 16), atol=1e-3)
    assert not any("norm.weight" == k for k in enc.state_dict())


def test_layer_selection_prunes_later_blocks() -> None:
    vit = _tiny_timm()
    enc = VFMEncoder(
        TINY, image_size=56, layer=0, final_norm="none", state_dict=vit.state_dict()
    ).eval()
    assert len(enc.blocks) == 1
    x = torch.rand(1, 3, 56, 56)
    inter = vit.forward_intermediates(
        (x - enc.mean) / enc.std, indices=[0], norm=False, intermediates_only=True
    )
    ref = inter[0].flatten(2).transpose(1, 2)  # (B, N, d)
    assert torch.allclose(enc(x), ref, atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        VFMEncoder(TINY, image_size=56, layer=5)


def test_other_resolutions_interpolate_position_embedding() -> None:
    enc = VFMEncoder(TINY, image_size=56)
    assert enc(torch.rand(1, 3, 84, 42)).shape == (1, 6 * 3, 32)
    with pytest.raises(ValueError, match="divisible"):
        enc(torch.rand(1, 3, 50, 56))
    with pytest.raises(ValueError, match="divisible"):
        VFMEncoder(TINY, image_size=50)


def test_mismatched_weights_are_rejected_by_name() -> None:
    state = _tiny_timm().state_dict()
    state.pop("blocks.0.attn.qkv.weight")
    with pytest.raises(ValueError, match="missing"):
        VFMEncoder(TINY, image_size=56, state_dict=state)


@pytest.mark.parametrize("name", [n for n in list_encoders() if n != "tiny-test"])
def test_paper_scale_encoders_construct_and_shape_check_on_meta(name: str) -> None:
    spec = ENCODERS[name]
    size = {"siglip2-so400m-p16-512": 512, "internvit-300m-448": 448}.get(name, 224)
    if "siglip2" in name and size == 224:
        size = 256
    with torch.device("meta"):
        enc = VFMEncoder(spec, image_size=size)
    tokens = enc(torch.empty(2, 3, size, size, device="meta"))
    assert tokens.shape == (2, (size // enc.patch_size) ** 2, enc.dim)
    expected_dim = {"dinov2-small": 384, "dinov2-base": 768}.get(
        name, 1152 if "siglip" in name else 1024
    )
    assert enc.dim == expected_dim


def test_unknown_encoder_lists_known_names() -> None:
    with pytest.raises(ValueError, match="dinov2-small"):
        get_encoder_spec("resnet")
