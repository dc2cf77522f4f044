"""A multi-turn chat about one image, answers streamed as they are generated.

:class:`ChatSession` keeps the conversation (the model's chat template renders the whole
history for every answer, with the image placeholder in the first user turn) and the current
image's features (computed once per image). :func:`run_chat` drives a session from lines of
text, a terminal's or a pipe's alike:

* ``/image PATH`` switches to another image and starts a new conversation about it (the model
  sees one image per conversation);
* ``/reset`` clears the conversation, keeping the image;
* ``/quit`` (or the end of the input) ends the session;
* anything else is a question; the answer's text is written as it comes.

An error (an unreadable image, say) is one line on the error stream, and the session goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

import torch

from vqrae.data.images import ImageReadError
from vqrae.mllm.generate import GenerationSettings, TextStream, generate
from vqrae.mllm.model import MLLM
from vqrae.mllm.prompts import prompt_ids

__all__ = ["ChatSession", "run_chat"]

HELP = "commands: /image PATH (new image, new conversation), /reset, /quit"


class ChatSession:
    """A conversation with an understanding model about (at most) one image.

    Args:
        model: the understanding model (eval mode).
        settings: decoding settings (default greedy).
    """

    def __init__(self, model: MLLM, settings: GenerationSettings | None = None) -> None:
        self.model = model
        self.settings = settings or GenerationSettings(max_new_tokens=256)
        self.history: list[dict[str, str]] = []
        self.image: Path | None = None
        self._features: torch.Tensor | None = None

    def set_image(self, path: str | Path) -> None:
        """Switch to the image at ``path`` and clear the conversation.

        Raises:
            vqrae.data.images.ImageReadError: the file is missing or not an image (the
                session keeps its previous image and conversation).
        """
        image = self.model.vision.load(path)  # (3, S, S); raises before anything changes
        self._features = self.model.vision(image[None].to(self.model.device))  # (1, N, d)
        self.image = Path(path)
        self.history = []

    def reset(self) -> None:
        """Clear the conversation (the image stays)."""
        self.history = []

    def ask(self, text: str, on_text: Callable[[str], None] | None = None) -> str:
        """Answer ``text`` given the conversation so far; ``on_text`` receives the answer's
        text piece by piece as it is generated. The turn and its answer join the history."""
        turns = [*self.history, {"role": "user", "content": text}]
        ids = prompt_ids(
            self.model.tokenizer,
            self.model.config,
            turns,
            has_image=self._features is not None,
            image_token_id=self.model.image_token_id,
            num_image_tokens=self.model.num_image_tokens,
        )
        stream = TextStream(self.model.tokenizer, on_text or (lambda _: None))
        generate(self.model, [ids], self._features, self.settings, lambda _, t: stream.push(t))
        stream.finish()
        answer = stream.text().strip()
        self.history = [*turns, {"role": "assistant", "content": answer}]
        return answer


def run_chat(
    session: ChatSession,
    lines: Iterable[str],
    out: TextIO,
    err: TextIO,
    prompt: str = "",
) -> int:
    """Drive ``session`` from ``lines`` (see the module docstring); returns the number of
    errors reported. ``prompt`` is written before each line is read (a terminal's ``"> "``)."""
    errors = 0

    def report(message: str) -> None:
        nonlocal errors
        errors += 1
        print(f"error: {message}", file=err, flush=True)

    out.write(prompt)
    out.flush()
    for raw in lines:
        line = raw.strip()
        if not line:
            out.write(prompt)
            out.flush()
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            session.reset()
            print("(conversation cleared)", file=out, flush=True)
        elif line == "/help":
            print(HELP, file=out, flush=True)
        elif line.startswith("/image"):
            path = line[len("/image") :].strip()
            if not path:
                report("/image needs a path")
            else:
                try:
                    session.set_image(path)
                    print(f"(image: {path}; new conversation)", file=out, flush=True)
                except ImageReadError as exc:
                    report(str(exc))
        elif line.startswith("/"):
            report(f"unknown command {line.split()[0]}; {HELP}")
        else:

            def emit(piece: str) -> None:
                out.write(piece)
                out.flush()

            session.ask(line, emit)
            out.write("\n")
            out.flush()
        out.write(prompt)
        out.flush()
    return errors
