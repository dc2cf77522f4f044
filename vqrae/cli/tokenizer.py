"""Tokenizer commands: reconstruct, tokenize, train-tokenizer, export, models."""

from __future__ import annotations

import argparse
from pathlib import Path

from vqrae.cli.args import add_function_command
from vqrae.cli.common import (
    DEFAULT_TOKENIZER,
    CommandError,
    check_positive,
    load_tokenizer,
    open_files,
    report_failure,
    write_run_record,
)


def _size_for(net, size: int | None) -> int:
    from vqrae.eval.recon import resolve_size

    try:
        return resolve_size(net, size)
    except ValueError as exc:
        raise CommandError(f"--size: {exc}") from None


def reconstruct(
    images: list[str],
    model: str = DEFAULT_TOKENIZER,
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
        model: a trained tokenizer: a checkpoint directory or a trained name (`vqrae models`).
        out: output folder; files are named after the inputs' stems.
        size: resolution (default: the model's image size); must be divisible by the patch.
        batch_size: images per forward pass.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.tokenizer.batch_io import reconstruct_images

    check_positive("--batch-size", batch_size)
    source = open_files(images)
    net, _ = load_tokenizer(model, device)
    size = _size_for(net, size)
    out_dir = Path(out)
    run = reconstruct_images(
        net, source, out_dir, size=size, batch_size=batch_size, on_failure=report_failure
    )
    write_run_record(out_dir, "reconstruct", {"images": images, "model": model, "size": size})
    print(run.summary(f"wrote {run.written} reconstruction(s) to {out_dir}"))
    return 1 if run.failed else 0


def tokenize(
    images: list[str],
    *,
    out: str,
    model: str = DEFAULT_TOKENIZER,
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
        model: a trained tokenizer: a checkpoint directory or a trained name (`vqrae models`).
        size: resolution (default: the model's image size).
        batch_size: images per forward pass.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.tokenizer.batch_io import tokenize_images

    check_positive("--batch-size", batch_size)
    source = open_files(images)
    net, _ = load_tokenizer(model, device)
    size = _size_for(net, size)
    try:
        run = tokenize_images(
            net,
            source,
            Path(out),
            size=size,
            model_name=model,
            batch_size=batch_size,
            on_failure=report_failure,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(run.summary(f"wrote indices of {run.written} image(s) to {out}"))
    return 1 if run.failed else 0


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
    except (ValueError, TypeError, FileNotFoundError) as exc:
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
        model: a trained tokenizer: a checkpoint directory or a trained name.
        out: the directory to write.
        dtype: "float16", "bfloat16" or "float32".
        compact: leave out the regenerable weights.
    """
    import torch

    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if dtype not in dtypes:
        raise CommandError(f"--dtype must be one of {', '.join(dtypes)}, got {dtype!r}")
    net, _ = load_tokenizer(model, "cpu")
    path = net.save_pretrained(out, dtype=dtypes[dtype], compact=compact)
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    print(f"wrote {path} ({size:.1f} MiB)")
    return 0


def models() -> int:
    """List the registered tokenizer variants and the trained checkpoints."""
    from vqrae import assets
    from vqrae.tokenizer.model import trained_checkpoints
    from vqrae.tokenizer.registry import get_variant, list_models

    for name in list_models():
        print(f"{name:28s} {get_variant(name).description}")
    print("\ntrained (load with --model NAME or VQRAE.from_pretrained(NAME)):")
    for name in trained_checkpoints():
        where = assets.shipped_path(assets.get_spec(name))
        state = f"shipped: {where}" if where is not None else "not shipped in this installation"
        print(f"{name:28s} {state}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's commands."""
    add_function_command(subparsers, "reconstruct", reconstruct)
    add_function_command(subparsers, "tokenize", tokenize)
    add_function_command(subparsers, "train-tokenizer", train_tokenizer)
    add_function_command(subparsers, "export", export)
    add_function_command(subparsers, "models", models)
