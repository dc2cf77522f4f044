"""The visual vocabulary: a language model and its tokenizer expanded by K visual codes.

:func:`expand_vocabulary` adds to a tokenizer, in this order, right after its last id
(``text_vocab_size = len(tokenizer)``):

* three special tokens: ``<|begin_of_image|>`` and ``<|end_of_image|>`` (they frame an
  image's codes in a generation sequence) and ``<|image|>`` (the placeholder where the
  understanding path splices image features);
* K code tokens ``<|visual_00000|>`` ... ``<|visual_{K-1}|>`` (zero-padded to five digits, or
  to the width of ``K - 1`` when that is longer), whose ids are contiguous, so that code ``i``
  is token ``code_offset + i`` and a head restricted to the visual slice is a slice of rows.

All of them are *special* added tokens: never split by the tokenizer, dropped by
``decode(..., skip_special_tokens=True)``. :class:`VisualVocab` is the one map between code
indices and token ids; it is saved as ``visual_vocab.json`` beside the model and tokenizer.

The embedding table grows to ``code_offset + K`` rows, rounded up to a multiple of 64 (tensor
cores) and never shrunk. A model whose table was already larger than its tokenizer (Qwen3:
151,936 rows for 151,669 tokens) reuses its never-emitted padding rows first. Every row from
``text_vocab_size`` on is initialised here; the rows of real text tokens are never touched, so
text-only inputs give the same logits over the text vocabulary, bit for bit.

Initialisation (``init``):

* ``"mean"``: the rule of transformers' ``resize_token_embeddings(mean_resizing=True)``: draw
  from a normal with the text rows' mean and ``1e-9`` times their covariance (the mean alone
  when that covariance is not positive definite), which keeps the softmax over text tokens
  nearly where it was (Hewitt, "Initializing new word embeddings", 2021).
* ``"codebook"``: the code rows carry the geometry of the tokenizer's projected codebook
  ``W(C)`` (k, e). The centred codes are expressed on their top ``r = min(h, e, k)`` principal
  axes (the least-squares best rank-``r`` linear map), those axes are laid on the top ``r``
  principal axes of the text rows, and one scalar scale gives them the text rows' RMS
  distance from their mean; the text rows' mean is added back. Distances between codes are
  thus kept up to one factor (exactly when ``e <= h``), and the new rows sit where text rows
  live. The special tokens and any padding rows get the ``"mean"`` rule.

A tied head stays tied (one tensor); an untied ``lm_head`` grows with the embedding and gets
the same rule computed from its own rows. Expand before wrapping the model for DeepSpeed.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from vqrae.utils.files import atomic_write

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "BOI_TOKEN",
    "EMBEDDING_PAD_MULTIPLE",
    "EOI_TOKEN",
    "IMAGE_TOKEN",
    "VISUAL_VOCAB_FILE",
    "EmbeddingInit",
    "VisualVocab",
    "codebook_rows",
    "expand_vocabulary",
    "load_expanded_lm",
    "mean_rows",
    "save_expanded_lm",
]

BOI_TOKEN = "<|begin_of_image|>"
EOI_TOKEN = "<|end_of_image|>"
IMAGE_TOKEN = "<|image|>"
VISUAL_VOCAB_FILE = "visual_vocab.json"
EMBEDDING_PAD_MULTIPLE = 64
MEAN_INIT_COVARIANCE_SCALE = 1e-9  # transformers' mean_resizing epsilon
_MIN_CODE_DIGITS = 5
_FORMAT = 1

EmbeddingInit = Literal["mean", "codebook"]


def _code_width(num_codes: int) -> int:
    """Digits of a code token's index: five, or more when ``num_codes - 1`` needs them."""
    return max(_MIN_CODE_DIGITS, len(str(num_codes - 1)))


@dataclass(frozen=True)
class VisualVocab:
    """The one map between visual code indices and token ids of an expanded language model.

    Attributes:
        num_codes: K, the number of visual codes (the tokenizer's codebook size).
        code_offset: token id of code 0; code ``i`` is token ``code_offset + i``.
        boi_id: id of :data:`BOI_TOKEN` (begin of image).
        eoi_id: id of :data:`EOI_TOKEN` (end of image).
        image_token_id: id of :data:`IMAGE_TOKEN` (understanding's image placeholder).
        text_vocab_size: the tokenizer's length before expansion: ids below it are text.
    """

    num_codes: int
    code_offset: int
    boi_id: int
    eoi_id: int
    image_token_id: int
    text_vocab_size: int

    def __post_init__(self) -> None:
        if self.num_codes < 1:
            raise ValueError(f"num_codes must be >= 1, got {self.num_codes}")
        if self.text_vocab_size < 1:
            raise ValueError(f"text_vocab_size must be >= 1, got {self.text_vocab_size}")
        specials = {"boi_id": self.boi_id, "eoi_id": self.eoi_id}
        specials["image_token_id"] = self.image_token_id
        if len(set(specials.values())) != len(specials):
            raise ValueError(f"special token ids must differ, got {specials}")
        for name, value in {**specials, "code_offset": self.code_offset}.items():
            if value < self.text_vocab_size:
                raise ValueError(
                    f"{name} ({value}) must be >= text_vocab_size ({self.text_vocab_size}): "
                    "visual ids come after the text vocabulary"
                )
        inside = [n for n, v in specials.items() if self.code_offset <= v < self.code_end]
        if inside:
            raise ValueError(f"{inside} fall inside the code range {self.code_slice}")

    # ------------------------------------------------------------------ layout
    @property
    def code_end(self) -> int:
        """One past the id of the last code."""
        return self.code_offset + self.num_codes

    @property
    def code_slice(self) -> slice:
        """The code ids as a slice: ``logits[..., vocab.code_slice]`` is the visual head."""
        return slice(self.code_offset, self.code_end)

    @property
    def tokenizer_length(self) -> int:
        """The expanded tokenizer's length: one past the largest id this map knows (the model
        may hold more embedding rows, padding that no token uses)."""
        return max(self.code_end, self.boi_id + 1, self.eoi_id + 1, self.image_token_id + 1)

    @property
    def special_tokens(self) -> dict[str, int]:
        """The special tokens and their ids."""
        return {BOI_TOKEN: self.boi_id, EOI_TOKEN: self.eoi_id, IMAGE_TOKEN: self.image_token_id}

    def code_token(self, index: int) -> str:
        """The token string of code ``index``, e.g. ``<|visual_00042|>``."""
        if not 0 <= index < self.num_codes:
            raise ValueError(f"code index {index} outside [0, {self.num_codes})")
        return f"<|visual_{index:0{_code_width(self.num_codes)}d}|>"

    def code_tokens(self) -> list[str]:
        """All K code token strings, in code order."""
        width = _code_width(self.num_codes)
        return [f"<|visual_{i:0{width}d}|>" for i in range(self.num_codes)]

    # ------------------------------------------------------------------ the map
    def codes_to_ids(self, codes: torch.Tensor | Sequence[int] | int) -> torch.Tensor:
        """Code indices (any shape) -> token ids (same shape, int64).

        Raises:
            ValueError: an index outside ``[0, num_codes)``.
        """
        codes = torch.as_tensor(codes)
        if codes.is_floating_point() or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
        codes = codes.long()
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise ValueError(
                f"code indices must lie in [0, {self.num_codes}), got range "
                f"[{int(codes.min())}, {int(codes.max())}]"
            )
        return codes + self.code_offset

    def is_visual(self, ids: torch.Tensor | Sequence[int] | int) -> torch.Tensor:
        """Boolean mask (same shape as ``ids``): which ids are code tokens."""
        ids = torch.as_tensor(ids)
        return (ids >= self.code_offset) & (ids < self.code_end)

    def ids_to_codes(self, ids: torch.Tensor | Sequence[int] | int) -> torch.Tensor:
        """Token ids (any shape) -> code indices (same shape, int64); exact inverse of
        :meth:`codes_to_ids`.

        Raises:
            ValueError: an id that is not a code token (text, begin/end of image, padding).
        """
        ids = torch.as_tensor(ids).long()
        visual = self.is_visual(ids)
        if not bool(visual.all()):
            bad = ids[~visual].unique()[:8].tolist()
            raise ValueError(f"ids {bad} are not visual code tokens (codes are {self.code_slice})")
        return ids - self.code_offset

    def image_sequence(self, codes: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """An image's codes as the token ids of a generation sequence.

        ``codes`` (..., N) in raster order -> (..., N + 2): begin-of-image, the N code ids,
        end-of-image.
        """
        ids = self.codes_to_ids(codes)  # (..., N)
        if ids.dim() == 0:
            raise ValueError("image_sequence needs at least one dimension of codes")
        boi = ids.new_full((*ids.shape[:-1], 1), self.boi_id)
        eoi = ids.new_full((*ids.shape[:-1], 1), self.eoi_id)
        return torch.cat([boi, ids, eoi], dim=-1)  # (..., N + 2)

    # ------------------------------------------------------------------ tokenizer
    def check_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Raise ``ValueError`` unless ``tokenizer`` maps every visual token to this map's id."""
        want = dict(self.special_tokens)
        want[self.code_token(0)] = self.code_offset
        want[self.code_token(self.num_codes - 1)] = self.code_end - 1
        got = dict(zip(want, tokenizer.convert_tokens_to_ids(list(want)), strict=True))
        if got != want:
            raise ValueError(f"tokenizer does not match the visual vocabulary: {got} != {want}")
        codes = tokenizer.convert_tokens_to_ids(self.code_tokens())
        if codes != list(range(self.code_offset, self.code_end)):
            raise ValueError("tokenizer's code token ids are not contiguous from code_offset")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the fields, the format version, and the token strings (for readers)."""
        return {
            "format": _FORMAT,
            **asdict(self),
            "tokens": {
                "boi": BOI_TOKEN,
                "eoi": EOI_TOKEN,
                "image": IMAGE_TOKEN,
                "first_code": self.code_token(0),
                "last_code": self.code_token(self.num_codes - 1),
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VisualVocab:
        """Inverse of :meth:`to_dict`; unknown formats and missing fields are errors."""
        if data.get("format") != _FORMAT:
            raise ValueError(f"unknown visual vocabulary format {data.get('format')!r}")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"visual vocabulary lacks {missing}")
        return cls(**{n: int(data[n]) for n in names})

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``visual_vocab.json`` into ``directory`` (created if needed); return its path."""
        path = Path(directory) / VISUAL_VOCAB_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        atomic_write(path, lambda tmp: tmp.write_text(text))
        return path

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike[str],
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> VisualVocab:
        """Read ``visual_vocab.json`` from ``directory``; check ``tokenizer`` against it if given.

        Raises:
            FileNotFoundError: the folder holds no visual vocabulary (a plain text model).
        """
        path = Path(directory) / VISUAL_VOCAB_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {directory} is not an expanded model")
        vocab = cls.from_dict(json.loads(path.read_text()))
        if tokenizer is not None:
            vocab.check_tokenizer(tokenizer)
        return vocab


# ----------------------------------------------------------------------------- row init


@dataclass(frozen=True)
class _RowStats:
    """Mean (h,) and covariance (h, h) of a matrix's rows, float64."""

    mean: torch.Tensor
    cov: torch.Tensor


def _row_stats(rows: torch.Tensor) -> _RowStats:
    """Statistics of ``rows`` (n, h): the product in float32 on the rows' device, the result in
    float64 on the CPU (where the seeded draws and eigen-decompositions run)."""
    x = rows.detach().float()  # (n, h)
    mean = x.mean(dim=0)  # (h,)
    centred = x - mean
    cov = centred.T @ centred / x.shape[0]  # (h, h), normalised by n as transformers does
    return _RowStats(mean.double().cpu(), cov.double().cpu())


def mean_rows(
    old_rows: torch.Tensor, num_new: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """New rows by transformers' mean-resizing rule, from the existing ``old_rows`` (n, h).

    Returns (num_new, h) float64 rows drawn from ``N(mean, 1e-9 * cov)`` of ``old_rows`` (the
    mean repeated when the scaled covariance is not positive definite).
    """
    return _mean_rows(_row_stats(old_rows), num_new, generator)


def _mean_rows(stats: _RowStats, num_new: int, generator: torch.Generator | None) -> torch.Tensor:
    mean = stats.mean
    chol, info = torch.linalg.cholesky_ex(MEAN_INIT_COVARIANCE_SCALE * stats.cov)
    if int(info) != 0:  # not positive definite: the mean alone, as transformers does
        return mean.expand(num_new, -1).clone()
    noise = torch.randn(num_new, mean.shape[0], generator=generator, dtype=torch.float64)
    return mean + noise @ chol.T  # (num_new, h)


def codebook_rows(old_rows: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Rows for K codes carrying the geometry of ``codebook`` (K, e), placed among ``old_rows``.

    See the module docstring (``"codebook"``). Returns (K, h) float64 rows whose RMS distance
    from the old rows' mean equals the old rows' own.
    """
    return _codebook_rows(_row_stats(old_rows), codebook)


def _top_axes(cov: torch.Tensor, r: int) -> torch.Tensor:
    """The ``r`` principal axes of a covariance (h, h), largest variance first: (h, r)."""
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    return vecs[:, -r:].flip(-1)


def _codebook_rows(stats: _RowStats, codebook: torch.Tensor) -> torch.Tensor:
    if codebook.dim() != 2:
        raise ValueError(f"codebook must be (K, e), got shape {tuple(codebook.shape)}")
    codes = codebook.detach().double().cpu()  # (K, e)
    centred = codes - codes.mean(dim=0)
    hidden = stats.mean.shape[0]
    r = min(hidden, codes.shape[1], codes.shape[0])
    code_axes = _top_axes(centred.T @ centred, r)  # (e, r)
    coords = centred @ code_axes  # (K, r): the codes on their principal axes
    mapped = coords @ _top_axes(stats.cov, r).T  # (K, h): laid on the text rows' axes
    rms = mapped.pow(2).sum(dim=1).mean().sqrt()
    if not bool(rms > 0):
        raise ValueError("codebook rows are all equal: nothing to map")
    scale = stats.cov.trace().clamp_min(0).sqrt() / rms  # match the text rows' RMS spread
    return stats.mean + scale * mapped  # (K, h)


def _init_rows(
    weight: torch.Tensor,
    vocab: VisualVocab,
    init: EmbeddingInit,
    codebook: torch.Tensor | None,
    generator: torch.Generator,
) -> None:
    """Overwrite rows ``[text_vocab_size, rows)`` of ``weight`` (rows, h) in place."""
    start, rows = vocab.text_vocab_size, weight.shape[0]
    stats = _row_stats(weight[:start])
    new = _mean_rows(stats, rows - start, generator)  # (rows - start, h)
    if init == "codebook":
        assert codebook is not None
        lo, hi = vocab.code_offset - start, vocab.code_end - start
        new[lo:hi] = _codebook_rows(stats, codebook)
    with torch.no_grad():
        weight[start:] = new.to(dtype=weight.dtype, device=weight.device)


# ----------------------------------------------------------------------------- expansion


def _round_up(value: int, multiple: int | None) -> int:
    return value if not multiple else multiple * math.ceil(value / multiple)


def _add_special_tokens(tokenizer: PreTrainedTokenizerBase, tokens: list[str], first: int) -> None:
    """Add ``tokens`` as special added tokens and check they got ids ``first, first + 1, ...``."""
    from transformers import AddedToken

    added = tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in tokens], special_tokens=True
    )
    ids = tokenizer.convert_tokens_to_ids(tokens)
    if added != len(tokens) or ids != list(range(first, first + len(tokens))):
        raise ValueError(
            f"the tokenizer gave the new tokens ids {ids[:3]}...{ids[-1:]} (added {added}), "
            f"not the contiguous range from {first}: its vocabulary has holes"
        )


def expand_vocabulary(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    num_codes: int,
    *,
    init: EmbeddingInit = "mean",
    codebook: torch.Tensor | None = None,
    seed: int = 0,
    pad_to_multiple_of: int | None = EMBEDDING_PAD_MULTIPLE,
) -> VisualVocab:
    """Expand ``model`` and ``tokenizer`` in place by ``num_codes`` visual codes.

    Args:
        model: a Hugging Face causal LM (tied or untied head).
        tokenizer: its tokenizer; gains the special and code tokens (see the module docstring).
        num_codes: K, the visual tokenizer's codebook size.
        init: ``"mean"`` or ``"codebook"`` (see the module docstring).
        codebook: the projected codebook ``W(C)`` (K, e), needed for ``init="codebook"``,
            e.g. ``vqrae_model.quantizer.projected_codebook()[0]``.
        seed: seeds the draws of the mean rule.
        pad_to_multiple_of: the grown embedding table's row count is rounded up to this.

    Returns:
        the :class:`VisualVocab` of the expanded pair.

    Raises:
        ValueError: the tokenizer is already expanded, the model has fewer rows than the
            tokenizer has tokens, a bad ``init``/``codebook``, or the tokenizer's new ids are
            not contiguous.
    """
    if num_codes < 1:
        raise ValueError(f"num_codes must be >= 1, got {num_codes}")
    if init not in ("mean", "codebook"):
        raise ValueError(f"init must be 'mean' or 'codebook', got {init!r}")
    if init == "codebook":
        if codebook is None:
            raise ValueError("init='codebook' needs the projected codebook W(C) (K, e)")
        if codebook.dim() != 2 or codebook.shape[0] != num_codes:
            raise ValueError(
                f"codebook must be ({num_codes}, e) for {num_codes} codes, "
                f"got {tuple(codebook.shape)}"
            )
    if BOI_TOKEN in tokenizer.get_vocab():
        raise ValueError(f"tokenizer already holds {BOI_TOKEN}: it is expanded already")
    embeddings = model.get_input_embeddings()
    old_rows = embeddings.weight.shape[0]
    text_vocab_size = len(tokenizer)
    if old_rows < text_vocab_size:
        raise ValueError(
            f"the model has {old_rows} embedding rows for a tokenizer of {text_vocab_size} tokens"
        )

    specials = [BOI_TOKEN, EOI_TOKEN, IMAGE_TOKEN]
    vocab = VisualVocab(
        num_codes=num_codes,
        code_offset=text_vocab_size + len(specials),
        boi_id=text_vocab_size,
        eoi_id=text_vocab_size + 1,
        image_token_id=text_vocab_size + 2,
        text_vocab_size=text_vocab_size,
    )
    _add_special_tokens(tokenizer, specials, vocab.boi_id)
    _add_special_tokens(tokenizer, vocab.code_tokens(), vocab.code_offset)

    rows = max(old_rows, _round_up(vocab.code_end, pad_to_multiple_of))
    if rows != old_rows:
        model.resize_token_embeddings(rows, mean_resizing=False)  # rows past old_rows: ours
    generator = torch.Generator().manual_seed(seed)
    input_weight = model.get_input_embeddings().weight
    _init_rows(input_weight, vocab, init, codebook, generator)
    head = model.get_output_embeddings()
    if head is not None and head.weight is not input_weight:  # untied: grows consistently
        _init_rows(head.weight, vocab, init, codebook, generator)
        bias = getattr(head, "bias", None)
        if bias is not None:
            with torch.no_grad():
                bias[vocab.text_vocab_size :] = bias[: vocab.text_vocab_size].float().mean()
    return vocab


# ----------------------------------------------------------------------------- folders


def save_expanded_lm(
    directory: str | os.PathLike[str],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    vocab: VisualVocab,
) -> Path:
    """Save an expanded model as a standard Hugging Face folder plus ``visual_vocab.json``.

    The folder loads with ``AutoModelForCausalLM`` / ``AutoTokenizer`` as is, and with
    :func:`load_expanded_lm` together with its map.
    """
    vocab.check_tokenizer(tokenizer)
    out = Path(directory)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    vocab.save_pretrained(out)
    return out


def load_expanded_lm(
    directory: str | os.PathLike[str], **kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, VisualVocab]:
    """Load a folder written by :func:`save_expanded_lm`: ``(model, tokenizer, vocab)``.

    Keyword arguments go to :func:`vqrae.llm.loading.load_causal_lm` (device, precision, attn).
    """
    from vqrae.llm.loading import load_causal_lm

    model, tokenizer = load_causal_lm(Path(directory), **kwargs)
    vocab = VisualVocab.from_pretrained(directory, tokenizer)
    if model.get_input_embeddings().weight.shape[0] < vocab.tokenizer_length:
        raise ValueError(f"{directory}: the model has fewer embedding rows than its vocabulary")
    return model, tokenizer, vocab
