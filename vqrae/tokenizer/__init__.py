"""The VQRAE tokenizer: encoders, SimVQ quantizer, ViT decoder, the model and its registry."""

from vqrae.tokenizer.decoder import ViTDecoder
from vqrae.tokenizer.encoders import EncoderSpec, VFMEncoder, get_encoder_spec, list_encoders
from vqrae.tokenizer.model import VQRAE, TokenizerOutput, VQRAEConfig
from vqrae.tokenizer.quantizer import QuantizerOutput, SimVQ
from vqrae.tokenizer.registry import create_model, list_models, register_model

__all__ = [
    "VQRAE",
    "EncoderSpec",
    "QuantizerOutput",
    "SimVQ",
    "TokenizerOutput",
    "VFMEncoder",
    "VQRAEConfig",
    "ViTDecoder",
    "create_model",
    "get_encoder_spec",
    "list_encoders",
    "list_models",
    "register_model",
]
