"""Stage-2 distillation targets: the whole teacher vs the teacher sharing the student's frozen blocks.

With ``trainable_encoder_blocks: k`` the trainer's teacher (:class:`SharedPrefixTeacher`) runs
only its last ``k`` blocks on the hidden state the student's forward already computed. Baseline:
the whole frozen teacher on the same encoder input, as before. Both are timed after the student's
forward (which is the same in both cases) on the same batch, and their targets are compared.

    .venv/bin/python benchmarks/stage2_teacher.py                    # demo variant, batch 8
    .venv/bin/python benchmarks/stage2_teacher.py --batch 4 --repeats 3 --trainable-blocks 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import vqrae
from vqrae.tokenizer.model import load_pretrained_encoder
from vqrae.tokenizer.teacher import SharedPrefixTeacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vqrae-dinov2-s-demo")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trainable-blocks", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = vqrae.VQRAE.from_pretrained(args.model).train()
    size = model.config.image_size
    images = torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    full = load_pretrained_encoder(model.config).eval()
    start = len(model.encoder.blocks) - args.trainable_blocks
    shared = SharedPrefixTeacher(full, model.encoder, start).eval()
    times: dict[str, list[float]] = {"whole teacher (baseline)": [], "shared frozen blocks": []}
    with torch.no_grad():
        encoder_input = model.encoder_input(images)
        for _ in range(args.repeats):
            model.encode(images)  # the student's forward, as in a training step
            begin = time.perf_counter()
            target_full = full(encoder_input)
            times["whole teacher (baseline)"].append(time.perf_counter() - begin)
            begin = time.perf_counter()
            target_shared = shared(encoder_input)
            times["shared frozen blocks"].append(time.perf_counter() - begin)
    shared.remove()
    # The shipped model's last block is fine-tuned, so the targets are the original encoder's
    # either way; they must agree to float rounding.
    difference = float((target_full - target_shared).abs().max())
    print(
        f"{args.model}: {args.batch} images at {size} px (encoder input "
        f"{encoder_input.shape[-1]} px), {len(full.blocks)} blocks, teacher from block {start}; "
        f"median of {args.repeats}; max |target difference| {difference:.2e}"
    )
    baseline = statistics.median(times["whole teacher (baseline)"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:28s} {median:7.3f} s per batch   {baseline / median:5.2f}x")


if __name__ == "__main__":
    main()
