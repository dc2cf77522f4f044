"""LLaVA's conversation JSON, read as it is (LLaVA-Pretrain-558K, LLaVA-v1.5-mix665K).

A file is a JSON list of records::

    {"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nWhat are the colors of the bus?"},
                       {"from": "gpt", "value": "The bus in the image is white and red."}, ...]}

``image`` is relative to an image folder and may be absent (mix665K holds text-only
conversations). Roles map ``human`` -> ``user``, ``gpt`` -> ``assistant`` (``system`` stays);
LLaVA's ``<image>`` mark is dropped from the text, the model places the image itself
(:func:`vqrae.mllm.prompts.with_image`). As LLaVA's trainer does, a conversation that opens with
a non-human turn loses that turn. Records that cannot be trained on (no turns, roles that do not
alternate user/assistant, a missing answer) are not dropped silently: they are counted by reason
in :class:`LoadReport`, and :func:`load_llava_json` raises when asked to be strict.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqrae.mllm.prompts import LLAVA_IMAGE_MARK

__all__ = ["Conversation", "LoadReport", "conversation_from_llava", "load_llava_json"]

_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass(frozen=True)
class Conversation:
    """One training conversation.

    Attributes:
        id: the record's id (unique within its source).
        image: the image file (absolute, or as given when no folder applies), or ``None``.
        messages: ``{"role": "system" | "user" | "assistant", "content": str}`` turns, without
            LLaVA's ``<image>`` mark.
        source: the name of the data source it came from.
    """

    id: str
    image: str | None
    messages: tuple[Mapping[str, str], ...]
    source: str = ""

    @property
    def has_image(self) -> bool:
        return self.image is not None


@dataclass
class LoadReport:
    """What reading a file kept and why it left records out."""

    path: str
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dropped_leading_turns: int = 0

    def summary(self) -> str:
        """One line for logs."""
        parts = [f"{self.path}: {self.kept} conversation(s)"]
        if self.skipped:
            parts.append("skipped " + ", ".join(f"{n} {why}" for why, n in self.skipped.items()))
        if self.dropped_leading_turns:
            parts.append(f"{self.dropped_leading_turns} leading non-human turn(s) dropped")
        return "; ".join(parts)


def _strip_mark(text: str) -> str:
    return text.replace(LLAVA_IMAGE_MARK, "").strip()


def conversation_from_llava(
    record: Mapping[str, Any], image_folder: str | os.PathLike[str] | None, source: str = ""
) -> tuple[Conversation | None, str | None, int]:
    """One LLaVA record -> ``(conversation, None, dropped)`` or ``(None, reason, 0)``.

    ``dropped`` counts leading non-human turns removed (LLaVA's trainer does the same).
    """
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        return None, "without conversations", 0
    messages: list[dict[str, str]] = []
    for turn in turns:
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return None, "with a turn that is not {from, value: text}", 0
        speaker = str(turn.get("from", "")).lower()
        if speaker == "system" and not messages:
            messages.append({"role": "system", "content": turn["value"]})
            continue
        role = _ROLES.get(speaker)
        if role is None:
            return None, "with an unknown role", 0
        messages.append({"role": role, "content": _strip_mark(turn["value"])})
    system = messages[:1] if messages[0]["role"] == "system" else []
    body = messages[len(system) :]
    dropped = 0
    while body and body[0]["role"] != "user":
        body, dropped = body[1:], dropped + 1
    if not body or not any(m["role"] == "assistant" for m in body):
        return None, "without an answer", 0
    if any(m["role"] != ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(body)):
        return None, "whose roles do not alternate", 0
    image = record.get("image")
    if image is not None:
        if not isinstance(image, str) or not image:
            return None, "with a non-string image", 0
        image = str(Path(image_folder) / image) if image_folder is not None else image
    conversation = Conversation(
        id=str(record.get("id", "")), image=image, messages=tuple(system + body), source=source
    )
    return conversation, None, dropped


def load_llava_json(
    path: str | os.PathLike[str],
    image_folder: str | os.PathLike[str] | None = None,
    *,
    source: str = "",
    strict: bool = False,
    limit: int | None = None,
) -> tuple[list[Conversation], LoadReport]:
    """Read a LLaVA conversation file.

    Args:
        path: the JSON list (``.jsonl`` with one record a line works too).
        image_folder: the folder image paths are relative to (default: the file's folder).
        source: a name recorded on every conversation.
        strict: raise on the first record that cannot be trained on.
        limit: keep at most this many conversations.

    Raises:
        ValueError: not a JSON list of records, or (``strict``) an unusable record.
    """
    path = Path(path)
    folder = Path(image_folder) if image_folder is not None else path.parent
    records = _read_records(path)
    report = LoadReport(str(path))
    out: list[Conversation] = []
    for index, record in enumerate(records):
        if limit is not None and len(out) >= limit:
            break
        if not isinstance(record, dict):
            reason: str | None = "that are not objects"
            conversation = None
        else:
            conversation, reason, dropped = conversation_from_llava(record, folder, source)
            report.dropped_leading_turns += dropped
        if conversation is None:
            if strict:
                raise ValueError(f"{path}: record {index} is unusable ({reason})")
            report.skipped[str(reason)] += 1
            continue
        out.append(conversation)
    report.kept = len(out)
    return out, report


def _read_records(path: Path) -> Iterable[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"conversation file {path} not found") from None
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of conversation records")
    return data
