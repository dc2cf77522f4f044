"""Conversations as token ids: the image placeholder, chat and plain templates, label masks.

The image goes where LLaVA puts it: its ``<image>`` mark is removed from the first user turn and
the image placeholder (:data:`vqrae.llm.IMAGE_TOKEN`, one real token of the expanded
vocabulary) is put at the turn's start, followed by a newline. After tokenization the one
placeholder id is expanded into ``num_image_tokens`` copies, which the model replaces by the
projected image features, so a sequence's length is known before any image is encoded
(transformers' ``LlavaForConditionalGeneration`` reads its inputs the same way). Image positions
are never labelled.

Two templates, as LLaVA-1.5's stages use them:

* ``"plain"`` (stage 1, projector pretraining): the placeholder, the caption, ``"\\n"``; the loss
  on the caption and the separator (:func:`vqrae.llm.tokenize_plain`);
* ``"chat"`` (stage 2 and inference): the language model's own chat template, with an optional
  system prompt; the loss on the assistant turns and their end-of-turn marker only
  (:func:`vqrae.llm.tokenize_chat`, which checks the mask against the rendered text and raises
  instead of dropping a sample that does not line up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from vqrae.llm import (
    IGNORE_INDEX,
    IMAGE_TOKEN,
    Message,
    TokenizedChat,
    render_chat,
    tokenize_chat,
    tokenize_plain,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from vqrae.mllm.config import MLLMConfig

__all__ = [
    "LLAVA_IMAGE_MARK",
    "Template",
    "TokenizedSample",
    "build_messages",
    "expand_image_token",
    "prompt_ids",
    "tokenize_conversation",
    "with_image",
]

LLAVA_IMAGE_MARK = "<image>"
Template = Literal["plain", "chat"]


@dataclass(frozen=True)
class TokenizedSample:
    """A training sample with its image positions expanded.

    Attributes:
        input_ids: (T,) token ids; the image occupies ``num_image_tokens`` placeholder ids.
        labels: (T,) targets (unshifted), :data:`vqrae.llm.IGNORE_INDEX` where no loss applies.
        has_image: whether the sample carries an image.
        truncated: whether tokens were cut at ``max_length``.
    """

    input_ids: list[int]
    labels: list[int]
    has_image: bool
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_targets(self) -> int:
        """Positions that carry a label."""
        return sum(label != IGNORE_INDEX for label in self.labels)


def with_image(text: str) -> str:
    """A user turn with the image: LLaVA's mark removed, the placeholder and a newline first."""
    return f"{IMAGE_TOKEN}\n{text.replace(LLAVA_IMAGE_MARK, '').strip()}"


def build_messages(
    config: MLLMConfig, turns: Sequence[Message], has_image: bool
) -> list[dict[str, str]]:
    """The messages a template renders: the system prompt (when configured, unless the turns
    bring their own), then ``turns`` with the image placeholder in the first user turn.

    Raises:
        ValueError: ``has_image`` but no user turn to carry it.
    """
    messages = [{"role": m["role"], "content": m["content"]} for m in turns]
    if config.system_prompt is not None and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": config.system_prompt})
    if has_image:
        first = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
        if first is None:
            raise ValueError("a conversation with an image needs a user turn to carry it")
        messages[first] = {"role": "user", "content": with_image(messages[first]["content"])}
    return messages


def expand_image_token(
    input_ids: Sequence[int], labels: Sequence[int], image_token_id: int, num_image_tokens: int
) -> tuple[list[int], list[int]]:
    """Replace each placeholder id by ``num_image_tokens`` copies (labelled ``IGNORE_INDEX``).

    Raises:
        ValueError: a placeholder carries a label (it would train the model to emit one).
    """
    ids: list[int] = []
    out_labels: list[int] = []
    for token, label in zip(input_ids, labels, strict=True):
        if token == image_token_id:
            if label != IGNORE_INDEX:
                raise ValueError("the image placeholder must not be a target")
            ids += [image_token_id] * num_image_tokens
            out_labels += [IGNORE_INDEX] * num_image_tokens
        else:
            ids.append(token)
            out_labels.append(label)
    return ids, out_labels


def _caption(turns: Sequence[Message]) -> str:
    """The caption of a stage-1 pair: its one assistant turn (LLaVA's plain template)."""
    answers = [m["content"] for m in turns if m["role"] == "assistant"]
    if len(answers) != 1:
        raise ValueError(
            f"the plain template needs exactly one assistant turn (the caption), got {len(answers)}"
        )
    return answers[0]


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase,
    config: MLLMConfig,
    turns: Sequence[Message],
    *,
    has_image: bool,
    image_token_id: int,
    num_image_tokens: int,
    template: Template = "chat",
    max_length: int | None = None,
) -> TokenizedSample:
    """Tokenize and label one conversation for training, image positions expanded.

    Truncation at ``max_length`` keeps the first tokens (labels stay aligned); the image must
    fit whole.

    Raises:
        ValueError: a template that does not render a turn verbatim (see
            :func:`vqrae.llm.tokenize_chat`), a plain sample without exactly one answer, or an
            image cut by ``max_length``.
    """
    if template == "plain":
        if not has_image:
            raise ValueError("the plain template is image + caption: the sample has no image")
        sample: TokenizedChat = tokenize_plain(tokenizer, _caption(turns), image_token=IMAGE_TOKEN)
    elif template == "chat":
        messages = build_messages(config, turns, has_image)
        sample = tokenize_chat(tokenizer, messages, **config.template_kwargs)
    else:
        raise ValueError(f"template must be 'plain' or 'chat', got {template!r}")
    ids, labels = expand_image_token(
        sample.input_ids, sample.labels, image_token_id, num_image_tokens
    )
    truncated = max_length is not None and len(ids) > max_length
    if truncated:
        assert max_length is not None
        if image_token_id in ids and ids.index(image_token_id) + num_image_tokens > max_length:
            raise ValueError(
                f"max_length {max_length} cuts the image's {num_image_tokens} tokens: raise it"
            )
        ids, labels = ids[:max_length], labels[:max_length]
    return TokenizedSample(ids, labels, has_image=has_image, truncated=truncated)


def prompt_ids(
    tokenizer: PreTrainedTokenizerBase,
    config: MLLMConfig,
    turns: Sequence[Message],
    *,
    has_image: bool,
    image_token_id: int,
    num_image_tokens: int,
) -> list[int]:
    """Token ids of an inference prompt: the conversation so far and the generation prompt."""
    messages = build_messages(config, turns, has_image)
    text = render_chat(tokenizer, messages, add_generation_prompt=True, **config.template_kwargs)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids, _ = expand_image_token(ids, [IGNORE_INDEX] * len(ids), image_token_id, num_image_tokens)
    return ids
