"""Code sampling speed: vqrae's sampler against transformers' ``generate`` and a loop without cache.

All three draw the same images from the same randomly initialised expanded LM with the same
classifier-free guidance (``u + s (c - u)``, [conditional; unconditional] rows in one batch),
greedy, and must produce identical codes (checked). Compared:

* **vqrae**: :func:`vqrae.generation.sampler.sample_codes` (static KV cache, the head's code rows
  only, no generation-loop machinery);
* **transformers**: ``model.generate`` with :class:`~vqrae.generation.hf_guidance.
  GuidedCodesProcessor` (its KV cache; the full-vocabulary head, the guided code logits
  written to both halves, everything else at -inf);
* **no cache**: every step runs the whole sequence through the model again and reads the last
  position's logits (the naive loop).

Calls alternate method by method so machine noise hits all alike; figures are medians. Tokens/s
counts the codes of the conditional images (B x N per call). The weight-streaming floor is the
bytes of weights one decode step must read (the body, plus the head rows it multiplies: all V
rows for transformers, the K code rows for vqrae) over the machine's memory bandwidth, measured
here as a read of a 512 MiB tensor.

    .venv/bin/python benchmarks/generation_sampler.py --threads 1          # every shape
    .venv/bin/python benchmarks/generation_sampler.py --shape smollm2 --tokens 64 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from vqrae.generation.hf_guidance import GuidedCodesProcessor
from vqrae.generation.sampler import SamplingConfig, sample_codes
from vqrae.generation.sequences import positions_from_mask, prompt_batch
from vqrae.llm.loading import causal_lm_from_config
from vqrae.llm.vocab import VisualVocab

# name -> (transformers config fields, text vocabulary)
SHAPES: dict[str, tuple[dict, int]] = {
    # configs/generation/cpu-demo.yaml's model over the untrimmed Qwen3 vocabulary
    "demo-qwen3": (
        {"model_type": "qwen3", "hidden_size": 256, "intermediate_size": 768,
         "num_hidden_layers": 8, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 64, "tie_word_embeddings": True},
        151669,
    ),
    # the same model over the vocabulary trimmed to the shapes world's captions (the demo's)
    "demo-trimmed": (
        {"model_type": "qwen3", "hidden_size": 256, "intermediate_size": 768,
         "num_hidden_layers": 8, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 64, "tie_word_embeddings": True},
        434,
    ),
    # the paper's generator, Qwen3-0.6B (run it alone: --shape qwen3-0.6b --tokens 32)
    "qwen3-0.6b": (
        {"model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072,
         "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
         "head_dim": 128, "tie_word_embeddings": True},
        151669,
    ),
    # SmolLM2-135M's shape (DESIGN.md's measured machine facts)
    "smollm2": (
        {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
         "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
         "tie_word_embeddings": True},
        49152,
    ),
}  # fmt: skip


def build(shape: str, num_codes: int, seed: int = 0) -> tuple[nn.Module, VisualVocab]:
    """A random model of ``shape`` whose table ends with the visual rows (as expanded)."""
    from transformers import AutoConfig

    fields, text = SHAPES[shape]
    vocab = VisualVocab(
        num_codes=num_codes, code_offset=text + 3, boi_id=text, eoi_id=text + 1,
        image_token_id=text + 2, text_vocab_size=text,
    )  # fmt: skip
    rows = 64 * -(-vocab.code_end // 64)
    fields = dict(fields)
    config = AutoConfig.for_model(fields.pop("model_type"), vocab_size=rows, **fields)
    config.max_position_embeddings = 2048
    lm = causal_lm_from_config(config, device="cpu", precision="32", attn="sdpa", seed=seed)
    return lm.eval(), vocab


def memory_bandwidth(repeats: int = 5) -> float:
    """Bytes per second of reading a 512 MiB float32 tensor (median)."""
    x = torch.ones(128 * 2**20)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        x.sum()
        times.append(time.perf_counter() - start)
    return x.numel() * 4 / statistics.median(times)


def rows(batch: int, length: int, vocab: VisualVocab, seed: int = 0) -> list[list[int]]:
    """``batch`` random prompts of about ``length`` text tokens (lengths differ: left padding)."""
    g = torch.Generator().manual_seed(seed)
    lengths = [max(1, length - (i % 3)) for i in range(batch)]
    return [torch.randint(0, vocab.text_vocab_size, (n,), generator=g).tolist() for n in lengths]


def vqrae_codes(lm, vocab, prompts, n, cfg) -> torch.Tensor:
    config = SamplingConfig(cfg=cfg, temperature=0.0)
    return sample_codes(lm, vocab, prompts, [], n, config, list(range(len(prompts))), pad_id=0)


def hf_codes(lm, vocab, prompts, n, cfg) -> torch.Tensor:
    batch = prompt_batch([*prompts, *([[]] * len(prompts))], vocab, pad_id=0)
    out = lm.generate(
        batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=n,
        min_new_tokens=n, do_sample=False, logits_processor=[GuidedCodesProcessor(vocab, cfg)],
        pad_token_id=0, eos_token_id=None,
    )  # fmt: skip
    return out[: len(prompts), batch.input_ids.shape[1] :] - vocab.code_offset


@torch.inference_mode()
def no_cache_codes(lm, vocab, prompts, n, cfg) -> torch.Tensor:
    b = len(prompts)
    batch = prompt_batch([*prompts, *([[]] * b)], vocab, pad_id=0)
    ids, mask = batch.input_ids, batch.attention_mask
    codes = []
    for _ in range(n):
        logits = lm(
            input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask),
            use_cache=False,
        ).logits[:, -1, vocab.code_slice]  # fmt: skip
        guided = logits[b:] + cfg * (logits[:b] - logits[b:])
        code = guided.argmax(-1)
        codes.append(code)
        step = torch.cat([code, code]) + vocab.code_offset
        ids = torch.cat([ids, step[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return torch.stack(codes, 1)


def parameter_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def run(
    shape: str, batch: int, tokens: int, prompt: int, cfg: float, repeats: int, codes: int
) -> None:
    lm, vocab = build(shape, codes)
    prompts = rows(batch, prompt, vocab)
    methods: dict[str, Callable[[], torch.Tensor]] = {
        "vqrae": lambda: vqrae_codes(lm, vocab, prompts, tokens, cfg),
        "transformers generate": lambda: hf_codes(lm, vocab, prompts, tokens, cfg),
        "no cache": lambda: no_cache_codes(lm, vocab, prompts, tokens, cfg),
    }
    results = {name: fn() for name, fn in methods.items()}  # warm-up, and the tokens to compare
    reference = results["transformers generate"]
    same = {name: torch.equal(out, reference) for name, out in results.items()}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    bandwidth = memory_bandwidth()
    head = lm.get_output_embeddings().weight
    body = parameter_bytes(lm.get_decoder()) - head.numel() * head.element_size()  # tied table
    floors = {
        "vqrae": body + vocab.num_codes * head.shape[1] * head.element_size(),
        "transformers generate": body + head.numel() * head.element_size(),
    }
    params = sum(p.numel() for p in lm.parameters()) / 1e6
    print(f"\n{shape}: {params:.0f}M parameters, vocabulary {head.shape[0]} rows ({vocab.num_codes} codes), "
          f"{batch} images x {tokens} codes, prompts ~{prompt} tokens, cfg {cfg} ({2 * batch} rows), "
          f"{torch.get_num_threads()} threads, bandwidth {bandwidth / 1e9:.1f} GB/s")  # fmt: skip
    hf = statistics.median(times["transformers generate"])
    nc = statistics.median(times["no cache"])
    print(
        "| method | ms/step | codes/s | vs generate | vs no cache | floor ms/step | identical codes |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in methods:
        t = statistics.median(times[name])
        floor = floors.get(name)
        floor_text = f"{floor / bandwidth * 1e3:.1f}" if floor else "-"
        print(f"| {name} | {t / tokens * 1e3:.1f} | {batch * tokens / t:.1f} | {hf / t:.2f}x | "
              f"{nc / t:.2f}x | {floor_text} | {same[name]} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=[*SHAPES, "all"], default="all")
    parser.add_argument("--batch", type=int, default=2, help="images per call")
    parser.add_argument("--tokens", type=int, default=144, help="codes per image (12x12)")
    parser.add_argument(
        "--smollm2-tokens",
        type=int,
        default=64,
        help="codes per image for the 135M shape (the cache-less loop is slow)",
    )
    parser.add_argument("--prompt", type=int, default=12, help="prompt tokens")
    parser.add_argument("--codes", type=int, default=2048, help="codebook size K")
    parser.add_argument("--cfg", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    default = [s for s in SHAPES if s != "qwen3-0.6b"]
    for shape in default if args.shape == "all" else [args.shape]:
        tokens = args.smollm2_tokens if shape == "smollm2" and args.shape == "all" else args.tokens
        run(shape, args.batch, tokens, args.prompt, args.cfg, args.repeats, args.codes)


if __name__ == "__main__":
    main()
