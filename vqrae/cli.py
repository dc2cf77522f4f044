"""The ``vqrae`` command. Each subcommand is a typed function below; ``vqrae CMD --help``.

Errors a user can cause (missing files, bad images, unknown models, bad flags) print one line,
``vqrae CMD: error: ...``, and exit non-zero without a traceback; ``VQRAE_DEBUG=1`` shows the
traceback of unexpected failures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vqrae.cli_args import add_function_command

DEFAULT_MODEL = "vqrae-dinov2-s-demo"  # loads checkpoints/vqrae-dinov2-s-demo when shipped

log = logging.getLogger("vqrae")


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


# ---------------------------------------------------------------------------- helpers
_current_command = ""  # set by main(); names the subcommand in error lines


def _error(message: str) -> None:
    prefix = f"vqrae {_current_command}: error:" if _current_command else "vqrae: error:"
    print(f"{prefix} {message}", file=sys.stderr, flush=True)


def write_run_record(out_dir: Path, command: str, args: dict[str, Any]) -> Path:
    """Write ``vqrae_run.json`` (command, arguments, version, git revision) beside outputs."""
    from vqrae import __version__
    from vqrae.utils.files import atomic_write
    from vqrae.utils.runtime import git_revision

    record = {
        "command": command,
        "arguments": args,
        "vqrae_version": __version__,
        "git_revision": git_revision(),
    }
    path = out_dir / "vqrae_run.json"
    text = json.dumps(record, indent=2, default=str) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def load_model(name_or_dir: str, device: str = "auto"):
    """A VQRAE from a checkpoint directory or a registered name, in eval mode on ``device``."""
    from vqrae.tokenizer.model import VQRAE
    from vqrae.utils.runtime import resolve_device

    target = resolve_device(device)
    try:
        model = VQRAE.from_pretrained(name_or_dir)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    return model.to(target).eval(), target


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    """File stems, disambiguated with ``-2``, ``-3``... when two inputs share one."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0) + 1
        seen[path.stem] = count
        stems.append(path.stem if count == 1 else f"{path.stem}-{count}")
    return stems


def _batches(items: Sequence[Any], size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_positive(flag: str, value: int | None) -> None:
    """Reject a count flag below 1 (``None`` means unset)."""
    if value is not None and value < 1:
        raise CommandError(f"{flag} must be >= 1, got {value}")


def _open_data(data: str, split: str | None):
    """An image source (folder, saved dataset, hf:NAME) with at least one item."""
    from vqrae.data.sources import SourceError, open_source

    try:
        source = open_source(data, split=split)
    except SourceError as exc:
        raise CommandError(str(exc)) from None
    if len(source) == 0:
        raise CommandError(f"{data}: no images found")
    return source


# ---------------------------------------------------------------------------- commands
class ImageBatches:
    """Readable images of the inputs in batches, on the model's device, with a progress bar.

    Each unreadable file is reported on one line and counted in ``failures``.
    """

    def __init__(
        self,
        command: str,
        images: list[str],
        model: str,
        size: int | None,
        batch_size: int,
        device: str,
    ) -> None:
        from vqrae.data.images import ImageReadError, list_images

        _check_positive("--batch-size", batch_size)
        try:
            self.paths = list_images(images)
        except ImageReadError as exc:
            raise CommandError(str(exc)) from None
        if not self.paths:
            raise CommandError("no images found in the given paths")
        self.net, self.device = load_model(model, device)
        self.size = size or self.net.config.image_size
        if self.size % self.net.size_multiple:
            raise CommandError(
                f"--size {self.size} is not a multiple of the model's {self.net.size_multiple} px"
            )
        self.command = command
        self.batch_size = batch_size
        self.failures = 0

    def __iter__(self):
        """Yield ``(paths, images (B, 3, S, S))`` for the readable files of each batch."""
        import torch
        from tqdm.auto import tqdm

        from vqrae.data.images import iter_loaded

        with tqdm(total=len(self.paths), desc=self.command, unit="img", disable=None) as bar:
            for chunk in _batches(self.paths, self.batch_size):
                good: list[tuple[Path, torch.Tensor]] = []
                for path, tensor, error in iter_loaded(chunk, self.size):
                    if error is not None:
                        self.failures += 1
                        tqdm.write(f"vqrae {self.command}: error: {error}", file=sys.stderr)
                    else:
                        good.append((path, tensor))
                if good:
                    yield [p for p, _ in good], torch.stack([t for _, t in good]).to(self.device)
                bar.update(len(chunk))

    def autocast(self):
        """No-grad inference context in the device's default precision."""
        import contextlib

        import torch

        from vqrae.utils.runtime import autocast, default_precision

        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad())
        stack.enter_context(autocast(self.device, default_precision(self.device)))
        return stack

    def summary(self, done: str) -> str:
        return done + (f"; {self.failures} failed" if self.failures else "")


def reconstruct(
    images: list[str],
    model: str = DEFAULT_MODEL,
    out: str = "reconstructions",
    size: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
) -> int:
    """Reconstruct images through the discrete codes and write one PNG per input.

    Each image is converted to RGB (alpha over white, 16-bit scaled), its shorter side resized
    to SIZE and centre-cropped to SIZE x SIZE, tokenized and decoded. Unreadable files are
    reported one line each and skipped; the exit status is 1 if any failed.

    Args:
        images: image files or folders (searched recursively).
        model: a registered model name or a save_pretrained directory.
        out: output folder; files are named after the inputs' stems.
        size: resolution (default: the model's image size); must be divisible by the patch.
        batch_size: images per forward pass.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.data.images import save_image

    batches = ImageBatches("reconstruct", images, model, size, batch_size, device)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = dict(zip(batches.paths, _unique_stems(batches.paths), strict=True))
    written = 0
    for paths, batch in batches:
        with batches.autocast():
            recon = batches.net.reconstruct(batch).float()
        for path, image in zip(paths, recon, strict=True):
            save_image(image, out_dir / f"{stems[path]}.png")
            written += 1
    record = {"images": images, "model": model, "size": batches.size}
    write_run_record(out_dir, "reconstruct", record)
    print(batches.summary(f"wrote {written} reconstruction(s) to {out_dir}"))
    return 1 if batches.failures else 0


def tokenize(
    images: list[str],
    *,
    out: str,
    model: str = DEFAULT_MODEL,
    size: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
) -> int:
    """Tokenize images into code indices, saved as one safetensors file.

    The file holds ``indices`` (M, N) int32 for the M readable images, in input order; its
    metadata holds ``files`` (JSON list of the source paths), ``model``, ``image_size`` and
    ``grid`` ("h,w"). Unreadable files are reported and skipped (exit status 1).

    Args:
        images: image files or folders (searched recursively).
        out: the .safetensors file to write.
        model: a registered model name or a save_pretrained directory.
        size: resolution (default: the model's image size).
        batch_size: images per forward pass.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    import torch
    from safetensors.torch import save_file

    from vqrae.utils.files import atomic_write

    batches = ImageBatches("tokenize", images, model, size, batch_size, device)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    rows: list[torch.Tensor] = []
    for paths, batch in batches:
        with batches.autocast():
            rows.append(batches.net.tokenize(batch).to(torch.int32).cpu())
        files.extend(str(p) for p in paths)
    if not rows:
        raise CommandError("no image could be read; nothing written")
    grid, _ = batches.net.grid_for_size(batches.size, batches.size)
    metadata = {
        "files": json.dumps(files),
        "model": model,
        "image_size": str(batches.size),
        "grid": f"{grid},{grid}",
        "codebook_size": str(batches.net.config.codebook_size),
    }
    tensors = {"indices": torch.cat(rows).contiguous()}
    atomic_write(out_path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    print(batches.summary(f"wrote indices of {len(files)} image(s) to {out_path}"))
    return 1 if batches.failures else 0


def demo(
    model: str = DEFAULT_MODEL,
    out: str = "outputs/demo",
    images: list[str] | None = None,
    device: str = "auto",
) -> int:
    """The main job on the embedded default: reconstruct the built-in sample images.

    Draws the package's sample images into OUT/inputs (plus any IMAGES given), fetches the
    model's weights if needed, and writes reconstructions into OUT/reconstructions.

    Args:
        model: a registered model name or a save_pretrained directory.
        out: output folder.
        images: extra image files or folders to include.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.data.samples import write_samples

    out_dir = Path(out)
    inputs = out_dir / "inputs"
    write_samples(inputs)
    sources = [str(inputs), *(images or [])]
    return reconstruct(sources, model=model, out=str(out_dir / "reconstructions"), device=device)


def train_tokenizer(
    *,
    config: str,
    out: str,
    stage: int | None = None,
    resume: bool = False,
    set: list[str] | None = None,
    device: str = "auto",
    progress: bool = True,
) -> int:
    """Train a VQRAE tokenizer (one stage) from a YAML recipe.

    Runs in one process, or under torchrun with DDP/FSDP (`torchrun --nproc_per_node N -m
    vqrae.cli train-tokenizer ...`). Checkpoints go to OUT/checkpoints, the exported model to
    OUT/model, TensorBoard logs to OUT/tb, the merged config and git revision to OUT.

    Args:
        config: recipe file (see configs/tokenizer/).
        out: run folder.
        stage: 1 (encoder frozen) or 2 (encoder trained with self-distillation); default from
            the recipe's `stage`.
        resume: continue from the latest checkpoint in OUT.
        set: overrides, e.g. --set steps=1000 optim.lr=2e-4 data.train=/data/imagenet.
        device: "auto" (CUDA if available) or "cpu".
        progress: show a progress bar.
    """
    from vqrae.tokenizer.train_config import load_train_config
    from vqrae.tokenizer.trainer import TokenizerTrainer
    from vqrae.utils.distributed import DistributedContext

    try:
        cfg = load_train_config(config, stage=stage, overrides=set)
    except (ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from None
    context = DistributedContext.from_environment(device)
    try:
        trainer = TokenizerTrainer(cfg, out, resume=resume, context=context, progress=progress)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    path = trainer.fit()
    if context.is_main:
        print(f"stage {cfg.stage} finished at step {trainer.step}; model written to {path}")
    return 0


def export(model: str, *, out: str, dtype: str = "float16", compact: bool = True) -> int:
    """Re-save a tokenizer for distribution: half precision, and compact by default.

    Compact leaves out what can be rebuilt exactly on load: the encoder tensors that still
    equal their pretrained weights (fetched through vqrae.assets) and the frozen codebook when
    it is the random one (regenerated from its seed, verified by checksum).

    Args:
        model: a registered model name or a save_pretrained directory.
        out: the directory to write.
        dtype: "float16", "bfloat16" or "float32".
        compact: leave out the regenerable weights.
    """
    import torch

    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if dtype not in dtypes:
        raise CommandError(f"--dtype must be one of {', '.join(dtypes)}, got {dtype!r}")
    net, _ = load_model(model, "cpu")
    path = net.save_pretrained(out, dtype=dtypes[dtype], compact=compact)
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    print(f"wrote {path} ({size:.1f} MiB)")
    return 0


def models() -> int:
    """List the registered tokenizer variants."""
    from vqrae.tokenizer.registry import get_variant, list_models, trained_checkpoint

    for name in list_models():
        trained = trained_checkpoint(name)
        note = f" [trained: {trained}]" if trained is not None else ""
        print(f"{name:28s} {get_variant(name).description}{note}")
    return 0


def assets_list() -> int:
    """List the pretrained assets, where each comes from, and whether it is cached."""
    from vqrae import assets

    for spec in assets.list_assets():
        sources = []
        if spec.hub_repo:
            sources.append(f"hub:{spec.hub_repo}")
        if spec.offline is not None:
            sources.append(f"offline:{spec.offline.package}=={spec.offline.version}")
        state = "cached" if assets.is_cached(spec.name) else "-"
        print(f"{spec.name:26s} {state:7s} {', '.join(sources):60s} {spec.description}")
    print(f"cache: {assets.cache_dir()}")
    return 0


def assets_fetch(names: list[str], force: bool = False) -> int:
    """Fetch (and convert) pretrained assets into the cache.

    Args:
        names: asset names (see `vqrae assets list`), or "all-offline" for every asset with an
            offline source.
        force: fetch again even when cached.
    """
    from vqrae import assets

    if names == ["all-offline"]:
        names = [s.name for s in assets.list_assets() if s.offline is not None]
    failures = 0
    for name in names:
        try:
            path = assets.fetch(name, force=force)
        except assets.AssetError as exc:
            failures += 1
            _error(str(exc))
        else:
            print(f"{name}: {path}")
    return 1 if failures else 0


def eval_recon(
    *,
    data: str,
    out: str,
    model: str = DEFAULT_MODEL,
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
        model: a registered model name or a save_pretrained directory.
        size: resolution (default: the model's own image size, e.g. 256 for the paper's
            SigLIP2 models, 224 for DINOv2); must be divisible by the patch size.
        batch_size: images per forward pass.
        max_images: evaluate only the first N items of the data.
        split: dataset split (default: validation, val, test or train, whichever exists first).
        examples: how many first and worst images to show in the report.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from tqdm.auto import tqdm

    from vqrae.eval.recon import (
        evaluate_reconstruction,
        resolve_size,
        write_metrics,
        write_per_image_csv,
    )
    from vqrae.eval.report import write_recon_report

    _check_positive("--batch-size", batch_size)
    _check_positive("--max-images", max_images)
    source = _open_data(data, split)
    net, target = load_model(model, device)
    try:
        size = resolve_size(net, size)
    except ValueError as exc:
        raise CommandError(f"--size: {exc}") from None

    def report_failure(record) -> None:
        tqdm.write(f"vqrae eval-recon: error: {record.name}: {record.error}", file=sys.stderr)

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
    model: str = DEFAULT_MODEL,
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
        model: a registered model name or a save_pretrained directory.
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
    from tqdm.auto import tqdm

    from vqrae.eval.recon import resolve_size
    from vqrae.eval.semantic_eval import (
        LABEL_GROUPS,
        build_reference,
        evaluate_semantics,
        write_semantics,
    )

    _check_positive("--batch-size", batch_size)
    _check_positive("--clusters", clusters)
    if label_groups not in LABEL_GROUPS:
        raise CommandError(f"--label-groups must be one of: {', '.join(LABEL_GROUPS)}")
    source = _open_data(data, split)
    net, target = load_model(model, device)
    try:
        size = resolve_size(net, size)
        ref, ref_name, ref_note = build_reference(reference, net)
    except ValueError as exc:
        raise CommandError(str(exc)) from None

    def report_failure(record) -> None:
        tqdm.write(f"vqrae eval-semantics: error: {record.name}: {record.error}", file=sys.stderr)

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


# ---------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqrae", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_function_command(subparsers, "reconstruct", reconstruct)
    add_function_command(subparsers, "tokenize", tokenize)
    add_function_command(subparsers, "demo", demo)
    add_function_command(subparsers, "train-tokenizer", train_tokenizer)
    add_function_command(subparsers, "export", export)
    add_function_command(subparsers, "models", models)
    add_function_command(subparsers, "eval-recon", eval_recon)
    add_function_command(subparsers, "eval-semantics", eval_semantics)
    add_function_command(subparsers, "eval-mme", eval_mme)
    assets_parser = subparsers.add_parser("assets", help="list or fetch pretrained weights")
    assets_sub = assets_parser.add_subparsers(
        dest="assets_command", metavar="ACTION", required=True
    )
    add_function_command(assets_sub, "list", assets_list)
    add_function_command(assets_sub, "fetch", assets_fetch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vqrae`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    command = " ".join(filter(None, [args.command, getattr(args, "assets_command", None)]))
    global _current_command
    _current_command = command
    fn = args._fn
    kwargs = {
        k: v
        for k, v in vars(args).items()
        if not k.startswith("_") and k not in ("command", "assets_command", "verbose")
    }
    try:
        return int(fn(**kwargs) or 0)
    except CommandError as exc:
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the user gets one line, developers VQRAE_DEBUG=1
        if os.environ.get("VQRAE_DEBUG"):
            raise
        _error(f"{type(exc).__name__}: {exc} (set VQRAE_DEBUG=1 for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
