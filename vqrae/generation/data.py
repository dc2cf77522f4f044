"""Code data sets for text-to-image training: Hugging Face ``datasets`` shards of (prompts, codes).

A code data set is a folder::

    dataset.json        manifest: the VQRAE tokenizer (name or folder) and its fingerprint, the
                        code grid and image size, the source, the row count, the shard list
    shards/00000/ ...   ``datasets.Dataset.save_to_disk`` folders, each a slice of the rows

Each row holds ``id`` (the item's name), ``prompts`` (one or more captions of the image: the
shapes world writes one per phrasing, a captions file may give several), ``codes`` (H*W code
indices in raster order, int32) and ``grid`` ([H, W]). Shards are written one at a time, each
atomically (a hidden sibling renamed when complete), so an interrupted ``vqrae generation
prepare`` continues where it stopped.

For training, :class:`CodeDataset` reads rows through a :class:`~vqrae.data.training.
SampleRef`, whose seed picks the caption and decides the caption dropout of classifier-free
guidance (LlamaGen drops 10%), so the data of every step is a function of the step: a resumed
or differently-sized run sees exactly the same batches. :class:`TrainingCollator` tokenizes the
chosen captions and builds the left-padded batch.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

from vqrae.data.training import SampleRef
from vqrae.generation.sequences import TrainingBatch, encode_prompt, pad_token_id, training_batch
from vqrae.llm.vocab import VisualVocab
from vqrae.utils.files import atomic_write

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "MANIFEST_FILE",
    "CodeDataset",
    "CodeDatasetManifest",
    "CodeRow",
    "ShardWriter",
    "TrainingCollator",
    "TrainingSample",
    "load_code_dataset",
    "read_manifest",
]

MANIFEST_FILE = "dataset.json"
_FORMAT = 1


@dataclass
class CodeDatasetManifest:
    """What ``dataset.json`` records.

    Attributes:
        tokenizer: the VQRAE tokenizer the codes come from (catalogue name or folder).
        tokenizer_fingerprint: its :func:`~vqrae.generation.model.tokenizer_fingerprint`.
        grid: (H, W) codes per image.
        image_size: the square side the images were tokenized at.
        num_codes: K, the tokenizer's codebook size.
        source: how the rows were made (the command's arguments).
        num_rows: rows over all shards.
        items_consumed: source items read up to the last complete shard (rows and unreadable
            items): where a resumed ``prepare`` starts its source.
        shards: shard folders, relative to the data set folder, in row order.
    """

    tokenizer: str
    tokenizer_fingerprint: str
    grid: tuple[int, int]
    image_size: int
    num_codes: int
    source: dict[str, Any] = field(default_factory=dict)
    num_rows: int = 0
    items_consumed: int = 0
    shards: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, **asdict(self), "grid": list(self.grid)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodeDatasetManifest:
        data = dict(data)
        if data.pop("format", None) != _FORMAT:
            raise ValueError(f"unknown {MANIFEST_FILE} format")
        data["grid"] = tuple(data["grid"])
        return cls(**data)

    def save(self, folder: Path) -> None:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        atomic_write(folder / MANIFEST_FILE, lambda tmp: tmp.write_text(text))


def read_manifest(folder: str | os.PathLike[str]) -> CodeDatasetManifest:
    """The manifest of a code data set.

    Raises:
        FileNotFoundError: the folder holds no ``dataset.json``.
    """
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {folder} is not a code data set (make one with "
            "`vqrae generation prepare`)"
        )
    return CodeDatasetManifest.from_dict(json.loads(path.read_text()))


@dataclass(frozen=True)
class CodeRow:
    """One row: an item's name, its captions, and its codes (H*W,) on a (H, W) grid."""

    id: str
    prompts: list[str]
    codes: list[int]
    grid: tuple[int, int]


class ShardWriter:
    """Appends rows to a code data set, one ``save_to_disk`` shard per ``shard_size`` rows.

    Resumable: shards already listed in the manifest are kept, and the caller restarts its
    source after :attr:`items_consumed` items. Each :meth:`add` says how many source items
    have been read so far (its row's included), so unreadable items are accounted for.
    """

    def __init__(self, folder: Path, manifest: CodeDatasetManifest, shard_size: int) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.folder = folder
        self.shard_size = shard_size
        folder.mkdir(parents=True, exist_ok=True)
        existing = folder / MANIFEST_FILE
        if existing.is_file():
            old = read_manifest(folder)
            same = (old.tokenizer_fingerprint, old.grid, old.source)
            if same != (manifest.tokenizer_fingerprint, manifest.grid, manifest.source):
                raise ValueError(
                    f"{folder} holds a code data set made with other settings "
                    f"({old.source}, grid {old.grid}); choose another --out"
                )
            manifest = old
        self.manifest = manifest
        self._pending: list[CodeRow] = []
        self._consumed = manifest.items_consumed

    @property
    def done(self) -> int:
        """Rows already written in complete shards."""
        return self.manifest.num_rows

    @property
    def items_consumed(self) -> int:
        """Source items accounted for by complete shards."""
        return self.manifest.items_consumed

    def add(self, row: CodeRow, consumed: int) -> None:
        """Queue ``row``; ``consumed`` source items have been read, this row's included."""
        self._pending.append(row)
        self._consumed = consumed
        if len(self._pending) == self.shard_size:
            self.flush()

    def flush(self, consumed: int | None = None) -> None:
        """Write the pending rows as one shard and record it (and ``consumed``, at the end of
        the source) in the manifest."""
        if consumed is not None:
            self._consumed = consumed
        if not self._pending:
            self.manifest.items_consumed = self._consumed
            self.manifest.save(self.folder)
            return
        from datasets import Dataset, Features, Sequence, Value

        features = Features(
            {
                "id": Value("string"),
                "prompts": Sequence(Value("string")),
                "codes": Sequence(Value("int32")),
                "grid": Sequence(Value("int32"), length=2),
            }
        )
        rows = self._pending
        data = {
            "id": [r.id for r in rows],
            "prompts": [list(r.prompts) for r in rows],
            "codes": [list(r.codes) for r in rows],
            "grid": [list(r.grid) for r in rows],
        }
        name = f"shards/{len(self.manifest.shards):05d}"
        final = self.folder / name
        tmp = self.folder / "shards" / f".{final.name}.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        Dataset.from_dict(data, features=features).save_to_disk(str(tmp))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        self.manifest.shards.append(name)
        self.manifest.num_rows += len(rows)
        self.manifest.items_consumed = self._consumed
        self.manifest.save(self.folder)
        self._pending = []


def load_code_dataset(folder: str | os.PathLike[str]) -> Any:
    """All rows of a code data set as one memory-mapped ``datasets.Dataset``."""
    from datasets import concatenate_datasets, load_from_disk

    manifest = read_manifest(folder)
    if not manifest.shards:
        raise ValueError(f"{folder}: the code data set has no rows")
    parts = [load_from_disk(str(Path(folder) / s)) for s in manifest.shards]
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainingSample:
    """One training item: the chosen caption ("" when dropped) and the codes (N,)."""

    prompt: str
    codes: torch.Tensor


class CodeDataset(Dataset):
    """Rows of code data sets read by :class:`~vqrae.data.training.SampleRef`.

    The reference's seed chooses one of the row's captions and, with probability
    ``caption_dropout``, replaces it by the empty caption (the unconditional prompt of
    classifier-free guidance).

    Args:
        folders: one or more code data sets (their rows concatenated; same tokenizer and grid).
        caption_dropout: the probability of training a row unconditionally.
    """

    def __init__(self, folders: Sequence[str | os.PathLike[str]], caption_dropout: float = 0.1):
        if not folders:
            raise ValueError("data.train names no code data set")
        if not 0.0 <= caption_dropout < 1.0:
            raise ValueError(f"data.caption_dropout must lie in [0, 1), got {caption_dropout}")
        manifests = [read_manifest(f) for f in folders]
        first = manifests[0]
        for folder, m in zip(folders, manifests, strict=True):
            if (m.tokenizer_fingerprint, m.grid) != (first.tokenizer_fingerprint, first.grid):
                raise ValueError(
                    f"{folder}: codes of another tokenizer or grid than {folders[0]} "
                    f"({m.grid} vs {first.grid})"
                )
        self.manifest = first
        self.caption_dropout = caption_dropout
        tables = [load_code_dataset(f).select_columns(["prompts", "codes"]) for f in folders]
        self._tables = tables
        self._offsets = [0]
        for table in tables:
            self._offsets.append(self._offsets[-1] + len(table))

    def __len__(self) -> int:
        return self._offsets[-1]

    def captions(self) -> Iterator[str]:
        """Every caption of every row (a trimmed vocabulary is built from them)."""
        for table in self._tables:
            for prompts in table["prompts"]:
                yield from prompts

    def row(self, index: int) -> dict[str, Any]:
        """The raw row at ``index`` (``prompts``, ``codes``)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = next(i for i in range(len(self._tables)) if index < self._offsets[i + 1])
        return self._tables[part][index - self._offsets[part]]

    def __getitem__(self, ref: SampleRef) -> TrainingSample:
        row = self.row(ref.index)
        rng = random.Random(ref.aug_seed)
        prompt = row["prompts"][rng.randrange(len(row["prompts"]))] if row["prompts"] else ""
        if rng.random() < self.caption_dropout:
            prompt = ""
        return TrainingSample(prompt, torch.as_tensor(row["codes"], dtype=torch.long))


class TrainingCollator:
    """Samples -> a left-padded :class:`~vqrae.generation.sequences.TrainingBatch`."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, vocab: VisualVocab, max_prompt_tokens: int
    ) -> None:
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.max_prompt_tokens = max_prompt_tokens
        self.pad_id = pad_token_id(tokenizer)

    def __call__(self, samples: Iterable[TrainingSample]) -> TrainingBatch:
        samples = list(samples)
        limit = self.max_prompt_tokens
        prompts = [encode_prompt(self.tokenizer, s.prompt, limit).ids for s in samples]
        codes = torch.stack([s.codes for s in samples])  # (B, N)
        return training_batch(prompts, codes, self.vocab, self.pad_id)
