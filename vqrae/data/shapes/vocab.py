"""The words of the shapes world: object classes, number words, articles and plurals.

Articles and plurals follow GenEval's ``create_prompts.py`` (``an`` before a vowel letter; ``es``
after a final ``s``), so prompts built here read exactly as GenEval's would for these classes.
"""

from __future__ import annotations

__all__ = ["NUMBER_WORDS", "SHAPES", "number_word", "plural", "with_article"]

#: The object classes, upright, in a fixed order.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross")

#: GenEval's number words (index = number).
NUMBER_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)


def with_article(phrase: str) -> str:
    """``"an orange circle"``, ``"a red star"``: GenEval's rule (first letter a vowel)."""
    return f"an {phrase}" if phrase[0] in "aeiou" else f"a {phrase}"


def plural(name: str) -> str:
    """``"crosses"``, ``"circles"``: GenEval's rule (``es`` after a final ``s``)."""
    return f"{name}es" if name.endswith("s") else f"{name}s"


def number_word(n: int) -> str:
    """The English word for ``0 <= n <= 10``."""
    if not 0 <= n < len(NUMBER_WORDS):
        raise ValueError(f"no number word for {n}; expected 0..{len(NUMBER_WORDS) - 1}")
    return NUMBER_WORDS[n]
