"""Qwen3's tokenizer from llama.cpp's Qwen2 vocabulary GGUF (``llama-cpp-python`` sdist).

llama.cpp ships ``ggml-vocab-qwen2.gguf``, a tensor-less GGUF holding Qwen2's byte-level BPE
(151643 regular tokens, 151387 merges, then ``<|endoftext|>``, ``<|im_start|>``,
``<|im_end|>`` and ``[PAD151646]``..``[PAD151935]`` placeholders up to the 151936-row
embedding), next to its tokenizer test pair ``.inp`` / ``.out``. Qwen3 keeps the regular
tokens and merges and defines 26 added tokens at ids 151643-151668 (:data:`ADDED_TOKENS`).

This module writes a Hugging Face tokenizer folder (:data:`FILES`) that is Qwen3's:

* ``tokenizer.json``: the GGUF's vocabulary (regular tokens only) and merges, NFC
  normalisation, Qwen2's split pattern (single digits, letters with one leading
  non-letter) then byte-level mapping, and the 26 added tokens (not normalised);
* ``tokenizer_config.json`` / ``special_tokens_map.json``: eos ``<|im_end|>``, pad
  ``<|endoftext|>``, no BOS, and :data:`CHAT_TEMPLATE`, this project's template for Qwen3's
  chat format (system / user / assistant turns, ``add_generation_prompt`` and
  ``enable_thinking=False``'s empty think block; tool calls are not supported).

Verification (raises on mismatch): every input of llama.cpp's test pair encodes to the
listed ids, ``"Hello world" -> [9707, 1879]``, each added token encodes to its single id, and
:data:`TEMPLATE_CASES` render to their expected strings, all through
``AutoTokenizer.from_pretrained(folder)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vqrae import assets

ASSET = "qwen3-tokenizer"
_SPEC = assets.get_spec(ASSET)  # the catalogue holds the archive members and the file set
assert _SPEC.offline is not None, f"{ASSET} has an offline source in the catalogue"
MEMBERS = _SPEC.offline.members
# The catalogue lists the vocabulary GGUF, then llama.cpp's test input and output beside it.
VOCAB_MEMBER, TEST_INPUT_MEMBER, TEST_OUTPUT_MEMBER = MEMBERS
assert (TEST_INPUT_MEMBER, TEST_OUTPUT_MEMBER) == (VOCAB_MEMBER + ".inp", VOCAB_MEMBER + ".out")
FILES = _SPEC.files
# llama.cpp's test-tokenizer-0 splits the .inp file on this line; the .out file holds one
# line of space-separated ids per input, in the same order.
TEST_SEPARATOR = "\n__ggml_vocab_test__\n"
N_REGULAR = 151643  # byte-level BPE tokens 0..151642; the added tokens follow
# (content, special) in id order from N_REGULAR. Qwen3's tokenizer_config marks the tool,
# FIM, repository and think tokens special=False: they survive decode(skip_special_tokens).
ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
# Qwen3's additional_special_tokens: <|im_start|> .. <|video_pad|> (ids 151644-151656).
ADDITIONAL_SPECIAL_TOKENS = tuple(content for content, _ in ADDED_TOKENS[1:14])
MODEL_MAX_LENGTH = 131072
HELLO_WORLD_IDS = (9707, 1879)
# Qwen2's pre-tokenizer split (llama.cpp's "qwen2" pre-type): contractions, letters with at
# most one leading non-letter, single digits, punctuation runs, newlines, spaces.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GGUF_NORMAL, _GGUF_CONTROL, _GGUF_USER_DEFINED = 1, 3, 4  # llama.cpp token types

# Each turn is <|im_start|>ROLE\n...<|im_end|>\n. An assistant turn that comes after the last
# user turn shows its reasoning in a think block when it is the final message or has
# reasoning; earlier assistant turns show only their answer (reasoning is dropped from the
# history). The generation prompt opens an assistant turn, with an empty think block when
# enable_thinking is False.
CHAT_TEMPLATE = """\
{#- Qwen3 chat format for system, user and assistant turns. -#}
{%- set turns = namespace(last_user=messages | length - 1) -%}
{%- for message in messages -%}
  {%- if message.role == 'user' -%}
    {%- set turns.last_user = loop.index0 -%}
  {%- endif -%}
{%- endfor -%}
{%- for message in messages -%}
  {%- if message.role == 'system' or message.role == 'user' -%}
    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}
  {%- elif message.role == 'assistant' -%}
    {%- set answer = message.content -%}
    {%- set reasoning = '' -%}
    {%- if message.reasoning_content is string -%}
      {%- set reasoning = message.reasoning_content -%}
    {%- elif '</think>' in answer -%}
      {%- set reasoning = answer.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') -%}
      {%- set answer = answer.split('</think>')[-1].lstrip('\\n') -%}
    {%- endif -%}
    {{- '<|im_start|>assistant\\n' -}}
    {%- if loop.index0 > turns.last_user and (loop.last or reasoning) -%}
      {{- '<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + answer.lstrip('\\n') -}}
    {%- else -%}
      {{- answer -}}
    {%- endif -%}
    {{- '<|im_end|>\\n' -}}
  {%- else -%}
    {{- raise_exception('this template renders system, user and assistant turns, not ' + message.role) -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\\n' -}}
  {%- if enable_thinking is defined and enable_thinking is false -%}
    {{- '<think>\\n\\n</think>\\n\\n' -}}
  {%- endif -%}
{%- endif -%}
"""

_DIALOGUE: tuple[Mapping[str, str], ...] = (
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hi!"},
    {
        "role": "assistant",
        "content": "<think>\nThe user greets me.\n</think>\n\nHello! How can I help?",
    },
    {"role": "user", "content": "What is 2+2?"},
)
# (messages, apply_chat_template keyword arguments, exact rendering); written out by hand
# from Qwen3's published chat format.
TEMPLATE_CASES: tuple[tuple[tuple[Mapping[str, str], ...], Mapping[str, Any], str], ...] = (
    (
        _DIALOGUE,
        {"add_generation_prompt": True, "enable_thinking": False},
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n",
    ),
    (
        _DIALOGUE[1:],
        {"add_generation_prompt": True},
        "<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
    (
        (*_DIALOGUE[3:], {"role": "assistant", "content": "4"}),
        {"add_generation_prompt": False},
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n4<|im_end|>\n",
    ),
)


# ----------------------------------------------------------------------------- the GGUF file


def read_vocab(gguf_path: str | Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The regular tokens (ids 0..N_REGULAR-1) and merges of the Qwen2 vocabulary GGUF.

    Checks the layout this module relies on: regular tokens are llama.cpp NORMAL tokens,
    then ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>`` as CONTROL tokens, then only
    ``[PAD<id>]`` placeholders.
    """
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    fields = reader.fields
    if fields["tokenizer.ggml.pre"].contents() != "qwen2":
        raise ValueError(f"{gguf_path}: expected the qwen2 pre-tokenizer")
    tokens = fields["tokenizer.ggml.tokens"].contents()
    types = fields["tokenizer.ggml.token_type"].contents()
    if any(t != _GGUF_NORMAL for t in types[:N_REGULAR]):
        raise ValueError(f"{gguf_path}: ids below {N_REGULAR} are not all normal tokens")
    controls = [content for content, _ in ADDED_TOKENS[:3]]
    if tokens[N_REGULAR : N_REGULAR + 3] != controls or any(
        t != _GGUF_CONTROL for t in types[N_REGULAR : N_REGULAR + 3]
    ):
        raise ValueError(f"{gguf_path}: ids {N_REGULAR}.. are not {controls}")
    tail = range(N_REGULAR + 3, len(tokens))
    if any(tokens[i] != f"[PAD{i}]" or types[i] != _GGUF_USER_DEFINED for i in tail):
        raise ValueError(f"{gguf_path}: expected only [PAD<id>] placeholders after the controls")
    merges = []
    for merge in fields["tokenizer.ggml.merges"].contents():
        left, sep, right = merge.partition(" ")
        if not sep or " " in right:
            raise ValueError(f"{gguf_path}: malformed merge {merge!r}")
        merges.append((left, right))
    return list(tokens[:N_REGULAR]), merges


def read_test_pairs(inp_path: str | Path, out_path: str | Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's tokenizer test pair: (text, expected ids) for each input, in file order.

    The ``.inp`` file holds the inputs, each followed by :data:`TEST_SEPARATOR`; the ``.out``
    file holds one line of space-separated ids per input (empty for the empty input).
    """
    raw = Path(inp_path).read_bytes().decode("utf-8")
    inputs = raw.split(TEST_SEPARATOR)
    if inputs and inputs[-1] == "":
        inputs.pop()  # the file ends with a separator
    lines = Path(out_path).read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(inputs) != len(lines):
        raise ValueError(f"{len(inputs)} test inputs but {len(lines)} output lines")
    return [
        (text, [int(i) for i in line.split()]) for text, line in zip(inputs, lines, strict=True)
    ]


# ----------------------------------------------------------------------------- conversion


def build_tokenizer(tokens: Sequence[str], merges: Sequence[tuple[str, str]]) -> Any:
    """A ``tokenizers.Tokenizer`` with Qwen2's pipeline and Qwen3's added tokens."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("the GGUF vocabulary has duplicate tokens")
    missing = {part for merge in merges for part in (*merge, "".join(merge))} - vocab.keys()
    if missing:
        raise ValueError(f"{len(missing)} merge parts or results are not regular tokens")
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=list(merges),
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
            ignore_merges=False,
        )
    )
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    for offset, (content, special) in enumerate(ADDED_TOKENS):
        token = AddedToken(content, special=special, normalized=False)
        added = tokenizer.add_special_tokens([token]) if special else tokenizer.add_tokens([token])
        if added != 1 or tokenizer.token_to_id(content) != N_REGULAR + offset:
            raise ValueError(f"added token {content!r} did not get id {N_REGULAR + offset}")
    return tokenizer


def _added_tokens_decoder() -> dict[str, dict[str, Any]]:
    """tokenizer_config.json's ``added_tokens_decoder``: id -> token properties."""
    return {
        str(N_REGULAR + offset): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
        for offset, (content, special) in enumerate(ADDED_TOKENS)
    }


def _write_json(path: Path, value: Mapping[str, Any]) -> None:
    """Pretty JSON with a trailing newline, UTF-8, non-ASCII kept."""
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_folder(gguf_path: str | Path, out_dir: Path) -> None:
    """Write :data:`FILES` into ``out_dir``."""
    tokens, merges = read_vocab(gguf_path)
    build_tokenizer(tokens, merges).save(str(out_dir / "tokenizer.json"))
    specials = {
        "additional_special_tokens": list(ADDITIONAL_SPECIAL_TOKENS),
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
    }
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": _added_tokens_decoder(),
        **specials,
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": MODEL_MAX_LENGTH,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    _write_json(out_dir / "tokenizer_config.json", config)
    _write_json(out_dir / "special_tokens_map.json", specials)


# ----------------------------------------------------------------------------- verification


def check_test_pairs(tokenizer: Any, pairs: Sequence[tuple[str, Sequence[int]]]) -> int:
    """Raise on the first test input whose ids differ; return how many pairs were checked."""
    for text, expected in pairs:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if list(ids) != list(expected):
            raise ValueError(f"{text!r} encodes to {ids}, llama.cpp's test expects {expected}")
    return len(pairs)


def check_special_tokens(tokenizer: Any) -> None:
    """Raise unless every added token is one id, in place, eos/pad/BOS are Qwen3's."""
    for offset, (content, special) in enumerate(ADDED_TOKENS):
        ids = tokenizer(content, add_special_tokens=False)["input_ids"]
        if ids != [N_REGULAR + offset]:
            raise ValueError(f"{content!r} encodes to {ids}, expected [{N_REGULAR + offset}]")
        if (content in tokenizer.all_special_tokens) != special:
            raise ValueError(f"{content!r}: special should be {special}")
    if len(tokenizer) != N_REGULAR + len(ADDED_TOKENS):
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens")
    if (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) != (
        EOS_TOKEN,
        PAD_TOKEN,
        None,
    ):
        raise ValueError("eos / pad / bos tokens are not <|im_end|> / <|endoftext|> / none")
    ids = tokenizer("Hello world")["input_ids"]
    if ids != list(HELLO_WORLD_IDS):
        raise ValueError(f"'Hello world' encodes to {ids}, expected {list(HELLO_WORLD_IDS)}")


def check_chat_template(tokenizer: Any) -> None:
    """Raise unless every :data:`TEMPLATE_CASES` conversation renders exactly as expected."""
    for messages, kwargs, expected in TEMPLATE_CASES:
        text = tokenizer.apply_chat_template(list(messages), tokenize=False, **kwargs)
        if text != expected:
            raise ValueError(f"chat template rendered {text!r}, expected {expected!r}")


def convert(members: Mapping[str, Path], out_dir: Path) -> dict[str, Any]:
    """Asset converter: write the Qwen3 tokenizer folder and verify it (see module doc)."""
    from transformers import AutoTokenizer

    write_folder(members[VOCAB_MEMBER], out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
    pairs = read_test_pairs(members[TEST_INPUT_MEMBER], members[TEST_OUTPUT_MEMBER])
    checked = check_test_pairs(tokenizer, pairs)
    check_special_tokens(tokenizer)
    check_chat_template(tokenizer)
    return {"llama_cpp_test_pairs": checked, "vocab_size": len(tokenizer)}
