"""What every trainer needs: recipes, schedules, atomic checkpoints with resume, EMA, the run
folder and its logs. The tokenizer trainer and the language-model trainers build on these."""

from vqrae.training.checkpoints import (
    find_latest,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from vqrae.training.ema import EMA
from vqrae.training.logs import open_tensorboard, progress_bar
from vqrae.training.recipes import build_config, deep_merge, load_recipe, parse_set_overrides
from vqrae.training.run_dir import write_run_files
from vqrae.training.schedules import constant_with_warmup, lr_factor, warmup_cosine

__all__ = [
    "EMA",
    "build_config",
    "constant_with_warmup",
    "deep_merge",
    "find_latest",
    "load_checkpoint",
    "load_recipe",
    "lr_factor",
    "open_tensorboard",
    "parse_set_overrides",
    "progress_bar",
    "prune_checkpoints",
    "save_checkpoint",
    "warmup_cosine",
    "write_run_files",
]
