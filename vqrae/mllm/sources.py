"""Training data sources: LLaVA files, the shapes world, captions of the ImageNet sample.

Every source becomes a list of :class:`~vqrae.mllm.conversations.Conversation`:

* ``llava``: a LLaVA conversation JSON as it is (``path``) with its image folder
  (``image_folder``, default the file's folder): LLaVA-Pretrain-558K for stage 1,
  LLaVA-v1.5-mix665K for stage 2;
* ``shapes``: a shapes-world data set folder (``path``; written by
  :func:`vqrae.data.shapes.writer.make_shapes_dataset` when it holds none and ``scenes`` > 0),
  its caption pairs (``style: captions``) or its multi-turn questions (``style: vqa``), both
  LLaVA files the writer produced;
* ``imagenet``: a folder of ``<synset>_<label>.JPEG`` files (the ImageNet sample; read in place),
  as caption pairs or as short questions about the object, from the labels in the names.

A caption pair has an empty user turn (LLaVA's plain template ignores it); for the chat template
it gets one of :data:`CAPTION_PROMPTS`, drawn per conversation from a seeded generator.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from vqrae.data.shapes.vocab import with_article
from vqrae.data.shapes.vqa import SHORT_ANSWER
from vqrae.mllm.conversations import Conversation, load_llava_json

__all__ = [
    "CAPTION_PROMPTS",
    "SourceConfig",
    "imagenet_conversations",
    "imagenet_label",
    "load_source",
    "load_sources",
]

log = logging.getLogger(__name__)

SourceKind = Literal["llava", "shapes", "imagenet"]
Style = Literal["captions", "vqa"]

#: Requests for a short caption (in the manner of LLaVA-Pretrain-558K's instructions).
CAPTION_PROMPTS: tuple[str, ...] = (
    "Describe the image briefly.",
    "Give a brief description of the image.",
    "Write a short caption for this picture.",
    "What does the image show?",
)
_IMAGENET_CAPTIONS: tuple[str, ...] = (
    "a photo of {a}.",
    "a picture of {a}.",
    "an image showing {a}.",
    "a close-up photo of {a}.",
    "a photograph of {a}.",
)
_IMAGENET_QUESTIONS: tuple[str, ...] = (
    "What is the main object in this image?",
    "What is shown in the picture?",
    "What is in this photo?",
)


@dataclass
class SourceConfig:
    """One data source of a recipe.

    Attributes:
        kind: ``llava``, ``shapes`` or ``imagenet`` (see the module docstring).
        path: the LLaVA JSON file, the shapes data-set folder, or the ImageNet-style folder.
        image_folder: ``llava`` only: where its image paths are relative to.
        style: ``shapes`` and ``imagenet``: ``captions`` or ``vqa``.
        scenes, seed, size, split: ``shapes`` only: the data set written when ``path`` holds
            none (``scenes`` 0: never write, the folder must exist).
        repeat: how many times each conversation appears per epoch.
        limit: keep at most this many conversations (before ``repeat``).
    """

    kind: SourceKind = "llava"
    path: str = ""
    image_folder: str | None = None
    style: Style = "vqa"
    scenes: int = 0
    seed: int = 0
    size: int = 224
    split: str = "train"
    repeat: int = 1
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("llava", "shapes", "imagenet"):
            raise ValueError(f"source kind must be llava, shapes or imagenet, got {self.kind!r}")
        if not self.path:
            raise ValueError(f"a {self.kind} source needs a path")
        if self.style not in ("captions", "vqa"):
            raise ValueError(f"source style must be captions or vqa, got {self.style!r}")
        if self.repeat < 1 or self.scenes < 0 or (self.limit is not None and self.limit < 1):
            raise ValueError("source repeat must be >= 1, scenes >= 0, limit >= 1 or null")

    @property
    def name(self) -> str:
        """A short name for logs and conversation records."""
        tail = f":{self.style}" if self.kind != "llava" else ""
        return f"{self.kind}{tail}:{Path(self.path).name}"


def imagenet_label(path: str | os.PathLike[str]) -> str | None:
    """The label in an ImageNet-style file name: ``n01440764_tench.JPEG`` -> ``tench``,
    ``n01484850_great_white_shark.JPEG`` -> ``great white shark`` (``None`` without one)."""
    stem = Path(path).stem
    synset, sep, label = stem.partition("_")
    if not sep or not label or not (synset.startswith("n") and synset[1:].isdigit()):
        return None
    return label.replace("_", " ")


def imagenet_conversations(
    folder: str | os.PathLike[str], style: Style, seed: int = 0, source: str = "imagenet"
) -> list[Conversation]:
    """Caption pairs or short questions about the labelled images of an ImageNet-style folder.

    Raises:
        ValueError: the folder holds no labelled image.
    """
    root = Path(folder)
    files = sorted(p for p in root.iterdir() if p.is_file() and imagenet_label(p) is not None)
    if not files:
        raise ValueError(f"{root}: no <synset>_<label> image files")
    out = []
    for i, path in enumerate(files):
        rng = np.random.default_rng([seed, i])
        label = str(imagenet_label(path))
        caption = _IMAGENET_CAPTIONS[int(rng.integers(len(_IMAGENET_CAPTIONS)))]
        caption = caption.format(a=with_article(label))
        if style == "captions":
            messages = ({"role": "user", "content": ""}, {"role": "assistant", "content": caption})
        else:
            question = _IMAGENET_QUESTIONS[int(rng.integers(len(_IMAGENET_QUESTIONS)))]
            messages = (
                {"role": "user", "content": f"{question}\n{SHORT_ANSWER}"},
                {"role": "assistant", "content": label[0].upper() + label[1:]},
                {
                    "role": "user",
                    "content": CAPTION_PROMPTS[int(rng.integers(len(CAPTION_PROMPTS)))],
                },
                {"role": "assistant", "content": caption[0].upper() + caption[1:]},
            )
        out.append(Conversation(path.stem, str(path), messages, source))
    return out


def _shapes_folder(config: SourceConfig) -> Path:
    root = Path(config.path)
    if (root / "manifest.json").is_file():
        return root
    if config.scenes < 1:
        raise ValueError(f"{root} holds no shapes data set (set scenes to write one there)")
    from vqrae.data.shapes.writer import make_shapes_dataset

    log.info("writing a shapes data set of %d scenes to %s", config.scenes, root)
    make_shapes_dataset(
        root,
        config.scenes,
        seed=config.seed,
        size=config.size,
        split=config.split,
        geneval_per_tag=1,
        mme_per_subtask=1,
        dpg_items=1,
        hf=False,
    )
    return root


def _with_caption_prompts(conversations: list[Conversation], seed: int) -> list[Conversation]:
    """Give empty user turns (caption pairs) a caption request, drawn per conversation."""
    out = []
    for i, conv in enumerate(conversations):
        if conv.messages and conv.messages[0]["role"] == "user" and not conv.messages[0]["content"]:
            prompt = CAPTION_PROMPTS[int(np.random.default_rng([seed, i]).integers(4))]
            first = {"role": "user", "content": prompt}
            conv = replace(conv, messages=(first, *conv.messages[1:]))
        out.append(conv)
    return out


def load_source(config: SourceConfig) -> list[Conversation]:
    """The conversations of one source (``limit`` applied, ``repeat`` not).

    Raises:
        ValueError: a missing file or folder, or one without usable conversations.
    """
    name = config.name
    if config.kind == "llava":
        conversations, report = load_llava_json(
            config.path, config.image_folder, source=name, limit=config.limit
        )
        log.info(report.summary())
    elif config.kind == "shapes":
        root = _shapes_folder(config)
        file = "llava_captions.json" if config.style == "captions" else "llava_vqa.json"
        conversations, report = load_llava_json(root / file, root, source=name, limit=config.limit)
        log.info(report.summary())
    else:
        if not Path(config.path).is_dir():
            raise ValueError(f"imagenet source {config.path} is not a folder")
        conversations = imagenet_conversations(config.path, config.style, config.seed, name)
        conversations = conversations[: config.limit] if config.limit else conversations
    if not conversations:
        raise ValueError(f"source {name} holds no usable conversation")
    return _with_caption_prompts(conversations, config.seed)


def load_sources(configs: list[SourceConfig]) -> list[Conversation]:
    """Every source's conversations, each repeated ``repeat`` times, in recipe order."""
    out: list[Conversation] = []
    for config in configs:
        conversations = load_source(config)
        out += conversations * config.repeat
    return out
