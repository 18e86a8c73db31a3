"""The PyTorch engine: one Hugging Face Qwen2-VL / Qwen2.5-VL model (or a text-only Qwen2 causal LM), its AdamW state, and the ops the server
exposes (engine/README.md, "PyTorch engine"). Every method takes the request's `args` (parsed JSON) and
`tensors` (numpy arrays by name) and returns `(result, tensors)`; bad input raises the protocol's `BadValue` /
`BadType` / `StateError` naming the field, before any state changes.

Batches of (prompt, response) rows: `args.prompts` holds the distinct prompts (chat messages whose images are
request tensors of PNG/JPEG bytes), rendered by the model's own processor and chat template (a text-only model's
tokenizer and chat template; it refuses image parts); the tensors
`prompt_index` (B), `response_lengths` (B) and `response_ids` (Σ lengths) say which prompt each row continues
and with which tokens. Per-token inputs and outputs (`loss_mask`, `old_logprobs`, `ref_logprobs`, `logprobs`)
are flat over the response tokens in the same order; per-row ones (`advantages`, `score_targets`, `scores`)
have B entries.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from . import distributed
from . import lora as lora_
from . import losses
from . import rollout as rollout_
from .protocol import BadType, BadValue, RequestError, StateError, request_tensor

Result = tuple[dict[str, Any], dict[str, np.ndarray]]
_LOADS = itertools.count(1)

# Vision-language models (AutoModelForImageTextToText + AutoProcessor, M-RoPE positions) and text-only causal LMs
# (AutoModelForCausalLM + AutoTokenizer, plain 1-D positions).
VISION_MODEL_TYPES = ("qwen2_5_vl", "qwen2_vl")
TEXT_MODEL_TYPES = ("qwen2",)
SUPPORTED_MODEL_TYPES = VISION_MODEL_TYPES + TEXT_MODEL_TYPES
ROLES = ("policy", "reference", "reward")
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}

STATE_FILE = "sophia_engine.json"
# The AdamW moments: this file when they fit in one shard (or there are none), else sophia_optimizer-00001-of-0000N
# .safetensors ... (the names Hugging Face gives weight shards); sophia_engine.json lists them as `optimizer_files`.
OPTIMIZER_FILE = "sophia_optimizer.safetensors"
RNG_FILE = "sophia_rng.safetensors"
HEAD_FILE = "sophia_reward_head.safetensors"
STATE_FORMAT = "sophia-torch-state"
# Version 2: the moments in `optimizer_files`, the RNG in RNG_FILE. Version 1 (still read): the moments and the RNG
# in OPTIMIZER_FILE. A v1 reader refuses a v2 state by its version instead of missing its RNG.
STATE_VERSION = 2
READ_STATE_VERSIONS = (1, 2)
# No file of a saved state is bigger than this (args.shard_bytes overrides it per save), except a safetensors file
# holding one tensor that is bigger on its own: the TypeScript side reads and streams each file whole, and Node
# reads no file over 2 GiB. A 7B policy's float32 moments alone are ~60 GB.
SHARD_BYTES = 1 << 30
# Threads writing a state's optimizer shards (each copies its shard to host memory, then writes it): at most this
# many shards are in host memory at once.
SAVE_WORKERS = 4

ADAMW_FIELDS = ("lr", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm")
GRPO_FIELDS = ("clip_eps", "kl_coef", "entropy_coef", "temperature")
# A batch's request tensors that hold one entry per row, and one per response token (a multi-process engine splits
# batches by rows: distributed.py).
PER_ROW_TENSORS = ("prompt_index", "response_lengths", "advantages", "score_targets")
PER_TOKEN_TENSORS = ("response_ids", "loss_mask", "old_logprobs", "ref_logprobs")


# ---- argument checks -------------------------------------------------------------------------------------------


def _get(args: dict[str, Any], name: str, kind: type | tuple[type, ...], field: str, default: Any = ..., ) -> Any:
    if name not in args or args[name] is None:
        if default is ...:
            raise BadValue(f"{field} is required", field)
        return default
    value = args[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise BadType(f"{field} must be {' or '.join(k.__name__ for k in kinds)} (got a boolean)", field)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds):
        raise BadType(f"{field} must be {' or '.join(k.__name__ for k in kinds)} (got {type(value).__name__})", field)
    return value


# Non-finite numbers as the protocol sends them (JSON has none): numbers out of range, not values of another type.
NON_FINITE = ("NaN", "Infinity", "-Infinity")


def _finite(args: dict[str, Any], name: str, field: str, default: Any = ...) -> float:
    if args.get(name) in NON_FINITE:
        raise BadValue(f"{field} must be a finite number (got {args[name]})", field)
    value = _get(args, name, float, field, default)
    if not math.isfinite(value):
        raise BadValue(f"{field} must be a finite number (got {value!r})", field)
    return value


def _int(args: dict[str, Any], name: str, field: str, default: Any = ..., minimum: int | None = None) -> int:
    value = _get(args, name, int, field, default)
    if minimum is not None and value < minimum:
        raise BadValue(f"{field} must be an integer >= {minimum} (got {value})", field)
    return value


def _tensor(tensors: dict[str, np.ndarray], name: str, dtypes: tuple[str, ...], length: int | None = None, optional: bool = False) -> np.ndarray | None:
    field = f"tensors.{name}"
    array = request_tensor(tensors, name, dtypes, optional)
    if array is None:
        return None
    if array.ndim != 1:
        raise BadValue(f"tensor {name!r} must be 1-D (got shape {list(array.shape)})", field)
    if length is not None and array.shape[0] != length:
        raise BadValue(f"tensor {name!r} has {array.shape[0]} values, expected {length}", field)
    return array


@contextlib.contextmanager
def _tokenizer_settings_kept(tokenizer: Any) -> Iterator[None]:
    """Puts a fast tokenizer's backend padding and truncation back as they were after the block. transformers sets
    them on the `tokenizers` backend for every call (padding on for a padded batch, off and truncation off for any
    other call) and leaves them so, and `save_pretrained` writes them into tokenizer.json: without this, a state saved
    after a request would differ from the same state saved by a fresh engine, for a tokenizer.json that ships padding
    or truncation after any call, and for every tokenizer after a padded one. A slow tokenizer has no backend."""
    backend = getattr(tokenizer, "_tokenizer", None)
    kept = (backend.padding, backend.truncation) if backend is not None else None
    try:
        yield
    finally:
        if kept is not None and (backend.padding, backend.truncation) != kept:
            padding, truncation = kept
            if padding is None:
                backend.no_padding()
            else:
                backend.enable_padding(**padding)
            if truncation is None:
                backend.no_truncation()
            else:
                backend.enable_truncation(**truncation)


def _image(data: np.ndarray, name: str, field: str) -> Any:
    """An image part's tensor as an RGB picture: raw pixels, (H, W, 3) uint8, or a PNG/JPEG file's bytes, 1-D uint8."""
    from PIL import Image, UnidentifiedImageError

    form = "(H, W, 3) uint8 RGB pixels or the 1-D uint8 bytes of a PNG or JPEG file"
    if data.dtype != np.uint8:
        raise BadType(f"{field} {name!r} must be {form} (got {data.dtype.name})", field)
    if data.ndim == 3:
        if data.shape[2] != 3 or data.shape[0] < 1 or data.shape[1] < 1:
            raise BadValue(f"{field} {name!r} has shape {list(data.shape)}; it must be {form}", field)
        return Image.fromarray(np.ascontiguousarray(data))
    if data.ndim != 1:
        raise BadValue(f"{field} {name!r} has shape {list(data.shape)}; it must be {form}", field)
    try:
        image = Image.open(io.BytesIO(data.tobytes()), formats=["PNG", "JPEG"])
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise BadValue(f"{field} {name!r} is not a readable PNG or JPEG image: {err}", field) from None
    return image.convert("RGB")


def _base_files(files: dict[str, int]) -> dict[str, int]:
    """The weight files among a model directory's files (name → bytes): `model.safetensors`, or its shards and index."""
    return {name: size for name, size in files.items() if re.fullmatch(r"model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json", name)}


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every element of every tensor is finite. One fused pass of 2-norms answers for almost all: a non-finite
    element makes its tensor's norm non-finite. Only a tensor whose norm is not finite (a non-finite element, or finite
    values whose squares overflow) is checked element by element. (`isfinite().all()` on every tensor, one at a time,
    took ~40 ms of a ~700 ms step on a 20 M-parameter model on 2 CPU cores: bench/torch-engine.)"""
    if not tensors:
        return True
    tensors = [distributed.local(t) for t in tensors]  # a sharded gradient: this rank's part (each rank checks its own)
    norms = torch.stack(torch._foreach_norm(tensors))
    suspects = torch.nonzero(~torch.isfinite(norms)).flatten().tolist()
    return all(bool(torch.isfinite(tensors[i]).all()) for i in suspects)


def _checkpointing(model: Any) -> bool:
    """Whether gradient checkpointing is on (transformers 5 renamed the flag; the old name warns)."""
    flag = getattr(type(model), "is_activation_checkpointing", None)
    return bool(model.is_activation_checkpointing if flag is not None else model.is_gradient_checkpointing)


# ---- prompts and rows ------------------------------------------------------------------------------------------


@dataclass
class Prompt:
    """One rendered prompt: the processor's (or a text-only model's tokenizer's) output for it alone (no padding)."""

    input_ids: torch.Tensor  # (L,) int64
    mm_token_type_ids: torch.Tensor  # (L,) int64: 0 text, 1 image (all 0 for a text-only model)
    pixel_values: torch.Tensor | None  # (patches, D)
    image_grid_thw: torch.Tensor | None  # (images, 3)
    # What the processor was given (the chat template's text and the decoded images): the vllm backend's request.
    text: str = ""
    images: list[Any] = field(default_factory=list)


@dataclass
class Rows:
    """A right-padded batch of prompt + response rows, with their positions: 3-D (M-RoPE) for a VLM, 1-D for text."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (3, B, T) for a VLM; (B, T) for a text-only model
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None
    prompt_lengths: list[int]
    response_lengths: list[int]
    response_ids: torch.Tensor  # (N,) int64, flat
    predict_index: torch.Tensor  # (N,) flat index into (B*T) of the position that predicts each response token
    last_index: torch.Tensor  # (B,) flat index of each row's last real token


@dataclass
class Pending:
    """Gradients since the last optimizer step: the first call's as it is, then Σ wᵢ·gᵢ."""

    grads: list[torch.Tensor]
    weight: float
    summed: bool = False


@dataclass
class Loaded:
    model: Any
    processor: Any  # a VLM's processor; a text-only model's tokenizer
    role: str
    dtype: torch.dtype
    device: torch.device
    model_dir: str
    # The model directory the weights first came from (`load`'s model_dir), carried through saved states.
    base_model_dir: str = ""
    head: torch.nn.Linear | None = None
    params: list[tuple[str, torch.nn.Parameter]] = field(default_factory=list)
    optimizer: torch.optim.AdamW | None = None
    step: int = 0
    # The base weights' files (name → bytes) of the directory the model came from, and the state whose adapter is
    # the frozen reference adapter beside a LoRA policy's own (`load_reference`), if any.
    base_files: dict[str, int] = field(default_factory=dict)
    reference: str | None = None
    # An offloaded (inference-only) model's weights, in host memory (`_load_model`'s offload): what `save` writes.
    offloaded: dict[str, torch.Tensor] | None = None
    # This load's number in the process (with `step`, which weights a vLLM rollout engine holds).
    uid: int = field(default_factory=lambda: next(_LOADS))
    # A multi-process engine's sharded policy: the FSDP root its forwards go through (distributed.Runner).
    runner: Any = None

    @property
    def vision(self) -> bool:
        """Whether the model reads images (a VLM); a text-only causal LM does not."""
        return self.model.config.model_type in VISION_MODEL_TYPES

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer if self.vision else self.processor

    @property
    def text_config(self) -> Any:
        """The decoder's config: a VLM's `text_config`, a text-only model's own config."""
        return self.model.config.get_text_config()


class Engine:
    def __init__(self) -> None:
        self.m: Loaded | None = None
        self.pending: Pending | None = None
        # How the policy samples (args.rollout of load / load_state): hf's decode loop here, or vLLM (rollout.py).
        self.rollout = rollout_.RolloutSpec()

    # ---- info and loading ------------------------------------------------------------------------------------

    def hello(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        import platform

        import transformers

        from .protocol import PROTOCOL_VERSION

        result: dict[str, Any] = {
            "protocol": PROTOCOL_VERSION,
            "engine": "sophia_torch",
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__},
            "cuda": torch.cuda.is_available(),
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            "default_device": "cuda" if torch.cuda.is_available() else "cpu",
            "default_dtype": "bfloat16" if torch.cuda.is_available() else "float32",
            "threads": torch.get_num_threads(),
            "ops": sorted(OPS),
        }
        if self.m:
            result["model"] = self._model_info()
        return result, {}

    def _require(self, *roles: str) -> Loaded:
        if self.m is None:
            raise StateError("no model is loaded: send op 'load' first", "op")
        if roles and self.m.role not in roles:
            raise BadType(f"this op needs a {' or '.join(roles)} model; the loaded model's role is {self.m.role!r}", "op")
        return self.m

    def _model_info(self) -> dict[str, Any]:
        m = self._require()
        cfg = m.model.config
        tok = m.tokenizer
        return {
            "model_dir": m.model_dir,
            "base_model_dir": m.base_model_dir,
            "model_type": cfg.model_type,
            "architecture": type(m.model).__name__,
            "role": m.role,
            "dtype": str(m.dtype).removeprefix("torch."),
            "device": str(m.device),
            "vocab_size": m.text_config.vocab_size,
            "tokenizer_size": len(tok),
            "max_length": m.text_config.max_position_embeddings,
            "parameters": sum(p.numel() for p in m.model.parameters()) + (sum(p.numel() for p in m.head.parameters()) if m.head else 0),
            "trainable_parameters": sum(p.numel() for _, p in m.params),
            "eos_token_ids": self._eos_ids(m),
            "end_token_id": self._end_id(m),
            "pad_token_id": self._pad_id(m),
            "reads_images": m.vision,
            "image_token_id": cfg.image_token_id if m.vision else None,
            "suppressed_token_ids": self._suppressed_ids(m),
            "gradient_checkpointing": _checkpointing(m.model),
            "lora": self._lora_json(m),
            "reference_adapter": m.reference,
            "offloaded": m.offloaded is not None,
            "rollout": {**self.rollout.to_json(), "engines_started": rollout_.STARTS},
            "step": m.step,
        }

    @staticmethod
    def _lora_json(m: Loaded) -> dict[str, Any] | None:
        spec = lora_.spec_of(m.model)
        return spec.to_json() if spec else None

    def load(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        model_dir = _get(args, "model_dir", str, "args.model_dir")
        settings = self._load_settings(args)
        adapter = self._lora_setting(args, settings["role"])
        spec = self._rollout_setting(args, settings["role"], settings["offload"])
        loaded = self._load_model(model_dir, "args.model_dir", **settings, new_adapter=adapter)
        self._start_rollout(loaded, spec, model_dir, settings["seed"])
        # The process's torch RNG (dropout, if a model has any) starts from the seed, after loading (which draws
        # from it) and after vLLM's start (which seeds it too), so it is a function of the seed; save/load_state carry it.
        torch.manual_seed(settings["seed"])
        self.m, self.pending, self.rollout = loaded, None, spec
        return {"model": self._model_info()}, {}

    @staticmethod
    def _rollout_setting(args: dict[str, Any], role: str, offload: bool) -> rollout_.RolloutSpec:
        """args.rollout, checked. A reward model never samples: the setting is ignored for it (a run's settings reach
        every model it loads); a reference or an offloaded model asked to sample with vLLM is refused."""
        spec = rollout_.parse(args.get("rollout"), "args.rollout")
        if role == "reward":
            return rollout_.RolloutSpec()
        world = distributed.world_size()
        if spec.backend == "vllm" and world % spec.tensor_parallel:
            raise BadValue(f"args.rollout.tensor_parallel ({spec.tensor_parallel}) must divide the engine's processes ({world}): each vLLM engine spans that many of them", "args.rollout.tensor_parallel")
        if spec.backend == "vllm" and (role != "policy" or offload):
            raise BadValue(f"args.rollout.backend vllm is for a policy, which samples and trains (this load is a{'n offloaded' if offload else ''} {role} model): leave args.rollout out", "args.rollout.backend")
        return spec

    @staticmethod
    def _rollout_identity(m: Loaded) -> str:
        """What a vLLM engine must share with a model to serve it: its architecture and sizes (not its weights)."""
        cfg = {k: v for k, v in m.model.config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
        return json.dumps(cfg, sort_keys=True, default=str)

    def _start_rollout(self, m: Loaded, spec: rollout_.RolloutSpec, directory: str, seed: int) -> None:
        """With the vllm backend: this process's vLLM engine, started from `directory` (the model's config, tokenizer
        and processor; its weights are replaced by the trainer's before the first sample), or the one already running
        for a model of the same architecture."""
        if spec.backend != "vllm":
            return
        images = spec.images_per_prompt if m.vision else 0
        with lora_.without_adapter_files(directory) as plain:
            rollout_.shared(self._rollout_identity(m), str(plain), m.dtype, m.device, seed, spec, m.text_config.max_position_embeddings, images)

    @staticmethod
    def _lora_setting(args: dict[str, Any], role: str) -> lora_.LoraSpec | None:
        spec = lora_.parse(args.get("lora"), "args.lora")
        if spec is not None and role == "reference":
            raise BadValue("args.lora: a reference model is frozen and trains no adapter (load it without lora)", "args.lora")
        return spec

    def _load_settings(self, args: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        defaults = defaults or {}
        role = _get(args, "role", str, "args.role", defaults.get("role", "policy"))
        if role not in ROLES:
            raise BadValue(f"args.role must be one of {list(ROLES)} (got {role!r})", "args.role")
        device_name = _get(args, "device", str, "args.device", defaults.get("device", "cuda" if torch.cuda.is_available() else "cpu"))
        if distributed.active() and device_name == "cuda":
            device_name = distributed.default_device()  # each process of a multi-process engine its own GPU
        try:
            device = torch.device(device_name)
        except RuntimeError as err:
            raise BadValue(f"args.device {device_name!r} is not a torch device: {err}", "args.device") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise BadValue("args.device is cuda but this machine has no CUDA GPU (use 'cpu')", "args.device")
        if device.type not in ("cpu", "cuda"):
            raise BadValue(f"args.device must be 'cpu' or 'cuda[:N]' (got {device_name!r})", "args.device")
        dtype_name = _get(args, "dtype", str, "args.dtype", defaults.get("dtype", "bfloat16" if device.type == "cuda" else "float32"))
        if dtype_name not in TORCH_DTYPES:
            raise BadValue(f"args.dtype must be one of {list(TORCH_DTYPES)} (got {dtype_name!r})", "args.dtype")
        if dtype_name in ("bfloat16", "float16") and device.type == "cpu":
            raise BadValue(f"args.dtype {dtype_name} needs a GPU; on cpu use float32 (or float64)", "args.dtype")
        seed = _int(args, "seed", "args.seed", defaults.get("seed", 0), minimum=0)
        threads = _int(args, "threads", "args.threads", 0, minimum=0)
        checkpointing = _get(args, "gradient_checkpointing", bool, "args.gradient_checkpointing", defaults.get("gradient_checkpointing", False))
        offload = _get(args, "offload", bool, "args.offload", False)
        return {"role": role, "device": device, "dtype": TORCH_DTYPES[dtype_name], "seed": seed, "threads": threads, "checkpointing": checkpointing, "offload": offload}

    def _load_model(self, model_dir: str, field: str, *, role: str, device: torch.device, dtype: torch.dtype, seed: int, threads: int, checkpointing: bool,
                    new_adapter: lora_.LoraSpec | None = None, keep_adapter: bool = False, offload: bool = False) -> Loaded:
        """The model in `model_dir` for `role`. A LoRA adapter the directory carries (a LoRA state, or a model directory
        with peft's adapter files) is kept with `keep_adapter` (a state read back as it was saved), else merged into
        the weights; then `new_adapter`, when given, is attached fresh from `seed`. With an adapter, only the adapter
        (and a reward model's head) trains. `offload`: an inference-only model whose weights stay in host memory and
        are streamed to `device` module by module for each forward (accelerate's cpu_offload); an adapter is folded
        into its weights first; it has no optimizer and refuses the training ops."""
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

        path = Path(model_dir)
        if not path.is_dir():
            raise BadValue(f"{field}: {model_dir!r} is not a directory (a Hugging Face model directory with config.json)", field)
        config_path = path / "config.json"
        if not config_path.is_file():
            raise BadValue(f"{field}: {model_dir!r} has no config.json (not a Hugging Face model directory)", field)
        try:
            model_type = json.loads(config_path.read_text()).get("model_type")
        except (OSError, json.JSONDecodeError) as err:
            raise BadValue(f"{field}: {config_path} is not readable JSON: {err}", field) from None
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise BadValue(f"{field}: model_type {model_type!r} is not supported (supported: {list(SUPPORTED_MODEL_TYPES)})", field)
        if threads and torch.get_num_threads() != threads:  # (vLLM, once started, refuses changes with a warning)
            torch.set_num_threads(threads)
        from safetensors import SafetensorError

        saved_adapter = lora_.read_config(path, field)
        try:
            with lora_.without_adapter_files(path) as base:
                if model_type in VISION_MODEL_TYPES:
                    model = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype, local_files_only=True)
                    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
                else:
                    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, local_files_only=True)
                    processor = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, SafetensorError) as err:
            raise BadValue(f"{field}: cannot load the model or its processor/tokenizer from {model_dir!r}: {err}", field) from None
        if model_type in TEXT_MODEL_TYPES and not getattr(processor, "chat_template", None):
            raise BadValue(f"{field}: the tokenizer in {model_dir!r} has no chat template (prompts are chat messages): use a chat model's directory, or add chat_template.jinja", field)
        # Not the temporary folder of links the base may have come from (peft records it with an adapter).
        model.config._name_or_path = model.name_or_path = str(path)
        if saved_adapter is not None:
            lora_.attach(model, saved_adapter, seed, field)
            lora_.load_weights(model, path, field)
            if not keep_adapter:
                lora_.merge(model)
        if new_adapter is not None:
            if offload:
                raise BadValue("args.lora: an offloaded model is inference-only and trains no adapter", "args.lora")
            lora_.attach(model, new_adapter, seed, "args.lora")
        offloaded: dict[str, torch.Tensor] | None = None
        if offload:
            from accelerate import cpu_offload

            lora_.merge(model)
            offloaded = {k: v.detach() for k, v in model.state_dict().items()}  # host memory, streamed to device per forward
            cpu_offload(model, execution_device=device, state_dict=offloaded)
            model.eval()
        else:
            model.to(device).eval()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        loaded = Loaded(model=model, processor=processor, role=role, dtype=dtype, device=device, model_dir=str(path), base_model_dir=str(path), base_files=_base_files({p.name: p.stat().st_size for p in path.iterdir() if p.is_file()}), offloaded=offloaded)
        if role == "reward":
            loaded.head = self._reward_head(model, path, seed, device, dtype)
        # Trainable parameters: the whole model for a policy; for a reward model the backbone and its head (the
        # LM head is not used); nothing for a frozen reference. With an adapter: the adapter (and the head).
        adapter = lora_.has_adapter(model)
        for name, p in model.named_parameters():
            if offload:
                p.requires_grad_(False)
            elif adapter:
                p.requires_grad_(role != "reference" and lora_.is_adapter_parameter(name))
            else:
                p.requires_grad_(role == "policy" or (role == "reward" and not name.startswith("lm_head.")))
        if distributed.active() and role == "policy" and not offload:
            loaded.runner = distributed.shard(model, device)
        if role != "reference" and not offload:
            loaded.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            if loaded.head is not None:
                loaded.params += [(f"score_head.{n}", p) for n, p in loaded.head.named_parameters()]
            loaded.optimizer = self._make_optimizer(loaded.params)
        return loaded

    @staticmethod
    def _reward_head(model: Any, path: Path, seed: int, device: torch.device, dtype: torch.dtype) -> torch.nn.Linear:
        """The scalar head: the saved one beside the model, or fresh from `seed` (normal(0, initializer_range), bias 0)."""
        from safetensors.torch import load_file

        text = model.config.get_text_config()
        hidden = text.hidden_size
        head = torch.nn.Linear(hidden, 1, device=device, dtype=dtype)
        saved = path / HEAD_FILE
        with torch.no_grad():
            if saved.is_file():
                state = load_file(saved)
                head.weight.copy_(state["weight"])
                head.bias.copy_(state["bias"])
            else:
                g = torch.Generator().manual_seed(seed)
                std = text.initializer_range
                head.weight.copy_(torch.randn(1, hidden, generator=g, dtype=torch.float64).mul_(std))
                head.bias.zero_()
        return head

    @staticmethod
    def _make_optimizer(params: list[tuple[str, torch.nn.Parameter]]) -> torch.optim.AdamW:
        # Decoupled weight decay on weight matrices and embeddings (2-D and up: linear, embedding, conv kernels), not
        # on biases and norm scales; the settings of each step are set in optim_step.
        decay = [p for _, p in params if p.ndim >= 2]
        other = [p for _, p in params if p.ndim < 2]
        # Fused AdamW (one kernel over all tensors) on a GPU; the multi-tensor path on CPU, where torch has no fused kernel.
        on_gpu = any(p.is_cuda for _, p in params)
        kernel = {"fused": True} if on_gpu else {"foreach": True}
        return torch.optim.AdamW([{"params": decay, "decay": True}, {"params": other, "decay": False}], lr=0.0, **kernel)

    # ---- token helpers ---------------------------------------------------------------------------------------

    @staticmethod
    def _eos_ids(m: Loaded) -> list[int]:
        ids: list[int] = []
        gen = getattr(m.model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) if gen is not None else None
        for x in ([eos] if isinstance(eos, int) else list(eos or [])) + [m.tokenizer.eos_token_id]:
            if isinstance(x, int) and x not in ids:
                ids.append(x)
        return ids

    def _end_id(self, m: Loaded) -> int:
        """The token a response ends with: the tokenizer's eos (a chat model's end of turn, `<|im_end|>` for Qwen)."""
        eos = m.tokenizer.eos_token_id
        return int(eos) if isinstance(eos, int) else self._eos_ids(m)[0]

    @staticmethod
    def _pad_id(m: Loaded) -> int:
        tok = m.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return int(pad if pad is not None else 0)

    @staticmethod
    def _vision_ids(m: Loaded) -> list[int]:
        """A VLM's vision placeholders (none for a text-only model: to it they are tokens like any other)."""
        if not m.vision:
            return []
        cfg = m.model.config
        ids = [cfg.image_token_id, cfg.video_token_id, getattr(cfg, "vision_start_token_id", None), getattr(cfg, "vision_end_token_id", None)]
        vision_pad = m.processor.tokenizer.convert_tokens_to_ids("<|vision_pad|>")
        ids.append(vision_pad if vision_pad != m.processor.tokenizer.unk_token_id else None)
        return sorted({int(i) for i in ids if isinstance(i, int)})

    def _suppressed_ids(self, m: Loaded) -> list[int]:
        """Never sampled: the vision placeholders and the vocabulary rows the tokenizer has no token for."""
        extra = list(range(len(m.tokenizer), m.text_config.vocab_size))
        return self._vision_ids(m) + extra

    # ---- prompts ---------------------------------------------------------------------------------------------

    def _render_prompts(self, m: Loaded, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> list[Prompt]:
        prompts = _get(args, "prompts", list, "args.prompts")
        if not prompts:
            raise BadValue("args.prompts is empty", "args.prompts")
        chats: list[tuple[str, list[dict[str, Any]], list[Any], bool]] = []  # (field, messages, images, generation prompt)
        for i, prompt in enumerate(prompts):
            pf = f"args.prompts[{i}]"
            if not isinstance(prompt, dict):
                raise BadType(f"{pf} must be an object {{messages: [...]}}", pf)
            messages = _get(prompt, "messages", list, f"{pf}.messages")
            if not messages:
                raise BadValue(f"{pf}.messages is empty", f"{pf}.messages")
            rendered, images = [], []
            for j, message in enumerate(messages):
                mf = f"{pf}.messages[{j}]"
                if not isinstance(message, dict):
                    raise BadType(f"{mf} must be an object {{role, content}}", mf)
                role = _get(message, "role", str, f"{mf}.role")
                content = message.get("content")
                if isinstance(content, str):
                    rendered.append({"role": role, "content": content})
                    continue
                if not isinstance(content, list):
                    raise BadType(f"{mf}.content must be a string or a list of parts", f"{mf}.content")
                parts = []
                for k, part in enumerate(content):
                    kf = f"{mf}.content[{k}]"
                    kind = part.get("type") if isinstance(part, dict) else None
                    if kind == "image" and not m.vision:
                        raise BadValue(f"{kf} is an image, but the model ({type(m.model).__name__}, model_type {m.model.config.model_type}) reads no images: send it text only", kf)
                    if kind == "text":
                        parts.append({"type": "text", "text": _get(part, "text", str, f"{kf}.text")})
                    elif kind == "image":
                        name = _get(part, "tensor", str, f"{kf}.tensor")
                        data = tensors.get(name)
                        if data is None:
                            raise BadValue(f"{kf}.tensor names {name!r}, which is not among the request's tensors", f"{kf}.tensor")
                        images.append(_image(data, name, f"{kf}.tensor"))
                        parts.append({"type": "image"})
                    else:
                        raise BadValue(f"{kf}.type must be 'text' or 'image' (got {kind!r})", f"{kf}.type")
                # A text-only model's chat template takes a string (Qwen2.5's does): its text parts, joined.
                rendered.append({"role": role, "content": parts if m.vision else "".join(x["text"] for x in parts)})
            add_generation_prompt = _get(prompt, "add_generation_prompt", bool, f"{pf}.add_generation_prompt", True)
            chats.append((pf, rendered, images, add_generation_prompt))
        if m.vision and len(chats) > 1:
            batched = self._render_batch(m, chats)
            if batched is not None:
                return batched
        return [self._render_one(m, *chat) for chat in chats]

    @staticmethod
    def _render_one(m: Loaded, pf: str, rendered: list[dict[str, Any]], images: list[Any], add_generation_prompt: bool) -> Prompt:
        try:
            text = m.processor.apply_chat_template(rendered, tokenize=False, add_generation_prompt=add_generation_prompt)
            with _tokenizer_settings_kept(m.tokenizer):
                if m.vision:
                    enc = m.processor(text=[text], images=images or None, return_tensors="pt", return_mm_token_type_ids=True)
                else:  # the template writes the special tokens itself
                    enc = m.processor(text, add_special_tokens=False, return_tensors="pt")
        except (ValueError, TypeError, KeyError) as err:
            raise BadValue(f"{pf}: the model's processor cannot render it: {err}", pf) from None
        mm = enc.get("mm_token_type_ids")
        ids = enc["input_ids"][0]
        return Prompt(
            input_ids=ids.to(torch.int64),
            mm_token_type_ids=(mm[0] if mm is not None else torch.zeros_like(ids)).to(torch.int64),
            pixel_values=enc.get("pixel_values"),
            image_grid_thw=enc.get("image_grid_thw"),
            text=text,
            images=images,
        )

    @staticmethod
    def _render_batch(m: Loaded, chats: list[tuple[str, list[dict[str, Any]], list[Any], bool]]) -> list[Prompt] | None:
        """All prompts in one processor call (the processor's fixed cost is per call: 8 prompts with an image each took
        8.0 ms one by one, 4.6 ms at once, on a ~45 ms tiny-model train step in bench/torch-engine), split back into
        each prompt's own unpadded tokens, patches and grids: the same tensors as `_render_one`. None when the batch
        cannot be rendered, so that `_render_one` names the prompt that fails.

        The padded call leaves the processor as it found it: a fast tokenizer pads by switching padding on in its
        `tokenizers` backend (`enable_padding`) and leaves it on, and `processor.save_pretrained` writes that into
        tokenizer.json (its "padding", null in a fresh engine), so a state saved after a batched request would differ
        from the same state saved by a fresh engine (a273d45). The backend's padding and truncation are put back
        after the call (`_tokenizer_settings_kept`); padding cannot be passed to the backend per call."""
        try:
            texts = [m.processor.apply_chat_template(r, tokenize=False, add_generation_prompt=g) for _, r, _, g in chats]
            images = [image for _, _, ims, _ in chats for image in ims]
            with _tokenizer_settings_kept(m.tokenizer):
                enc = m.processor(text=texts, images=images or None, padding=True, padding_side="right", return_tensors="pt", return_mm_token_type_ids=True)
        except (ValueError, TypeError, KeyError):
            return None
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        grids = enc.get("image_grid_thw")
        patches = torch.split(enc["pixel_values"], grids.prod(dim=1).tolist()) if grids is not None else ()
        out, at = [], 0
        for (_, _, ims, _), text, ids, mm, n in zip(chats, texts, enc["input_ids"], enc["mm_token_type_ids"], lengths):
            k = len(ims)
            out.append(
                Prompt(
                    input_ids=ids[:n].to(torch.int64),
                    mm_token_type_ids=mm[:n].to(torch.int64),
                    pixel_values=torch.cat(patches[at : at + k]) if k else None,
                    image_grid_thw=grids[at : at + k] if k else None,
                    text=text,
                    images=ims,
                )
            )
            at += k
        return out

    def _positions(self, m: Loaded, input_ids: torch.Tensor, mm: torch.Tensor, grid: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """A VLM's (3, B, T) M-RoPE positions from the model's own rule (text 1-D, image tokens on their t/h/w grid);
        a text-only model's (B, T) positions 0, 1, … over each row's real tokens (left padding skipped)."""
        if not m.vision:
            return (mask.cumsum(-1) - 1).clamp(min=0)
        positions, _ = m.model.model.get_rope_index(input_ids, mm_token_type_ids=mm, image_grid_thw=grid, attention_mask=mask)
        return positions

    @staticmethod
    def _images(rows: Rows | None = None, pixel_values: torch.Tensor | None = None, grid: torch.Tensor | None = None) -> dict[str, Any]:
        """The image inputs of a forward (a text-only model's forward takes none)."""
        if rows is not None:
            pixel_values, grid = rows.pixel_values, rows.image_grid_thw
        return {} if pixel_values is None else {"pixel_values": pixel_values, "image_grid_thw": grid}

    def _rows(self, m: Loaded, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Rows:
        prompts = self._render_prompts(m, args, tensors)
        index = _tensor(tensors, "prompt_index", ("int32", "int64"))
        b = index.shape[0]
        if b < 1:
            raise BadValue("tensor 'prompt_index' is empty: a batch needs at least one row", "tensors.prompt_index")
        lengths = _tensor(tensors, "response_lengths", ("int32", "int64"), b)
        for r, (p, n) in enumerate(zip(index.tolist(), lengths.tolist())):
            if not 0 <= p < len(prompts):
                raise BadValue(f"prompt_index[{r}] = {p} is outside [0, {len(prompts)}) (args.prompts has {len(prompts)})", "tensors.prompt_index")
            if n < 0:
                raise BadValue(f"response_lengths[{r}] = {n} is negative", "tensors.response_lengths")
        total = int(lengths.sum())
        ids_np = _tensor(tensors, "response_ids", ("int32", "int64"), total)
        vocab = m.text_config.vocab_size
        if total:
            bad = np.flatnonzero((ids_np < 0) | (ids_np >= vocab))
            if bad.size:
                k = int(bad[0])
                raise BadValue(f"response_ids[{k}] = {int(ids_np[k])} is outside the vocabulary [0, {vocab})", "tensors.response_ids")
            vision = np.flatnonzero(np.isin(ids_np, self._vision_ids(m)))
            if vision.size:
                k = int(vision[0])
                raise BadValue(f"response_ids[{k}] = {int(ids_np[k])} is a vision placeholder token: responses cannot hold them", "tensors.response_ids")
        limit = m.text_config.max_position_embeddings
        response_ids = torch.from_numpy(ids_np.astype(np.int64))
        seqs, mms, prompt_lengths = [], [], []
        at = 0
        for r, (p, n) in enumerate(zip(index.tolist(), lengths.tolist())):
            prompt = prompts[p]
            seq = torch.cat([prompt.input_ids, response_ids[at : at + n]])
            if seq.shape[0] > limit:
                raise BadValue(f"row {r}: prompt ({prompt.input_ids.shape[0]} tokens) + response ({n}) exceeds the model's {limit} positions", "tensors.response_lengths")
            seqs.append(seq)
            mms.append(torch.cat([prompt.mm_token_type_ids, torch.zeros(n, dtype=torch.int64)]))
            prompt_lengths.append(prompt.input_ids.shape[0])
            at += n
        t = max(s.shape[0] for s in seqs)
        pad = self._pad_id(m)
        input_ids = torch.full((b, t), pad, dtype=torch.int64)
        mm = torch.zeros((b, t), dtype=torch.int64)
        mask = torch.zeros((b, t), dtype=torch.int64)
        for r, (s, k) in enumerate(zip(seqs, mms)):
            input_ids[r, : s.shape[0]] = s
            mm[r, : s.shape[0]] = k
            mask[r, : s.shape[0]] = 1
        rows_with_images = [prompts[p] for p in index.tolist() if prompts[p].pixel_values is not None]
        pixel_values = torch.cat([p.pixel_values for p in rows_with_images]) if rows_with_images else None
        grid = torch.cat([p.image_grid_thw for p in rows_with_images]) if rows_with_images else None
        positions = self._positions(m, input_ids, mm, grid, mask)
        predict, last = [], []
        for r, (pl, n) in enumerate(zip(prompt_lengths, lengths.tolist())):
            predict.extend(r * t + pl - 1 + j for j in range(n))
            last.append(r * t + pl + n - 1)
        dev = m.device
        return Rows(
            input_ids=input_ids.to(dev),
            attention_mask=mask.to(dev),
            position_ids=positions.to(dev),
            pixel_values=pixel_values.to(dev, m.dtype) if pixel_values is not None else None,
            image_grid_thw=grid.to(dev) if grid is not None else None,
            prompt_lengths=prompt_lengths,
            response_lengths=[int(x) for x in lengths.tolist()],
            response_ids=response_ids.to(dev),
            predict_index=torch.tensor(predict, dtype=torch.int64, device=dev),
            last_index=torch.tensor(last, dtype=torch.int64, device=dev),
        )

    @staticmethod
    def _run(m: Loaded, fn: Any, *args: Any) -> Any:
        """fn(model, *args): through the FSDP root of a sharded policy (distributed.Runner), else directly."""
        return m.runner(fn, *args) if m.runner is not None else fn(m.model, *args)

    def _hidden(self, m: Loaded, rows: Rows, model: Any = None) -> torch.Tensor:
        """(B·T, H) last hidden states of the rows, with the rows' explicit positions."""
        model = m.model if model is None else model
        # (first, where real images would go through the vision tower: the ranks' collectives come in one order)
        stand_in = self._vision_stand_in(m, model) if m.runner is not None and m.vision and rows.pixel_values is None else None
        out = model.model(input_ids=rows.input_ids, attention_mask=rows.attention_mask, position_ids=rows.position_ids, use_cache=False, **self._images(rows))
        h = out.last_hidden_state if stand_in is None else out.last_hidden_state + stand_in
        return h.reshape(-1, h.shape[-1])

    @staticmethod
    def _vision_stand_in(m: Loaded, model: Any) -> torch.Tensor:
        """0 × the vision tower's output for a blank 2×2-patch image. A sharded VLM's ranks must run the same FSDP
        units, forward and backward (each gathers and reduces collectively): a rank whose rows have no image while
        another's have runs the vision tower on this stand-in, whose zero contribution keeps it in the graph."""
        cfg = model.config.vision_config
        merge = cfg.spatial_merge_size
        width = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size**2
        pixels = torch.zeros((merge * merge, width), dtype=m.dtype, device=m.device)
        out = model.model.get_image_features(pixel_values=pixels, image_grid_thw=torch.tensor([[1, merge, merge]], device=m.device))
        parts = [out] if torch.is_tensor(out) else list(out.values()) if hasattr(out, "values") else list(out)
        flat = [t for p in parts for t in ([p] if torch.is_tensor(p) else list(p) if isinstance(p, (list, tuple)) else []) if torch.is_floating_point(t)]
        return sum(t.sum() for t in flat) * 0.0

    def _response_logits(self, m: Loaded, rows: Rows) -> torch.Tensor:
        """(N, V) float32 logits at the positions that predict the response tokens (only those reach the LM head)."""

        def logits(model: Any) -> torch.Tensor:
            h = self._hidden(m, rows, model).index_select(0, rows.predict_index)
            return model.lm_head(h).to(torch.float32 if m.dtype != torch.float64 else torch.float64)

        return self._run(m, logits)

    def _scores(self, m: Loaded, rows: Rows) -> torch.Tensor:
        h = self._hidden(m, rows).index_select(0, rows.last_index)
        return torch.sigmoid(m.head(h)[:, 0].to(torch.float32 if m.dtype != torch.float64 else torch.float64))

    # ---- inference -------------------------------------------------------------------------------------------

    def logprobs(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        m = self._require("policy", "reference")
        temperature = _finite(args, "temperature", "args.temperature", 1.0)
        if temperature <= 0:
            raise BadValue(f"args.temperature must be > 0 (got {temperature})", "args.temperature")
        adapter = _get(args, "adapter", str, "args.adapter", lora_.ADAPTER)
        if adapter not in (lora_.ADAPTER, lora_.REFERENCE):
            raise BadValue(f"args.adapter must be {lora_.ADAPTER!r} (the model's own) or {lora_.REFERENCE!r} (got {adapter!r})", "args.adapter")
        if adapter == lora_.REFERENCE and m.reference is None:
            raise StateError("args.adapter is 'reference' but no reference adapter is loaded: send op 'load_reference' first (a load drops it)", "args.adapter")
        rows = full = self._rows(m, args, tensors)
        block = None
        if m.runner is not None:
            local, block = self._local_request(tensors, len(full.response_lengths))
            rows = self._rows(m, args, local)
        m.model.eval()
        with self._inference(m), (lora_.active(m.model, adapter) if adapter == lora_.REFERENCE else contextlib.nullcontext()):
            logits = self._response_logits(m, rows)
            logp = torch.log_softmax(logits / temperature, dim=-1).gather(-1, rows.response_ids[:, None])[:, 0]
        if adapter == lora_.REFERENCE:
            self._freeze_reference(m)
        out = logp.to(torch.float32).cpu().numpy()
        if block is not None:  # every rank's rows, in row order (a rank past the rows computed a stand-in row: dropped)
            out = np.concatenate(distributed.gather(out if block[0] < block[1] else out[:0]))
        return {"prompt_tokens": full.prompt_lengths}, {"logprobs": out}

    @staticmethod
    def _inference(m: Loaded) -> Any:
        """No autograd for an inference op: inference mode, or no_grad for a sharded policy (FSDP's gathered
        weights must stay usable by later training forwards)."""
        return torch.no_grad() if m.runner is not None else torch.inference_mode()

    @staticmethod
    def _local_request(tensors: dict[str, np.ndarray], b: int) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
        """This rank's block of a batch's rows (distributed.row_block): the per-row and per-token request tensors cut
        to it (images and the rest as they are), and the block. A rank past the rows of a small batch computes row 0
        as a stand-in (every rank must run the forward: FSDP gathers weights collectively): its block is empty and the
        caller gives the stand-in no weight."""
        start, end = distributed.row_block(b)
        lo, hi = (start, end) if start < end else (0, 1)
        offsets = np.concatenate([[0], np.cumsum(tensors["response_lengths"].astype(np.int64))])
        out = dict(tensors)
        for name in PER_ROW_TENSORS:
            if name in out:
                out[name] = out[name][lo:hi]
        for name in PER_TOKEN_TENSORS:
            if name in out:
                out[name] = out[name][offsets[lo] : offsets[hi]]
        return out, (start, end)

    @staticmethod
    def _freeze_reference(m: Loaded) -> None:
        """The policy's own adapter trains, the reference adapter never (peft's set_adapter flips both)."""
        for name, p in m.model.named_parameters():
            if lora_.is_adapter_parameter(name, lora_.REFERENCE):
                p.requires_grad_(False)
        for _, p in m.params:
            p.requires_grad_(True)

    def load_reference(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        """A LoRA policy takes the adapter of another state of its own lineage (the RL reference: the SFT state) as a
        frozen second adapter over the same base weights: `logprobs` with `adapter: "reference"` is that state's model
        without a second copy of the base. Only `sophia_engine.json`, `adapter_config.json` and
        `adapter_model.safetensors` of the state are read. Its base must be the policy's: the same base model
        directory and the same weight files (names and sizes); else a BadValue, and nothing changes."""
        m = self._require("policy")
        if not lora_.has_adapter(m.model):
            raise StateError("load_reference needs a LoRA policy (loaded with args.lora, or from a LoRA state); without an adapter the reference is a model of its own", "op")
        source = _get(args, "dir", str, "args.dir")
        path = Path(source)
        try:
            meta = json.loads((path / STATE_FILE).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BadValue(f"args.dir {source!r}: {STATE_FILE} is not readable: {err}", "args.dir") from None
        if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT or not meta.get("lora") or meta.get("role") != "policy":
            raise BadValue(f"args.dir {source!r} is not a LoRA policy's state ({STATE_FILE} names no adapter, or another role)", "args.dir")
        theirs = _base_files(meta.get("files") or {})
        if str(meta.get("base_model_dir")) != m.base_model_dir or theirs != m.base_files:
            raise BadValue(
                f"args.dir {source!r} is a state of another base model (base_model_dir {meta.get('base_model_dir')!r}, weight files {theirs}) than the policy's "
                f"({m.base_model_dir!r}, {m.base_files}): a reference adapter only means something over the same base weights",
                "args.dir",
            )
        spec = lora_.read_config(path, "args.dir")
        if spec is None:
            raise BadValue(f"args.dir {source!r} has no {lora_.ADAPTER_FILES[1]}", "args.dir")
        if m.reference is not None:
            m.model.delete_adapter(lora_.REFERENCE)
            m.reference = None
        try:
            lora_.attach(m.model, spec, 0, "args.dir", adapter=lora_.REFERENCE)
            lora_.load_weights(m.model, path, "args.dir", adapter=lora_.REFERENCE)
        except BadValue:
            if lora_.REFERENCE in getattr(m.model, "peft_config", {}):
                m.model.delete_adapter(lora_.REFERENCE)
            self._freeze_reference(m)
            raise
        m.model.to(m.device)
        self._freeze_reference(m)
        m.reference = source
        return {"model": self._model_info()}, {}

    def score(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        m = self._require("reward")
        rows = self._rows(m, args, tensors)
        m.model.eval()
        with torch.inference_mode():
            scores = self._scores(m, rows)
        return {"prompt_tokens": rows.prompt_lengths}, {"scores": scores.to(torch.float32).cpu().numpy()}

    def tokenize(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        m = self._require()
        texts = _get(args, "texts", list, "args.texts")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise BadType(f"args.texts[{i}] must be a string", f"args.texts[{i}]")
        with _tokenizer_settings_kept(m.tokenizer):
            ids = [m.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        flat = np.array([x for seq in ids for x in seq], dtype=np.int32)
        return {}, {"ids": flat, "lengths": np.array([len(s) for s in ids], dtype=np.int32)}

    def prompt_lengths(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        m = self._require()
        return {"prompt_tokens": [int(p.input_ids.shape[0]) for p in self._render_prompts(m, args, tensors)]}, {}

    def sample(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        m = self._require("policy", "reference")
        n = _int(args, "n", "args.n", 1, minimum=1)
        temperature = _finite(args, "temperature", "args.temperature", 1.0)
        if temperature < 0:
            raise BadValue(f"args.temperature must be >= 0 (0 = greedy) (got {temperature})", "args.temperature")
        top_p = _finite(args, "top_p", "args.top_p", 1.0)
        if not 0 < top_p <= 1:
            raise BadValue(f"args.top_p must be in (0, 1] (got {top_p})", "args.top_p")
        max_new = _int(args, "max_new_tokens", "args.max_new_tokens", minimum=1)
        seed = _int(args, "seed", "args.seed", 0, minimum=0)
        stops = _get(args, "stop", list, "args.stop", [])
        for i, s in enumerate(stops):
            if not isinstance(s, str) or not s:
                raise BadValue(f"args.stop[{i}] must be a non-empty string", f"args.stop[{i}]")
        clip = _get(args, "clip_to_max_length", bool, "args.clip_to_max_length", False)
        # vLLM's logprobs are the model's own (temperature 1), which are this engine's at temperatures 0 and 1 only:
        # at others the hf loop samples (the result's `backend` says which did).
        vllm = self.rollout.backend == "vllm" and temperature in rollout_.TEMPERATURES
        prompts = self._render_prompts(m, args, tensors)
        limit = m.text_config.max_position_embeddings
        if clip:
            # Each prompt's rows get at most the positions it leaves; a prompt that leaves none is refused.
            budgets = []
            for i, p in enumerate(prompts):
                room = limit - p.input_ids.shape[0]
                if room < 1:
                    raise BadValue(f"args.prompts[{i}] is {p.input_ids.shape[0]} tokens: it leaves no room for a response within the model's {limit} positions", f"args.prompts[{i}]")
                budgets.append(min(max_new, room))
        else:
            longest = max(p.input_ids.shape[0] for p in prompts)
            if longest + max_new > limit:
                raise BadValue(f"the longest prompt ({longest} tokens) + args.max_new_tokens ({max_new}) exceeds the model's {limit} positions", "args.max_new_tokens")
            budgets = [max_new] * len(prompts)
        sync = 0.0
        if vllm:
            samples, token_ids, logprobs, sync = self._generate_vllm(m, prompts, n, temperature, top_p, budgets, seed, stops)
        else:
            m.model.eval()
            with self._inference(m):  # a sharded policy: every rank decodes the whole batch, the same tokens
                samples, token_ids, logprobs = self._generate(m, prompts, n, temperature, top_p, budgets, seed, stops)
        lengths = np.array([len(t) for t in token_ids], dtype=np.int32)
        flat_ids = np.array([x for t in token_ids for x in t], dtype=np.int32)
        flat_lp = np.array([x for lp in logprobs for x in lp], dtype=np.float32)
        result = {"samples": samples, "generated_tokens": int(lengths.sum()), "prompt_tokens": [int(p.input_ids.shape[0]) for p in prompts],
                  "backend": "vllm" if vllm else "hf", "weight_sync_seconds": sync}
        return result, {"token_ids": flat_ids, "logprobs": flat_lp, "lengths": lengths}

    def _generate_vllm(self, m: Loaded, prompts: list[Prompt], n: int, temperature: float, top_p: float, budgets: list[int], seed: int, stops: list[str]):
        """`_generate`'s rows from this process's vLLM engine, after pushing the policy's weights into it when they
        changed since it last took them (the seconds that took: 0 when they had not)."""
        sampler = rollout_.started()
        if sampler is None or sampler.key != rollout_.key_of(self._rollout_identity(m), m.dtype, m.device, self.rollout):
            raise StateError("this process's vLLM engine now serves another model (a model of another architecture or rollout setting was loaded since): load this policy again", "op")
        sync = 0.0
        if sampler.holds != (m.uid, m.step):
            # A sharded policy: each weight (and adapter matrix) gathered whole as vLLM reads it (every rank reads them
            # all, in the same order: each gather is a collective), one weight at a time beyond the rank's own shards.
            weights = lora_.merged_weights(m.model, distributed.full if m.runner is not None else None)
            sync = sampler.push((m.uid, m.step), weights)
        # A multi-process engine: its vLLM engines (tensor_parallel ranks each) sample a contiguous block of the
        # prompts each; every rank gets every block (the ranks of one vLLM engine hold the same outputs: its first
        # rank's are gathered).
        tp = self.rollout.tensor_parallel
        groups, group = distributed.world_size() // tp, distributed.rank() // tp
        first, end = len(prompts) * group // groups, len(prompts) * (group + 1) // groups
        requests = [
            {"prompt": p.text, "multi_modal_data": {"image": p.images[0] if len(p.images) == 1 else p.images}} if p.images else {"prompt_token_ids": p.input_ids.tolist()}
            for p in prompts[first:end]
        ]
        outputs = sampler.generate(requests, n, temperature, top_p, budgets[first:end], seed, stops, self._eos_ids(m), [i for i in self._suppressed_ids(m) if i < m.text_config.vocab_size], first)
        # Plain lists (a rank's block, sent to the others): per prompt, vLLM's prompt tokens and (tokens, logprobs,
        # finish) per sample.
        block = [
            (list(out.prompt_token_ids), [
                (list(c.token_ids), [float(c.logprobs[j][t].logprob) for j, t in enumerate(c.token_ids)],
                 "length" if c.finish_reason == "length" else "stop" if isinstance(c.stop_reason, str) else "eos")
                for c in out.outputs
            ])
            for out in outputs
        ]
        if distributed.active():
            block = [part for r, part in enumerate(distributed.gather(block if distributed.rank() % tp == 0 else None)) if r % tp == 0]
            block = [prompt for part in block for prompt in part]
        tok = m.tokenizer
        samples, tokens, lps = [], [], []
        for i, (p, (prompt_ids, outs)) in enumerate(zip(prompts, block)):
            ours = p.input_ids.tolist()
            if prompt_ids != ours:
                raise StateError(f"args.prompts[{i}]: vLLM rendered it as {len(prompt_ids)} tokens, the model's processor as {len(ours)}: the two must agree for the trainer to score vLLM's samples (use rollout backend hf for this model)", f"args.prompts[{i}]")
            for ids, lp, finish in outs:
                tokens.append(ids)
                lps.append(lp)
                samples.append({"prompt_index": i, "text": tok.decode(ids, skip_special_tokens=True), "finish_reason": finish, "stopped": finish != "length"})
        return samples, tokens, lps, sync

    def _generate(self, m: Loaded, prompts: list[Prompt], n: int, temperature: float, top_p: float, budgets: list[int], seed: int, stops: list[str]):
        """
        Prefill of the P prompts (left-padded, 3-D positions; a text-only model's 1-D), the KV cache repeated for
        the n samples of each, then one token per step for every row, each row up to its prompt's budget of new
        tokens (`budgets`, one per prompt). A row's next position is one past its prompt's largest position
        (the M-RoPE rule for text after an image; for text alone, the prompt's length). Tokens: a VLM's vision
        placeholders and vocabulary rows without a token are never sampled; temperature 0 is greedy; top-p keeps
        the most likely tokens (heaviest first, the lower id first on ties) until their mass reaches top_p. Each token's logprob is log softmax(logits / T)
        over the whole vocabulary (T = 1 when greedy), before suppression and top-p: the same number the
        `logprobs` op gives that token.
        """
        from transformers import DynamicCache

        dev = m.device
        tok = m.tokenizer
        p_count = len(prompts)
        t = max(p.input_ids.shape[0] for p in prompts)
        pad = self._pad_id(m)
        input_ids = torch.full((p_count, t), pad, dtype=torch.int64)
        mm = torch.zeros((p_count, t), dtype=torch.int64)
        mask = torch.zeros((p_count, t), dtype=torch.int64)
        for r, p in enumerate(prompts):
            k = p.input_ids.shape[0]
            input_ids[r, t - k :] = p.input_ids
            mm[r, t - k :] = p.mm_token_type_ids
            mask[r, t - k :] = 1
        with_images = [p for p in prompts if p.pixel_values is not None]
        pixel_values = torch.cat([p.pixel_values for p in with_images]).to(dev, m.dtype) if with_images else None
        grid = torch.cat([p.image_grid_thw for p in with_images]).to(dev) if with_images else None
        positions = self._positions(m, input_ids, mm, grid, mask)
        next_position = (positions.amax(dim=-1) + 1).reshape(-1, p_count).amax(dim=0).repeat_interleave(n).to(dev)  # (rows,)
        cache = DynamicCache(config=m.text_config)

        def decode(model: Any, **inputs: Any) -> torch.Tensor:
            return model.lm_head(model.model(past_key_values=cache, use_cache=True, **inputs).last_hidden_state[:, -1]).float()

        logits = self._run(
            m, lambda model: decode(model, input_ids=input_ids.to(dev), attention_mask=mask.to(dev), position_ids=positions.to(dev), **self._images(pixel_values=pixel_values, grid=grid))
        ).repeat_interleave(n, dim=0)
        cache.batch_repeat_interleave(n)
        rows = p_count * n
        attn = mask.to(dev).repeat_interleave(n, dim=0)
        vocab = logits.shape[-1]
        blocked = torch.zeros(vocab, dtype=torch.bool, device=dev)
        blocked[[i for i in self._suppressed_ids(m) if i < vocab]] = True
        eos = set(self._eos_ids(m))
        gen = torch.Generator(device=dev).manual_seed(seed)
        limits = [budgets[r // n] for r in range(rows)]  # each row's most new tokens: its prompt's budget
        max_new = max(limits)
        tokens: list[list[int]] = [[] for _ in range(rows)]
        lps: list[list[float]] = [[] for _ in range(rows)]
        finish = ["length"] * rows
        done = [False] * rows
        window = 4 * max((len(s) for s in stops), default=0) + 8
        for step in range(max_new):
            scale = 1.0 if temperature == 0 else 1.0 / temperature
            z = logits * scale
            logp = torch.log_softmax(z, dim=-1)
            z = z.masked_fill(blocked, float("-inf"))
            if temperature == 0:
                picked = z.argmax(dim=-1)
            else:
                probs = torch.softmax(z, dim=-1)
                if top_p < 1:
                    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
                    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
                    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
                    probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
                picked = torch.multinomial(probs, 1, generator=gen)[:, 0]
            picked_lp = logp.gather(-1, picked[:, None])[:, 0]
            ids, lp = picked.tolist(), picked_lp.tolist()
            for r in range(rows):
                if done[r]:
                    continue
                tokens[r].append(ids[r])
                lps[r].append(lp[r])
                if ids[r] in eos:
                    done[r], finish[r] = True, "eos"
                elif stops and any(s in tok.decode(tokens[r][-window:], skip_special_tokens=False) for s in stops):
                    done[r], finish[r] = True, "stop"
                elif len(tokens[r]) == limits[r]:
                    done[r] = True  # finish "length"
            if step == max_new - 1 or all(done):
                break
            feed = torch.tensor([ids[r] if not done[r] else pad for r in range(rows)], dtype=torch.int64, device=dev)
            attn = torch.cat([attn, torch.ones((rows, 1), dtype=attn.dtype, device=dev)], dim=1)
            pos = (next_position + step).view(rows, 1)
            if m.vision:
                pos = pos.view(1, rows, 1).expand(3, rows, 1)
            logits = self._run(m, lambda model: decode(model, input_ids=feed[:, None], attention_mask=attn, position_ids=pos))
        samples = [
            {
                "prompt_index": r // n,
                "text": tok.decode(tokens[r], skip_special_tokens=True),
                "finish_reason": finish[r],
                "stopped": finish[r] != "length",
            }
            for r in range(rows)
        ]
        return samples, tokens, lps

    # ---- training --------------------------------------------------------------------------------------------

    def _require_trainable(self) -> Loaded:
        m = self._require("policy", "reward")
        if m.offloaded is not None:
            raise StateError("the model is offloaded (loaded with args.offload: inference only): load it without offload to train it", "op")
        return m

    def forward_backward(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        m = self._require_trainable()
        loss_spec = _get(args, "loss", dict, "args.loss")
        kind = _get(loss_spec, "kind", str, "args.loss.kind")
        if kind not in ("sft", "grpo", "rm"):
            raise BadValue(f"args.loss.kind must be 'sft', 'grpo' or 'rm' (got {kind!r})", "args.loss.kind")
        needs = "reward" if kind == "rm" else "policy"
        if m.role != needs:
            raise BadType(f"the {kind} loss needs a {needs} model (the loaded model's role is {m.role!r})", "args.loss.kind")
        hyper = {}
        if kind == "grpo":
            hyper = {k: _finite(loss_spec, k, f"args.loss.{k}") for k in GRPO_FIELDS}
            if hyper["temperature"] <= 0:
                raise BadValue(f"args.loss.temperature must be > 0 (got {hyper['temperature']})", "args.loss.temperature")
            if loss_spec.get("tis_cap") is not None:
                hyper["tis_cap"] = _finite(loss_spec, "tis_cap", "args.loss.tis_cap")
                if hyper["tis_cap"] < 1:
                    raise BadValue(f"args.loss.tis_cap must be >= 1 (got {hyper['tis_cap']}): the cap on the sampler-trainer importance weight", "args.loss.tis_cap")
        weight = _finite(args, "weight", "args.weight", 1.0)
        if weight <= 0:
            raise BadValue(f"args.weight must be a finite number > 0 (got {weight})", "args.weight")
        rows = self._rows(m, args, tensors)  # a sharded policy: every rank checks the whole batch (the same refusals)
        b, total = len(rows.response_lengths), int(rows.response_ids.shape[0])
        fdt = torch.float64 if m.dtype == torch.float64 else torch.float32

        def per_token(name: str, optional: bool = False) -> torch.Tensor | None:
            a = _tensor(tensors, name, ("float32", "float64"), total, optional)
            return None if a is None else torch.from_numpy(a.astype(np.float64)).to(m.device, fdt)

        def per_row(name: str) -> torch.Tensor:
            return torch.from_numpy(_tensor(tensors, name, ("float32", "float64"), b).astype(np.float64)).to(m.device, fdt)

        if kind == "rm":
            targets = per_row("score_targets")
        else:
            mask = per_token("loss_mask", optional=True)
            mask = torch.ones(total, dtype=fdt, device=m.device) if mask is None else mask
            if kind == "grpo":
                old, ref, adv = per_token("old_logprobs"), per_token("ref_logprobs"), per_row("advantages")
                adv_tok = adv.repeat_interleave(torch.tensor(rows.response_lengths, device=m.device))
        count = None
        if m.runner is not None:
            # This rank's block of rows; the losses divide by the whole batch's token count, so the ranks' losses add
            # up to the batch's and their gradients (scaled by the world size: FSDP averages) to its gradient.
            count = torch.clamp(mask.sum(), min=1.0)
            local, (start, end) = self._local_request(tensors, b)
            offsets = [0, *np.cumsum(rows.response_lengths).tolist()]
            lo, hi = (start, end) if start < end else (0, 1)
            cut = slice(offsets[lo], offsets[hi])
            rows = self._rows(m, args, local)
            mask = mask[cut] if start < end else torch.zeros_like(mask[cut])
            if kind == "grpo":
                old, ref, adv_tok = old[cut], ref[cut], adv_tok[cut]
        m.model.train()
        try:
            if kind == "rm":
                out = losses.rm_loss(self._scores(m, rows), targets)
            elif kind == "sft":
                out = losses.sft_loss(self._response_logits(m, rows), rows.response_ids, mask, count=count)
            else:
                out = losses.grpo_loss(self._response_logits(m, rows), rows.response_ids, mask, old, ref, adv_tok, **hyper, count=count)
            params = [p for _, p in m.params]
            if m.runner is not None:
                (out.loss * distributed.world_size()).backward()  # FSDP reduce-scatters the gradients into p.grad
                grads = [p.grad for p in params]
                for p in params:
                    p.grad = None
            else:
                grads = torch.autograd.grad(out.loss, params, allow_unused=True)
        finally:
            m.model.eval()
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
        loss_t, metrics = out.loss.detach(), dict(out.metrics)
        if m.runner is not None:
            loss_t, metrics = self._reduce_metrics(loss_t, metrics)
        loss = float(loss_t)
        finite = math.isfinite(loss) and _all_finite(grads)
        if finite:
            self._accumulate(grads, weight)
        return {"loss": loss, "metrics": {k: float(v) for k, v in metrics.items()}, "finite": finite}, {}

    @staticmethod
    def _reduce_metrics(loss: torch.Tensor, metrics: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The whole batch's loss and metrics from the ranks' parts: sums of the parts (each divided by the batch's
        count already), the largest of the maxima, the count (`tokens`) as it is."""
        summed = [k for k in metrics if k != "tokens" and not k.endswith("_max")]
        biggest = [k for k in metrics if k.endswith("_max")]
        sums = distributed.all_reduce(torch.stack([loss.double(), *(metrics[k].double() for k in summed)]))
        maxes = distributed.all_reduce(torch.stack([metrics[k].double() for k in biggest]), "max") if biggest else torch.zeros(0)
        out = {**metrics, **dict(zip(summed, sums[1:])), **dict(zip(biggest, maxes))}
        return sums[0], out

    def _accumulate(self, grads: list[torch.Tensor], weight: float) -> None:
        """Σ wᵢ·gᵢ (and Σ wᵢ) over the calls since the last step; one call keeps its gradient as it is."""
        pending = self.pending
        if pending is None:
            self.pending = Pending(grads=list(grads), weight=weight)
            return
        if not pending.summed:
            pending.grads = [self._acc_dtype(g).mul_(pending.weight) for g in pending.grads]
            pending.summed = True
        for acc, g in zip(pending.grads, grads):
            acc.add_(g.to(acc.dtype), alpha=weight)
        pending.weight += weight

    @staticmethod
    def _acc_dtype(g: torch.Tensor) -> torch.Tensor:
        # float64 gradients sum in float64, everything else in float32.
        return g.to(torch.float64 if g.dtype == torch.float64 else torch.float32, copy=True)

    def train_step(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        """forward_backward + optim_step in one op, the AdamW settings checked before anything runs. A non-finite
        loss with nothing accumulated before is reported with `applied: false` (and a NaN grad norm)."""
        m = self._require_trainable()
        self._adamw_settings(args)
        result, _ = self.forward_backward(args, tensors)
        if self.pending is None:
            return {**result, "step": m.step, "grad_norm": math.nan, "applied": False}, {}
        step, _ = self.optim_step(args, tensors)
        return {**result, **step}, {}

    @staticmethod
    def _adamw_settings(args: dict[str, Any]) -> dict[str, float]:
        settings = {k: _finite(args, k, f"args.{k}") for k in ADAMW_FIELDS}
        if settings["lr"] < 0:
            raise BadValue(f"args.lr must be >= 0 (got {settings['lr']})", "args.lr")
        for k in ("beta1", "beta2"):
            if not 0 <= settings[k] < 1:
                raise BadValue(f"args.{k} must be in [0, 1) (got {settings[k]})", f"args.{k}")
        if settings["eps"] <= 0:
            raise BadValue(f"args.eps must be > 0 (got {settings['eps']})", "args.eps")
        if settings["weight_decay"] < 0:
            raise BadValue(f"args.weight_decay must be >= 0 (got {settings['weight_decay']})", "args.weight_decay")
        if settings["max_grad_norm"] <= 0:
            raise BadValue(f"args.max_grad_norm must be > 0 (got {settings['max_grad_norm']})", "args.max_grad_norm")
        return settings

    def optim_step(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        m = self._require_trainable()
        settings = self._adamw_settings(args)
        pending = self.pending
        if pending is None:
            raise StateError("optim_step: no gradients accumulated (send forward_backward first)", "op")
        self.pending = None
        params = [p for _, p in m.params]
        grads = [g.div(pending.weight) if pending.summed else g for g in pending.grads]
        squares = sum((distributed.local(g).to(torch.float64 if g.dtype == torch.float64 else torch.float32) ** 2).sum() for g in grads)
        if m.runner is not None:  # each rank holds a part of every gradient
            squares = distributed.all_reduce(squares.clone())
        grad_norm = float(torch.sqrt(squares))
        if not math.isfinite(grad_norm):
            return {"step": m.step, "grad_norm": grad_norm, "applied": False}, {}
        # Global-norm clip: g · min(1, max / (norm + 1e-6)), then AdamW (bias-corrected, decoupled decay). In place when
        # every gradient is a dense tensor of its own: no second copy of the whole gradient alive at the step's peak
        # (16.6 GB for a 7B model in bfloat16; ~8 ms of a ~650 ms step on bench/torch-engine's 20 M-parameter model on
        # 2 CPU cores). autograd may hand back stride-0 or shared tensors: those are scaled into copies. The same
        # products either way.
        clip = min(1.0, settings["max_grad_norm"] / (grad_norm + 1e-6))
        parts = [distributed.local(g) for g in grads]
        own = all(g.is_contiguous() for g in parts) and len({g.untyped_storage().data_ptr() for g in parts}) == len(parts)
        if clip < 1.0 and own:
            for g in grads:
                g.mul_(clip)  # not torch._foreach_mul_: on CPU it rounds bfloat16 products differently from g * clip
        for p, g in zip(params, grads):
            p.grad = (g * clip if clip < 1.0 and not own else g).to(p.dtype)
        for group in m.optimizer.param_groups:
            group["lr"] = settings["lr"]
            group["betas"] = (settings["beta1"], settings["beta2"])
            group["eps"] = settings["eps"]
            group["weight_decay"] = settings["weight_decay"] if group["decay"] else 0.0
        m.optimizer.step()
        for p in params:
            p.grad = None
        m.step += 1
        return {"step": m.step, "grad_norm": grad_norm, "applied": True}, {}

    # ---- state -----------------------------------------------------------------------------------------------

    @staticmethod
    def _header_bytes(entries: list[tuple[str, tuple[int, ...]]]) -> int:
        """An upper bound on a safetensors header that lists these tensors (its 8-byte length, the JSON with
        `__metadata__`, the padding to 8 bytes), whatever their dtypes and offsets."""
        each = len('"":{"dtype":"","shape":[],"data_offsets":[,]},') + 16 + 2 * 20  # dtype, two 20-digit offsets
        return 8 + 256 + sum(len(json.dumps(name)) + len(json.dumps(list(shape))) + each for name, shape in entries) + 8

    @classmethod
    def _plan_shards(cls, tensors: list[tuple[str, torch.Tensor]], shard_bytes: int) -> list[list[tuple[str, torch.Tensor]]]:
        """The tensors in their order, cut into consecutive shards whose files (header included) are at most
        shard_bytes; a tensor bigger than that on its own is a shard of its own. Always at least one shard."""
        shards: list[list[tuple[str, torch.Tensor]]] = [[]]
        size = cls._header_bytes([])
        for name, tensor in tensors:
            grows = tensor.numel() * tensor.element_size() + cls._header_bytes([(name, tuple(tensor.shape))]) - cls._header_bytes([])
            if shards[-1] and size + grows > shard_bytes:
                shards.append([])
                size = cls._header_bytes([])
            shards[-1].append((name, tensor))
            size += grows
        return shards

    def save(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        from concurrent.futures import ThreadPoolExecutor

        from safetensors.torch import save_file

        m = self._require()
        target = Path(_get(args, "dir", str, "args.dir"))
        shard_bytes = _get(args, "shard_bytes", int, "args.shard_bytes", SHARD_BYTES)
        if shard_bytes < 1:
            raise BadValue(f"args.shard_bytes must be a positive number of bytes, the largest file of the state (got {shard_bytes}; default {SHARD_BYTES})", "args.shard_bytes")
        # The AdamW moments in parameter order, cut into shards: the same state gives the same files. A sharded
        # policy's moments and weights are gathered whole first (collectives: every rank, before any check that could
        # stop one rank alone); rank 0 writes them.
        moments: list[tuple[str, torch.Tensor]] = []
        if m.optimizer is not None:
            for name, p in m.params:
                st = m.optimizer.state.get(p)
                if not st:
                    continue
                for key in ("exp_avg", "exp_avg_sq", "step"):
                    value = st[key]
                    moments.append((f"adamw.{key}::{name}", distributed.full(value).cpu() if m.runner is not None else value if torch.is_tensor(value) else torch.tensor(float(value))))
        gathered = None
        if m.runner is not None:
            gathered = {k.removeprefix("model."): v for k, v in distributed.full_state_dict(m.runner).items()}
        if distributed.rank() != 0:  # rank 0 of a multi-process engine writes the state (every rank holds all of it now)
            return {"dir": str(target), "files": [], "step": m.step}, {}
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise BadValue(f"args.dir {str(target)!r} exists and is not an empty directory (save writes a new one)", "args.dir")
        target.mkdir(parents=True, exist_ok=True)
        rng: dict[str, torch.Tensor] = {"rng.cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"rng.cuda.{i}"] = s
        shards = self._plan_shards(moments, shard_bytes)
        optimizer_files = [OPTIMIZER_FILE] if len(shards) == 1 else [f"sophia_optimizer-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]

        def write(name: str, shard: list[tuple[str, torch.Tensor]]) -> None:
            save_file({k: v.detach().contiguous().cpu() for k, v in shard}, target / name)

        # The shards are copied to host memory and written by a few threads while this one writes the weights.
        with ThreadPoolExecutor(min(SAVE_WORKERS, len(shards))) as pool:
            jobs = [pool.submit(write, name, shard) for name, shard in zip(optimizer_files, shards)]
            # Hugging Face counts a shard's tensor bytes: the room its header may take is left out.
            weights = [(n, tuple(t.shape)) for n, t in (m.offloaded or gathered or m.model.state_dict()).items()]
            max_shard = max(1, shard_bytes - self._header_bytes(weights))
            if m.offloaded is not None:
                # Its weights are on the meta device between forwards; the host copy is the model's.
                m.model.save_pretrained(target, state_dict=m.offloaded, max_shard_size=max_shard)
            elif lora_.has_adapter(m.model):
                # The frozen base weights as a plain model's files, then the adapter beside them in peft's format (from
                # the gathered state dict when the model is sharded: each rank's own holds parts).
                with lora_.as_plain_model(m.model):
                    m.model.save_pretrained(target, state_dict=lora_.base_state_dict(m.model, gathered), max_shard_size=max_shard)
                m.model.save_pretrained(target, max_shard_size=max_shard, **({"state_dict": gathered} if gathered is not None else {}))
                lora_.normalise_config(target)
            elif gathered is not None:
                m.model.save_pretrained(target, state_dict=gathered, max_shard_size=max_shard)
            else:
                m.model.save_pretrained(target, max_shard_size=max_shard)
            m.processor.save_pretrained(target)
            if m.head is not None:
                save_file({k: v.detach().contiguous().cpu() for k, v in m.head.state_dict().items()}, target / HEAD_FILE)
            save_file(rng, target / RNG_FILE)
            for job in jobs:
                job.result()
        # Every other file of the state with its size, so that load_state can name a missing, truncated or stray
        # one. A state is flat (its files travel as plain names): a subfolder would be an engine bug.
        files: dict[str, int] = {}
        for entry in sorted(target.iterdir(), key=lambda e: e.name):
            if not entry.is_file():
                raise RuntimeError(f"save wrote {entry.name!r}, which is not a plain file: a state must be flat files")
            files[entry.name] = entry.stat().st_size
        meta = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "role": m.role,
            "step": m.step,
            "dtype": str(m.dtype).removeprefix("torch."),
            "base_model_dir": m.base_model_dir,
            "trainable": [n for n, _ in m.params],
            "lora": self._lora_json(m),
            "optimizer_files": optimizer_files,
            "files": files,
        }
        (target / STATE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return {"dir": str(target), "files": sorted([*files, STATE_FILE]), "step": m.step}, {}

    @staticmethod
    def _read_state_meta(source: str) -> dict[str, Any]:
        """`sophia_engine.json` of a state directory, after checking that the directory holds exactly the files it
        lists, with their sizes: a missing, truncated, stray or foreign file is a BadValue naming it."""
        path = Path(source)
        if not path.is_dir():
            raise BadValue(f"args.dir {source!r} is not a directory", "args.dir")
        present = sorted(p.name for p in path.iterdir())
        if STATE_FILE not in present:
            listing = ", ".join(present) or "none"
            raise BadValue(f"args.dir {source!r} has no {STATE_FILE}: its files ({listing}) are not a state saved by this engine (op load reads any model directory)", "args.dir")
        try:
            meta = json.loads((path / STATE_FILE).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BadValue(f"{STATE_FILE} in {source!r} is not readable JSON (truncated?): {err}", "args.dir") from None
        if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT or meta.get("version") not in READ_STATE_VERSIONS:
            versions = " or ".join(f"v{v}" for v in READ_STATE_VERSIONS)
            raise BadValue(f"{STATE_FILE} in {source!r} is not a {STATE_FORMAT} {versions} file", "args.dir")
        files = meta.get("files")
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in files.items()):
            raise BadValue(f"{STATE_FILE} in {source!r} does not list the state's files", "args.dir")
        for name, size in files.items():
            file = path / name
            if not file.is_file():
                raise BadValue(f"{name} is missing from the state in {source!r} ({STATE_FILE} lists it)", "args.dir")
            actual = file.stat().st_size
            if actual != size:
                raise BadValue(f"{name} in {source!r} is {actual} bytes, but the state wrote {size}: truncated or replaced", "args.dir")
        stray = [name for name in present if name != STATE_FILE and name not in files]
        if stray:
            raise BadValue(f"{stray[0]} in {source!r} is not a file of this state ({STATE_FILE} lists {', '.join(files)}): another engine's or a stray file", "args.dir")
        if meta.get("role") not in ROLES:
            raise BadValue(f"{STATE_FILE} in {source!r} has role {meta.get('role')!r}, not one of {list(ROLES)}", "args.dir")
        # The files holding the AdamW moments and the RNG (version 1: both in OPTIMIZER_FILE), each one of `files`.
        if meta["version"] == 1:
            meta["tensor_files"] = [OPTIMIZER_FILE]
        else:
            optimizer = meta.get("optimizer_files")
            if not isinstance(optimizer, list) or not optimizer or not all(isinstance(n, str) for n in optimizer):
                raise BadValue(f"{STATE_FILE} in {source!r} does not list the optimizer's files (optimizer_files)", "args.dir")
            meta["tensor_files"] = [*optimizer, RNG_FILE]
        for name in meta["tensor_files"]:
            if name not in files:
                raise BadValue(f"{name} is missing from the state in {source!r} ({STATE_FILE} names it, but its files do not hold it)", "args.dir")
        return meta

    def load_state(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        source = _get(args, "dir", str, "args.dir")
        fresh = _get(args, "fresh_optimizer", bool, "args.fresh_optimizer", False)
        rollout_arg = args.get("rollout")
        as_reward = _get(args, "reward_from_policy", bool, "args.reward_from_policy", False)
        path = Path(source)
        meta = self._read_state_meta(source)
        if as_reward and meta["role"] != "policy":
            raise BadValue(f"args.dir {source!r} holds a {meta['role']} model's state ({STATE_FILE}); a reward model starts from a policy's", "args.dir")
        def read(name: str) -> dict[str, torch.Tensor]:
            try:
                return load_file(path / name)
            except (OSError, SafetensorError) as err:
                raise BadValue(f"{name} in {source!r} cannot be read: {err}", "args.dir") from None

        # The RNG first (version 2: its own file, the last of tensor_files; version 1: inside the one optimizer file).
        # The AdamW moments are read further down, one file at a time, and only when they are wanted.
        rng_file = meta["tensor_files"][-1]
        rng_part = read(rng_file)
        if "rng.cpu" not in rng_part:
            raise BadValue(f"{rng_file} in {source!r} holds no RNG state (rng.cpu)", "args.dir")
        rng = {k: v for k, v in rng_part.items() if k.startswith("rng.")}
        if meta["role"] == "reward" and not (path / HEAD_FILE).is_file():
            raise BadValue(f"{source!r} is a reward model's state without {HEAD_FILE}", "args.dir")
        role = "reward" if as_reward else meta["role"]
        current = {"role": role, "dtype": meta["dtype"]}
        if self.m is not None:
            current.update(device=str(self.m.device), gradient_checkpointing=_checkpointing(self.m.model))
        settings = self._load_settings({k: v for k, v in args.items() if k not in ("dir", "fresh_optimizer", "reward_from_policy", "role", "lora", "rollout")}, current)
        spec = self._rollout_setting({"rollout": rollout_arg}, role, settings["offload"])
        # A state keeps the adapter it was saved with (args.lora is not read); a reward model starting from a policy's
        # state folds the policy's adapter into its weights and takes a fresh adapter when args.lora says so.
        adapter = self._lora_setting(args, role) if as_reward else None
        if as_reward and settings["offload"]:
            raise BadValue("args.offload: a reward model that starts from a policy trains; offload is for inference-only models", "args.offload")
        loaded = self._load_model(source, "args.dir", **settings, new_adapter=adapter, keep_adapter=not as_reward)
        saved_lora = meta.get("lora")
        if not as_reward and loaded.offloaded is None and saved_lora != self._lora_json(loaded):
            raise BadValue(f"{STATE_FILE} in {source!r} says the state's adapter is {saved_lora!r}, but its files hold {self._lora_json(loaded)!r}", "args.dir")
        loaded.base_model_dir = str(meta.get("base_model_dir") or source)
        if as_reward:
            # The policy's backbone, a head fresh from the seed (the policy's state has none), zero moments, step 0,
            # and the RNG from the seed, as `load` does.
            torch.manual_seed(settings["seed"])
            self.m, self.pending, self.rollout = loaded, None, spec
            return {"model": self._model_info()}, {}
        names = [n for n, _ in loaded.params]
        # The moments are kept by parameter name: a state whose moments are read must list the model's trainables.
        if loaded.offloaded is None and not fresh and names != meta.get("trainable"):
            raise BadValue(f"{STATE_FILE} in {source!r} lists other trainable parameters than the model has", "args.dir")
        if not fresh and loaded.offloaded is None:
            # Version 2: the optimizer files before the RNG file; version 1: the one file, already read for its RNG.
            moment_files = meta["tensor_files"][:-1] if rng_file == RNG_FILE else [rng_file]
            self._load_moments(loaded, moment_files, lambda name: rng_part if name == rng_file else read(name), source)
            loaded.step = int(meta["step"])
        self._start_rollout(loaded, spec, source, settings["seed"])  # before the RNG is restored: vLLM's start seeds it
        torch.set_rng_state(rng["rng.cpu"])
        if torch.cuda.is_available():
            cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("rng.cuda."))]
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
        self.m, self.pending, self.rollout = loaded, None, spec
        return {"model": self._model_info()}, {}

    @staticmethod
    def _load_moments(loaded: Loaded, files: list[str], read: Any, source: str) -> None:
        """The AdamW moments of `loaded`'s parameters from the state's optimizer files, read by `read` one at a time:
        each moment is moved to its parameter's device before the next file is read, so host memory holds at most one
        file (a 7B policy's moments are ~60 GB, in shards of at most 1 GiB). A parameter with part of its state, or
        moments of another shape, is a BadValue naming the file."""
        by_name = dict(loaded.params)
        found: dict[str, dict[str, torch.Tensor]] = {}
        origin: dict[str, str] = {}  # tensor name -> its file, for the errors below
        for file in files:
            part = read(file)
            for key, value in part.items():
                kind, _, name = key.removeprefix("adamw.").partition("::")
                p = by_name.get(name)
                if not key.startswith("adamw.") or p is None:
                    continue
                origin[key] = file
                if kind != "step":
                    if value.shape != p.shape:
                        raise BadValue(f"{file} in {source!r}: the AdamW moments of {name} have the wrong shape", "args.dir")
                    value = distributed.like(value.to(p.device, p.dtype), p)  # a sharded parameter's moments: its part
                found.setdefault(name, {})[kind] = value
            del part
        parts = ("exp_avg", "exp_avg_sq", "step")
        for name, p in loaded.params:
            have = found.get(name, {})
            if not have:
                continue
            if len(have) != len(parts):
                holders = ", ".join(sorted({origin[f"adamw.{k}::{name}"] for k in have}))
                missing = ", ".join(f"adamw.{k}::{name}" for k in parts if k not in have)
                raise BadValue(f"{holders} in {source!r}: the AdamW state of {name} is missing a part ({missing})", "args.dir")
            loaded.optimizer.state[p] = {"step": have["step"].clone(), "exp_avg": have["exp_avg"], "exp_avg_sq": have["exp_avg_sq"]}

    # ---- Sophia's own architecture from an ONNX-engine state.bin (sophia_arch.py: the cross-engine check) -----

    def _sophia(self) -> Any:
        from .sophia_arch import SophiaOps

        if getattr(self, "sophia", None) is None:
            self.sophia = SophiaOps()
        return self.sophia

    def load_sophia(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        return self._sophia().load_sophia(args, tensors)

    def sophia_logprobs(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        return self._sophia().sophia_logprobs(args, tensors)

    def sophia_grad(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        return self._sophia().sophia_grad(args, tensors)


OPS = ("hello", "load", "load_state", "load_reference", "save", "sample", "logprobs", "score", "tokenize", "prompt_lengths", "forward_backward", "optim_step", "train_step", "unload", "shutdown")
from .sophia_arch import OPS as SOPHIA_OPS  # noqa: E402 - the ops of Engine's Sophia block above

OPS += SOPHIA_OPS
