"""Generator training throughput: the full-vocabulary softmax against the visual slice.

One optimiser step (forward, backward, AdamW) of :class:`~vqrae.generation.objective.
VisualTokenObjective` on random sequences of the text-to-image layout (a prompt, begin-of-image,
N codes, end-of-image), with ``head="full"`` (the paper's: logits over every row of the expanded
vocabulary) and ``head="visual"`` (over the K code rows only, Janus's separate head). The two
alternate step by step; reported are the median seconds per step, tokens per second (all real
tokens: prompts and images) and the ratio visual / full, for shapes whose vocabulary is large
(Qwen3's 151,669 text tokens) or trimmed (configs/generation/cpu-demo.yaml's, ~450).

    .venv/bin/python benchmarks/generation_train.py --threads 1
    .venv/bin/python benchmarks/generation_train.py --shape demo-trimmed --batch 16 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vqrae.generation.objective import VisualTokenObjective
from vqrae.generation.sequences import training_batch
from vqrae.llm.loading import causal_lm_from_config
from vqrae.llm.vocab import VisualVocab

DEMO = {
    "model_type": "qwen3", "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 8,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
    "tie_word_embeddings": True,
}  # fmt: skip
SMOLLM2 = {
    "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "tie_word_embeddings": True,
}  # fmt: skip
# name -> (architecture, text vocabulary)
SHAPES = {
    "demo-qwen3-vocab": (DEMO, 151669),
    "demo-trimmed": (DEMO, 450),
    "smollm2": (SMOLLM2, 49152),
}


def step_time(shape: str, head: str, batch: int, codes: int, tokens: int, prompt: int):
    """A closure running one optimiser step, and the real tokens it trains on."""
    from transformers import AutoConfig

    arch, text = SHAPES[shape]
    vocab = VisualVocab(
        num_codes=codes, code_offset=text + 3, boi_id=text, eoi_id=text + 1,
        image_token_id=text + 2, text_vocab_size=text,
    )  # fmt: skip
    fields = dict(arch)
    config = AutoConfig.for_model(
        fields.pop("model_type"), vocab_size=64 * -(-vocab.code_end // 64), **fields
    )
    lm = causal_lm_from_config(config, device="cpu", precision="32", attn="sdpa", seed=0).train()
    objective = VisualTokenObjective(lm, vocab, head)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=1e-4, eps=1e-15)
    g = torch.Generator().manual_seed(0)
    prompts = [
        torch.randint(0, text, (max(1, prompt - i % 4),), generator=g).tolist()
        for i in range(batch)
    ]
    data = training_batch(prompts, torch.randint(0, codes, (batch, tokens), generator=g), vocab, 0)

    def step() -> float:
        start = time.perf_counter()
        objective(data).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    return step, data.num_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=[*SHAPES, "all"], default="all")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=144, help="codes per image (12x12)")
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--codes", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = list(SHAPES) if args.shape == "all" else [args.shape]
    print("| model | vocabulary rows | head | s/step | tokens/s | visual / full |")
    print("|---|---|---|---|---|---|")
    for shape in shapes:
        steps = {}
        for head in ("full", "visual"):
            steps[head] = step_time(shape, head, args.batch, args.codes, args.tokens, args.prompt)
        times: dict[str, list[float]] = {"full": [], "visual": []}
        for head in times:
            steps[head][0]()  # warm-up
        for _ in range(args.repeats):
            for head in times:
                times[head].append(steps[head][0]())
        rows = SHAPES[shape][1] + 3 + args.codes
        full = statistics.median(times["full"])
        for head in ("full", "visual"):
            t = statistics.median(times[head])
            ratio = f"{full / t:.2f}x" if head == "visual" else "1.00x"
            print(f"| {shape} | {rows} | {head} | {t:.2f} | {steps[head][1] / t:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
