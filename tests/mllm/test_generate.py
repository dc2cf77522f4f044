"""Generation: left-padded batches equal single rows, the KV cache equals recomputation."""

from __future__ import annotations

import pytest
import torch

from vqrae.llm.sampling import left_pad
from vqrae.mllm.generate import GenerationSettings, TextStream, generate
from vqrae.mllm.language import stop_token_ids
from vqrae.mllm.prompts import prompt_ids

QUESTIONS = ["What colour is the hexagon?", "How many crosses are there in the image?", "Yes."]


def _prompts(model, with_image: bool = True) -> list[list[int]]:
    return [
        prompt_ids(
            model.tokenizer,
            model.config,
            [{"role": "user", "content": q}],
            has_image=with_image,
            image_token_id=model.image_token_id,
            num_image_tokens=model.num_image_tokens,
        )
        for q in QUESTIONS
    ]


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(len(QUESTIONS), 3, 56, 56)


def test_a_left_padded_batch_answers_as_each_row_alone(tiny_mllm, images) -> None:
    prompts = _prompts(tiny_mllm)
    assert len({len(p) for p in prompts}) == len(prompts)  # padding is exercised
    features = tiny_mllm.vision(images)
    settings = GenerationSettings(max_new_tokens=12)
    batched = generate(tiny_mllm, prompts, features, settings)
    alone = [
        generate(tiny_mllm, [p], features[i : i + 1], settings)[0] for i, p in enumerate(prompts)
    ]
    assert batched == alone
    assert len({tuple(a) for a in batched}) > 1  # the rows answer differently


def test_the_kv_cache_gives_the_tokens_of_full_recomputation(tiny_mllm, images) -> None:
    prompt = _prompts(tiny_mllm)[0]
    features = tiny_mllm.vision(images[:1])
    cached = generate(tiny_mllm, [prompt], features, GenerationSettings(max_new_tokens=8))[0]
    ids = list(prompt)
    banned = tiny_mllm.vocab.text_vocab_size
    stops = stop_token_ids(tiny_mllm.tokenizer, tiny_mllm.config, tiny_mllm.lm)
    recomputed = []
    with torch.no_grad():
        for _ in range(8):
            x = torch.tensor([ids])
            embeds = tiny_mllm.embed(x, features)
            logits = tiny_mllm.lm(inputs_embeds=embeds, attention_mask=torch.ones_like(x)).logits
            token = int(logits[0, -1, :banned].argmax())
            if token in stops:
                break
            recomputed.append(token)
            ids.append(token)
    assert cached == recomputed and len(cached) > 0


def test_added_ids_are_never_generated(tiny_mllm, images) -> None:
    with torch.no_grad():  # make the image placeholder the most likely next token everywhere
        head = tiny_mllm.lm.get_output_embeddings()
        head.weight[tiny_mllm.image_token_id] = 100 * head.weight[
            : tiny_mllm.vocab.text_vocab_size
        ].mean(0)
    answers = generate(
        tiny_mllm,
        _prompts(tiny_mllm),
        tiny_mllm.vision(images),
        GenerationSettings(max_new_tokens=6),
    )
    assert all(t < tiny_mllm.vocab.text_vocab_size for a in answers for t in a)


def test_sampling_is_seeded_and_text_only_prompts_work(tiny_mllm) -> None:
    prompts = _prompts(tiny_mllm, with_image=False)
    hot = GenerationSettings(max_new_tokens=10, temperature=1.5, top_p=0.9, seed=3)
    first = generate(tiny_mllm, prompts, None, hot)
    assert first == generate(tiny_mllm, prompts, None, hot)
    assert first != generate(tiny_mllm, prompts, None, GenerationSettings(max_new_tokens=10))


def test_the_stream_emits_the_decoded_text_piece_by_piece(tiny_mllm, images) -> None:
    pieces: list[str] = []
    stream = TextStream(tiny_mllm.tokenizer, pieces.append)
    prompt = _prompts(tiny_mllm)[1]
    (answer,) = generate(
        tiny_mllm, [prompt], tiny_mllm.vision(images[:1]), GenerationSettings(max_new_tokens=10),
        lambda _, token: stream.push(token),
    )  # fmt: skip
    stream.finish()
    assert "".join(pieces) == tiny_mllm.tokenizer.decode(answer, skip_special_tokens=True)
    assert len(pieces) > 1


def test_left_pad_and_settings_checks() -> None:
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0, device=torch.device("cpu"))
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = left_pad([[1], []], 0, torch.device("cpu"))  # an empty row is all padding
    assert mask.tolist() == [[1], [0]]
    with pytest.raises(ValueError, match="temperature"):
        GenerationSettings(temperature=-1)
