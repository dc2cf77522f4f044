"""The language-model layer both paths share (text-to-image and understanding).

* :mod:`vqrae.llm.loading`: load any Hugging Face causal LM and tokenizer by catalogue name,
  Hub id or folder, under one precision/attention policy;
* :mod:`vqrae.llm.vocab`: the visual vocabulary (codes <-> token ids, special tokens,
  embedding initialisation), saved beside the model;
* :mod:`vqrae.llm.chat`: chat-template prompts and assistant-only label masks;
* :mod:`vqrae.llm.sampling`: left-padded prompt batches and the top-k / top-p filter;
* :mod:`vqrae.llm.testing` (imported on its own): tiny random models, the real offline ones,
  Qwen3-0.6B on the meta device.
"""

from vqrae.llm.chat import (
    IGNORE_INDEX,
    Message,
    TokenizedChat,
    encode_prompt,
    render_chat,
    tokenize_chat,
    tokenize_plain,
    truncate,
)
from vqrae.llm.loading import (
    Attention,
    LMPolicy,
    LMPrecision,
    causal_lm_from_config,
    list_language_models,
    lm_policy,
    load_causal_lm,
    load_tokenizer,
    resolve_lm_path,
)
from vqrae.llm.sampling import filter_logits, left_pad
from vqrae.llm.vocab import (
    BOI_TOKEN,
    EOI_TOKEN,
    IMAGE_TOKEN,
    VISUAL_VOCAB_FILE,
    EmbeddingInit,
    VisualVocab,
    codebook_rows,
    expand_vocabulary,
    load_expanded_lm,
    mean_rows,
    save_expanded_lm,
)

__all__ = [
    "BOI_TOKEN",
    "EOI_TOKEN",
    "IGNORE_INDEX",
    "IMAGE_TOKEN",
    "VISUAL_VOCAB_FILE",
    "Attention",
    "EmbeddingInit",
    "LMPolicy",
    "LMPrecision",
    "Message",
    "TokenizedChat",
    "VisualVocab",
    "causal_lm_from_config",
    "codebook_rows",
    "encode_prompt",
    "expand_vocabulary",
    "filter_logits",
    "list_language_models",
    "left_pad",
    "lm_policy",
    "load_causal_lm",
    "load_expanded_lm",
    "load_tokenizer",
    "mean_rows",
    "render_chat",
    "resolve_lm_path",
    "save_expanded_lm",
    "tokenize_chat",
    "tokenize_plain",
    "truncate",
]
