"""Export to transformers' LlavaForConditionalGeneration: same logits, same greedy answers."""

from __future__ import annotations

import pytest
import torch

from vqrae.mllm.config import MLLMConfig
from vqrae.mllm.export_hf import ExportError, export_llava, llava_pixel_values, to_llava
from vqrae.mllm.generate import GenerationSettings, generate
from vqrae.mllm.language import stop_token_ids
from vqrae.mllm.model import MLLM
from vqrae.mllm.prompts import prompt_ids


@pytest.fixture
def exportable(plain_tokenizer_dir, toy_lm_dir) -> MLLM:
    config = MLLMConfig(tokenizer=str(plain_tokenizer_dir), lm=str(toy_lm_dir))
    return MLLM.build(config, device="cpu", seed=3).eval()


def _prompt(model: MLLM) -> list[int]:
    return prompt_ids(
        model.tokenizer,
        model.config,
        [{"role": "user", "content": "What colour is the hexagon?"}],
        has_image=True,
        image_token_id=model.image_token_id,
        num_image_tokens=model.num_image_tokens,
    )


def test_the_export_answers_with_the_same_greedy_tokens(exportable) -> None:
    torch.manual_seed(0)
    images = torch.stack([torch.rand(3, 56, 56), 0.3 * torch.rand(3, 56, 56)])
    prompt = _prompt(exportable)
    ours = generate(
        exportable,
        [prompt, prompt],
        exportable.vision(images),
        GenerationSettings(max_new_tokens=16),
    )
    assert ours[0] != ours[1]  # the answers depend on the image
    llava = to_llava(exportable)
    ids = torch.tensor([prompt, prompt])
    pixels = llava_pixel_values(exportable, images)
    with torch.no_grad():
        theirs = llava(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids))
        mine = exportable.lm(
            inputs_embeds=exportable.embed(ids, exportable.vision(images)),
            attention_mask=torch.ones_like(ids),
        )
    torch.testing.assert_close(theirs.logits, mine.logits, rtol=1e-4, atol=1e-4)
    vocab = exportable.vocab
    generated = llava.generate(
        input_ids=ids,
        pixel_values=pixels,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=16,
        do_sample=False,
        suppress_tokens=list(range(vocab.text_vocab_size, llava.config.text_config.vocab_size)),
        eos_token_id=stop_token_ids(exportable.tokenizer, exportable.config, exportable.lm),
        pad_token_id=exportable.tokenizer.pad_token_id,
    )[:, ids.shape[1] :].tolist()
    stops = set(stop_token_ids(exportable.tokenizer, exportable.config, exportable.lm))
    theirs_tokens = [
        [t for t in row if t not in stops and t != exportable.tokenizer.pad_token_id]
        for row in generated
    ]
    assert theirs_tokens == ours


def test_the_export_folder_loads_in_transformers(exportable, tmp_path) -> None:
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

    path = export_llava(exportable, tmp_path / "llava")
    loaded = LlavaForConditionalGeneration.from_pretrained(path)
    assert loaded.config.image_token_id == exportable.image_token_id
    processor = LlavaProcessor.from_pretrained(path)
    from PIL import Image

    text = processor.tokenizer.convert_ids_to_tokens(exportable.image_token_id) + "\nHi"
    inputs = processor(images=Image.new("RGB", (56, 56)), text=text, return_tensors="pt")
    assert (
        int((inputs["input_ids"] == exportable.image_token_id).sum()) == exportable.num_image_tokens
    )
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 56, 56)


def test_what_llava_cannot_express_is_refused_with_the_reason(
    tiny_checkpoint, plain_tokenizer_dir, toy_lm_dir
) -> None:
    normed = MLLM.build(
        MLLMConfig(tokenizer=str(tiny_checkpoint), lm=str(toy_lm_dir)), device="cpu"
    )
    with pytest.raises(ExportError, match="encoder_final_norm 'no_affine'"):
        to_llava(normed)
    pooled = MLLM.build(
        MLLMConfig(tokenizer=str(plain_tokenizer_dir), lm=str(toy_lm_dir), pool=2), device="cpu"
    )
    with pytest.raises(ExportError, match="pools"):
        to_llava(pooled)
    linear = MLLM.build(
        MLLMConfig(tokenizer=str(plain_tokenizer_dir), lm=str(toy_lm_dir), projector="linear"),
        device="cpu",
    )
    with pytest.raises(ExportError, match="mlp2x_gelu"):
        to_llava(linear)
