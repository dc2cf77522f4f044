"""Tests for DPG-Bench scoring: CSV reading, tiles, dependency zeroing, categories, judges."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vqrae.data.shapes.dpg_items import dpg_rows, rows_to_csv
from vqrae.data.shapes.render import render_scene
from vqrae.data.shapes.sampler import sample_ground
from vqrae.data.shapes.scene import Scene, ShapeObject
from vqrae.data.shapes.writer import dpg_grid
from vqrae.eval.dpg import (
    DetectorJudge,
    Judge,
    OracleJudge,
    Proposition,
    eval_dpg,
    format_report,
    is_yes,
    load_dpg_csv,
    make_judge,
    score_item,
    split_tiles,
    zero_dependents,
)

CSV = """item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple,question_natural_language
a,two red circles,circle,1,0,entity,whole,entity - whole (circle),Are there circles?
a,two red circles,circle,2,1,other,count,"other - count (circle, ==2)",Are there two circles?
a,two red circles,circle,3,1,attribute,color,"attribute - color (circle, red)",Are the circles red?
a,two red circles,circle,4,"2,3",relation,spatial,"relation - spatial (circle, circle, left of)",Is one circle left of the other?
b,a star,star,1,0,entity,whole,entity - whole (star),Is there a star?
"""


class ScriptedJudge:
    """Answers from a table question -> reply, the same for every tile unless per-tile."""

    def __init__(self, replies: dict[str, str | list[str]]) -> None:
        self.replies = replies
        self.calls = 0

    def answer(self, image: Image.Image, question: str) -> str:
        reply = self.replies[question]
        self.calls += 1
        return reply if isinstance(reply, str) else reply[int(image.getpixel((0, 0))[0] // 60)]


def _grid(tile_values=(0, 60, 120, 180), side=8) -> Image.Image:
    return dpg_grid([Image.new("RGB", (side, side), (v, v, v)) for v in tile_values])


@pytest.fixture
def items(tmp_path):
    path = tmp_path / "dpg.csv"
    path.write_text(CSV)
    return load_dpg_csv(path)


def test_csv_reads_every_row_and_dependencies(items):
    assert list(items) == ["a", "b"]
    assert [p.pid for p in items["a"].propositions] == [1, 2, 3, 4]  # the first row is kept
    assert items["a"].propositions[3].parents == (2, 3)
    assert items["a"].propositions[0].parents == ()
    assert (
        items["a"].propositions[1].l2 == "other - count"
        and items["a"].propositions[1].l1 == "other"
    )


def test_csv_rejects_unknown_parents(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(CSV.replace('"2,3"', '"2,9"'))
    with pytest.raises(ValueError, match="unknown"):
        load_dpg_csv(path)


def test_zeroing_passes_down_chains():
    props = [
        Proposition(1, (), "entity", "whole", "t", "q1"),
        Proposition(2, (1,), "other", "count", "t", "q2"),
        Proposition(3, (2,), "attribute", "color", "t", "q3"),
        Proposition(4, (), "entity", "whole", "t", "q4"),
    ]
    assert zero_dependents(props, {1: 0.0, 2: 1.0, 3: 1.0, 4: 1.0}) == {
        1: 0.0,
        2: 0.0,
        3: 0.0,
        4: 1.0,
    }
    assert zero_dependents(props, {1: 1.0, 2: 0.0, 3: 1.0, 4: 0.0}) == {
        1: 1.0,
        2: 0.0,
        3: 0.0,
        4: 0.0,
    }


def test_tiles_and_yes_parsing():
    tiles = split_tiles(_grid())
    assert [t.getpixel((0, 0))[0] for t in tiles] == [0, 60, 120, 180]
    assert len(split_tiles(_grid(), tiles=1)) == 1
    assert is_yes("Yes.") and is_yes(" yes") and not is_yes("yes, two") and not is_yes("no")


def test_item_score_means_over_questions_then_tiles(items):
    judge = ScriptedJudge(
        {
            "Are there circles?": ["yes", "yes", "no", "yes"],  # tile 3: parent no -> all zero
            "Are there two circles?": "yes",
            "Are the circles red?": ["yes", "no", "yes", "yes"],
            "Is one circle left of the other?": "yes",
        }
    )
    assert isinstance(judge, Judge)
    result = score_item(items["a"], _grid(), judge)
    assert result.question_scores[0] == (1, 1, 1, 1)
    assert result.question_scores[1] == (1, 1, 0, 0)  # 4 depends on 3
    assert result.question_scores[2] == (0, 0, 0, 0)
    assert result.tile_scores == (1.0, 0.5, 0.0, 1.0)
    assert result.score == pytest.approx(0.625)
    assert judge.calls == 16


def test_report_categories_missing_images_and_summary(items, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    _grid().save(images / "a.png")
    judge = ScriptedJudge(
        {
            "Are there circles?": "yes",
            "Are there two circles?": "no",
            "Are the circles red?": "yes",
            "Is one circle left of the other?": "yes",
        }
    )
    report = eval_dpg(images, tmp_path / "dpg.csv", judge, out=tmp_path / "dpg.json")
    assert report.num_images == 1 and report.missing == ("b",)
    assert report.score == pytest.approx(50.0)  # 1 + 0 + 1 + 0 (zeroed) over 4 questions
    assert report.l1 == {"entity": 100.0, "other": 0.0, "attribute": 100.0, "relation": 0.0}
    assert report.l2["relation - spatial"] == 0.0  # categories after zeroing
    text = format_report(report)
    assert text.endswith("DPG-Bench score: 50.00") and "\tentity: 100.00" in text
    assert (tmp_path / "dpg.json").is_file()


def _scene(*objects: tuple[str, str, float, float]) -> Scene:
    objs = tuple(ShapeObject(s, c, x, y, 0.22, (0, 0, 0)) for s, c, x, y in objects)
    return Scene(objs, sample_ground(np.random.default_rng(0)))


def test_oracle_and_detector_judges_on_shapes_tiles(tmp_path):
    from vqrae.data.shapes.colour import COLOURS

    def painted(scene: Scene) -> Scene:
        return Scene(
            tuple(
                ShapeObject(o.shape, o.colour, o.cx, o.cy, o.size, COLOURS[o.colour])
                for o in scene.objects
            ),
            scene.ground,
        )

    good = painted(_scene(("star", "blue", 0.2, 0.5), ("square", "white", 0.75, 0.5)))
    wrong_colour = painted(_scene(("star", "red", 0.2, 0.5), ("square", "white", 0.75, 0.5)))
    wrong_side = painted(_scene(("star", "blue", 0.75, 0.5), ("square", "white", 0.2, 0.5)))
    no_star = painted(_scene(("square", "white", 0.75, 0.5)))
    tiles = [good, wrong_colour, wrong_side, no_star]
    rows = dpg_rows(good, "shapes0")
    (tmp_path / "dpg.csv").write_text(rows_to_csv(rows))
    items = load_dpg_csv(tmp_path / "dpg.csv")
    renders = [render_scene(s, 96) for s in tiles]
    (tmp_path / "images").mkdir()
    dpg_grid(renders).save(tmp_path / "images" / "shapes0.png")
    n = len(rows)  # square: whole, colour; star: whole, colour; relation
    assert n == 5
    expected = [1.0, 4 / 5, 4 / 5, 2 / 5]  # no star: its whole, colour and the relation are 0
    oracle = OracleJudge(zip(renders, tiles, strict=True), items.values())
    for judge in (oracle, DetectorJudge(items.values())):
        report = eval_dpg(tmp_path / "images", tmp_path / "dpg.csv", judge)
        assert report.items[0].tile_scores == pytest.approx(tuple(expected))
        assert report.score == pytest.approx(100 * np.mean(expected))
    with pytest.raises(KeyError):
        oracle.answer(Image.new("RGB", (96, 96)), rows[0]["question_natural_language"])


def test_make_judge_by_name(items, tmp_path):
    from vqrae.data.shapes.writer import make_shapes_dataset

    assert isinstance(make_judge("detector", items), DetectorJudge)
    with pytest.raises(ValueError, match="dpg_dir"):
        make_judge("oracle", items)
    with pytest.raises(ValueError, match="unknown judge"):
        make_judge("gpt", items)
    make_shapes_dataset(
        tmp_path, n=4, size=48, geneval_per_tag=1, mme_per_subtask=1, dpg_items=2, hf=False
    )
    dpg = tmp_path / "dpg"
    report = eval_dpg(dpg / "images", dpg / "dpg_bench.csv", make_judge("oracle", items, dpg))
    assert report.num_images == 2 and report.score == 100.0  # reference grids satisfy their items
