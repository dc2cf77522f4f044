"""Understanding commands: train-mllm, chat, answer, mme run, gqa run, dpg run, export-llava."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vqrae.cli.args import add_function_command, command_group
from vqrae.cli.common import CommandError, check_positive, write_run_record

if TYPE_CHECKING:
    from vqrae.mllm.generate import GenerationSettings
    from vqrae.mllm.model import MLLM

#: The shipped demo understanding model (vqrae.mllm.model.DEMO_MLLM, without importing torch).
DEFAULT_MLLM = "vqrae-mllm-demo"
MODEL_HELP = "an understanding model folder (written by vqrae train-mllm, OUT/model)"


def _require(model: str | None) -> str:
    """The folder of --model (default: the shipped demo model), or a one-line error."""
    from vqrae.mllm.model import find_mllm

    try:
        return str(find_mllm(model))
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _load(model: str | None, device: str, tokenizer: str | None = None) -> MLLM:
    """The model of --model (with --tokenizer swapped in), or a one-line error."""
    from vqrae import assets
    from vqrae.mllm.model import MLLM

    model = _require(model)
    try:
        return MLLM.from_pretrained(model, tokenizer=tokenizer, device=device)
    except (ValueError, FileNotFoundError, OSError, assets.AssetError) as exc:
        raise CommandError(str(exc)) from None


def _model_id(model: str | None, given: str | None = None) -> str:
    """The answers' model_id: given, or the model folder's name (its run's, for OUT/model)."""
    if given:
        return given
    path = Path(str(model))
    return path.parent.name if path.name == "model" and path.parent.name else path.name


def _settings(max_new_tokens: int, temperature: float, seed: int = 0) -> GenerationSettings:
    from vqrae.mllm.generate import GenerationSettings

    try:
        return GenerationSettings(max_new_tokens, temperature, seed=seed)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _bar(total: int, desc: str):
    from vqrae.training.logs import progress_bar

    return progress_bar(total, 0, desc, sys.stderr.isatty())


def _report_failure(failure) -> None:
    print(f"error: {failure.question_id}: {failure.error}", file=sys.stderr, flush=True)


def train_mllm(
    *,
    config: str,
    out: str,
    stage: int | None = None,
    resume: bool = False,
    set: list[str] | None = None,
    progress: bool = True,
) -> int:
    """Train an understanding model (one LLaVA stage) from a YAML recipe.

    Stage 1 trains the projector on captions (encoder and LM frozen, plain template); stage 2
    instruction-tunes the projector and the LM (LoRA or all of it) with the LM's chat template,
    from the stage-1 model (--set init_from=RUN1/model). One process, or several under torchrun
    (`torchrun --nproc_per_node N -m vqrae.cli train-mllm ...`); DeepSpeed ZeRO when the recipe
    names a DeepSpeed file. Writes OUT/checkpoints, OUT/model, OUT/tb, config.yaml, run.json.

    Args:
        config: recipe file (configs/mllm/).
        out: run folder.
        stage: 1 or 2 (default: the recipe's `stage`).
        resume: continue from the latest checkpoint in OUT.
        set: overrides, e.g. --set steps=20 init_from=runs/s1/model.
        progress: show a progress bar.
    """
    from vqrae.mllm.train_config import load_mllm_train_config
    from vqrae.mllm.trainer import MLLMTrainer

    try:
        cfg = load_mllm_train_config(config, stage=stage, overrides=set)
        result = MLLMTrainer(cfg, out, resume=resume, progress=progress).fit()
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    if result.is_main:
        print(result.summary(cfg.stage))
    return 0


def chat(
    *,
    image: str | None = None,
    model: str | None = None,
    tokenizer: str | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    device: str = "auto",
) -> int:
    """Chat about an image; the answer is printed as it is generated.

    Reads questions line by line from standard input (a terminal or a pipe). Commands:
    /image PATH (switch image, new conversation), /reset (clear the conversation), /quit.
    An error (an unreadable image) is one line on standard error, and the session goes on;
    the exit status is 1 if any error was reported.

    Args:
        image: the image to talk about.
        model: an understanding model folder or catalogue name (default: the shipped
            vqrae-mllm-demo).
        tokenizer: read features from this VQRAE instead of the model's own (plug and play).
        max_new_tokens: the longest answer, in tokens.
        temperature: 0 answers greedily; above 0 samples.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.data.images import ImageReadError
    from vqrae.mllm.chat import HELP, ChatSession, run_chat

    check_positive("--max-new-tokens", max_new_tokens)
    session = ChatSession(_load(model, device, tokenizer), _settings(max_new_tokens, temperature))
    errors = 0
    if image is not None:
        try:
            session.set_image(image)
        except ImageReadError as exc:
            errors += 1
            print(f"error: {exc}", file=sys.stderr, flush=True)
    interactive = sys.stdin.isatty()
    if interactive:
        print(HELP, flush=True)
    errors += run_chat(session, sys.stdin, sys.stdout, sys.stderr, "> " if interactive else "")
    return 1 if errors else 0


def answer(
    *,
    questions: str,
    image_folder: str,
    out: str,
    model: str | None = None,
    tokenizer: str | None = None,
    model_id: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    device: str = "auto",
) -> int:
    """Answer a question file in LLaVA's model_vqa format, batched and resumable.

    Question lines {"question_id", "image", "text"}; answer lines {"question_id", "prompt",
    "text", "answer_id", "model_id", "metadata"}. Questions already answered in OUT are skipped,
    so an interrupted run continues where it stopped. Unreadable images are reported one line
    each (exit status 1) and left unanswered.

    Args:
        questions: the question file (.jsonl).
        image_folder: the folder image paths are relative to.
        out: the answer file (.jsonl), appended.
        model: an understanding model folder or catalogue name (default: the shipped
            vqrae-mllm-demo).
        tokenizer: read features from this VQRAE instead of the model's own (plug and play).
        model_id: the answers' model_id (default: the model folder's name; the run folder's for
            a trainer's OUT/model).
        batch_size: questions per generation pass.
        max_new_tokens: the longest answer, in tokens.
        temperature: 0 answers greedily; above 0 samples.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.mllm.answer import answer_questions, read_questions

    model = _require(model)
    check_positive("--batch-size", batch_size)
    check_positive("--max-new-tokens", max_new_tokens)
    try:
        records = read_questions(questions)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    net = _load(model, device, tokenizer)
    bar = _bar(len(records), "answers")
    run = answer_questions(
        net,
        records,
        image_folder,
        out,
        model_id=_model_id(model, model_id),
        batch_size=batch_size,
        settings=_settings(max_new_tokens, temperature),
        on_failure=_report_failure,
        on_batch=bar.update if bar is not None else None,
    )
    print(run.summary())
    return 1 if run.failures else 0


def mme_run(
    *,
    mme: str,
    out: str,
    model: str | None = None,
    tokenizer: str | None = None,
    instruction: str = "mme",
    batch_size: int = 8,
    device: str = "auto",
) -> int:
    """Run MME end to end: its folder layout -> answers -> the eval tool's layout -> scores.

    Reads MME's subtask folders (flat <subtask>/<image> + <image>.txt, or nested images/ +
    questions_answers_YN/), answers every question greedily (resumable), writes OUT/results/
    (the official eval tool's layout) and OUT/mme_scores.json, and prints the score table.

    Args:
        mme: the MME folder (e.g. a shapes data set's mme/).
        out: output folder.
        model: an understanding model folder or catalogue name (default: the shipped
            vqrae-mllm-demo).
        tokenizer: read features from this VQRAE instead of the model's own (plug and play).
        instruction: "mme" (MME's questions, ending in "Please answer yes or no.") or "llava"
            (LLaVA-1.5's prompt: "Answer the question using a single word or phrase.").
        batch_size: questions per generation pass.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.eval.mme import format_report
    from vqrae.mllm.mme_run import read_mme_folder, run_mme

    model = _require(model)
    check_positive("--batch-size", batch_size)
    if instruction not in ("mme", "llava"):
        raise CommandError(f"--instruction must be 'mme' or 'llava', got {instruction!r}")
    try:
        total = len(read_mme_folder(mme))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    net = _load(model, device, tokenizer)
    bar = _bar(total, "MME")
    result = run_mme(
        net,
        mme,
        out,
        model_id=_model_id(model),
        instruction=instruction,  # type: ignore[arg-type]
        batch_size=batch_size,
        on_failure=_report_failure,
        on_batch=bar.update if bar is not None else None,
    )
    write_run_record(Path(out), "mme run", {"mme": mme, "model": model, "tokenizer": tokenizer})
    print(format_report(result.report))
    print(f"{result.answers.summary()}\nwrote {result.scores}")
    return 1 if result.answers.failures else 0


def gqa_run(
    *,
    questions: str,
    image_folder: str,
    out: str,
    model: str | None = None,
    tokenizer: str | None = None,
    batch_size: int = 8,
    device: str = "auto",
) -> int:
    """Run GQA end to end: questions -> answers -> predictions -> scores.

    Asks the balanced questions with LLaVA-1.5's GQA prompt (greedy, resumable), converts the
    answers as LLaVA does (trailing period removed, lower case), writes OUT/predictions.json and
    OUT/gqa_scores.json and prints the accuracy lines of GQA's eval.py.

    Args:
        questions: GQA questions JSON ({qid: {imageId, question, answer, types}}).
        image_folder: the folder of <imageId>.jpg (or .png) images.
        out: output folder.
        model: an understanding model folder or catalogue name (default: the shipped
            vqrae-mllm-demo).
        tokenizer: read features from this VQRAE instead of the model's own (plug and play).
        batch_size: questions per generation pass.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.eval.gqa import format_report
    from vqrae.mllm.gqa_run import gqa_model_questions, run_gqa

    model = _require(model)
    check_positive("--batch-size", batch_size)
    try:
        total = len(gqa_model_questions(questions, image_folder))
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    net = _load(model, device, tokenizer)
    bar = _bar(total, "GQA")
    try:
        result = run_gqa(
            net,
            questions,
            image_folder,
            out,
            model_id=_model_id(model),
            batch_size=batch_size,
            on_failure=_report_failure,
            on_batch=bar.update if bar is not None else None,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    write_run_record(Path(out), "gqa run", {"questions": questions, "model": model})
    print(format_report(result.report))
    print(f"{result.answers.summary()}\nwrote {result.scores}")
    return 0


def dpg_run(
    *, images: str, csv: str, model: str | None = None, out: str | None = None, device: str = "auto"
) -> int:
    """Score DPG-Bench grids with this understanding model as the yes/no judge.

    Args:
        images: folder of <item_id>.png 2x2 grids.
        csv: the DPG-Bench CSV.
        model: an understanding model folder or catalogue name (default: the shipped
            vqrae-mllm-demo).
        out: a JSON file for the scores.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.eval.dpg import format_report
    from vqrae.mllm.dpg_judge import run_dpg

    net = _load(model, device)
    try:
        report = run_dpg(net, images, csv, out)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    print(format_report(report))
    return 0


def export_llava(model: str, *, out: str) -> int:
    """Export an understanding model as transformers' LlavaForConditionalGeneration.

    The encoder must map onto a transformers vision model (DINOv2: Dinov2Model) and the
    features must be what that model's hidden states give: no token pooling, and no final
    norm (encoder_final_norm "none"); otherwise the export is refused with the reason. A LoRA
    adapter is merged into the LM.

    Args:
        model: an understanding model folder or catalogue name (default: the shipped
            vqrae-mllm-demo).
        out: the folder to write (config, weights, tokenizer, image processor).
    """
    from vqrae.mllm.export_hf import ExportError
    from vqrae.mllm.export_hf import export_llava as export

    net = _load(model, "cpu")
    try:
        path = export(net, out)
    except ExportError as exc:
        raise CommandError(str(exc)) from None
    print(f"wrote {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's commands."""
    add_function_command(subparsers, "train-mllm", train_mllm)
    add_function_command(subparsers, "chat", chat)
    add_function_command(subparsers, "answer", answer)
    add_function_command(subparsers, "export-llava", export_llava)
    mme = command_group(subparsers, "mme", "MME: answer and score the benchmark's folder")
    add_function_command(mme, "run", mme_run)
    gqa = command_group(subparsers, "gqa", "GQA: answer, predict and score")
    add_function_command(gqa, "run", gqa_run)
    dpg = command_group(subparsers, "dpg", "DPG-Bench: score grids with a yes/no judge")
    add_function_command(dpg, "run", dpg_run)
