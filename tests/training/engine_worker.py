"""A tiny training run through :class:`vqrae.training.engine.TrainEngine`, for the engine tests.

Run alone or under ``torchrun``: trains a tiny random causal LM for ``--steps`` optimiser steps
on a fixed token stream (the global batch of step ``s`` is the same whatever the world size) and
writes the final weights and the per-step losses into ``--out`` (``full.safetensors``, ``full.json``). With ``--save-at K`` it writes the
engine checkpoint of step K under ``--out/checkpoints``; ``--resume-check`` then builds a fresh
engine, resumes from that checkpoint and trains to the end again (``resumed.*``);
``--resume`` does only that.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from vqrae.data.training import StepSampler
from vqrae.llm.testing import tiny_causal_lm
from vqrae.training.checkpoints import find_latest
from vqrae.training.engine import EngineConfig, OptimizerConfig, TrainEngine

VOCAB, LENGTH, SAMPLES = 96, 12, 64


@dataclass
class Output:
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


class NextToken(nn.Module):
    """Mean next-token loss of a causal LM over a micro-batch of token rows (B, T)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, tokens: torch.Tensor) -> Output:
        loss = self.lm(input_ids=tokens, labels=tokens).loss
        return Output(loss, {"loss": loss.detach()})


def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (SAMPLES, LENGTH), generator=torch.Generator().manual_seed(7))


def build(args: argparse.Namespace) -> TrainEngine:
    torch.manual_seed(0)
    lm = tiny_causal_lm(VOCAB, seed=0).train()
    config = EngineConfig(
        backend=args.backend,
        deepspeed=args.deepspeed,
        global_batch=args.global_batch,
        micro_batch=args.micro_batch,
    )
    optim = OptimizerConfig(lr=3e-3, eps=1e-15, weight_decay=0.1, warmup_steps=2, grad_clip=1.0)
    return TrainEngine(NextToken(lm), config, optim, total_steps=args.steps)


def train(args: argparse.Namespace, out: Path, resume: bool) -> tuple[TrainEngine, list[float]]:
    """Train to ``args.steps`` (from the latest checkpoint when ``resume``)."""
    engine = build(args)
    if resume:
        engine.load(find_latest(out / "checkpoints"))
    data = tokens()
    sampler = StepSampler(
        range(SAMPLES),
        args.global_batch,
        accum=engine.accumulation,
        rank=engine.ctx.rank,
        world_size=engine.ctx.world_size,
        seed=1,
        start_step=engine.step,
    )
    stream = iter(sampler)
    losses = []
    while engine.step < args.steps:
        micro = []
        for _ in range(engine.accumulation):
            rows = [next(stream).index for _ in range(args.micro_batch)]
            micro.append(data[rows].to(engine.device))
        result = engine.train_step(micro)
        losses.append(engine.all_mean({"loss": float(result.metrics["loss"])})["loss"])
        if args.save_at and engine.step == args.save_at and not resume:
            engine.save(out / "checkpoints", {"note": "worker"}, keep=2)
    return engine, losses


def write(engine: TrainEngine, losses: list[float], out: Path, name: str) -> None:
    weights = engine.full_state_dict()  # collective
    if engine.ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        unique = {k: v for k, v in weights.items() if k != "lm.lm_head.weight"}  # tied
        save_file(unique, str(out / f"{name}.safetensors"))
        (out / f"{name}.json").write_text(json.dumps(losses))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--deepspeed", default=None)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--save-at", type=int, default=0, help="checkpoint this step")
    parser.add_argument("--resume-check", action="store_true", help="then resume from it")
    parser.add_argument("--resume", action="store_true", help="only resume from the latest")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    if args.resume:
        engine, losses = train(args, out, resume=True)
        write(engine, losses, out, "resumed")
        return
    engine, losses = train(args, out, resume=False)
    write(engine, losses, out, "full")
    if args.resume_check:
        del engine
        engine, losses = train(args, out, resume=True)
        write(engine, losses, out, "resumed")


if __name__ == "__main__":
    main()
