"""Captions of a scene in several phrasings, in named sets that can be held out.

Objects are grouped by (colour, class) and named with number words and plurals: ``"two red
circles"``, ``"an orange star"``. A phrasing is a function of the scene; every phrasing says
only what is true (classes, counts, colours; positions only where GenEval's relation holds
with a margin).

:data:`TRAIN_PHRASINGS` and :data:`HELDOUT_PHRASINGS` do not overlap, so a model trained on the
first can be evaluated on prompts worded in a way it has never seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from vqrae.data.shapes.geneval_prompts import POSITION_MARGIN
from vqrae.data.shapes.relations import RELATIONS, relation_scores
from vqrae.data.shapes.scene import Scene
from vqrae.data.shapes.vocab import SHAPES, number_word, plural, with_article

__all__ = [
    "HELDOUT_PHRASINGS",
    "PHRASINGS",
    "TRAIN_PHRASINGS",
    "caption",
    "captions",
    "join_words",
    "object_phrases",
]


def join_words(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if not items:
        raise ValueError("nothing to join")
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _noun(count: int, name: str) -> str:
    return with_article(name) if count == 1 else f"{number_word(count)} {plural(name)}"


def object_phrases(scene: Scene, colours: bool = True) -> list[str]:
    """One phrase per (colour, class) group, in class order then colour order of appearance."""
    groups: Counter[tuple[str, str]] = Counter()
    for o in sorted(scene.objects, key=lambda o: SHAPES.index(o.shape)):
        groups[(o.colour if colours else "", o.shape)] += 1
    return [_noun(n, f"{c} {s}".strip()) for (c, s), n in groups.items()]


def _relation_clause(scene: Scene) -> str | None:
    """``"a red star left of a blue square"`` for a two-object scene with a clear relation."""
    if len(scene.objects) != 2:
        return None
    a, b = scene.objects
    scores = relation_scores(a.box(512), b.box(512))
    if scores is None:
        return None
    for rel in RELATIONS:
        if scores[rel] >= 0.5 + POSITION_MARGIN:
            return f"{with_article(f'{a.colour} {a.shape}')} {rel} {with_article(f'{b.colour} {b.shape}')}"
    return None


def _there(scene: Scene, colours: bool) -> str:
    phrases = object_phrases(scene, colours)
    first_many = not phrases[0].startswith(("a ", "an "))
    return f"there {'are' if first_many else 'is'} {join_words(phrases)}"


def _count_total(scene: Scene) -> str:
    n = len(scene.objects)
    things = "shape" if n == 1 else "shapes"
    return f"{number_word(n)} {things}: {join_words(object_phrases(scene))}"


def _relation_or(fallback: Callable[[Scene], str]) -> Callable[[Scene], str]:
    def phrase(scene: Scene) -> str:
        clause = _relation_clause(scene)
        return f"a photo of {clause}" if clause else fallback(scene)

    return phrase


#: Every phrasing, by name.
PHRASINGS: dict[str, Callable[[Scene], str]] = {
    "geneval": lambda s: f"a photo of {join_words(object_phrases(s))}",
    "geneval_plain": lambda s: f"a photo of {join_words(object_phrases(s, colours=False))}",
    "image_of": lambda s: f"an image of {join_words(object_phrases(s))} on a plain background",
    "there_is": lambda s: f"{_there(s, True)} in the picture",
    "flat_shapes": lambda s: f"flat shapes: {join_words(object_phrases(s))}",
    "position": _relation_or(lambda s: f"a photo of {join_words(object_phrases(s))}"),
    # held out
    "drawing": lambda s: f"a simple drawing of {join_words(object_phrases(s))}",
    "count_total": _count_total,
    "there_plain": lambda s: f"{_there(s, False)} on a muted background",
    "shown": lambda s: f"{join_words(object_phrases(s))}, shown on a soft gradient",
}
TRAIN_PHRASINGS: tuple[str, ...] = (
    "geneval",
    "geneval_plain",
    "image_of",
    "there_is",
    "flat_shapes",
    "position",
)
HELDOUT_PHRASINGS: tuple[str, ...] = ("drawing", "count_total", "there_plain", "shown")


def caption(scene: Scene, phrasing: str = "geneval") -> str:
    """The scene's caption in one phrasing."""
    if phrasing not in PHRASINGS:
        raise ValueError(f"unknown phrasing {phrasing!r}; expected one of {list(PHRASINGS)}")
    return PHRASINGS[phrasing](scene)


def captions(scene: Scene, phrasings: Sequence[str] = TRAIN_PHRASINGS) -> list[str]:
    """The scene's captions in several phrasings (duplicates removed, order kept)."""
    out: list[str] = []
    for name in phrasings:
        text = caption(scene, name)
        if text not in out:
            out.append(text)
    return out
