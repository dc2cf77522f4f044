"""Understanding accuracy per question type on scenes the training data never drew.

Two question sets, both in the held-out wordings (:mod:`vqrae.data.shapes.question_phrasings`),
each ending in one of LLaVA's or MME's suffixes:

* ``independent``: scenes drawn by the independent renderer of ``benchmarks/independent_shapes.py``
  (its own geometry, palettes, grounds, edges and placement rules, drawn per image), 1-5 objects
  of random classes and colours; the questions and their truths are computed here from the drawn
  objects (classes, colour names, tight boxes and GenEval's relation rule with a 0.1 margin),
  without ``vqrae.data.shapes``;
* ``shapes`` (optional, ``--shapes DIR``): a data set the project's writer made for an
  evaluation split (``vqrae data shapes --split test``), its ``vqa/questions.jsonl``.

Each question set is answered with ``vqrae answer`` (greedy, the command users run) by every
model of ``--models``, and, for plug and play, with every VQRAE of ``--tokenizers`` swapped in
for the model's own features; the answers are scored with :func:`vqrae.eval.vqa.score_vqa` and a
table per type is printed, with the yes share of the yes/no answers (a model that leans to one
side shows it there). Run (the figures in BENCHMARKS.md, "Understanding: accuracy on held-out
scenes")::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/mllm_heldout.py --out runs/mllm-heldout \\
        --scenes 100 --shapes runs/mllm-eval/test --models checkpoints/vqrae-mllm-demo \\
        --tokenizers own stage1:vqrae-dinov2-s-demo

``own`` answers with the model's own tokenizer; ``stage1:NAME`` with VQRAE ``NAME`` whose encoder
reads with the foundation model's pretrained weights (its stage-1 encoder, what the demo model
was trained on), saved once under ``OUT/tokenizers``; anything else is passed to ``--tokenizer``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import independent_shapes as indep  # noqa: E402

from vqrae.data.shapes.question_phrasings import SHORT_ANSWER, YES_NO, templates  # noqa: E402
from vqrae.eval.vqa import format_vqa_report, score_vqa  # noqa: E402
from vqrae.utils.jsonl import read_jsonl  # noqa: E402

MARGIN = 0.1
_REL_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above",
              "below": "below"}  # fmt: skip
_OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def scene_questions(rng: np.random.Generator, objs: Sequence[indep.Obj]) -> list[dict[str, str]]:
    """Questions with their truths about one drawn scene (kind, text, answer)."""
    shapes = [o.shape for o in objs]
    present = sorted(set(shapes))
    absent = [s for s in indep.SHAPES if s not in present]
    out: list[dict[str, str]] = []

    def ask(kind: str, form: str, answer: str, **fields: str) -> None:
        text = _pick(rng, templates("heldout", form)).format(**fields)
        suffix = _pick(rng, (SHORT_ANSWER, YES_NO)) if answer in ("Yes", "No") else SHORT_ANSWER
        out.append({"category": kind, "text": f"{text}\n{suffix}", "answer": answer})

    ask("existence", "exists", "Yes", thing=_pick(rng, present))
    if absent:
        ask("existence", "exists", "No", thing=_pick(rng, absent))
    o = _pick(rng, objs)
    ask("existence", "exists", "Yes", thing=f"{o.colour} {o.shape}")
    colours_of = {s: {p.colour for p in objs if p.shape == s} for s in present}
    wrong = [c for c in indep.COLOUR_NAMES if c not in colours_of[o.shape]]
    ask("existence", "exists", "No", thing=f"{_pick(rng, wrong)} {o.shape}")
    s = _pick(rng, present)
    ask("count", "count", str(shapes.count(s)), things=indep.plural(s))
    if absent and rng.random() < 0.3:
        ask("count", "count", "0", things=indep.plural(_pick(rng, absent)))
    if len(present) > 1:
        ask("count", "total", str(len(objs)))
    uniform = [s for s in present if len(colours_of[s]) == 1]
    if uniform:
        s = _pick(rng, uniform)
        n = shapes.count(s)
        the = f"the {s}" if n == 1 else f"the {indep.plural(s)}"
        ask("colour", "colour", next(iter(colours_of[s])).capitalize(), the=the,
            be="is" if n == 1 else "are")  # fmt: skip
    by_colour: dict[str, set[str]] = {}
    for p in objs:
        by_colour.setdefault(p.colour, set()).add(p.shape)
    unique = sorted(c for c, kinds in by_colour.items() if len(kinds) == 1)
    if unique:
        c = _pick(rng, unique)
        n = sum(p.colour == c for p in objs)
        ask("shape", "shape", next(iter(by_colour[c])).capitalize(), colour=c,
            obj="object" if n == 1 else "objects", be="is" if n == 1 else "are")  # fmt: skip
    singles = [s for s in present if shapes.count(s) == 1]
    clear = []
    for a in singles:
        for b in singles:
            if a != b:
                box_a = next(p.box for p in objs if p.shape == a)
                box_b = next(p.box for p in objs if p.shape == b)
                values = indep.relation_values(box_a, box_b)
                if values is not None:
                    clear += [(a, r, b) for r, v in values.items() if v >= 0.5 + MARGIN]
    if clear:
        a, rel, b = _pick(rng, clear)
        ask("position", "position", "Yes", a=a, rel=_REL_WORDS[rel], b=b)
        ask("position", "position", "No", a=a, rel=_REL_WORDS[_OPPOSITE[rel]], b=b)
    return out


def build_independent(root: Path, scenes: int, size: int, seed: int) -> Path:
    """Render ``scenes`` free scenes and write their questions; returns the question file."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(scenes):
        rng = np.random.default_rng([seed, 91, i])
        conv = indep.draw_conventions(rng, ("spec", "xkcd"))
        k = int(rng.integers(1, 5, endpoint=True))
        specs = [(_pick(rng, indep.SHAPES), _pick(rng, indep.COLOUR_NAMES)) for _ in range(k)]
        objs = indep.place(rng, specs, conv)
        image = f"images/{i:05d}.png"
        indep.render(objs, conv, size, int(rng.integers(2**31))).save(root / image)
        for j, q in enumerate(scene_questions(rng, objs)):
            rows.append({"question_id": f"{i:05d}_{j}", "image": image, **q})
    path = root / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def answer(vqrae: str, questions: Path, images: Path, model: str, tokenizer: str, out: Path,
           batch_size: int) -> Path:  # fmt: skip
    """Run ``vqrae answer`` (resumable: a finished file is reused)."""
    cmd = [vqrae, "answer", "--questions", str(questions), "--image-folder", str(images),
           "--out", str(out), "--model", model, "--batch-size", str(batch_size),
           "--max-new-tokens", "8"]  # fmt: skip
    if tokenizer != "own":
        cmd += ["--tokenizer", tokenizer]
    subprocess.run(cmd, check=True)
    return out


def tokenizer_arg(spec: str, out: Path) -> str:
    """What ``vqrae answer --tokenizer`` gets for a ``--tokenizers`` entry."""
    if not spec.startswith("stage1:"):
        return spec
    from vqrae.mllm.model import load_tokenizer

    name = spec.removeprefix("stage1:")
    folder = out / "tokenizers" / f"stage1-{Path(name).name}"
    if not (folder / "config.json").is_file():
        load_tokenizer(name, "pretrained").save_pretrained(folder)
    return str(folder)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scenes", type=int, default=150, help="independent scenes (0: none)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=31337)
    parser.add_argument("--shapes", type=Path, help="a shapes data set of an evaluation split")
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--tokenizers", nargs="+", default=["own"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--vqrae", default=str(Path(sys.executable).with_name("vqrae")))
    args = parser.parse_args(argv)
    sets: dict[str, tuple[Path, Path]] = {}
    if args.scenes:
        root = args.out / "independent"
        questions = root / "questions.jsonl"
        if not questions.is_file():
            build_independent(root, args.scenes, args.size, args.seed)
        sets["independent"] = (questions, root)
    if args.shapes:
        sets["shapes"] = (args.shapes / "vqa" / "questions.jsonl", args.shapes)
    results: dict[str, Any] = {}
    for set_name, (questions, images) in sets.items():
        truth = read_jsonl(questions)
        for model in args.models:
            for tokenizer in args.tokenizers:
                name = f"{Path(model).name}__{Path(tokenizer).name}".replace(":", "-")
                out = args.out / "answers" / set_name / f"{name}.jsonl"
                out.parent.mkdir(parents=True, exist_ok=True)
                answer(args.vqrae, questions, images, model, tokenizer_arg(tokenizer, args.out),
                       out, args.batch_size)  # fmt: skip
                report = score_vqa(truth, read_jsonl(out))
                results[f"{set_name}/{name}"] = report.to_dict()
                print(f"\n## {set_name}: {model} with tokenizer {tokenizer}")
                print(format_vqa_report(report), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
