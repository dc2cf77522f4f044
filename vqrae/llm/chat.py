"""Chat-template prompts and assistant-only label masks.

A conversation is a list of ``{"role", "content"}`` messages. :func:`tokenize_chat` renders it
with the tokenizer's *own* chat template (``apply_chat_template``), tokenizes the rendered text
as the template intends (no extra special tokens: the template writes its own), and labels
with the token ids only the assistant turns' tokens; every other position is
:data:`IGNORE_INDEX` (-100), which ``torch.nn.functional.cross_entropy`` skips.

What is labelled, per assistant turn: the message's content as the template rendered it, and
the template's end-of-turn marker right after it (``<|im_end|>`` for ChatML templates such as
SmolLM2's and Qwen3's): the model must learn to stop. The role header before the content
(``<|im_start|>assistant\\n``), anything the template inserts there (Qwen3's empty
``<think>\\n\\n</think>\\n\\n`` block before the last answer) and the newline after the marker
are not: they are the template's scaffolding, which inference writes itself (the generation
prompt). This is LLaVA's and most trainers' convention.

The assistant turns are located in the rendered text, not by assuming a template format:
each message's content is found in order (a cursor moves past every message, so an answer that
repeats a question is found in its own turn), and before an assistant turn the cursor is moved
past the conversation-so-far rendered with the generation prompt whenever that rendering is a
prefix of the whole (a template may render a turn differently once later turns exist: Qwen3's
adds the think block only to the last answer). Characters map to tokens through the fast
tokenizer's offsets; a token is labelled when its characters overlap a content, so a token
that merges the template's text with the content (" Yes" after "assistant:") is a target: the
model must produce it. The end-of-turn marker is the first token after the content when that
token is special (whitespace-only tokens between the two are labelled too), or the
``end_of_turn`` string given. A content the template does not render verbatim (nor stripped)
is an error naming the turn, never a silently shifted mask (LLaVA drops such samples as a
"tokenization mismatch").

:func:`tokenize_plain` is LLaVA's ``plain`` template for stage-1 captioning: the image
placeholder, then the caption and a separator (``"\\n"`` as LLaVA's), loss on caption and
separator only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "IGNORE_INDEX",
    "Message",
    "TokenizedChat",
    "encode_prompt",
    "render_chat",
    "tokenize_chat",
    "tokenize_plain",
    "truncate",
]

IGNORE_INDEX = -100
ASSISTANT = "assistant"

Message = Mapping[str, Any]
"""One chat message: ``{"role": "system" | "user" | "assistant", "content": str}``."""


@dataclass(frozen=True)
class TokenizedChat:
    """A tokenized training sample.

    Attributes:
        input_ids: the token ids, (T,).
        labels: ``input_ids`` where the loss applies, :data:`IGNORE_INDEX` elsewhere, (T,).
            Unshifted: position ``t`` holds the target for the logits at ``t - 1``, as
            transformers' causal-LM losses expect.
        text: the rendered text that was tokenized (before any truncation).
        truncated: whether tokens were cut off at ``max_length``.
    """

    input_ids: list[int]
    labels: list[int]
    text: str
    truncated: bool = False

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(
                f"input_ids ({len(self.input_ids)}) and labels ({len(self.labels)}) differ"
            )

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_targets(self) -> int:
        """How many positions carry a label (0 means the sample trains nothing)."""
        return sum(label != IGNORE_INDEX for label in self.labels)


def truncate(sample: TokenizedChat, max_length: int) -> TokenizedChat:
    """Keep the first ``max_length`` tokens; labels stay aligned with their tokens."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if len(sample) <= max_length:
        return sample
    return replace(
        sample,
        input_ids=sample.input_ids[:max_length],
        labels=sample.labels[:max_length],
        truncated=True,
    )


# ----------------------------------------------------------------------------- rendering


def _check_messages(messages: Sequence[Message]) -> None:
    for i, message in enumerate(messages):
        if not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise ValueError(f"message {i} needs string 'role' and 'content', got {message!r}")


def render_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Message],
    *,
    add_generation_prompt: bool = False,
    **template_kwargs: Any,
) -> str:
    """The conversation rendered by the tokenizer's chat template, as text.

    ``template_kwargs`` reach the template (e.g. Qwen3's ``enable_thinking=False``).
    """
    _check_messages(messages)
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"{type(tokenizer).__name__} has no chat template")
    return tokenizer.apply_chat_template(
        [dict(m) for m in messages],
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
        **template_kwargs,
    )


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message], **template_kwargs: Any
) -> list[int]:
    """Token ids of a prompt for inference: the conversation plus the generation prompt."""
    text = render_chat(tokenizer, messages, add_generation_prompt=True, **template_kwargs)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ----------------------------------------------------------------------------- spans


def _find_content(text: str, content: str, cursor: int) -> tuple[int, int] | None:
    """``(start, end)`` of ``content`` (or its stripped form) in ``text`` from ``cursor``."""
    for candidate in dict.fromkeys((content, content.strip())):
        start = text.find(candidate, cursor)
        if start >= 0:
            return start, start + len(candidate)
    return None


def _assistant_contents(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Message],
    text: str,
    **template_kwargs: Any,
) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of the assistant contents in the rendered ``text``.

    Raises:
        ValueError: a message's content is not in the rendered text where it should be.
    """
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        role, content = message["role"], message["content"]
        if role == ASSISTANT and i > 0:
            prefix = render_chat(
                tokenizer, messages[:i], add_generation_prompt=True, **template_kwargs
            )
            if text.startswith(prefix):
                cursor = max(cursor, len(prefix))
        found = _find_content(text, content, cursor)
        if found is None:
            raise ValueError(
                f"message {i} ({role}) is not rendered verbatim by the chat template after "
                f"char {cursor}: content {content[:60]!r}"
            )
        if role == ASSISTANT:
            spans.append(found)
        cursor = found[1]
    return spans


def _with_end_of_turn(
    text: str, spans: Sequence[tuple[int, int]], end_of_turn: str
) -> list[tuple[int, int]]:
    """Extend each span over the whitespace and the ``end_of_turn`` string that follow it."""
    extended = []
    for start, end in spans:
        marker = end
        while marker < len(text) and text[marker].isspace():
            marker += 1
        if not text.startswith(end_of_turn, marker):
            raise ValueError(
                f"end_of_turn {end_of_turn!r} does not follow the assistant content at char "
                f"{end}: the template renders {text[end : end + 40]!r}"
            )
        extended.append((start, marker + len(end_of_turn)))
    return extended


def _is_special(tokenizer: PreTrainedTokenizerBase, token_id: int) -> bool:
    """Whether a token is special: it decodes to text, and to nothing when specials are skipped."""
    return (
        tokenizer.decode([token_id], skip_special_tokens=True) == ""
        and tokenizer.decode([token_id]) != ""
    )


def _label_spans(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    spans: Sequence[tuple[int, int]],
    *,
    add_special_tokens: bool,
    special_after: bool,
) -> tuple[list[int], list[int]]:
    """Tokenize ``text`` and label the tokens whose characters overlap one of ``spans``.

    With ``special_after``, the first token after each span is labelled too when it is a
    special token (with any whitespace-only tokens before it): the end-of-turn marker.
    """
    encoding = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids: list[int] = encoding["input_ids"]
    offsets: list[tuple[int, int]] = encoding["offset_mapping"]
    labels = [IGNORE_INDEX] * len(ids)
    t = 0
    for span_start, span_end in spans:  # spans and tokens are both in text order
        while t < len(ids) and offsets[t][1] <= span_start:
            t += 1
        while t < len(ids) and offsets[t][0] < span_end:
            if offsets[t][1] > offsets[t][0]:  # empty offsets: tokens the text does not hold
                labels[t] = ids[t]
            t += 1
        if special_after:
            after = t
            while after < len(ids) and text[offsets[after][0] : offsets[after][1]].isspace():
                after += 1
            if after < len(ids) and _is_special(tokenizer, ids[after]):
                for u in range(t, after + 1):
                    labels[u] = ids[u]
                t = after + 1
    return ids, labels


# ----------------------------------------------------------------------------- samples


def tokenize_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Message],
    *,
    max_length: int | None = None,
    end_of_turn: str | None = None,
    **template_kwargs: Any,
) -> TokenizedChat:
    """Render, tokenize and label a conversation for training (assistant turns only).

    Args:
        tokenizer: a fast tokenizer with a chat template.
        messages: the conversation; its assistant turns are the targets.
        max_length: keep at most this many tokens (see :func:`truncate`).
        end_of_turn: the marker after an assistant turn (detected when ``None``).
        **template_kwargs: passed to the template (e.g. ``enable_thinking=False``).

    Raises:
        ValueError: no chat template, malformed messages, or a content the template does
            not render where expected.
    """
    text = render_chat(tokenizer, messages, **template_kwargs)
    spans = _assistant_contents(tokenizer, messages, text, **template_kwargs)
    if end_of_turn is not None:
        spans = _with_end_of_turn(text, spans, end_of_turn)
    ids, labels = _label_spans(
        tokenizer, text, spans, add_special_tokens=False, special_after=end_of_turn is None
    )
    sample = TokenizedChat(input_ids=ids, labels=labels, text=text)
    return truncate(sample, max_length) if max_length is not None else sample


def _missing_bos(tokenizer: PreTrainedTokenizerBase) -> str:
    """The BOS text to prepend: the tokenizer's BOS when it has one and does not add it."""
    bos_id = tokenizer.bos_token_id
    if tokenizer.bos_token is None or bos_id is None:
        return ""
    added = tokenizer("a", add_special_tokens=True)["input_ids"]
    return "" if added and added[0] == bos_id else str(tokenizer.bos_token)


def tokenize_plain(
    tokenizer: PreTrainedTokenizerBase,
    caption: str,
    *,
    image_token: str,
    sep: str = "\n",
    max_length: int | None = None,
) -> TokenizedChat:
    """LLaVA's ``plain`` template (stage 1): ``image_token + caption + sep``, loss on
    ``caption + sep``.

    The sequence starts with the tokenizer's BOS, never labelled, as LLaVA's do: Llama-family
    tokenizers add it themselves; one that declares a BOS without adding it (SmolLM2's
    ``<|im_start|>``) gets it prepended, so the image is never at position 0, where a causal
    LM keeps its attention sink. A tokenizer without a BOS (Qwen's) starts with the image.
    """
    bos = _missing_bos(tokenizer)
    text = bos + image_token + caption + sep
    spans = [(len(bos) + len(image_token), len(text))]
    ids, labels = _label_spans(tokenizer, text, spans, add_special_tokens=True, special_after=False)
    sample = TokenizedChat(input_ids=ids, labels=labels, text=text)
    return truncate(sample, max_length) if max_length is not None else sample
