"""Next-token training of a text-to-image generator: one entry point for one process or many.

:class:`GeneratorTrainer` builds the expanded LM (a pretrained one, or an architecture from
scratch over a named tokenizer; optionally with LoRA adapters), wraps it in the visual-token
objective and hands it to the shared :class:`~vqrae.training.engine.TrainEngine` (plain
PyTorch or DeepSpeed ZeRO, launched by ``torchrun``/``deepspeed`` or alone). The data of step
``s`` is a function of ``s`` (:class:`~vqrae.data.training.StepSampler` and the sample seeds
of :class:`~vqrae.generation.data.CodeDataset`), so a run killed at any point and resumed
from its last checkpoint reaches the same weights as an uninterrupted one.

A run folder holds::

    config.yaml, run.json      the merged recipe; git revision, world size, backend, sizes
    checkpoints/step_*/        engine checkpoints (the last ``keep_checkpoints``)
    samples/step_*.png         sample grids with their prompts (every ``samples.every`` steps)
    tb/                        TensorBoard: loss, accuracy, lr, grad norm, tokens/s, samples
    model/                     the trained generator (``ImageGenerator.save_pretrained``)
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from vqrae.data.training import StepSampler
from vqrae.generation.data import CodeDataset, TrainingCollator
from vqrae.generation.grids import captioned_grid
from vqrae.generation.model import GeneratorConfig, ImageGenerator
from vqrae.generation.objective import VisualTokenObjective
from vqrae.generation.train_config import GeneratorTrainConfig
from vqrae.generation.vocab_trim import trim_tokenizer
from vqrae.llm.loading import causal_lm_from_config, load_causal_lm, load_tokenizer
from vqrae.llm.vocab import VisualVocab, expand_vocabulary
from vqrae.training.checkpoints import find_latest
from vqrae.training.engine import TrainEngine
from vqrae.training.logs import open_tensorboard, progress_bar
from vqrae.training.run_dir import write_run_files

__all__ = ["GeneratorTrainer", "build_language_model"]

log = logging.getLogger(__name__)


def build_language_model(
    config: GeneratorTrainConfig,
    num_codes: int,
    codebook: torch.Tensor | None,
    captions: Iterable[str] = (),
) -> tuple[Any, Any, VisualVocab]:
    """The recipe's LM and tokenizer (CPU, float32), expanded by ``num_codes`` codes, with
    LoRA adapters when asked: ``(lm, tokenizer, vocab)``. ``captions`` are the training
    captions (for ``model.trim_vocabulary``)."""
    m = config.model
    if m.base:
        lm, tokenizer = load_causal_lm(m.base, device="cpu", precision="32", attn=m.attn)
    else:
        from transformers import AutoConfig

        tokenizer = load_tokenizer(m.text_tokenizer)
        if m.trim_vocabulary:
            tokenizer = trim_tokenizer(tokenizer, captions).tokenizer
        fields = dict(m.architecture)
        specials = {
            key: value
            for key, value in (
                ("bos_token_id", tokenizer.bos_token_id),
                ("eos_token_id", tokenizer.eos_token_id),
                ("pad_token_id", tokenizer.pad_token_id),
            )
            if value is not None
        }
        arch = AutoConfig.for_model(
            fields.pop("model_type"), vocab_size=len(tokenizer), **{**specials, **fields}
        )
        lm = causal_lm_from_config(
            arch, device="cpu", precision="32", attn=m.attn, seed=config.seed
        )
    vocab = expand_vocabulary(
        lm, tokenizer, num_codes, init=m.init, codebook=codebook, seed=config.seed
    )
    if m.gradient_checkpointing:
        lm.gradient_checkpointing_enable()
    lm.config.use_cache = False
    if m.lora.enabled:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        rows = list(range(vocab.text_vocab_size, vocab.tokenizer_length))
        embedding = _embedding_name(lm)
        peft_config = PeftLoraConfig(
            r=m.lora.rank,
            lora_alpha=m.lora.alpha,
            lora_dropout=m.lora.dropout,
            target_modules=list(m.lora.target_modules),
            trainable_token_indices={embedding: rows},  # the visual rows train in full
        )
        lm = get_peft_model(lm, peft_config)
    return lm.train(), tokenizer, vocab


def _embedding_name(lm: Any) -> str:
    embedding = lm.get_input_embeddings()
    return next(name for name, module in lm.named_modules() if module is embedding).split(".")[-1]


class GeneratorTrainer:
    """Trains a generator as described by a :class:`GeneratorTrainConfig`.

    Args:
        config: the recipe.
        out_dir: the run folder (see the module docstring).
        resume: continue from the latest checkpoint in ``out_dir`` (an error if there is none).
        progress: show a progress bar (loss, ETA) on the main process.
    """

    def __init__(
        self,
        config: GeneratorTrainConfig,
        out_dir: str | os.PathLike[str],
        resume: bool = False,
        progress: bool = True,
    ) -> None:
        from vqrae.generation.data import read_manifest

        self.cfg = config
        self.out = Path(out_dir)
        self.progress = progress
        self._decoder: Any | None = None
        manifest = read_manifest(config.data.train[0])
        self.manifest = manifest
        expected = config.model.num_codes
        if expected is not None and expected != manifest.num_codes:
            raise ValueError(
                f"model.num_codes is {expected} but {config.data.train[0]} holds codes of a "
                f"{manifest.num_codes}-code tokenizer ({manifest.tokenizer})"
            )
        self.dataset = CodeDataset(config.data.train, config.data.caption_dropout)
        codebook = None
        if config.model.init == "codebook":
            from vqrae.tokenizer.model import VQRAE

            tokenizer = VQRAE.from_pretrained(manifest.tokenizer)
            codebook = tokenizer.quantizer.projected_codebook()[0].detach()
        torch.manual_seed(config.seed)
        lm, self.tokenizer, self.vocab = build_language_model(
            config, manifest.num_codes, codebook, self.dataset.captions()
        )
        self.generator_config = GeneratorConfig(
            tokenizer=manifest.tokenizer,
            grid=manifest.grid,
            max_length=config.max_length,
            tokenizer_fingerprint=manifest.tokenizer_fingerprint,
        )
        objective = VisualTokenObjective(lm, self.vocab, config.model.head)
        self.engine = TrainEngine(objective, config.engine, config.optim, config.steps)
        self.ctx = self.engine.ctx
        self.collate = TrainingCollator(
            self.tokenizer, self.vocab, self.generator_config.max_prompt_tokens
        )
        if resume:
            latest = find_latest(self.out / "checkpoints")
            if latest is None:
                raise ValueError(f"--resume: no checkpoint under {self.out / 'checkpoints'}")
            state = self.engine.load(latest)
            if state.get("config") != json.dumps(config.to_dict(), sort_keys=True):
                log.warning("resuming %s with a recipe that differs from the checkpoint's", latest)
            log.info("resumed from %s at step %d", latest, self.engine.step)
        if self.ctx.is_main:
            self._write_run_files()

    @property
    def step(self) -> int:
        return self.engine.step

    def _write_run_files(self) -> None:
        record = {
            "world_size": self.ctx.world_size,
            "device": str(self.engine.device),
            "backend": self.engine.backend,
            "zero_stage": self.engine.zero_stage,
            "precision": self.engine.precision,
            "accumulation": self.engine.accumulation,
            "train_rows": len(self.dataset),
            "grid": list(self.manifest.grid),
            "vocabulary": self.vocab.to_dict(),
            "trainable_parameters": sum(
                p.numel() for p in self.engine.module.parameters() if p.requires_grad
            ),
            "resumed_at_step": self.step,
        }
        write_run_files(self.out, self.cfg.to_dict(), record)

    # ------------------------------------------------------------------ data
    def _loader(self) -> DataLoader:
        sampler = StepSampler(
            range(len(self.dataset)),
            self.cfg.engine.global_batch,
            accum=self.engine.accumulation,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            seed=self.cfg.seed,
            start_step=self.step,
        )
        workers = self.cfg.data.num_workers
        return DataLoader(
            self.dataset,
            batch_size=self.cfg.engine.micro_batch,
            sampler=sampler,
            collate_fn=self.collate,
            num_workers=workers,
            prefetch_factor=2 if workers else None,
        )

    # ------------------------------------------------------------------ outputs
    def _checkpoint(self) -> Path:
        extra = {"config": json.dumps(self.cfg.to_dict(), sort_keys=True)}
        return self.engine.save(self.out / "checkpoints", extra, self.cfg.keep_checkpoints)

    def draw_samples(self, writer: Any | None) -> Path | None:
        """Draw the recipe's sample prompts with the current weights; the main process writes
        ``samples/step_*.png`` (collective under ZeRO-3)."""
        from vqrae.generation.api import generate_for_prompts
        from vqrae.generation.sampler import SamplingConfig

        s = self.cfg.samples
        path = None
        with self.engine.gathered() as objective:
            if self.ctx.is_main:
                lm = objective.lm
                lm.eval()
                generator = ImageGenerator(
                    lm, self.tokenizer, self.vocab, self.generator_config, source="training"
                )
                if self._decoder is not None:  # the VQRAE tokenizer, loaded once per run
                    generator.use_tokenizer(self._decoder)
                self._decoder = generator.vqrae()
                sampling = SamplingConfig(cfg=s.cfg, temperature=s.temperature, top_k=s.top_k)
                groups = generate_for_prompts(
                    generator, s.prompts, n=s.per_prompt, seed=s.seed, sampling=sampling
                )
                lm.train()
                grid = captioned_grid([g.images for g in groups], s.prompts)
                path = self.out / "samples" / f"step_{self.step:08d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                grid.save(path)
                if writer is not None:
                    import numpy as np

                    writer.add_image("samples", np.asarray(grid), self.step, dataformats="HWC")
                    writer.add_text("samples/prompts", "\n\n".join(s.prompts), self.step)
        self.ctx.barrier()
        return path

    def export(self) -> Path:
        """Write the trained generator to ``out/model`` (LoRA merged in; collective)."""
        path = self.out / "model"
        with self.engine.gathered() as objective:
            if self.ctx.is_main:
                lm = objective.lm
                if self.cfg.model.lora.enabled:
                    lm = lm.merge_and_unload()
                lm.config.use_cache = True
                lm = lm.to(getattr(torch, self.cfg.export_dtype))  # the run ends here
                generator = ImageGenerator(
                    lm.eval(), self.tokenizer, self.vocab, self.generator_config
                )
                generator.save_pretrained(path)
        self.ctx.barrier()
        return path

    # ------------------------------------------------------------------ loop
    def fit(self) -> Path:
        """Train to ``config.steps``; returns the exported generator folder."""
        cfg = self.cfg
        writer = open_tensorboard(self.out / "tb", self.ctx.is_main)
        bar = progress_bar(
            cfg.steps, self.step, "train-generator", self.progress and self.ctx.is_main
        )
        stream = iter(self._loader())
        window: list[dict[str, float]] = []
        tokens, start = 0, time.perf_counter()
        while self.step < cfg.steps:
            micro = [next(stream).to(self.engine.device) for _ in range(self.engine.accumulation)]
            tokens += sum(b.num_tokens for b in micro)
            result = self.engine.train_step(micro)
            values = {k: float(v) for k, v in result.metrics.items()}
            if result.grad_norm is not None:
                values["grad_norm"] = result.grad_norm
            window.append(values)
            if bar is not None:
                bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                elapsed = max(time.perf_counter() - start, 1e-9)
                keys = sorted({k for m in window for k in m})
                averaged = {k: sum(m.get(k, 0.0) for m in window) / len(window) for k in keys}
                averaged = self.ctx.mean(averaged)
                averaged["tokens_per_s"] = self.ctx.sum_int(tokens) / elapsed
                averaged["s_per_step"] = elapsed / len(window)
                averaged["lr"] = result.lr
                window, tokens, start = [], 0, time.perf_counter()
                if bar is not None:
                    bar.set_postfix(
                        loss=f"{averaged['loss']:.4f}",
                        acc=f"{averaged.get('accuracy', 0):.3f}",
                        tok_s=f"{averaged['tokens_per_s']:.0f}",
                    )
                if writer is not None:
                    for key, value in averaged.items():
                        writer.add_scalar(f"train/{key}", value, self.step)
            if cfg.samples.every and self.step % cfg.samples.every == 0:
                self.draw_samples(writer)
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self._checkpoint()
        if bar is not None:
            bar.close()
        latest = find_latest(self.out / "checkpoints")
        if latest is None or latest.name != f"step_{self.step:08d}":
            self._checkpoint()
        path = self.export()
        if writer is not None:
            writer.close()
        return path
