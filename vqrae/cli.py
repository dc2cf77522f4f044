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
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vqrae.cli_args import add_function_command

DEFAULT_MODEL = "vqrae-dinov2-s"

log = logging.getLogger("vqrae")


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


# ---------------------------------------------------------------------------- helpers
_current_command = ""  # set by main(); names the subcommand in error lines


def _error(message: str) -> None:
    prefix = f"vqrae {_current_command}: error:" if _current_command else "vqrae: error:"
    print(f"{prefix} {message}", file=sys.stderr, flush=True)


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_run_record(out_dir: Path, command: str, args: dict[str, Any]) -> Path:
    """Write ``vqrae_run.json`` (command, arguments, version, git revision) beside outputs."""
    from vqrae import __version__
    from vqrae.utils.files import atomic_write

    record = {
        "command": command,
        "arguments": args,
        "vqrae_version": __version__,
        "git_revision": _git_revision(),
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


# ---------------------------------------------------------------------------- commands
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
    import torch
    from tqdm.auto import tqdm

    from vqrae.data.images import ImageReadError, iter_loaded, list_images, save_image
    from vqrae.utils.runtime import autocast, default_precision

    if batch_size < 1:
        raise CommandError(f"--batch-size must be >= 1, got {batch_size}")
    try:
        paths = list_images(images)
    except ImageReadError as exc:
        raise CommandError(str(exc)) from None
    if not paths:
        raise CommandError("no images found in the given paths")
    net, target = load_model(model, device)
    size = size or net.config.image_size
    if size % net.patch_size:
        raise CommandError(f"--size {size} is not divisible by the patch size {net.patch_size}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = dict(zip(paths, _unique_stems(paths), strict=True))
    failures = 0
    written = 0
    with tqdm(total=len(paths), desc="reconstruct", unit="img", disable=None) as bar:
        for chunk in _batches(paths, batch_size):
            good: list[tuple[Path, torch.Tensor]] = []
            for path, tensor, error in iter_loaded(chunk, size):
                if error is not None:
                    failures += 1
                    tqdm.write(f"vqrae reconstruct: error: {error}", file=sys.stderr)
                else:
                    good.append((path, tensor))
            if good:
                batch = torch.stack([t for _, t in good]).to(target)
                with torch.no_grad(), autocast(target, default_precision(target)):
                    recon = net.reconstruct(batch).float()
                for (path, _), image in zip(good, recon, strict=True):
                    save_image(image, out_dir / f"{stems[path]}.png")
                    written += 1
            bar.update(len(chunk))
    write_run_record(out_dir, "reconstruct", {"images": images, "model": model, "size": size})
    print(
        f"wrote {written} reconstruction(s) to {out_dir}"
        + (f"; {failures} failed" if failures else "")
    )
    return 1 if failures else 0


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
    from tqdm.auto import tqdm

    from vqrae.data.images import ImageReadError, iter_loaded, list_images
    from vqrae.utils.files import atomic_write
    from vqrae.utils.runtime import autocast, default_precision

    if batch_size < 1:
        raise CommandError(f"--batch-size must be >= 1, got {batch_size}")
    try:
        paths = list_images(images)
    except ImageReadError as exc:
        raise CommandError(str(exc)) from None
    if not paths:
        raise CommandError("no images found in the given paths")
    net, target = load_model(model, device)
    size = size or net.config.image_size
    if size % net.patch_size:
        raise CommandError(f"--size {size} is not divisible by the patch size {net.patch_size}")
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    rows: list[torch.Tensor] = []
    failures = 0
    with tqdm(total=len(paths), desc="tokenize", unit="img", disable=None) as bar:
        for chunk in _batches(paths, batch_size):
            good = []
            for path, tensor, error in iter_loaded(chunk, size):
                if error is not None:
                    failures += 1
                    tqdm.write(f"vqrae tokenize: error: {error}", file=sys.stderr)
                else:
                    good.append((path, tensor))
            if good:
                batch = torch.stack([t for _, t in good]).to(target)
                with torch.no_grad(), autocast(target, default_precision(target)):
                    rows.append(net.tokenize(batch).to(torch.int32).cpu())
                files.extend(str(p) for p, _ in good)
            bar.update(len(chunk))
    if not rows:
        raise CommandError("no image could be read; nothing written")
    grid = size // net.patch_size
    metadata = {
        "files": json.dumps(files),
        "model": model,
        "image_size": str(size),
        "grid": f"{grid},{grid}",
        "codebook_size": str(net.config.codebook_size),
    }
    tensors = {"indices": torch.cat(rows).contiguous()}
    atomic_write(out_path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    print(
        f"wrote indices of {len(files)} image(s) to {out_path}"
        + (f"; {failures} failed" if failures else "")
    )
    return 1 if failures else 0


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


def models() -> int:
    """List the registered tokenizer variants."""
    from vqrae.tokenizer.registry import get_variant, list_models

    for name in list_models():
        print(f"{name:28s} {get_variant(name).description}")
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


# ---------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqrae", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_function_command(subparsers, "reconstruct", reconstruct)
    add_function_command(subparsers, "tokenize", tokenize)
    add_function_command(subparsers, "demo", demo)
    add_function_command(subparsers, "models", models)
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
