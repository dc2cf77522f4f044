"""How each kind of visual question is worded, in a training set and a held-out set.

A model trained on one wording per question learns the wording, not the question; evaluation
then asks in wordings training never showed (the held-out set), as MME's and GQA's own
questions differ from any training data. Each template is a ``str.format`` pattern over the
fields its question kind fills in:

* ``exists``: ``{thing}`` ("star", "blue star");
* ``count``: ``{things}`` ("stars"); ``total``: none;
* ``colour``: ``{the}`` ("the star", "the stars") and ``{be}`` ("is", "are");
* ``shape``: ``{colour}``, ``{obj}`` ("object", "objects") and ``{be}``;
* ``position``: ``{a}``, ``{rel}`` ("to the left of") and ``{b}``.

The first training template of each kind is the wording of LLaVA-style data sets (the one
earlier versions of this data set used alone). Yes/no questions end in either of the two
suffixes of the field's benchmarks: LLaVA-1.5's short-answer instruction or MME's "Please answer
yes or no."; the others in the short-answer instruction.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["PHRASING_SETS", "SHORT_ANSWER", "YES_NO", "PhrasingSet", "templates"]

PhrasingSet = Literal["train", "heldout"]

#: LLaVA-1.5's instruction for short answers.
SHORT_ANSWER = "Answer the question using a single word or phrase."
#: MME's instruction for its yes/no questions.
YES_NO = "Please answer yes or no."

_TRAIN: dict[str, tuple[str, ...]] = {
    "exists": (
        "Is there a {thing} in the image?",
        "Is there a {thing} in this picture?",
        "Does the image contain a {thing}?",
        "Can you see a {thing} in the image?",
    ),
    "count": (
        "How many {things} are there?",
        "How many {things} are in the image?",
        "Count the {things} in the picture.",
    ),
    "total": (
        "How many shapes are there in total?",
        "How many objects are in the image?",
        "Count all the shapes in the picture.",
    ),
    "colour": (
        "What color {be} {the}?",
        "Which color {be} {the} in the image?",
        "What is the color of {the}?",
    ),
    "shape": (
        "What shape {be} the {colour} {obj}?",
        "Which shape {be} the {colour} {obj} in the image?",
        "What kind of shape {be} the {colour} {obj}?",
    ),
    "position": (
        "Is the {a} {rel} the {b}?",
        "Is the {a} located {rel} the {b}?",
        "In the image, is the {a} {rel} the {b}?",
    ),
}

_HELDOUT: dict[str, tuple[str, ...]] = {
    "exists": (
        "Does this picture show a {thing}?",
        "Is any {thing} visible here?",
        "Do you see a {thing} anywhere in the image?",
    ),
    "count": (
        "What is the number of {things} in the picture?",
        "How many {things} can you see?",
    ),
    "total": (
        "What is the total number of shapes shown?",
        "How many shapes can be seen altogether?",
    ),
    "colour": (
        "Tell me the color of {the}.",
        "What colour {be} {the} here?",
    ),
    "shape": (
        "Name the shape of the {colour} {obj}.",
        "Which kind of figure {be} the {colour} {obj}?",
    ),
    "position": (
        "Would you say the {a} is {rel} the {b}?",
        "Does the {a} appear {rel} the {b}?",
    ),
}

#: Every set, by name.
PHRASING_SETS: dict[str, dict[str, tuple[str, ...]]] = {"train": _TRAIN, "heldout": _HELDOUT}


def templates(phrasings: PhrasingSet, form: str) -> tuple[str, ...]:
    """The templates of one question form (``exists``, ``count``, ...) in one set.

    Raises:
        ValueError: an unknown set or form.
    """
    if phrasings not in PHRASING_SETS:
        raise ValueError(f"question phrasings: unknown {phrasings!r}; expected train or heldout")
    table = PHRASING_SETS[phrasings]
    if form not in table:
        raise ValueError(f"question form: unknown {form!r}; expected one of {list(table)}")
    return table[form]
