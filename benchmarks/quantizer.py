"""SimVQ speed and memory: vqrae's quantizer against vector-quantize-pytorch's SimVQ.

Both quantize the same tokens with the same codebook size and dimension, in the same process,
alternating run by run so machine noise hits both alike. Reported: median seconds per call in
eval (no grad) and in training (forward + backward), the ratio baseline / vqrae (> 1 means vqrae
is faster), and the peak memory of one call (CUDA: allocator peak; CPU: peak resident set
growth, reset through /proc/self/clear_refs).

    .venv/bin/python benchmarks/quantizer.py                       # 16384 x 1536, 2048 tokens
    .venv/bin/python benchmarks/quantizer.py --tokens 8192 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from vector_quantize_pytorch import SimVQ as BaselineSimVQ

from vqrae.tokenizer.quantizer import SimVQ
from vqrae.utils.runtime import resolve_device

Step = Callable[[], None]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_mib(step: Step, device: torch.device) -> float:
    """Extra memory at the peak of one call of ``step``, in MiB."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _rss_kib("VmRSS")
    step()
    return (_rss_kib("VmHWM") - before) / 1024


def time_call(step: Step, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def build_steps(args: argparse.Namespace, device: torch.device) -> dict[str, dict[str, Step]]:
    torch.manual_seed(0)
    ours = SimVQ(args.codebook_size, args.dim, chunk_size=args.chunk_size).to(device)
    baseline = BaselineSimVQ(
        dim=args.dim, codebook_size=args.codebook_size, rotation_trick=False
    ).to(device)
    with torch.no_grad():  # same effective codebook for both
        baseline.frozen_codebook.copy_(ours.codebook)
        baseline.code_transform.weight.copy_(ours.codebook_transform.weight)
    z = torch.randn(1, args.tokens, args.dim, device=device)

    def ours_eval() -> None:
        with torch.no_grad():
            ours.eval()(z)

    def base_eval() -> None:
        with torch.no_grad():
            baseline.eval()(z)

    def ours_train() -> None:
        ours.train()
        zz = z.clone().requires_grad_(True)
        out = ours(zz)
        (out.loss + out.codes.square().mean()).backward()
        ours.zero_grad(set_to_none=True)

    def base_train() -> None:
        baseline.train()
        zz = z.clone().requires_grad_(True)
        quantized, _, loss = baseline(zz)
        (loss + quantized.square().mean()).backward()
        baseline.zero_grad(set_to_none=True)

    # Agreement check: both must pick the same codes for the same tokens.
    with torch.no_grad():
        same = (ours.eval()(z).indices == baseline.eval()(z)[1]).float().mean().item()
    print(f"index agreement with the baseline: {same:.4%}")
    return {
        "eval": {"vqrae": ours_eval, "baseline": base_eval},
        "train": {"vqrae": ours_train, "baseline": base_train},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codebook-size", type=int, default=16384)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(
        f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"k={args.codebook_size} e={args.dim} tokens={args.tokens}"
    )
    steps = build_steps(args, device)
    for mode, pair in steps.items():
        for step in pair.values():  # warm-up (builds vqrae's projected-codebook cache in eval)
            step()
        times: dict[str, list[float]] = {name: [] for name in pair}
        for _ in range(args.repeats):
            for name, step in pair.items():
                times[name].append(time_call(step, device))
        memory = {name: peak_memory_mib(step, device) for name, step in pair.items()}
        med = {name: statistics.median(values) for name, values in times.items()}
        print(f"\n[{mode}] median of {args.repeats} (s/call), peak extra memory (MiB)")
        for name in pair:
            print(
                f"  {name:9s} {med[name]:8.4f} s   {memory[name]:9.1f} MiB   runs: "
                + " ".join(f"{t:.3f}" for t in times[name])
            )
        print(
            f"  speed ratio baseline/vqrae: {med['baseline'] / med['vqrae']:.2f}x   "
            f"memory ratio baseline/vqrae: {memory['baseline'] / max(memory['vqrae'], 1e-6):.2f}x"
        )


if __name__ == "__main__":
    main()
