"""Training samples: conversations tokenized and labelled, image features beside them, batches.

:class:`ConversationDataset` turns a :class:`~vqrae.mllm.conversations.Conversation` into an
:class:`Example`: token ids and labels from :func:`vqrae.mllm.prompts.tokenize_conversation`
(the loss on the assistant's tokens only) and the image's features, read from a
:class:`~vqrae.mllm.feature_cache.FeatureCache` or, without one, the preprocessed image for the
trainer to encode. :func:`check_samples` tokenizes every conversation once before training, so a
template that does not line up with the data stops the run at once, naming the sample (LLaVA
drops such samples silently as a "tokenization mismatch"), and reports how many were truncated.

:class:`StepBatches` decides which samples form the global batch of a step: sample ``g`` of the
run (``g = step * batch_size + j``) is position ``g mod n`` of epoch ``g // n``'s permutation,
a function of the seed alone. The batch is then split over processes and micro-batches, so any
world size sees the same global batches, and a resumed run the same order.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from vqrae.data.images import ImageReadError
from vqrae.llm import IGNORE_INDEX
from vqrae.mllm.conversations import Conversation
from vqrae.mllm.feature_cache import FeatureCache
from vqrae.mllm.prompts import Template, TokenizedSample, tokenize_conversation
from vqrae.mllm.vision import VisionFeatures

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from vqrae.mllm.config import MLLMConfig

__all__ = [
    "Batch",
    "ConversationDataset",
    "Example",
    "SampleCheck",
    "StepBatches",
    "check_samples",
    "collate",
]

log = logging.getLogger(__name__)


@dataclass
class Example:
    """One training sample.

    Attributes:
        input_ids, labels: (T,) as :class:`~vqrae.mllm.prompts.TokenizedSample` holds them.
        features: (N, d) float32 image features (from the cache), or ``None``.
        image: (3, S, S) preprocessed image (no cache), or ``None``.
        has_image: whether the sample carries an image.
    """

    input_ids: list[int]
    labels: list[int]
    features: torch.Tensor | None = None
    image: torch.Tensor | None = None
    has_image: bool = False


@dataclass
class Batch:
    """A right-padded micro-batch.

    Attributes:
        input_ids: (B, T) padded with the pad id.
        attention_mask: (B, T) 1 on tokens, 0 on padding.
        labels: (B, T) ``IGNORE_INDEX`` on padding.
        features: (B, N, d) (zeros for rows without an image), or ``None``.
        images: (B, 3, S, S) (zeros for rows without an image), or ``None``.
        num_targets: labelled positions (excluding the first position, which no logit
            predicts).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor | None
    images: torch.Tensor | None
    num_targets: int

    def to(self, device: torch.device) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return t.to(device, non_blocking=True) if t is not None else None

        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.labels.to(device),
            move(self.features),
            move(self.images),
            self.num_targets,
        )


class ConversationDataset(Dataset):
    """Conversations as :class:`Example` s (see the module docstring).

    Args:
        conversations: the training conversations (text-only ones allowed).
        tokenizer: the expanded LM tokenizer.
        config: the model's configuration (system prompt, template variables).
        template: ``"plain"`` (stage 1) or ``"chat"``.
        image_token_id, num_image_tokens: the placeholder and its count per image.
        max_length: truncate longer samples (their image must fit).
        cache: image features (when the encoder's output is cached), else ``None``.
        vision: reads images when there is no cache.
    """

    def __init__(
        self,
        conversations: Sequence[Conversation],
        tokenizer: PreTrainedTokenizerBase,
        config: MLLMConfig,
        *,
        template: Template,
        image_token_id: int,
        num_image_tokens: int,
        max_length: int | None = None,
        cache: FeatureCache | None = None,
        vision: VisionFeatures | None = None,
    ) -> None:
        if cache is None and vision is None:
            raise ValueError("give a feature cache or the vision features to read images with")
        self.conversations = list(conversations)
        self.tokenizer = tokenizer
        self.config = config
        self.template: Template = template
        self.image_token_id = image_token_id
        self.num_image_tokens = num_image_tokens
        self.max_length = max_length
        self.cache = cache
        self.vision = vision

    def __len__(self) -> int:
        return len(self.conversations)

    def tokenize(self, index: int) -> TokenizedSample:
        """The tokenized sample of conversation ``index``.

        Raises:
            ValueError: naming the conversation, when its turns do not line up with the
                template.
        """
        conv = self.conversations[index]
        try:
            return tokenize_conversation(
                self.tokenizer,
                self.config,
                conv.messages,
                has_image=conv.has_image,
                image_token_id=self.image_token_id,
                num_image_tokens=self.num_image_tokens,
                template=self.template,
                max_length=self.max_length,
            )
        except ValueError as exc:
            raise ValueError(f"sample {conv.id!r} of {conv.source or 'the data'}: {exc}") from None

    def __getitem__(self, index: int) -> Example:
        conv = self.conversations[index]
        sample = self.tokenize(index)
        example = Example(sample.input_ids, sample.labels, has_image=conv.has_image)
        if conv.image is not None:
            if self.cache is not None:
                example.features = self.cache[conv.image].float()
            else:
                assert self.vision is not None
                try:
                    example.image = self.vision.load(conv.image)
                except ImageReadError as exc:  # an image that vanished since the check
                    raise ValueError(f"sample {conv.id!r}: {exc}") from None
        return example


@dataclass
class SampleCheck:
    """What :func:`check_samples` found."""

    count: int = 0
    truncated: int = 0
    without_targets: int = 0
    lengths: list[int] = field(default_factory=list)
    by_source: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        lengths = np.asarray(self.lengths) if self.lengths else np.zeros(1)
        return (
            f"{self.count} sample(s) ({', '.join(f'{n} {s}' for s, n in self.by_source.items())}); "
            f"tokens median {int(np.median(lengths))}, max {int(lengths.max())}; "
            f"{self.truncated} truncated, {self.without_targets} without targets"
        )


def check_samples(dataset: ConversationDataset) -> SampleCheck:
    """Tokenize every sample once: raises on the first that does not line up (naming it)."""
    check = SampleCheck()
    for index in range(len(dataset)):
        sample = dataset.tokenize(index)
        check.count += 1
        check.truncated += int(sample.truncated)
        check.without_targets += int(sample.num_targets == 0)
        check.lengths.append(len(sample))
        check.by_source[dataset.conversations[index].source] += 1
    return check


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    """Right-pad a micro-batch (see :class:`Batch`)."""
    length = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1

    def stack(values: list[torch.Tensor | None]) -> torch.Tensor | None:
        present = [v for v in values if v is not None]
        if not present:
            return None
        zero = torch.zeros_like(present[0])
        return torch.stack([v if v is not None else zero for v in values])

    features = stack([e.features for e in examples])
    images = stack([e.image for e in examples])
    targets = int((labels[:, 1:] != IGNORE_INDEX).sum())
    return Batch(ids, mask, labels, features, images, targets)


class StepBatches:
    """The samples of each step's global batch (see the module docstring).

    Args:
        num_samples: the data set's length n.
        batch_size: the global batch (every process, every micro-batch).
        seed: the permutations' seed.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int) -> None:
        if num_samples < 1 or batch_size < 1:
            raise ValueError("num_samples and batch_size must be >= 1")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self._perms: dict[int, np.ndarray] = {}

    def steps_for(self, epochs: float) -> int:
        """Optimizer steps that cover ``epochs`` passes (the last batch may wrap around)."""
        return max(1, int(np.ceil(epochs * self.num_samples / self.batch_size)))

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            rng = np.random.default_rng([self.seed, epoch])
            self._perms = {epoch: rng.permutation(self.num_samples)}
        return self._perms[epoch]

    def global_batch(self, step: int) -> list[int]:
        """Dataset indices of step ``step``'s global batch."""
        out = []
        for g in range(step * self.batch_size, (step + 1) * self.batch_size):
            out.append(int(self._perm(g // self.num_samples)[g % self.num_samples]))
        return out

    def micro_batches(
        self, step: int, rank: int, world_size: int, micro_batch_size: int
    ) -> list[list[int]]:
        """This process's share of the step's batch, cut into micro-batches.

        Raises:
            ValueError: the batch does not split evenly into ``world_size`` x micro-batches.
        """
        if self.batch_size % (world_size * micro_batch_size):
            raise ValueError(
                f"batch_size {self.batch_size} is not a multiple of world size {world_size} x "
                f"micro_batch_size {micro_batch_size}"
            )
        share = self.batch_size // world_size
        local = self.global_batch(step)[rank * share : (rank + 1) * share]
        return [local[i : i + micro_batch_size] for i in range(0, share, micro_batch_size)]

    def iter_micro_batches(
        self, start: int, stop: int, rank: int, world_size: int, micro_batch_size: int
    ) -> Iterator[list[int]]:
        """Every micro-batch of steps ``start .. stop - 1``, in order (a DataLoader's
        ``batch_sampler``)."""
        for step in range(start, stop):
            yield from self.micro_batches(step, rank, world_size, micro_batch_size)
