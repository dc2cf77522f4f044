"""The training engine: one interface over plain PyTorch and DeepSpeed ZeRO 1/2/3.

A trainer hands the engine an ``nn.Module`` whose ``forward(batch)`` returns an object with a
scalar ``loss`` and a ``metrics`` dict (an *objective* that composes the model and its loss),
the recipe's optimiser settings and batch sizes; the engine owns everything between that loss
and the next weights:

* **backends**: ``"torch"`` (one process, or DDP under ``torchrun``), ``"deepspeed"`` (ZeRO
  stage 1, 2 or 3 from a DeepSpeed JSON file, launched by ``torchrun`` or ``deepspeed``), and
  ``"auto"``: DeepSpeed when a JSON file is given and the package imports, else plain PyTorch;
* **ZeRO-3** gathers a submodule's parameters around that submodule's forward; a module whose
  own forward reads another's parameter (a head sliced by the objective) lists it in an
  ``external_parameters()`` method and the engine registers it with DeepSpeed;
* **the optimiser** is always the recipe's torch ``AdamW`` (betas, eps, weight decay; no decay on
  biases and norms), handed to DeepSpeed as its client optimiser, so both backends run the same
  update rule; the learning rate is a function of the step (:mod:`vqrae.training.schedules`),
  set on every group before each step;
* **the batch**: ``global_batch`` samples per optimiser step whatever the world size; each
  process runs micro-batches of ``micro_batch`` samples and accumulates
  ``global_batch / (micro_batch x world_size)`` of them. Each micro-batch loss is a mean over
  its samples, divided by the accumulation count, and gradients are averaged over processes,
  so a step's gradient is the mean over the global batch: two processes equal one;
* **the DeepSpeed JSON** holds what is DeepSpeed's (the ZeRO stage and its buckets, offload,
  communication); the keys the recipe owns may be ``"auto"`` and are filled here
  (``train_batch_size``, ``train_micro_batch_size_per_gpu``, ``gradient_accumulation_steps``,
  ``gradient_clipping``, ``bf16.enabled``); a number that disagrees with the recipe, or an
  ``optimizer``/``scheduler`` section, is an error;
* **precision** (one setting): ``"32"``; ``"bf16-mixed"`` (fp32 weights under bf16 autocast,
  plain PyTorch); ``"bf16"`` (DeepSpeed's bf16 mode: bf16 weights, fp32 master copies in the
  optimiser); ``"auto"`` is fp32 on CPU and bf16 on CUDA;
* **exact resume**: :meth:`TrainEngine.save` writes one atomic checkpoint directory per step
  (the layout of :mod:`vqrae.training.checkpoints`, so ``find_latest``/``prune_checkpoints``
  apply)::

      step_00000100/
          model.safetensors     the whole module's weights (gathered under ZeRO-3)
          trainer_state.pt      step, backend, world size, torch optimiser state, trainer extras
          rng/rank_00000.pt     every process's RNG states (torch, CUDA, numpy, random)
          deepspeed/            DeepSpeed's own checkpoint (optimiser partitions, fp32 master)

  A run resumes with the backend and, for DeepSpeed, the world size it was saved with; a
  plain-PyTorch checkpoint resumes at any world size. Checkpoints are written into a hidden
  sibling and renamed when complete (the folder must be shared by all processes).

The engine knows nothing about what is trained: the understanding trainer and the generator
trainer both drive it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn

from vqrae.training.checkpoints import prune_checkpoints
from vqrae.training.schedules import Schedule, lr_factor
from vqrae.utils.distributed import DistributedContext
from vqrae.utils.runtime import autocast

__all__ = [
    "Backend",
    "EngineConfig",
    "EnginePrecision",
    "ObjectiveOutput",
    "OptimizerConfig",
    "TrainEngine",
    "deepspeed_available",
    "fill_deepspeed_config",
    "read_deepspeed_config",
]

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "deepspeed"]
EnginePrecision = Literal["auto", "32", "bf16-mixed", "bf16"]

_AUTO = "auto"
_RECIPE_OWNED = ("optimizer", "scheduler")
_DS_TAG = "state"
_MODEL_FILE = "model.safetensors"
_STATE_FILE = "trainer_state.pt"


# ----------------------------------------------------------------------------- configs


@dataclass
class OptimizerConfig:
    """AdamW with a warm-up, then a constant or cosine learning rate.

    Attributes:
        lr: peak learning rate.
        betas: AdamW's (beta1, beta2).
        eps: AdamW's epsilon (the paper's generator: 1e-15).
        weight_decay: decoupled weight decay on matrices (not on biases or norm weights).
        warmup_steps: linear warm-up from ``lr / warmup_steps`` to ``lr``.
        schedule: ``"constant"`` after the warm-up, or ``"cosine"`` down to ``min_lr``.
        min_lr: the cosine schedule's end point (unused by ``"constant"``).
        grad_clip: clip the global gradient norm to this (0: no clipping).
    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Schedule = "constant"
    min_lr: float = 0.0
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        if self.lr <= 0 or self.eps <= 0:
            raise ValueError(f"optim.lr and optim.eps must be > 0, got {self.lr}, {self.eps}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.warmup_steps < 0:
            raise ValueError("optim.weight_decay, optim.grad_clip, optim.warmup_steps must be >= 0")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(
                f"optim.schedule must be 'constant' or 'cosine', got {self.schedule!r}"
            )
        if not 0.0 <= self.min_lr <= self.lr:
            raise ValueError(f"optim.min_lr must lie in [0, lr], got {self.min_lr}")


@dataclass
class EngineConfig:
    """How the engine runs: backend, DeepSpeed file, precision, batch sizes.

    Attributes:
        backend: ``"torch"``, ``"deepspeed"`` or ``"auto"`` (DeepSpeed when ``deepspeed`` names
            a file and the package imports, else plain PyTorch).
        deepspeed: a DeepSpeed JSON file (e.g. ``configs/deepspeed/zero1.json``), or ``None``.
        precision: see :data:`EnginePrecision`.
        global_batch: samples per optimiser step, over all processes.
        micro_batch: samples per forward pass on one process.
        save_frozen: whether checkpoints hold the parameters that do not train. ``False``
            leaves them out (a resumed run must rebuild them as they were: pretrained weights
            loaded by reference, e.g. the frozen LM under a trained projector, which would
            otherwise be written whole at every checkpoint); the trained parameters, every
            buffer and the optimiser state are always saved, and loading checks that exactly
            the left-out parameters are missing.
    """

    backend: Backend = "auto"
    deepspeed: str | None = None
    precision: EnginePrecision = "auto"
    global_batch: int = 8
    micro_batch: int = 8
    save_frozen: bool = True

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "torch", "deepspeed"):
            raise ValueError(
                f"engine.backend must be 'auto', 'torch' or 'deepspeed', got {self.backend!r}"
            )
        if self.precision not in ("auto", "32", "bf16-mixed", "bf16"):
            raise ValueError(
                "engine.precision must be 'auto', '32', 'bf16-mixed' or 'bf16', "
                f"got {self.precision!r}"
            )
        if self.global_batch < 1 or self.micro_batch < 1:
            raise ValueError("engine.global_batch and engine.micro_batch must be >= 1")
        if self.backend == "deepspeed" and not self.deepspeed:
            raise ValueError("engine.backend 'deepspeed' needs engine.deepspeed (a JSON file)")

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per optimiser step on each process.

        Raises:
            ValueError: ``global_batch`` is not a multiple of ``micro_batch x world_size``.
        """
        per_round = self.micro_batch * world_size
        if self.global_batch % per_round:
            raise ValueError(
                f"engine.global_batch {self.global_batch} is not divisible by "
                f"micro_batch x world size ({self.micro_batch} x {world_size})"
            )
        return self.global_batch // per_round


class ObjectiveOutput(Protocol):
    """What the trained module's ``forward`` returns: a scalar loss and detached metrics."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


@dataclass
class StepMetrics:
    """One optimiser step: the metrics averaged over its micro-batches (this process), the
    gradient norm before clipping and the learning rate used."""

    metrics: dict[str, torch.Tensor]
    grad_norm: float | None
    lr: float
    extras: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- DeepSpeed JSON


def deepspeed_available() -> bool:
    """Whether the ``deepspeed`` package imports here."""
    try:
        import deepspeed  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install (missing CUDA headers, ...) is "absent"
        return False
    return True


def read_deepspeed_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A DeepSpeed JSON file as a dict.

    Raises:
        ValueError: a missing file, invalid JSON, not an object, or a section the recipe owns.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"DeepSpeed config {path} not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"DeepSpeed config {path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"DeepSpeed config {path}: must be a JSON object")
    owned = [key for key in _RECIPE_OWNED if key in data]
    if owned:
        raise ValueError(
            f"DeepSpeed config {path}: remove {owned}; the recipe's optim section sets the "
            "optimiser and the learning-rate schedule"
        )
    return data


def fill_deepspeed_config(
    data: dict[str, Any],
    *,
    global_batch: int,
    micro_batch: int,
    accumulation: int,
    grad_clip: float,
    bf16: bool,
) -> dict[str, Any]:
    """Fill the ``"auto"`` values the recipe owns; check the explicit ones agree with it.

    Raises:
        ValueError: an explicit value that disagrees with the recipe (naming the key).
    """
    out = json.loads(json.dumps(data))  # a deep copy
    wanted: dict[str, Any] = {
        "train_batch_size": global_batch,
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": grad_clip,
    }
    for key, value in wanted.items():
        given = out.get(key, _AUTO)
        if given != _AUTO and given != value:
            raise ValueError(
                f"DeepSpeed config sets {key}={given!r} but the recipe gives {value!r}: "
                'write "auto" and set it in the recipe'
            )
        out[key] = value
    section = dict(out.get("bf16", {}))
    given = section.get("enabled", _AUTO)
    if given != _AUTO and bool(given) != bf16:
        raise ValueError(
            f"DeepSpeed config sets bf16.enabled={given!r} but the precision asks for "
            f'bf16={bf16}: write "auto"'
        )
    section["enabled"] = bf16
    out["bf16"] = section
    if out.get("fp16", {}).get("enabled") not in (None, False, _AUTO):
        raise ValueError("DeepSpeed config: fp16 is not supported; use precision bf16")
    out.pop("fp16", None)
    out.setdefault("steps_per_print", 1 << 30)  # the trainer logs; DeepSpeed stays quiet
    return out


# ----------------------------------------------------------------------------- engine


def _param_groups(module: nn.Module, optim: OptimizerConfig) -> list[dict[str, Any]]:
    """AdamW groups: matrices decay, biases and norm weights (ndim < 2) do not."""
    decay, no_decay = [], []
    for _, param in module.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the module has no trainable parameters")
    return groups


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": json.dumps(_numpy_state()),
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> list[Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = json.loads(state["numpy"])
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors sharing storage (tied embeddings) saved once: (unique tensors, {alias: key})."""
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for key, tensor in state.items():
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if ident in seen:
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        unique[key] = tensor.detach().cpu().contiguous()
    return unique, aliases


class TrainEngine:
    """Runs optimiser steps of ``module`` under plain PyTorch or DeepSpeed.

    Args:
        module: the objective to train: ``module(batch)`` returns an :class:`ObjectiveOutput`.
            Expand vocabularies, attach adapters and freeze parameters before this.
        config: backend, DeepSpeed file, precision and batch sizes.
        optim: the optimiser and learning-rate schedule.
        total_steps: the run's length (the cosine schedule's end).
        context: the distributed context (default: from the launcher's environment).
    """

    def __init__(
        self,
        module: nn.Module,
        config: EngineConfig,
        optim: OptimizerConfig,
        total_steps: int,
        context: DistributedContext | None = None,
    ) -> None:
        self.config = config
        self.optim = optim
        self.total_steps = total_steps
        self.backend = self._choose_backend(config)
        if self.backend == "deepspeed":
            _init_deepspeed_distributed()
        self.ctx = context or DistributedContext.from_environment()
        self.device = self.ctx.device
        self.precision = self._choose_precision(config.precision)
        self.accumulation = config.accumulation(self.ctx.world_size)
        self.step = 0
        module.to(self.device)
        self.module = module
        optimizer = torch.optim.AdamW(
            _param_groups(module, optim), lr=optim.lr, betas=optim.betas, eps=optim.eps
        )
        self._ds_engine: Any | None = None
        if self.backend == "deepspeed":
            self._ds_engine, self.optimizer = self._deepspeed(module, optimizer)
            self.model: nn.Module = self._ds_engine
        else:
            self.optimizer = optimizer
            self.model = self._ddp(module)

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _choose_backend(config: EngineConfig) -> str:
        if config.backend == "torch":
            return "torch"
        if config.backend == "deepspeed":
            if not deepspeed_available():
                raise ValueError(
                    "engine.backend is 'deepspeed' but the deepspeed package does not import "
                    "(pip install deepspeed), or set engine.backend: torch"
                )
            return "deepspeed"
        if config.deepspeed and deepspeed_available():
            return "deepspeed"
        if config.deepspeed:
            log.warning("deepspeed is not installed: training with plain PyTorch")
        return "torch"

    def _choose_precision(self, precision: EnginePrecision) -> str:
        cuda = self.device.type == "cuda"
        if precision == "auto":
            return ("bf16" if self.backend == "deepspeed" else "bf16-mixed") if cuda else "32"
        if precision == "bf16" and self.backend != "deepspeed":
            raise ValueError(
                "engine.precision 'bf16' (bf16 weights with fp32 master copies) needs the "
                "deepspeed backend; plain PyTorch uses 'bf16-mixed'"
            )
        if precision == "bf16-mixed" and self.backend == "deepspeed":
            raise ValueError("under DeepSpeed use engine.precision 'bf16' (or '32')")
        return precision

    @property
    def zero_stage(self) -> int:
        """The ZeRO stage (0 for plain PyTorch)."""
        if self._ds_engine is None:
            return 0
        return int(self._ds_engine.zero_optimization_stage())

    def _deepspeed(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
        import deepspeed

        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        assert self.config.deepspeed is not None
        ds_config = fill_deepspeed_config(
            read_deepspeed_config(self.config.deepspeed),
            global_batch=self.config.global_batch,
            micro_batch=self.config.micro_batch,
            accumulation=self.accumulation,
            grad_clip=self.optim.grad_clip,
            bf16=self.precision == "bf16",
        )
        if ds_config.get("zero_optimization", {}).get("stage") == 3:
            # Parameters a module's own forward reads from other modules (a head sliced by
            # the objective) are gathered for that forward only if registered.
            for param in getattr(module, "external_parameters", list)():
                deepspeed.zero.register_external_parameter(module, param)
        engine, ds_optimizer, _, _ = deepspeed.initialize(
            model=module, optimizer=optimizer, config=ds_config
        )
        return engine, ds_optimizer

    def _ddp(self, module: nn.Module) -> nn.Module:
        if not self.ctx.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    # ------------------------------------------------------------------ one step
    def _param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def learning_rate(self, step: int | None = None) -> float:
        """The learning rate of optimiser step ``step`` (default: the next one)."""
        o = self.optim
        step = self.step if step is None else step
        factor = lr_factor(step, o.warmup_steps, self.total_steps, o.min_lr / o.lr, o.schedule)
        return o.lr * factor

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward context of the precision (bf16 autocast for ``"bf16-mixed"``)."""
        if self.precision == "bf16-mixed":
            return autocast(self.device, "bf16-mixed")
        return contextlib.nullcontext()

    def train_step(self, micro_batches: Sequence[Any]) -> StepMetrics:
        """One optimiser step over this process's ``accumulation`` micro-batches.

        Returns:
            the step's metrics, averaged over the micro-batches (tensors, not synchronised:
            averaging over processes is the caller's, at logging time).
        """
        if len(micro_batches) != self.accumulation:
            raise ValueError(
                f"expected {self.accumulation} micro-batches per step, got {len(micro_batches)}"
            )
        lr = self.learning_rate()
        for group in self._param_groups():
            group["lr"] = lr
        sums: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            out = self._forward_backward(batch, last)
            for key, value in out.metrics.items():
                value = value.detach().float()
                sums[key] = sums.get(key, 0.0) + value / self.accumulation
        grad_norm = self._optimizer_step()
        self.step += 1
        return StepMetrics(metrics=sums, grad_norm=grad_norm, lr=lr)

    def _forward_backward(self, batch: Any, last: bool) -> ObjectiveOutput:
        if self._ds_engine is not None:
            out = self._ds_engine(batch)
            self._ds_engine.backward(out.loss)  # DeepSpeed divides by the accumulation count
            self._ds_engine.step()  # applies the update only at the accumulation boundary
            return out
        sync = last or not isinstance(self.model, nn.parallel.DistributedDataParallel)
        no_sync = contextlib.nullcontext() if sync else self.model.no_sync()
        with no_sync:
            with self.autocast():
                out = self.model(batch)
            (out.loss / self.accumulation).backward()
        return out

    def _optimizer_step(self) -> float | None:
        if self._ds_engine is not None:
            norm = self._ds_engine.get_global_grad_norm()
            return None if norm is None else float(norm)
        norm = None
        if self.optim.grad_clip > 0:
            params = [p for p in self.module.parameters() if p.requires_grad]
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.optim.grad_clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    # ------------------------------------------------------------------ weights
    @contextlib.contextmanager
    def gathered(self) -> Iterator[nn.Module]:
        """The unwrapped module with whole parameters (gathered under ZeRO-3; collective)."""
        if self.zero_stage == 3:
            import deepspeed

            params = list(self.module.parameters())
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                yield self.module
        else:
            yield self.module

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The whole module's weights on CPU (collective under ZeRO-3: call on every process)."""
        with self.gathered() as module:
            return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    # ------------------------------------------------------------------ checkpoints
    def save(self, root: str | os.PathLike[str], extra: dict[str, Any], keep: int) -> Path:
        """Write the checkpoint of the current step under ``root``; keep the last ``keep``.

        Collective: every process calls it. ``extra`` (the trainer's counters, its config) goes
        into ``trainer_state.pt`` and must be ``torch.load(weights_only=True)``-loadable.
        """
        root = Path(root)
        final = root / f"step_{self.step:08d}"
        tmp = root / f".step_{self.step:08d}.partial"
        if self.ctx.is_main:
            root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            (tmp / "rng").mkdir(parents=True)
        self.ctx.barrier()
        frozen = self._left_out()
        if self._ds_engine is not None:
            self._ds_engine.save_checkpoint(
                str(tmp / "deepspeed"),
                tag=_DS_TAG,
                client_state={},
                save_latest=False,
                exclude_frozen_parameters=bool(frozen),
            )
        torch.save(_rng_state(), tmp / "rng" / f"rank_{self.ctx.rank:05d}.pt")
        weights = {k: v for k, v in self.full_state_dict().items() if k not in frozen}
        self.ctx.barrier()  # every process has written its part before the folder is renamed
        if self.ctx.is_main:
            unique, aliases = _dedupe(weights)
            save_file(unique, str(tmp / _MODEL_FILE))
            state = {
                "step": self.step,
                "backend": self.backend,
                "world_size": self.ctx.world_size,
                "tied_weights": aliases,
                "left_out": sorted(frozen),
                "optimizer": self.optimizer.state_dict() if self._ds_engine is None else None,
                **extra,
            }
            torch.save(state, tmp / _STATE_FILE)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            prune_checkpoints(root, keep)
        self.ctx.barrier()
        return final

    def load(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Restore weights, optimiser, RNG and step from a checkpoint of :meth:`save`.

        Collective. Returns the trainer state (``extra`` as saved, with ``step``).

        Raises:
            ValueError: the checkpoint's backend differs, or a DeepSpeed checkpoint of another
                world size.
        """
        path = Path(path)
        state = torch.load(path / _STATE_FILE, map_location="cpu", weights_only=True)
        if state["backend"] != self.backend:
            raise ValueError(
                f"{path} was written by the {state['backend']} backend; this run uses "
                f"{self.backend}: resume with the same engine.backend"
            )
        if self._ds_engine is not None:
            if state["world_size"] != self.ctx.world_size:
                raise ValueError(
                    f"{path} holds DeepSpeed partitions of {state['world_size']} processes; "
                    f"resume with {state['world_size']}, not {self.ctx.world_size}"
                )
            loaded, _ = self._ds_engine.load_checkpoint(
                str(path / "deepspeed"),
                tag=_DS_TAG,
                load_module_strict=not state.get("left_out"),
                load_optimizer_states=True,
                load_lr_scheduler_states=False,
            )
            if loaded is None:
                raise ValueError(f"{path}: DeepSpeed could not read its checkpoint")
        else:
            weights = load_file(str(path / _MODEL_FILE))
            for alias, key in state.get("tied_weights", {}).items():
                weights[alias] = weights[key]
            left_out = set(state.get("left_out", []))
            missing, unexpected = self.module.load_state_dict(weights, strict=not left_out)
            if set(missing) != left_out or unexpected:
                raise ValueError(
                    f"{path} does not fit the module: missing {sorted(set(missing) - left_out)[:5]}"
                    f", unexpected {unexpected[:5]}, left out but present {sorted(left_out - set(missing))[:5]}"
                )
            self.optimizer.load_state_dict(state["optimizer"])
        rng = path / "rng" / f"rank_{self.ctx.rank:05d}.pt"
        if rng.is_file():
            _set_rng_state(torch.load(rng, map_location="cpu", weights_only=True))
        else:  # resumed at a larger world size (plain PyTorch): new processes start fresh
            log.info("%s holds no RNG state of rank %d", path, self.ctx.rank)
        self.step = int(state["step"])
        return state

    # ------------------------------------------------------------------ helpers
    def _left_out(self) -> set[str]:
        """State keys a checkpoint leaves out: the frozen parameters, unless ``save_frozen``
        (tied names included: a tied tensor is frozen under each of its names)."""
        if self.config.save_frozen:
            return set()
        return {
            n
            for n, p in self.module.named_parameters(remove_duplicate=False)
            if not p.requires_grad
        }

    def all_mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalar metrics over processes (collective)."""
        return self.ctx.mean(values)


def _init_deepspeed_distributed() -> None:
    """Initialise the process group through DeepSpeed (gloo on CPU, NCCL on CUDA).

    Without a launcher a one-process group is set up on a free local port, so the same code
    runs alone or under ``torchrun``/``deepspeed``.
    """
    if dist.is_initialized():
        return
    import deepspeed

    if "WORLD_SIZE" not in os.environ:
        os.environ.update(
            {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
        )
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    deepspeed.init_distributed(dist_backend=backend, verbose=False)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
