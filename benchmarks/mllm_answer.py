"""Answering throughput: ``vqrae answer``'s batched decoding against transformers' ``generate``.

Both paths answer the same questions about the same images with the same model
(SmolLM2-135M-Instruct behind the demo tokenizer's pooled features and a projector), greedily,
from the same spliced prompt embeddings: ours is :func:`vqrae.mllm.generate.generate` (the
path of ``vqrae answer``: left-padded batch, KV cache, the last position's logits only),
theirs is ``lm.generate(inputs_embeds=..., attention_mask=...)`` with the visual vocabulary
suppressed and the same stop tokens. The image encoding (shared by both) is timed apart. The
tokens are checked equal; the figures are generated tokens per second of wall time and per CPU
second (all threads: on a shared machine the wall figure moves with the load, the CPU one
hardly), medians over repeats, the two paths alternating within each repeat.

    .venv/bin/python benchmarks/mllm_answer.py                         # batch 1 and 8, 16 questions
    .venv/bin/python benchmarks/mllm_answer.py --model runs/mllm-s2/model --batch-sizes 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from vqrae.llm.sampling import left_pad
from vqrae.mllm.config import MLLMConfig
from vqrae.mllm.generate import GenerationSettings, generate
from vqrae.mllm.language import stop_token_ids
from vqrae.mllm.model import MLLM
from vqrae.mllm.prompts import prompt_ids

QUESTIONS = (
    "Is there a red circle in the image? Please answer yes or no.",
    "How many stars are there?\nAnswer the question using a single word or phrase.",
    "What colour is the hexagon?\nAnswer the question using a single word or phrase.",
    "Describe the image briefly.",
)


def theirs(model: MLLM, prompts, features, max_new_tokens: int) -> list[list[int]]:
    """transformers' generate from the same spliced embeddings."""
    lm = model.lm
    ids, mask = left_pad(prompts, int(model.tokenizer.pad_token_id), model.device)
    embeds = model.embed(ids, features)
    stops = stop_token_ids(model.tokenizer, model.config, lm)
    out = lm.generate(
        inputs_embeds=embeds,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        suppress_tokens=list(range(model.vocab.text_vocab_size, lm.config.vocab_size)),
        eos_token_id=stops,
        pad_token_id=int(model.tokenizer.pad_token_id),
    )
    rows = []
    for row in out.tolist():
        tokens = []
        for t in row:
            if t in stops:
                break
            tokens.append(t)
        rows.append(tokens)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="an understanding model folder (default: a fresh one)")
    parser.add_argument("--pool", type=int, default=8, help="pooled grid of a fresh model")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.model:
        model = MLLM.from_pretrained(args.model, device=args.device)
    else:
        model = MLLM.build(MLLMConfig(pool=args.pool), device=args.device).eval()
    print(f"model: {model.summary()}")
    images = torch.rand(args.questions, 3, model.vision.image_size, model.vision.image_size)
    started = time.perf_counter()
    with torch.no_grad():
        features = torch.cat([model.vision(images[i : i + 8]) for i in range(0, len(images), 8)])
    encode = (time.perf_counter() - started) / len(images)
    prompts = [
        prompt_ids(
            model.tokenizer,
            model.config,
            [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            has_image=True,
            image_token_id=model.image_token_id,
            num_image_tokens=model.num_image_tokens,
        )
        for i in range(args.questions)
    ]
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    print(f"image encoding: {encode:.3f} s/image (shared by both paths, not in the figures)")
    print(f"{args.questions} questions, greedy, at most {args.max_new_tokens} new tokens, "
          f"medians of {args.repeats}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(
        "| batch | ours (tok/s) | generate (tok/s) | ratio | ours (tok/CPU-s) | "
        "generate (tok/CPU-s) | ratio | same tokens |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for batch in args.batch_sizes:
        figures: dict[str, list[float]] = {"ours": [], "theirs": []}
        cpu: dict[str, list[float]] = {"ours": [], "theirs": []}
        answers: dict[str, list[list[int]]] = {}
        for _ in range(args.repeats):
            for name in ("ours", "theirs"):
                rows: list[list[int]] = []
                start, start_cpu = time.perf_counter(), time.process_time()
                with torch.no_grad():
                    for i in range(0, args.questions, batch):
                        chunk, feats = prompts[i : i + batch], features[i : i + batch]
                        if name == "ours":
                            rows += generate(model, chunk, feats, settings)
                        else:
                            rows += theirs(model, chunk, feats, args.max_new_tokens)
                seconds = time.perf_counter() - start
                cpu_seconds = time.process_time() - start_cpu
                figures[name].append(sum(len(r) for r in rows) / seconds)
                cpu[name].append(sum(len(r) for r in rows) / cpu_seconds)
                answers[name] = rows
        ours, hf = statistics.median(figures["ours"]), statistics.median(figures["theirs"])
        ours_cpu, hf_cpu = statistics.median(cpu["ours"]), statistics.median(cpu["theirs"])
        same = answers["ours"] == answers["theirs"]
        print(
            f"| {batch} | {ours:.1f} | {hf:.1f} | {ours / hf:.2f} | {ours_cpu:.1f} | "
            f"{hf_cpu:.1f} | {ours_cpu / hf_cpu:.2f} | {same} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
