"""The understanding model: splicing, the target-only loss, the folder format, LoRA, swaps."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import vqrae
from vqrae.llm import IGNORE_INDEX
from vqrae.mllm.language import LoRASettings
from vqrae.mllm.model import MLLM, is_mllm_folder
from vqrae.mllm.prompts import tokenize_conversation

TURNS = [
    {"role": "user", "content": "What colour is the hexagon?"},
    {"role": "assistant", "content": "It is purple."},
]


def _batch(model: MLLM, with_image: list[bool]):
    rows = [
        tokenize_conversation(
            model.tokenizer,
            model.config,
            TURNS,
            has_image=h,
            image_token_id=model.image_token_id,
            num_image_tokens=model.num_image_tokens,
        )
        for h in with_image
    ]
    length = max(len(r) for r in rows)
    pad = model.tokenizer.pad_token_id
    ids = torch.tensor([r.input_ids + [pad] * (length - len(r)) for r in rows])
    labels = torch.tensor([r.labels + [IGNORE_INDEX] * (length - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows])
    return ids, mask, labels


def test_features_land_exactly_on_the_placeholders(tiny_mllm) -> None:
    ids, _, _ = _batch(tiny_mllm, [False, True])
    features = torch.randn(2, tiny_mllm.num_image_tokens, tiny_mllm.config.feature_dim)
    embeds = tiny_mllm.embed(ids, features)
    plain = tiny_mllm.lm.get_input_embeddings()(ids)
    placeholders = ids == tiny_mllm.image_token_id
    assert not placeholders[0].any()
    torch.testing.assert_close(embeds[0], plain[0])  # the text-only row is untouched
    torch.testing.assert_close(embeds[1][placeholders[1]], tiny_mllm.language.project(features)[1])
    torch.testing.assert_close(embeds[1][~placeholders[1]], plain[1][~placeholders[1]])


def test_placeholder_counts_are_checked(tiny_mllm) -> None:
    ids, _, _ = _batch(tiny_mllm, [True])
    features = torch.randn(1, tiny_mllm.num_image_tokens, tiny_mllm.config.feature_dim)
    with pytest.raises(ValueError, match="image placeholders"):
        tiny_mllm.embed(ids[:, 1:] if ids[0, 0] == tiny_mllm.image_token_id else ids[:, :-1], None)
    broken = ids.clone()
    broken[0, (broken[0] == tiny_mllm.image_token_id).nonzero()[0]] = 5
    with pytest.raises(ValueError, match="expected 0 or"):
        tiny_mllm.embed(broken, features)


def test_the_loss_is_the_summed_cross_entropy_of_the_labelled_positions(tiny_mllm) -> None:
    ids, mask, labels = _batch(tiny_mllm, [True, False])
    features = torch.randn(2, tiny_mllm.num_image_tokens, tiny_mllm.config.feature_dim)
    out = tiny_mllm(ids, mask, features, labels)
    logits = tiny_mllm.lm(inputs_embeds=tiny_mllm.embed(ids, features), attention_mask=mask).logits
    reference = F.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), reduction="sum"
    )
    assert out.num_targets == int((labels[:, 1:] != IGNORE_INDEX).sum()) > 0
    torch.testing.assert_close(out.loss_sum, reference, rtol=1e-5, atol=1e-5)


def test_every_trainable_parameter_gets_a_gradient_and_the_lm_none(tiny_mllm) -> None:
    tiny_mllm.lm.requires_grad_(False)
    ids, mask, labels = _batch(tiny_mllm, [True, True])
    features = torch.randn(2, tiny_mllm.num_image_tokens, tiny_mllm.config.feature_dim)
    tiny_mllm(ids, mask, features, labels).loss_sum.backward()
    for name, param in tiny_mllm.projector.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in tiny_mllm.lm.parameters())
    assert all(p.grad is None for p in tiny_mllm.vision.parameters())


def _answers(model: MLLM, images: torch.Tensor) -> torch.Tensor:
    ids, mask, labels = _batch(model, [True] * len(images))
    with torch.no_grad():
        return model(ids, mask, model.vision(images), labels).loss_sum


def test_save_and_load_round_trip_a_projector_only_model(tiny_mllm, tmp_path) -> None:
    images = torch.rand(2, 3, 56, 56)
    before = _answers(tiny_mllm, images)
    folder = tiny_mllm.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "projector.safetensors"]
    assert is_mllm_folder(folder) and not is_mllm_folder(tmp_path)
    record = json.loads((folder / "config.json").read_text())
    assert record["lm_weights"] == "reference" and record["config"]["feature_dim"] == 32
    loaded = MLLM.from_pretrained(folder, device="cpu")
    torch.testing.assert_close(_answers(loaded, images), before)
    half = tiny_mllm.save_pretrained(tmp_path / "half", dtype=torch.float16)
    assert (half / "projector.safetensors").stat().st_size < (
        folder / "projector.safetensors"
    ).stat().st_size


def test_lora_adapter_saves_without_the_embedding_and_reloads_exactly(tiny_mllm, tmp_path) -> None:
    tiny_mllm.attach_lora(LoRASettings(r=4, alpha=8, dropout=0.0))
    for name, param in tiny_mllm.lm.named_parameters():  # a trained adapter is not zero
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    images = torch.rand(2, 3, 56, 56)
    before = _answers(tiny_mllm, images)
    folder = tiny_mllm.save_pretrained(tmp_path / "lora")
    adapter = folder / "adapter"
    assert sorted(p.name for p in adapter.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert keys and all("lora_" in k for k in keys)  # no embedding table saved
    merged = MLLM.from_pretrained(folder, device="cpu")
    assert merged.lora_merged
    torch.testing.assert_close(_answers(merged, images), before, rtol=1e-4, atol=1e-4)
    kept = MLLM.from_pretrained(folder, device="cpu", trainable=True)
    assert not kept.lora_merged
    assert any(p.requires_grad for n, p in kept.lm.named_parameters() if "lora_" in n)
    with pytest.raises(ValueError, match="merged"):
        merged.save_pretrained(tmp_path / "again")


def test_a_fully_tuned_lm_is_saved_whole(tiny_mllm, tmp_path) -> None:
    tiny_mllm.tune_full_lm()
    with torch.no_grad():
        tiny_mllm.lm.get_input_embeddings().weight.mul_(1.5)
    images = torch.rand(1, 3, 56, 56)
    before = _answers(tiny_mllm, images)
    folder = tiny_mllm.save_pretrained(tmp_path / "full")
    assert (folder / "lm" / "visual_vocab.json").is_file()
    torch.testing.assert_close(_answers(MLLM.from_pretrained(folder, device="cpu"), images), before)


def test_the_tokenizer_can_be_swapped_when_its_features_fit(tiny_mllm, tmp_path) -> None:
    folder = tiny_mllm.save_pretrained(tmp_path / "m")
    torch.manual_seed(5)
    other = vqrae.create_model("vqrae-test-tiny")
    swapped = MLLM.from_pretrained(folder, device="cpu", tokenizer=other)
    assert swapped.vision.tokenizer is other
    images = torch.rand(1, 3, 56, 56)
    assert not torch.allclose(_answers(swapped, images), _answers(tiny_mllm, images))
    record = json.loads((folder / "config.json").read_text())
    record["visual_vocab"]["num_codes"] = 2  # rebuilt from the LM, the map differs
    (folder / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="not the model this folder was trained on"):
        MLLM.from_pretrained(folder, device="cpu")


def test_the_pretrained_encoder_reads_with_the_foundation_model_s_own_weights(tiny_checkpoint):
    from vqrae.mllm.config import MLLMConfig
    from vqrae.mllm.model import load_tokenizer
    from vqrae.tokenizer.model import load_pretrained_encoder

    trained = load_tokenizer("vqrae-dinov2-s-demo", "trained")
    stage1 = load_tokenizer("vqrae-dinov2-s-demo", "pretrained")
    reference = load_pretrained_encoder(trained.config).state_dict()
    ours, theirs = stage1.encoder.state_dict(), trained.encoder.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in reference.items())
    assert any(not torch.equal(theirs[k], v) for k, v in reference.items())  # fine-tuned blocks
    decoder = stage1.decoder.state_dict()
    assert all(torch.equal(decoder[k], v) for k, v in trained.decoder.state_dict().items())
    with pytest.raises(ValueError, match="no pretrained weights|has none"):
        load_tokenizer(str(tiny_checkpoint), "pretrained")
    with pytest.raises(ValueError, match="encoder must be"):
        MLLMConfig(encoder="frozen")  # type: ignore[arg-type]
