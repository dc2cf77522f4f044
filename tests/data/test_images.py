"""Reading any image Pillow understands; clear errors for the rest; the evaluation crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.odd_images import write_bad_files, write_odd_images
from vqrae.data.images import (
    ImageReadError,
    center_crop_resize,
    list_images,
    load_image,
    pil_to_tensor,
    save_image,
)


def test_every_odd_image_loads_as_rgb(tmp_path) -> None:
    for label, path in write_odd_images(tmp_path).items():
        image = load_image(path)
        assert image.mode == "RGB", label
        tensor = pil_to_tensor(center_crop_resize(image, 28))
        assert tensor.shape == (3, 28, 28), label
        assert 0.0 <= tensor.min() and tensor.max() <= 1.0


def test_alpha_is_composited_over_white(tmp_path) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(path)
    assert np.asarray(load_image(path)).min() == 255


def test_sixteen_bit_is_scaled_by_bit_depth(tmp_path) -> None:
    path = tmp_path / "g16.png"
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(path)
    assert np.asarray(load_image(path)).min() == 255


@pytest.mark.parametrize("label", ["truncated", "text", "empty"])
def test_bad_files_raise_an_error_naming_the_file(tmp_path, label: str) -> None:
    path = write_bad_files(tmp_path)[label]
    with pytest.raises(ImageReadError, match=str(path.name)):
        load_image(path)


def test_missing_file_and_directory_errors(tmp_path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="directory"):
        load_image(tmp_path)


def test_center_crop_resize_keeps_the_centre() -> None:
    array = np.zeros((100, 300, 3), np.uint8)
    array[:, 100:200] = 255  # white centre square
    out = np.asarray(center_crop_resize(Image.fromarray(array), 50))
    assert out.shape == (50, 50, 3)
    assert out[5:-5, 5:-5].min() > 240


def test_list_images_expands_folders_and_keeps_named_files(tmp_path) -> None:
    write_odd_images(tmp_path / "imgs")
    (tmp_path / "imgs" / "readme.txt").write_text("x")
    found = list_images([tmp_path / "imgs", tmp_path / "missing.png"])
    assert len(found) == 9 and found[-1].name == "missing.png"
    assert all(p.suffix != ".txt" for p in found)


def test_save_image_round_trip_is_lossless_on_uint8_levels(tmp_path) -> None:
    tensor = torch.randint(0, 256, (3, 9, 7)).float() / 255
    path = save_image(tensor, tmp_path / "sub" / "x.png")
    assert torch.equal(pil_to_tensor(Image.open(path).convert("RGB")), tensor)
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]  # no temporary left behind
