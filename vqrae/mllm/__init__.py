"""Understanding: a LLaVA-style model over VQRAE's continuous features.

* :mod:`~vqrae.mllm.config`, :mod:`~vqrae.mllm.model`: the architecture and the model
  (:class:`MLLM`: frozen features -> pooling -> projector -> any causal LM), its folder;
* :mod:`~vqrae.mllm.vision`, :mod:`~vqrae.mllm.projector`, :mod:`~vqrae.mllm.language`: its
  parts (the frozen visual half, ``mlp2x_gelu`` and pooling, the LM with the image placeholder
  and LoRA);
* :mod:`~vqrae.mllm.prompts`, :mod:`~vqrae.mllm.conversations`, :mod:`~vqrae.mllm.sources`,
  :mod:`~vqrae.mllm.data`, :mod:`~vqrae.mllm.feature_cache`: training data (LLaVA's JSON, the
  shapes world, ImageNet-sample captions; assistant-only label masks; cached features);
* :mod:`~vqrae.mllm.train_config`, :mod:`~vqrae.mllm.trainer`: the two LLaVA stages on the shared
  training engine;
* :mod:`~vqrae.mllm.generate`, :mod:`~vqrae.mllm.chat`, :mod:`~vqrae.mllm.answer`: inference
  (batched KV-cached decoding, streaming chat, model_vqa answering);
* :mod:`~vqrae.mllm.mme_run`, :mod:`~vqrae.mllm.gqa_run`, :mod:`~vqrae.mllm.dpg_judge`: the
  model-running half of MME, GQA and DPG-Bench;
* :mod:`~vqrae.mllm.export_hf`: export to transformers' ``LlavaForConditionalGeneration``.
"""

from vqrae.mllm.answer import AnswerRun, answer_batch, answer_questions, read_questions
from vqrae.mllm.chat import ChatSession, run_chat
from vqrae.mllm.config import CHAT_TEMPLATES, MLLMConfig
from vqrae.mllm.conversations import Conversation, load_llava_json
from vqrae.mllm.dpg_judge import MLLMJudge, run_dpg
from vqrae.mllm.export_hf import ExportError, export_llava, to_llava
from vqrae.mllm.generate import GenerationSettings, TextStream, generate
from vqrae.mllm.gqa_run import run_gqa
from vqrae.mllm.language import LoRASettings
from vqrae.mllm.mme_run import read_mme_folder, run_mme
from vqrae.mllm.model import MLLM, MLLMOutput, ProjectedLM
from vqrae.mllm.projector import Projector, pool_tokens
from vqrae.mllm.sources import SourceConfig, load_sources
from vqrae.mllm.train_config import MLLMTrainConfig, load_mllm_train_config
from vqrae.mllm.trainer import MLLMTrainer, TrainResult
from vqrae.mllm.vision import VisionFeatures

__all__ = [
    "CHAT_TEMPLATES",
    "MLLM",
    "AnswerRun",
    "ChatSession",
    "Conversation",
    "ExportError",
    "GenerationSettings",
    "LoRASettings",
    "MLLMConfig",
    "MLLMJudge",
    "MLLMOutput",
    "MLLMTrainConfig",
    "MLLMTrainer",
    "ProjectedLM",
    "Projector",
    "SourceConfig",
    "TextStream",
    "TrainResult",
    "VisionFeatures",
    "answer_batch",
    "answer_questions",
    "export_llava",
    "generate",
    "load_llava_json",
    "load_mllm_train_config",
    "load_sources",
    "pool_tokens",
    "read_mme_folder",
    "read_questions",
    "run_chat",
    "run_dpg",
    "run_gqa",
    "run_mme",
    "to_llava",
]
