"""Text-to-image: an expanded-vocabulary language model over VQRAE codes.

* :mod:`~vqrae.generation.sequences`: prompt, begin-of-image, codes, end-of-image; left-padded
  batches;
* :mod:`~vqrae.generation.model`: :class:`ImageGenerator` (the LM, its tokenizer and map, the
  VQRAE reference) and its folder;
* :mod:`~vqrae.generation.objective`: next-token loss on the visual tokens (full or visual head);
* :mod:`~vqrae.generation.data` and :mod:`~vqrae.generation.prepare`: code data sets (HF
  ``datasets`` shards) from the shapes world, captioned folders and ``datasets`` data sets;
* :mod:`~vqrae.generation.train_config` and :mod:`~vqrae.generation.trainer`: the recipe and
  the trainer on :class:`vqrae.training.engine.TrainEngine` (plain PyTorch or DeepSpeed ZeRO);
* :mod:`~vqrae.generation.sampler`: KV-cached sampling with classifier-free guidance;
* :mod:`~vqrae.generation.api`: :func:`generate` (prompts -> PIL images);
* :mod:`~vqrae.generation.bench_runs`: GenEval and DPG-Bench image runs.
"""

from vqrae.generation.api import (
    DEMO_GENERATOR,
    GeneratorUnavailableError,
    generate,
    generate_for_prompts,
    load_generator,
)
from vqrae.generation.model import GeneratorConfig, ImageGenerator
from vqrae.generation.sampler import SamplingConfig, sample_codes

__all__ = [
    "DEMO_GENERATOR",
    "GeneratorConfig",
    "GeneratorUnavailableError",
    "ImageGenerator",
    "SamplingConfig",
    "generate",
    "generate_for_prompts",
    "load_generator",
    "sample_codes",
]
