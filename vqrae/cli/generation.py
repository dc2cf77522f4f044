"""Text-to-image commands: generation prepare, train-generator, generate, geneval generate,
dpg generate."""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from vqrae.cli.args import add_function_command, command_group
from vqrae.cli.common import DEFAULT_TOKENIZER, CommandError, check_positive, write_run_record
from vqrae.generation.api import DEMO_GENERATOR as DEFAULT_GENERATOR
from vqrae.generation.sampler import DEFAULT_CFG


def _writable_folder(flag: str, out: str) -> Path:
    """``out`` created and writable, else a one-line error."""
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # a probe of its own per process: ranks of one launch check the same folder at once
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vqrae-write-test-"):
            pass
    except OSError as exc:
        raise CommandError(f"{flag} {out}: cannot write there ({exc.strerror or exc})") from None
    return folder


def _sampling(cfg: float, temperature: float, top_k: int | None, top_p: float):
    from vqrae.generation.sampler import SamplingConfig

    try:
        return SamplingConfig(cfg=cfg, temperature=temperature, top_k=top_k, top_p=top_p)
    except ValueError as exc:
        raise CommandError(f"--{str(exc).split()[0].replace('_', '-')}: {exc}") from None


def _generator(model: str, device: str):
    from vqrae.generation.api import GeneratorUnavailableError, load_generator

    _quiet_libraries()
    try:
        generator = load_generator(model, device=device)
        generator.vqrae()  # the tokenizer that decodes its codes: found and unchanged
    except (GeneratorUnavailableError, ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    return generator


def _quiet_libraries() -> None:
    """Progress bars of transformers' and datasets' file I/O off (ours are shown)."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


# ----------------------------------------------------------------------------- data


def generation_prepare(
    *,
    out: str,
    source: str = "shapes",
    tokenizer: str = DEFAULT_TOKENIZER,
    grid: int = 12,
    n: int = 10000,
    seed: int = 0,
    split: str = "train",
    phrasings: list[str] | None = None,
    geneval_fraction: float = 0.5,
    images: str | None = None,
    captions: str | None = None,
    dataset: str | None = None,
    caption_column: str = "caption",
    image_column: str | None = None,
    dataset_split: str | None = None,
    eval_per_tag: int = 0,
    batch_size: int = 32,
    shard_size: int = 2048,
    device: str = "auto",
    progress: bool = True,
) -> int:
    """Tokenize captioned images once into a code data set for train-generator.

    Writes OUT/dataset.json and OUT/shards/NNNNN/ (Hugging Face datasets, save_to_disk) rows of
    (id, prompts, codes, grid). Rerunning with the same flags continues an interrupted run.
    With --eval-per-tag K (shapes only) also writes OUT/eval/geneval_metadata.jsonl and
    OUT/eval/heldout_metadata.jsonl: unseen GenEval records (test split) in GenEval's
    phrasing and in the held-out phrasings, for `vqrae geneval generate`.

    Args:
        out: the code data set folder.
        source: "shapes" (the shapes world), "folder" (--images and --captions) or "dataset".
        tokenizer: the trained VQRAE tokenizer (catalogue name or folder) whose codes are used.
        grid: codes per image side; the image size follows from the tokenizer.
        n: shapes: number of scenes.
        seed: shapes: base seed.
        split: shapes: "train", "validation" or "test" (disjoint seeds; held-out phrasings).
        phrasings: shapes: caption phrasings (default: the split's).
        geneval_fraction: shapes: share of scenes made for a GenEval record.
        images: folder: the image folder.
        captions: folder: a .jsonl or .csv file of (file, caption) rows.
        dataset: dataset: a save_to_disk folder or hf:NAME[:SPLIT].
        caption_column: dataset: the caption column (a string or a list of strings per row).
        image_column: dataset: the image column (default: detected).
        dataset_split: dataset: the split (default: train).
        eval_per_tag: shapes: held-out GenEval records per tag to write under OUT/eval.
        batch_size: images per tokenizer pass.
        shard_size: rows per shard.
        device: "auto", "cpu", "cuda" or "cuda:N".
        progress: show a progress bar.
    """
    from vqrae.cli.common import load_tokenizer
    from vqrae.generation.prepare import SourceSpec, prepare_codes, write_eval_metadata

    for flag, value in (("--batch-size", batch_size), ("--shard-size", shard_size)):
        check_positive(flag, value)
    if eval_per_tag < 0 or (eval_per_tag and source != "shapes"):
        raise CommandError("--eval-per-tag must be >= 0 and needs --source shapes")
    try:
        spec = SourceSpec(
            kind=source, n=n, seed=seed, split=split, geneval_fraction=geneval_fraction,
            phrasings=tuple(phrasings) if phrasings else None, images=images,
            captions=captions, dataset=dataset, caption_column=caption_column,
            image_column=image_column, dataset_split=dataset_split,
        )  # fmt: skip
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    folder = _writable_folder("--out", out)
    net, _ = load_tokenizer(tokenizer, device)
    _quiet_libraries()
    try:
        summary = prepare_codes(
            spec, folder, net, tokenizer, grid, batch_size, shard_size, progress
        )
        evals = write_eval_metadata(folder / "eval", eval_per_tag, seed) if eval_per_tag else {}
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    write_run_record(folder, "generation prepare", {"source": spec.describe(), "grid": grid})
    print(summary.format())
    for path in evals.values():
        print(f"evaluation prompts: {path}")
    return 0


# ----------------------------------------------------------------------------- training


def train_generator(
    *,
    config: str,
    out: str,
    resume: bool = False,
    set: list[str] | None = None,
    progress: bool = True,
) -> int:
    """Train a text-to-image generator (next-token prediction on the visual tokens).

    One entry point for one process or many: launch with torchrun, or with `deepspeed
    --no_local_rank --module vqrae.cli train-generator ...` (the recipe's global batch stays
    the same). Writes OUT/checkpoints/, OUT/samples/,
    OUT/tb/, OUT/config.yaml, OUT/run.json and the trained generator OUT/model.

    Args:
        config: the YAML recipe (configs/generation/*.yaml).
        out: the run folder.
        resume: continue from the latest checkpoint in OUT (exactly where it stopped).
        set: recipe overrides key.sub=value (e.g. --set steps=100 engine.micro_batch=4).
        progress: show a progress bar (loss, tokens/s, ETA).
    """
    from vqrae.generation.train_config import load_generator_config
    from vqrae.generation.trainer import GeneratorTrainer

    try:
        recipe = load_generator_config(config, overrides=set)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    _writable_folder("--out", out)
    _quiet_libraries()
    try:
        trainer = GeneratorTrainer(recipe, out, resume=resume, progress=progress)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    path = trainer.fit()
    if trainer.ctx.is_main:
        print(f"trained {trainer.step} steps; generator: {path}")
    return 0


# ----------------------------------------------------------------------------- sampling


def _slug(text: str, width: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:width] or "prompt"


def generate(
    *,
    prompt: list[str],
    n: int = 4,
    cfg: float = DEFAULT_CFG,
    seed: int = 0,
    out: str = "generated",
    model: str = DEFAULT_GENERATOR,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    batch_size: int = 8,
    device: str = "auto",
) -> int:
    """Generate images from text prompts.

    Writes OUT/NNN_K.png (image K of prompt NNN, drawn with seed SEED+K) beside OUT/NNN.txt
    (its prompt), and OUT/images.jsonl (file, prompt, seed, cfg). The same prompt and seed
    give the same image. An over-long prompt is cut to the model's length, with a warning.

    Args:
        prompt: one or more prompts (--prompt "a photo of a red circle" --prompt "...").
        n: images per prompt.
        cfg: classifier-free guidance scale (>= 0; 1 is none).
        seed: image K of every prompt uses seed SEED+K.
        out: output folder.
        model: a generator folder (a training run's model/) or a catalogue name.
        temperature: sampling temperature (0: greedy).
        top_k: draw among the K most likely codes only.
        top_p: draw within the top-p probability mass.
        batch_size: images drawn together.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.generation.api import generate_for_prompts

    check_positive("--n", n)
    check_positive("--batch-size", batch_size)
    sampling = _sampling(cfg, temperature, top_k, top_p)
    if any(not p.strip() for p in prompt):
        raise CommandError("--prompt: an empty prompt (use --cfg 0 for unconditional images)")
    folder = _writable_folder("--out", out)
    generator = _generator(model, device)
    groups = generate_for_prompts(generator, prompt, n, seed, sampling, batch_size)
    lines = []
    for i, group in enumerate(groups):
        (folder / f"{i:03d}.txt").write_text(group.prompt + "\n", encoding="utf-8")
        for k, (image, image_seed) in enumerate(zip(group.images, group.seeds, strict=True)):
            name = f"{i:03d}_{k}.png"
            image.save(folder / name)
            record = {"file": name, "prompt": group.prompt, "seed": image_seed, "cfg": cfg}
            lines.append(json.dumps(record) + "\n")
    (folder / "images.jsonl").write_text("".join(lines), encoding="utf-8")
    arguments = {"prompt": prompt, "n": n, "cfg": cfg, "seed": seed, "model": model}
    arguments.update(temperature=temperature, top_k=top_k, top_p=top_p)
    write_run_record(folder, "generate", arguments)
    print(f"wrote {len(lines)} image(s) for {len(prompt)} prompt(s) to {folder}")
    return 0


def geneval_generate(
    *,
    metadata: str,
    out: str,
    n_samples: int = 4,
    seed: int = 0,
    limit: int | None = None,
    model: str = DEFAULT_GENERATOR,
    cfg: float = DEFAULT_CFG,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    batch_size: int = 8,
    device: str = "auto",
) -> int:
    """Draw GenEval's images: OUT/<5-digit index>/metadata.jsonl and samples/NNNN.png.

    Reads a GenEval metadata file (evaluation_metadata.jsonl, or the shapes world's records);
    score the folder with `vqrae geneval score`. Prompts already complete are skipped.

    Args:
        metadata: the metadata file (one JSON record per line).
        out: the GenEval image folder.
        n_samples: images per prompt (GenEval's reference runs: 4).
        seed: sample K of every prompt uses seed SEED+K.
        limit: only the first N prompts.
        model: a generator folder or a catalogue name.
        cfg: classifier-free guidance scale.
        temperature: sampling temperature (0: greedy).
        top_k: draw among the K most likely codes only.
        top_p: draw within the top-p probability mass.
        batch_size: images drawn together.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.generation.bench_runs import read_geneval_metadata, run_geneval

    check_positive("--n-samples", n_samples)
    check_positive("--limit", limit)
    sampling = _sampling(cfg, temperature, top_k, top_p)
    try:
        count = len(read_geneval_metadata(metadata, limit))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    folder = _writable_folder("--out", out)
    generator = _generator(model, device)
    run = _with_bar(count, "geneval", lambda bar: run_geneval(
        generator, metadata, folder, n_samples, seed, limit, sampling, batch_size, bar
    ))  # fmt: skip
    arguments = {"metadata": metadata, "n_samples": n_samples, "seed": seed, "limit": limit}
    arguments.update(model=model, cfg=cfg, temperature=temperature, top_k=top_k, top_p=top_p)
    write_run_record(folder, "geneval generate", arguments)
    print(run.format("prompt folder(s)"))
    return 0


def dpg_generate(
    *,
    prompts: str,
    out: str,
    seed: int = 0,
    limit: int | None = None,
    model: str = DEFAULT_GENERATOR,
    cfg: float = DEFAULT_CFG,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    batch_size: int = 8,
    device: str = "auto",
) -> int:
    """Draw DPG-Bench's images: OUT/<id>.png, a 2x2 grid of four samples per prompt.

    Reads PROMPTS/<id>.txt (DPG-Bench's prompt folder); score with `vqrae dpg score`. Long
    prompts are cut to the model's length (counted in the summary). Ids already drawn are
    skipped.

    Args:
        prompts: the DPG-Bench prompt folder.
        out: the image folder.
        seed: sample K of every prompt uses seed SEED+K.
        limit: only the first N prompts (by id).
        model: a generator folder or a catalogue name.
        cfg: classifier-free guidance scale.
        temperature: sampling temperature (0: greedy).
        top_k: draw among the K most likely codes only.
        top_p: draw within the top-p probability mass.
        batch_size: images drawn together.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.generation.bench_runs import read_dpg_prompts, run_dpg

    check_positive("--limit", limit)
    sampling = _sampling(cfg, temperature, top_k, top_p)
    try:
        count = len(read_dpg_prompts(prompts, limit))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    folder = _writable_folder("--out", out)
    generator = _generator(model, device)
    run = _with_bar(count, "dpg", lambda bar: run_dpg(
        generator, prompts, folder, seed, limit, sampling, batch_size, bar
    ))  # fmt: skip
    arguments = {"prompts": prompts, "seed": seed, "limit": limit, "model": model, "cfg": cfg}
    arguments.update(temperature=temperature, top_k=top_k, top_p=top_p)
    write_run_record(folder, "dpg generate", arguments)
    print(run.format("grid(s)"))
    return 0


def _with_bar(total: int, desc: str, run):
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="prompt", disable=None) as bar:  # off without a tty
        return run(bar.update)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``generation prepare``, ``train-generator``, ``generate``, ``geneval generate`` and
    ``dpg generate``."""
    group = command_group(subparsers, "generation", "text-to-image data")
    add_function_command(group, "prepare", generation_prepare)
    add_function_command(subparsers, "train-generator", train_generator)
    add_function_command(subparsers, "generate", generate)
    geneval = command_group(subparsers, "geneval", "GenEval: draw and score its images")
    add_function_command(geneval, "generate", geneval_generate)
    dpg = command_group(subparsers, "dpg", "DPG-Bench: draw and score its images")
    add_function_command(dpg, "generate", dpg_generate)
