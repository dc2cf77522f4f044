"""A byte-level BPE tokenizer trimmed to the tokens a corpus uses (for small generators).

A model trained from scratch over Qwen3's 151,643-token vocabulary spends almost all its
parameters on rows it never sees (39M of a 44M-parameter tiny Qwen3; 79 MB in fp16 at width
256). :func:`trim_tokenizer` keeps:

* the 256 byte tokens of the byte-level alphabet, so *any* text still tokenizes;
* every token the corpus's tokenization uses, and every token a kept token is merged from
  (so each kept token can still be built by the merges);
* the merges whose result is kept, in their original order (their ranks);
* the tokenizer's added (special) tokens.

Ids are renumbered densely in the original order. The trimmed tokenizer encodes every corpus
text to exactly the original tokens (a test checks it through :attr:`TrimmedTokenizer.
original_ids`), and unseen words fall apart into smaller kept pieces, down to bytes: prompts
the model was never trained on still tokenize.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["TrimmedTokenizer", "trim_tokenizer"]


@dataclass
class TrimmedTokenizer:
    """The trimmed tokenizer and ``original_ids[i]``, the original id of new id ``i``."""

    tokenizer: PreTrainedTokenizerFast
    original_ids: list[int]


def _merge_pair(merge: str | list[str]) -> tuple[str, str]:
    if isinstance(merge, str):
        left, right = merge.split(" ", 1)
        return left, right
    return merge[0], merge[1]


def trim_tokenizer(tokenizer: PreTrainedTokenizerFast, texts: Iterable[str]) -> TrimmedTokenizer:
    """Trim a byte-level BPE ``tokenizer`` to the tokens of ``texts`` (see the module docstring).

    Raises:
        ValueError: the tokenizer is not a byte-level BPE one.
    """
    from tokenizers import Tokenizer, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    data = json.loads(tokenizer.backend_tokenizer.to_str())
    model = data["model"]
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise ValueError("trim_tokenizer needs a byte-level BPE tokenizer")
    vocab: dict[str, int] = model["vocab"]
    merges = [_merge_pair(m) for m in model["merges"]]
    made_of = {}
    for left, right in merges:
        made_of.setdefault(left + right, (left, right))  # the first (highest-rank) merge

    id_to_token = {i: t for t, i in vocab.items()}
    keep = {t for t in pre_tokenizers.ByteLevel.alphabet() if t in vocab}
    specials = {a["id"] for a in data["added_tokens"]}
    corpus = list(texts)
    if not corpus:
        raise ValueError("trim_tokenizer needs at least one text to keep the tokens of")
    encoded = tokenizer(corpus, add_special_tokens=False)["input_ids"]
    stack = [id_to_token[i] for ids in encoded for i in ids if i not in specials]
    while stack:
        token = stack.pop()
        if token in keep:
            continue
        keep.add(token)
        if token in made_of:
            stack.extend(made_of[token])

    kept = sorted(keep, key=vocab.__getitem__)
    new_vocab = {token: i for i, token in enumerate(kept)}
    original = [vocab[t] for t in kept]
    model["vocab"] = new_vocab
    model["merges"] = [[a, b] for a, b in merges if a + b in keep and a in keep and b in keep]
    for offset, added in enumerate(sorted(data["added_tokens"], key=lambda a: a["id"])):
        original.append(added["id"])
        added["id"] = len(kept) + offset
    backend = Tokenizer.from_str(json.dumps(data))
    special_map = {
        key: value
        for key, value in tokenizer.special_tokens_map.items()
        if key in ("bos_token", "eos_token", "pad_token", "unk_token") and isinstance(value, str)
    }
    trimmed = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        chat_template=getattr(tokenizer, "chat_template", None),
        **special_map,
    )
    return TrimmedTokenizer(trimmed, original)
