"""The projector (LLaVA's mlp2x_gelu and its kin), token pooling, the config's checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vqrae.mllm.config import CHAT_TEMPLATES, MLLMConfig, parse_projector
from vqrae.mllm.projector import Projector, pool_tokens


def test_mlp2x_gelu_is_linear_gelu_linear_with_llava_keys() -> None:
    projector = Projector("mlp2x_gelu", 32, 64)
    kinds = [type(m) for m in projector.layers]
    assert kinds == [nn.Linear, nn.GELU, nn.Linear]
    assert projector.layers[1].approximate == "none"  # exact GELU, transformers' "gelu"
    assert sorted(projector.state_dict()) == [
        "layers.0.bias",
        "layers.0.weight",
        "layers.2.bias",
        "layers.2.weight",
    ]
    x = torch.randn(2, 5, 32)
    first, second = projector.linears
    expected = second(torch.nn.functional.gelu(first(x)))
    torch.testing.assert_close(projector(x), expected)


@pytest.mark.parametrize(("kind", "linears"), [("linear", 1), ("mlp2x_gelu", 2), ("mlp3x_gelu", 3)])
def test_projector_depth_follows_the_name(kind: str, linears: int) -> None:
    assert parse_projector(kind) == linears
    assert len(Projector(kind, 8, 16).linears) == linears


@pytest.mark.parametrize("kind", ["mlp", "mlp0x_gelu", "mlp2x_relu", "identity"])
def test_unknown_projector_names_are_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="projector"):
        parse_projector(kind)


def test_pooling_averages_square_blocks_in_raster_order() -> None:
    grid = torch.arange(16.0).view(1, 4, 4)  # one channel, values = raster index
    tokens = grid.flatten(1)[..., None]  # (1, 16, 1)
    pooled = pool_tokens(tokens, (4, 4), 2)
    expected = torch.tensor([[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]])
    torch.testing.assert_close(pooled[0, :, 0], expected.float().mean(dim=1))


def test_pooling_to_the_grid_or_none_is_the_identity_and_too_large_is_an_error() -> None:
    tokens = torch.randn(2, 9, 4)
    assert pool_tokens(tokens, (3, 3), None) is tokens
    assert pool_tokens(tokens, (3, 3), 3) is tokens
    with pytest.raises(ValueError, match="pool size"):
        pool_tokens(tokens, (3, 3), 4)
    with pytest.raises(ValueError, match="expected tokens"):
        pool_tokens(tokens, (4, 4), 2)


def test_config_checks_name_the_field() -> None:
    with pytest.raises(ValueError, match="pool"):
        MLLMConfig(pool=0)
    with pytest.raises(ValueError, match="image_aspect"):
        MLLMConfig(image_aspect="stretch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown understanding-model config keys: colour"):
        MLLMConfig.from_dict({"colour": "red"})
    config = MLLMConfig(chat_template="vicuna_v1")
    assert config.template == CHAT_TEMPLATES["vicuna_v1"]
    assert MLLMConfig(chat_template="{{ x }}").template == "{{ x }}"
    assert MLLMConfig.from_dict(config.to_dict()) == config
