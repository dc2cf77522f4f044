"""Evaluation commands: eval-recon, eval-semantics, eval-mme, and the benchmark scorers
(``vqrae geneval score``, ``vqrae gqa score``, ``vqrae dpg score``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vqrae.cli.args import add_function_command, command_group
from vqrae.cli.common import (
    DEFAULT_TOKENIZER,
    CommandError,
    check_positive,
    load_tokenizer,
    open_data,
    report_failure,
    write_run_record,
)


def eval_recon(
    *,
    data: str,
    out: str,
    model: str = DEFAULT_TOKENIZER,
    size: int | None = None,
    batch_size: int = 16,
    max_images: int | None = None,
    split: str | None = None,
    examples: int = 16,
    device: str = "auto",
) -> int:
    """Evaluate reconstruction: PSNR, SSIM, LPIPS, rFID and codebook usage, with an HTML report.

    Each image is centre-cropped and resized to SIZE (ADM protocol), reconstructed through the
    codes, rounded to 8-bit levels as a saved PNG, and scored against the crop. Writes
    metrics.json, per_image.csv, report.html (with images/ and plots/) and vqrae_run.json to
    OUT. Unreadable items are reported one line each and listed in metrics.json; the exit
    status is 0 when at least one image was evaluated, 1 when none could be. rFID needs at
    least 2 images and is biased below 2048 (see metrics.json's rfid_note).

    Args:
        data: an image folder (recursive), a datasets save_to_disk folder, or
            hf:NAME_OR_PATH[:SPLIT] for datasets.load_dataset.
        out: output folder.
        model: a trained tokenizer: a checkpoint directory or a trained name.
        size: resolution (default: the model's own image size, e.g. 256 for the paper's
            SigLIP2 models, 224 for DINOv2); must be divisible by the patch size.
        batch_size: images per forward pass.
        max_images: evaluate only the first N items of the data.
        split: dataset split (default: validation, val, test or train, whichever exists first).
        examples: how many first and worst images to show in the report.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.eval.recon import (
        evaluate_reconstruction,
        resolve_size,
        write_metrics,
        write_per_image_csv,
    )
    from vqrae.eval.report import write_recon_report

    check_positive("--batch-size", batch_size)
    check_positive("--max-images", max_images)
    source = open_data(data, split)
    net, target = load_tokenizer(model, device)
    try:
        size = resolve_size(net, size)
    except ValueError as exc:
        raise CommandError(f"--size: {exc}") from None

    result = evaluate_reconstruction(
        net,
        source,
        size=size,
        batch_size=batch_size,
        device=target,
        max_images=max_images,
        keep_examples=examples,
        model_name=model,
        on_failure=report_failure,
    )
    if not result.scores:
        raise CommandError(f"none of the {len(result.failures)} item(s) could be read")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_metrics(result, out_dir)
    write_per_image_csv(result, out_dir)
    report = write_recon_report(result, out_dir)
    arguments = {"data": data, "model": model, "size": size, "batch_size": batch_size}
    arguments.update(max_images=max_images, split=split, device=str(target))
    write_run_record(out_dir, "eval-recon", arguments)
    m = result.metrics

    def show(key: str, digits: int) -> str:
        return "n/a" if m.get(key) is None else f"{m[key]:.{digits}f}"

    print(
        f"{m['num_images']} image(s) at {size}px"
        + (f" ({m['num_failed']} failed)" if m["num_failed"] else "")
        + f": PSNR {show('psnr', 2)} dB, SSIM {show('ssim', 4)}, LPIPS {show('lpips', 4)}, "
        f"rFID {show('rfid', 2)}, codebook usage {show('codebook_usage', 3)}, "
        f"perplexity {show('codebook_perplexity', 1)}\nreport: {report}"
    )
    return 0


def eval_semantics(
    *,
    data: str,
    out: str,
    model: str = DEFAULT_TOKENIZER,
    reference: str | None = None,
    size: int | None = None,
    clusters: int | None = None,
    label_groups: str = "none",
    batch_size: int = 16,
    max_images: int | None = None,
    split: str | None = None,
    device: str = "auto",
) -> int:
    """Semantic retention: feature similarity to a reference, k-NN accuracy, k-means purity.

    Compares the model's continuous features with a reference encoder's (cosine similarity),
    measures leave-one-out top-1 k-NN accuracy on mean-pooled features (model, reference and
    bag of codes) with labels from folder or ImageNet-style file names, and clusters images by
    continuous features and by code histograms (the paper's Figure 4). Writes semantics.json,
    semantics.html (cluster thumbnails in thumbs/) and vqrae_run.json to OUT.

    Args:
        data: an image folder, a datasets save_to_disk folder, or hf:NAME_OR_PATH[:SPLIT].
        out: output folder.
        model: a trained tokenizer: a checkpoint directory or a trained name.
        reference: reference encoder: a checkpoint directory, a registered model name, an
            encoder name (pretrained weights), or "none". Default: the model's encoder as
            pretrained (skipped with a note when it has no pretrained weights).
        size: resolution (default: the model's image size).
        clusters: k of k-means (default: the number of classes, or 10 without labels).
        label_groups: "none" (labels as read) or "restricted-imagenet" (nine coarse classes
            of ImageNet synsets: makes k-NN meaningful on one-image-per-class samples).
        batch_size: images per forward pass.
        max_images: use only the first N items of the data.
        split: dataset split (default: validation, val, test or train, whichever exists first).
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.eval.recon import resolve_size
    from vqrae.tokenizer.semantic_eval import (
        LABEL_GROUPS,
        build_reference,
        evaluate_semantics,
        write_semantics,
    )

    check_positive("--batch-size", batch_size)
    check_positive("--clusters", clusters)
    if label_groups not in LABEL_GROUPS:
        raise CommandError(f"--label-groups must be one of: {', '.join(LABEL_GROUPS)}")
    source = open_data(data, split)
    net, target = load_tokenizer(model, device)
    try:
        size = resolve_size(net, size)
        ref, ref_name, ref_note = build_reference(reference, net)
    except ValueError as exc:
        raise CommandError(str(exc)) from None

    try:
        result = evaluate_semantics(
            net,
            source,
            size=size,
            batch_size=batch_size,
            device=target,
            max_images=max_images,
            reference=ref,
            reference_name=ref_name,
            reference_note=ref_note,
            clusters=clusters,
            label_groups=label_groups,
            on_failure=report_failure,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    result.metrics["model"] = model
    out_dir = Path(out)
    page = write_semantics(result, source, out_dir)
    arguments = {"data": data, "model": model, "reference": reference, "size": size}
    arguments.update(clusters=clusters, label_groups=label_groups, max_images=max_images)
    write_run_record(out_dir, "eval-semantics", arguments)
    m = result.metrics

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    cos = "n/a" if m["cosine_similarity"] is None else f"{m['cosine_similarity']:.4f}"
    print(
        f"{m['num_images']} image(s), {m['num_labelled']} labelled in {m['num_classes']} "
        f"classes: cosine {cos}; k-NN model {pct(m['knn_top1'].get('model'))}, reference "
        f"{pct(m['knn_top1'].get('reference'))}, codes {pct(m['knn_top1'].get('codes'))}; "
        f"purity (k={m['clusters']}) features {pct(m['purity']['features'])}, codes "
        f"{pct(m['purity']['codes'])}\nreport: {page}"
    )
    for note in m["notes"]:
        print(f"note: {note}")
    return 0


def eval_mme(
    questions: str | None = None,
    answers: str | None = None,
    ground_truth: str | None = None,
    results_dir: str | None = None,
    out: str | None = None,
) -> int:
    """Score the MME benchmark (perception and cognition) and print the table.

    Give either LLaVA-layout files (QUESTIONS, ANSWERS and the GROUND_TRUTH folder; with
    RESULTS_DIR, the official eval-tool layout is also written there) or an official RESULTS_DIR
    to read. With OUT, mme_scores.json is written there.

    Args:
        questions: LLaVA question file (.jsonl).
        answers: LLaVA answer file (.jsonl).
        ground_truth: folder of <subtask>.txt ground-truth files.
        results_dir: official eval-tool folder of <subtask>.txt results (read, or written when
            LLaVA files are given).
        out: folder for mme_scores.json.
    """
    from vqrae.eval.mme import SCORES_FILENAME, format_report
    from vqrae.eval.mme import eval_mme as score

    try:
        report = score(questions, answers, ground_truth, results_dir, out)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    print(format_report(report))
    if out is not None:
        print(f"wrote {Path(out) / SCORES_FILENAME}")
    return 0


def geneval_score(image_dir: str, *, out: str, detector: str = "shapes") -> int:
    """Score a GenEval folder and print GenEval's summary (per tag and Overall).

    Reads GenEval's layout (IMAGE_DIR/<5-digit index>/metadata.jsonl and samples/NNNN.png),
    finds each image's objects with the detector, applies GenEval's rules (counts, colours,
    positions, exclusions) and writes GenEval's results file: one JSON line per image.

    Args:
        image_dir: the GenEval image folder.
        out: the results file to write (JSON lines).
        detector: "shapes", the project's detector for the shapes world (GenEval's own
            evaluator, Mask2Former + CLIP, scores real images: see the README).
    """
    from vqrae.eval.geneval import eval_geneval, format_report

    if detector != "shapes":
        raise CommandError(f"--detector must be 'shapes', got {detector!r}")
    try:
        report = eval_geneval(image_dir, out)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    print(format_report(report))
    print(f"wrote {out}")
    return 0


def gqa_score(*, questions: str, predictions: str, out: str | None = None) -> int:
    """Score GQA predictions: accuracy overall, binary/open and per structural/semantic type.

    Predictions are the official evaluator's list of {"questionId", "prediction"}, or LLaVA's
    answer lines ({"question_id", "text"}); answers are normalised as LLaVA's GQA conversion does
    (trailing period removed, lower case).

    Args:
        questions: GQA questions JSON ({qid: {imageId, question, answer, types}}).
        predictions: predictions JSON, or LLaVA answers JSON lines.
        out: a JSON file for the scores.
    """
    from vqrae.eval.gqa import eval_gqa, format_report

    try:
        report = eval_gqa(questions, predictions, out)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    print(format_report(report))
    return 0


def dpg_score(*, images: str, csv: str, judge: str = "detector", out: str | None = None) -> int:
    """Score DPG-Bench images (2x2 grids named <item_id>.png) with a yes/no judge.

    Each question of an item is asked of every tile; a child question scores 0 where its parent
    scored 0; an image scores the mean over its questions, averaged over the tiles; DPG is 100 x
    the mean, with per-category scores.

    Args:
        images: folder of <item_id>.png grids.
        csv: the DPG-Bench CSV (item_id, text, keywords, proposition_id, dependency, ...).
        judge: "detector" (the shapes detector), "oracle" (a shapes data set's recorded truth),
            or "mplug" (ModelScope's mPLUG, where installed).
        out: a JSON file for the scores.
    """
    from vqrae.eval.dpg import eval_dpg, format_report, load_dpg_csv, make_judge

    try:
        items = load_dpg_csv(csv)
        report = eval_dpg(images, csv, make_judge(judge, items, Path(csv).parent), out)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        raise CommandError(str(exc)) from None
    print(format_report(report))
    return 0


def vqa_score(*, questions: str, answers: str, out: str | None = None) -> int:
    """Score short answers per question type, with the yes/no balance.

    Args:
        questions: JSON lines {"question_id", "text", "answer", "category"} (a shapes data set's
            vqa/questions.jsonl).
        answers: JSON lines {"question_id", "text"} (what ``vqrae answer`` writes).
        out: a JSON file for the scores.
    """
    from vqrae.eval.vqa import format_vqa_report, score_vqa
    from vqrae.utils.files import atomic_write
    from vqrae.utils.jsonl import read_jsonl

    try:
        report = score_vqa(read_jsonl(questions), read_jsonl(answers))
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise CommandError(str(exc)) from None
    print(format_vqa_report(report))
    if out:
        text = json.dumps(report.to_dict(), indent=2) + "\n"
        atomic_write(Path(out), lambda tmp: tmp.write_text(text, encoding="utf-8"))
        print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's commands."""
    add_function_command(subparsers, "eval-recon", eval_recon)
    add_function_command(subparsers, "eval-semantics", eval_semantics)
    add_function_command(subparsers, "eval-mme", eval_mme)
    geneval = command_group(subparsers, "geneval", "GenEval: score a folder of generated images")
    add_function_command(geneval, "score", geneval_score)
    gqa = command_group(subparsers, "gqa", "GQA: score predictions")
    add_function_command(gqa, "score", gqa_score)
    vqa = command_group(subparsers, "vqa", "Visual questions: score short answers per type")
    add_function_command(vqa, "score", vqa_score)
    dpg = command_group(subparsers, "dpg", "DPG-Bench: score 2x2 grids with a yes/no judge")
    add_function_command(dpg, "score", dpg_score)
