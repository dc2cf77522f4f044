"""The demo's built-in inputs: drawn samples and held-out shapes scenes named by caption."""

from __future__ import annotations

from PIL import Image

from vqrae.data.samples import SAMPLE_NAMES, write_samples, write_shapes_samples


def test_demo_inputs_are_written_and_reproducible(tmp_path) -> None:
    drawn = write_samples(tmp_path / "a")
    assert sorted(p.stem for p in drawn) == sorted(SAMPLE_NAMES)
    first = write_shapes_samples(tmp_path / "b", n=3, size=112)
    again = write_shapes_samples(tmp_path / "c", n=3, size=112)
    assert [p.name for p in first] == [p.name for p in again]
    assert all(p.name.startswith(f"shapes_{i}_") for i, p in enumerate(first))
    assert Image.open(first[0]).size == (112, 112)
    assert Image.open(first[1]).tobytes() == Image.open(again[1]).tobytes()
