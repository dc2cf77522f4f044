"""The shapes world: procedurally rendered scenes whose truth is known exactly.

A scene is data (:class:`Scene`: objects with class, colour, centre, size; a muted ground);
from it follow the image (:func:`render_scene`, any size), captions in several phrasings, GenEval
records for the six tags, and visual questions in LLaVA's, MME's, GQA's and DPG-Bench's layouts.
"""
