"""The shapes world: procedurally rendered scenes whose truth is known exactly.

A scene is data (:class:`Scene`: objects with class, colour, centre, size; a muted ground);
from it follow the image (:func:`render_scene`, any size), captions in several phrasings, GenEval
records for the six tags, and visual questions in LLaVA's, MME's, GQA's and DPG-Bench's layouts.
:func:`make_shapes_dataset` writes all of them (and a Hugging Face dataset) into one folder.

Modules: ``vocab`` (words), ``colour`` (GenEval's colours, CIELAB), ``geometry`` (outlines),
``scene`` (the data), ``sampler`` (seeded scenes), ``render``, ``relations`` (GenEval's),
``captions``, ``geneval_prompts``, ``corrupt`` (wrong scenes for a record), ``vqa`` (LLaVA),
``mme_layout``, ``gqa_questions``, ``dpg_items``, ``splits`` (seeds and held-out phrasings),
``writer``.
"""

from vqrae.data.shapes.captions import (
    HELDOUT_PHRASINGS,
    PHRASINGS,
    TRAIN_PHRASINGS,
    caption,
    captions,
)
from vqrae.data.shapes.colour import COLOUR_NAMES, COLOURS
from vqrae.data.shapes.corrupt import CORRUPTIONS, applicable_corruptions, corrupt_scene
from vqrae.data.shapes.geneval_prompts import (
    GENEVAL_TAGS,
    record_holds,
    records_for_scene,
    sample_geneval_prompt,
    scene_for_record,
)
from vqrae.data.shapes.relations import relative_position
from vqrae.data.shapes.render import render_scene
from vqrae.data.shapes.sampler import SamplerConfig, sample_scene
from vqrae.data.shapes.scene import Ground, Scene, ShapeObject
from vqrae.data.shapes.splits import SPLITS, split_rng
from vqrae.data.shapes.vocab import SHAPES
from vqrae.data.shapes.writer import ShapesDatasetSummary, format_summary, make_shapes_dataset

__all__ = [
    "COLOURS",
    "COLOUR_NAMES",
    "CORRUPTIONS",
    "GENEVAL_TAGS",
    "HELDOUT_PHRASINGS",
    "PHRASINGS",
    "SHAPES",
    "SPLITS",
    "TRAIN_PHRASINGS",
    "Ground",
    "SamplerConfig",
    "Scene",
    "ShapeObject",
    "ShapesDatasetSummary",
    "applicable_corruptions",
    "caption",
    "captions",
    "corrupt_scene",
    "format_summary",
    "make_shapes_dataset",
    "record_holds",
    "records_for_scene",
    "relative_position",
    "render_scene",
    "sample_geneval_prompt",
    "sample_scene",
    "scene_for_record",
    "split_rng",
]
