"""Language-model training steps on a CPU: float32 against bf16 autocast.

One forward and backward of the understanding model's LM (SmolLM2-135M-Instruct, offline) on
random token embeddings shaped like the cpu-demo recipe's batches: stage 1 (captions, ~80
tokens, 8 a micro-batch) and stage 2 (multi-turn questions, ~380 tokens, 4 a micro-batch). The
LM's weights stay frozen and the input embeddings take the gradient, as in stage 1 (a LoRA
stage adds little to the backward). ``"32"`` is the baseline (the CPU default of ``precision:
auto``); ``"bf16-mixed"`` is float32 weights under ``torch.autocast(cpu, bfloat16)``, the
setting ``precision=bf16-mixed`` of ``vqrae train-mllm``. Whether bf16 pays depends on the CPU:
with AMX or AVX512-BF16 (listed below from /proc/cpuinfo) oneDNN runs bf16 matmuls natively;
without them autocast can be slower than float32. Medians over repeats, the two settings
alternating within each repeat; the ratio is float32 time / bf16 time.

    .venv/bin/python benchmarks/cpu_precision.py
    .venv/bin/python benchmarks/cpu_precision.py --repeats 7 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import torch

from vqrae.mllm.config import MLLMConfig
from vqrae.mllm.language import load_language_model

SHAPES = {"stage 1 (8 x 80)": (8, 80), "stage 2 (4 x 380)": (4, 380)}


def cpu_flags() -> list[str]:
    """The bf16-relevant instruction sets this CPU reports."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(text.split())
    return [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags]


def step_seconds(lm: torch.nn.Module, embeds: torch.Tensor, bf16: bool) -> float:
    """One forward and backward; the loss is the mean of the last 20 positions' logits."""
    x = embeds.detach().clone().requires_grad_(True)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    started = time.perf_counter()
    with context:
        logits = lm(inputs_embeds=x).logits[:, -20:]
    logits.float().mean().backward()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lm, _, _ = load_language_model(MLLMConfig(), device="cpu", precision="32")
    lm.train()
    lm.requires_grad_(False)
    width = lm.get_input_embeddings().weight.shape[1]
    print(f"CPU flags: {', '.join(cpu_flags()) or 'none found'}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print("| batch | float32 (s/step) | bf16-mixed (s/step) | ratio |")
    print("|---|---|---|---|")
    for name, (batch, length) in SHAPES.items():
        embeds = torch.randn(batch, length, width) * 0.05
        step_seconds(lm, embeds, bf16=False)  # warm-up: allocator, oneDNN kernels
        step_seconds(lm, embeds, bf16=True)
        fp32, bf16 = [], []
        for _ in range(args.repeats):
            fp32.append(step_seconds(lm, embeds, bf16=False))
            bf16.append(step_seconds(lm, embeds, bf16=True))
        a, b = statistics.median(fp32), statistics.median(bf16)
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f} |", flush=True)


if __name__ == "__main__":
    main()
