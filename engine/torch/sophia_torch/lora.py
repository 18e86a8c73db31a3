"""Low-rank adapters (LoRA, through peft and transformers' peft integration) on the engine's model.

A model with an adapter trains only the adapter's A and B matrices (and a reward model's scalar head): the base
weights are frozen, so the optimizer holds moments for a few million numbers instead of billions.

A LoRA state is still a complete Hugging Face directory: the frozen base weights in the usual files
(`model.safetensors` or its shards, under the base model's own names) and the adapter beside them in peft's format
(`adapter_model.safetensors`, `adapter_config.json`). `from_pretrained` of such a directory (with peft installed)
loads the base and attaches the adapter. The engine itself loads the base from the directory without the adapter's
files (transformers, attaching an adapter while it loads, afterwards saves the base weights under peft's prefixed
names) and attaches the adapter itself, as it attaches a new one. The adapter's weights are float32 whatever the model's
dtype (AdamW on bfloat16 adapters loses small updates); peft casts activations to them and back.
"""
from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .protocol import BadType, BadValue

ADAPTER = "default"  # the adapter that trains (peft's default name)
# A second, frozen adapter a LoRA policy may hold beside its own: the RL reference's (the SFT state's adapter), so the
# reference shares the policy's base weights instead of being a second copy of the model.
REFERENCE = "reference"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
MODULE_NAME = re.compile(r"^[A-Za-z0-9_.*-]{1,128}$")


@dataclass(frozen=True)
class LoraSpec:
    rank: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        return out


def parse(value: Any, field: str) -> LoraSpec | None:
    """`args.lora` ({rank, alpha, dropout?, target_modules}) or None when absent/null; a BadValue/BadType naming the
    field otherwise."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadType(f"{field} must be an object {{rank, alpha, dropout, target_modules}} or null", field)
    unknown = sorted(set(value) - {"rank", "alpha", "dropout", "target_modules"})
    if unknown:
        raise BadValue(f"{field}.{unknown[0]} is not a LoRA setting (rank, alpha, dropout, target_modules)", f"{field}.{unknown[0]}")
    rank = value.get("rank")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= 4096:
        raise BadValue(f"{field}.rank must be an integer in [1, 4096] (got {rank!r})", f"{field}.rank")
    alpha = value.get("alpha")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise BadValue(f"{field}.alpha must be a number > 0 (got {alpha!r})", f"{field}.alpha")
    dropout = value.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise BadValue(f"{field}.dropout must be a number in [0, 1) (got {dropout!r})", f"{field}.dropout")
    targets = value.get("target_modules")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and MODULE_NAME.match(t) for t in targets):
        raise BadValue(f"{field}.target_modules must be a non-empty list of module names such as [\"q_proj\", \"v_proj\"] (got {targets!r})", f"{field}.target_modules")
    return LoraSpec(rank=rank, alpha=float(alpha), dropout=float(dropout), target_modules=tuple(targets))


def read_config(directory: Any, field: str) -> LoraSpec | None:
    """The LoRA adapter a model directory carries (peft's adapter_config.json), or None. Adapters other than plain
    LoRA on linear layers (DoRA, rsLoRA, trained biases, extra trained modules) are refused by name."""
    file = Path(directory) / ADAPTER_FILES[1]
    if not file.is_file():
        return None
    try:
        config = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadValue(f"{field}: {file} is not readable JSON: {err}", field) from None
    unsupported = [
        what
        for what, bad in (
            (f"peft_type {config.get('peft_type')!r} (only LORA)", config.get("peft_type") != "LORA"),
            ("use_dora", bool(config.get("use_dora"))),
            ("use_rslora", bool(config.get("use_rslora"))),
            (f"bias {config.get('bias')!r}", config.get("bias", "none") != "none"),
            ("modules_to_save", bool(config.get("modules_to_save"))),
        )
        if bad
    ]
    if unsupported:
        raise BadValue(f"{field}: the adapter in {file} uses {', '.join(unsupported)}, which the engine does not support: merge it into the weights first", field)
    targets = config.get("target_modules")
    return parse(
        {"rank": config.get("r"), "alpha": config.get("lora_alpha"), "dropout": config.get("lora_dropout", 0.0), "target_modules": sorted(targets) if isinstance(targets, list) else targets},
        f"{field} ({file.name})",
    )


@contextlib.contextmanager
def without_adapter_files(directory: Any) -> Iterator[Any]:
    """`directory`, or, when it holds an adapter's files, a temporary folder of links to its other files."""
    path = Path(directory)
    if not any((path / name).exists() for name in ADAPTER_FILES):
        yield path
        return
    links = Path(tempfile.mkdtemp(prefix="sophia-base-"))
    try:
        for entry in path.iterdir():
            if entry.name not in ADAPTER_FILES:
                (links / entry.name).symlink_to(entry.resolve())
        yield links
    finally:
        shutil.rmtree(links, ignore_errors=True)


def has_adapter(model: Any) -> bool:
    return bool(getattr(model, "_hf_peft_config_loaded", False))


def spec_of(model: Any) -> LoraSpec | None:
    """The spec of the model's adapter (one read from a directory included), or None without one."""
    if not has_adapter(model):
        return None
    cfg = model.peft_config[ADAPTER]
    targets = cfg.target_modules
    targets = sorted(targets) if isinstance(targets, (set, frozenset)) else list(targets) if isinstance(targets, (list, tuple)) else [targets]
    return LoraSpec(rank=int(cfg.r), alpha=float(cfg.lora_alpha), dropout=float(cfg.lora_dropout), target_modules=tuple(targets))


def attach(model: Any, spec: LoraSpec, seed: int, field: str, adapter: str = ADAPTER) -> None:
    """A fresh adapter on `model`: A from peft's initialisation drawn from `seed`, B zero (so the model's outputs are
    unchanged until the first step); float32 weights on the base layers' devices. `ADAPTER` stays the active one."""
    from peft import LoraConfig

    config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=list(spec.target_modules), bias="none")
    torch.manual_seed(seed)
    try:
        model.add_adapter(config, adapter_name=adapter)
    except ValueError as err:
        raise BadValue(f"{field}.target_modules {list(spec.target_modules)} matches no layer of the model that LoRA can adapt: {err}", f"{field}.target_modules") from None
    if adapter != ADAPTER:
        model.set_adapter(ADAPTER)  # add_adapter made the new one active
    to_float32(model)


def to_float32(model: Any) -> None:
    for name, p in model.named_parameters():
        if re.search(r"\.lora_[AB]\.", name) and p.dtype != torch.float32:
            p.data = p.data.to(torch.float32)


def is_adapter_parameter(name: str, adapter: str = ADAPTER) -> bool:
    return f".lora_A.{adapter}." in name or f".lora_B.{adapter}." in name


@contextlib.contextmanager
def active(model: Any, adapter: str) -> Iterator[None]:
    """`adapter` is the one the model's forward uses inside the block (peft's set_adapter also flips which adapter's
    weights require grad: the caller restores its own flags)."""
    model.set_adapter(adapter)
    try:
        yield
    finally:
        model.set_adapter(ADAPTER)


def merge(model: Any) -> None:
    """Folds the adapter into the base weights (W + B·A·alpha/rank) and removes it: the model is a plain model again,
    whose state dict has the base model's own names."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if not has_adapter(model):
        return
    swaps = [(name, module) for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]
    for name, module in swaps:
        module.merge(adapter_names=[ADAPTER])
        parent_name, _, child = name.rpartition(".")
        base = module.get_base_layer()
        setattr(model.get_submodule(parent_name) if parent_name else model, child, base)
    del model.peft_config
    model._hf_peft_config_loaded = False


def merged_weights(model: Any, whole: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's weights under the base model's names, each adapted layer's with its adapter folded in
    (W + B·A·alpha/rank, computed per layer as it is read: the model itself is not changed). A model without an
    adapter: its state dict. `whole`: a sharded model's (FSDP) gather of a tensor, applied to each weight and adapter
    matrix as it is read, in the same order on every rank (each gather is a collective)."""
    from peft.tuners.lora import LoraLayer

    adapted = {}
    if has_adapter(model):
        adapted = {f"{name}.base_layer.weight": module for name, module in model.named_modules() if isinstance(module, LoraLayer) and ADAPTER in module.lora_A}
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if ".lora_" in name:
                continue
            layer = adapted.get(name)
            if whole is not None:
                tensor = whole(tensor)
            if layer is not None:
                if whole is None:
                    delta = layer.get_delta_weight(ADAPTER)
                else:  # peft's get_delta_weight on whole matrices: B·A times the scale, transposed for fan-in-fan-out layers
                    delta = whole(layer.lora_B[ADAPTER].weight) @ whole(layer.lora_A[ADAPTER].weight) * layer.scaling[ADAPTER]
                    if getattr(layer, "fan_in_fan_out", False):
                        delta = delta.T
                tensor = tensor + delta.to(tensor.dtype)
            yield name.replace(".base_layer.", "."), tensor


def base_state_dict(model: Any, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The frozen base weights under the base model's names (peft's wrappers put them under `….base_layer.…`), from
    the model's state dict or `state` (a sharded model's gathered one)."""
    return {k.replace(".base_layer.", "."): v for k, v in (model.state_dict() if state is None else state).items() if ".lora_" not in k}


@contextlib.contextmanager
def as_plain_model(model: Any) -> Iterator[None]:
    """transformers' `save_pretrained` writes only the adapter of a model that has one; inside this block it writes
    a plain model (given the base weights as its state dict)."""
    flag = has_adapter(model)
    model._hf_peft_config_loaded = False
    try:
        yield
    finally:
        model._hf_peft_config_loaded = flag


def load_weights(model: Any, path: Any, field: str, adapter: str = ADAPTER) -> None:
    """The adapter's weights from `path`/adapter_model.safetensors into the model's (float32) adapter, exactly as
    saved: transformers attaches the adapter when it loads the directory, but may round its weights to the model's
    dtype on the way. Every adapter weight must be in the file and every tensor of the file must be one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(path) / ADAPTER_FILES[0]
    try:
        saved = load_file(file)
    except (OSError, SafetensorError) as err:
        raise BadValue(f"{field}: {file} cannot be read: {err}", field) from None
    params = dict(model.named_parameters())
    wanted = {name: p for name, p in params.items() if is_adapter_parameter(name, adapter)}
    for key, value in saved.items():
        # peft's names: base_model.model.<module>.lora_A.weight; the model's: <module>.lora_A.default.weight.
        name = re.sub(r"\.(lora_[AB])\.weight$", rf".\1.{adapter}.weight", key.removeprefix("base_model.model."))
        p = wanted.pop(name, None)
        if p is None or p.shape != value.shape:
            raise BadValue(f"{field}: {file} holds {key!r}, which is no adapter weight of the model (or has another shape)", field)
        with torch.no_grad():
            p.copy_(value.to(p.dtype))
    if wanted:
        raise BadValue(f"{field}: {file} lacks the adapter weight {next(iter(wanted))!r}", field)


def normalise_config(directory: Any) -> None:
    """adapter_config.json without the folder the base model was loaded from (a path on the machine that saved the
    state, meaningless elsewhere): the same state saved twice gives the same bytes. The base is in the directory."""
    file = Path(directory) / ADAPTER_FILES[1]
    config = json.loads(file.read_text())
    config["base_model_name_or_path"] = None
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])  # peft keeps a set: its order varies by process
    file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
