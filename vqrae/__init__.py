"""VQRAE: one visual tokenizer for multimodal understanding, generation and reconstruction.

>>> import vqrae
>>> model = vqrae.create_model("vqrae-dinov2-s")      # encoder weights via vqrae.assets
>>> indices = model.tokenize(images)                    # (B, N) discrete codes
>>> recon = model.decode_indices(indices)               # (B, 3, H, W) in [0, 1]
>>> features = model.encode(images)                     # (B, N, d) continuous features
"""

from vqrae.tokenizer import (
    VQRAE,
    QuantizerOutput,
    SimVQ,
    TokenizerOutput,
    VQRAEConfig,
    create_model,
    list_models,
)

__version__ = "0.1.0"

__all__ = [
    "VQRAE",
    "QuantizerOutput",
    "SimVQ",
    "TokenizerOutput",
    "VQRAEConfig",
    "__version__",
    "create_model",
    "list_models",
]
