"""Recipes: base files, stage sections, --set overrides and typed configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from vqrae.training.recipes import build_config, load_recipe
from vqrae.training.run_dir import write_run_files


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Job:
    model: str = "m"
    steps: int = 10
    stage: int = 1
    optim: Optim = field(default_factory=Optim)


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_base_file_then_recipe_then_stage_then_overrides(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    _write(tmp_path / "shared" / "root.yaml", {"steps": 1, "optim": {"lr": 1e-1, "betas": [0, 0]}})
    _write(tmp_path / "shared" / "paper.yaml", {"base": "root.yaml", "model": "paper"})
    recipe = _write(
        tmp_path / "mine.yaml",
        {
            "base": "shared/paper.yaml",
            "optim": {"lr": "4e-4"},
            "stages": {1: {"steps": 100}, 2: {"steps": 200, "optim": {"lr": 1e-5}}},
        },
    )
    one = build_config(Job, load_recipe(recipe, stage=1))
    assert (one.model, one.steps, one.stage, one.optim.lr) == ("paper", 100, 1, 4e-4)
    assert one.optim.betas == [0, 0]  # from the base's base
    two = build_config(Job, load_recipe(recipe, stage=2, overrides=["optim.lr=2e-4"]))
    assert (two.steps, two.stage, two.optim.lr) == (200, 2, 2e-4)


def test_recipe_errors_name_the_problem(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", {"base": "b.yaml"})
    _write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(ValueError, match="cycle"):
        load_recipe(tmp_path / "a.yaml")
    with pytest.raises(ValueError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="optim.lrr"):
        build_config(Job, {"optim": {"lrr": 1}})
    with pytest.raises(ValueError, match="steps: expected a number"):
        build_config(Job, {"steps": "many"})


def test_shipped_paper_recipes_share_one_base() -> None:
    configs = Path(__file__).resolve().parents[2] / "configs" / "tokenizer"
    siglip = load_recipe(configs / "siglip2-so400m-256.yaml", stage=2)
    intern = load_recipe(configs / "internvit-300m-448.yaml", stage=2)
    assert siglip["model"] == "vqrae-siglip2-so400m-256" and siglip["data"]["image_size"] == 256
    assert intern["distributed"] == "fsdp" and intern["data"]["image_size"] == 448
    assert siglip["objective"] == intern["objective"] and siglip["objective"]["gan_weight"] == 0.1


def test_run_files_record_the_merged_config_and_revision(tmp_path: Path) -> None:
    write_run_files(tmp_path / "run", {"steps": 3}, {"world_size": 2})
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()) == {"steps": 3}
    record = yaml.safe_load((tmp_path / "run" / "run.json").read_text())
    assert record["world_size"] == 2 and "git_revision" in record
