"""Sophia's own multimodal transformer (engine/model/transformer.ts) in PyTorch, run from an ONNX-engine state.

The ONNX engine's model, op for op, so the same state.bin and the same token-level batch give the same losses and
gradients in both engines (the cross-engine check of issue 21; engine/torch/cross-engine.test.ts):

    image (B, C, S, S) → patches (B, N, C·p²) → · patch_w + patch_b + img_pos          N = (S / p)² image tokens
    tokens, positions (B, T) → tok_emb[tokens] + pos_emb[positions]
    x = [image tokens; text tokens] (B, N + T, d), then per layer (pre-norm, layer norm ε = 1e-5):
        x += (softmax(q·kᵀ/√hd + bias) · v) · proj_w + proj_b     q, k, v = ln1(x) · qkv_w + qkv_b, H heads
        x += gelu_tanh(ln2(x) · fc_w + fc_b) · out_w + out_b
    hidden = lnf(x)[:, N:]  (the text positions)
    policy: logits = hidden · head_w (no bias)      reward: sigmoid(hidden[row, last real token] · score_w + score_b)

The attention bias is additive: −1e9 above the causal diagonal (over the whole sequence, image tokens first) plus
−1e9 on padding keys (attention mask 0), the ONNX graph's `MASKED`. Parameters are named, shaped and ordered as
engine/model/config.ts `parameterSpecs` (the order of state.bin's tensors and of the ONNX engine's flat gradient);
`load_state_bin` checks the file's tensors against that list, so a layout change on either side is an error
naming the tensor, not a silent permutation.

The losses are sophia_torch/losses.py's (one Python definition of each), applied to the (B·T) positions of the
token-level batch: exactly the ONNX engine's SequenceBatch/SftBatch/GrpoBatch/RewardBatch tensors.

Ops (served by the engine process beside the Hugging Face model it may hold; engine/README.md, "Sophia's
architecture in the torch engine"): `load_sophia`, `sophia_logprobs`, `sophia_grad`.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import losses
from .protocol import BadType, BadValue, StateError, request_tensor

# Masked attention logits get this added (finite, as in engine/model/transformer.ts).
MASKED = -1e9
LN_EPS = 1e-5

# engine/state.ts: "SOPHIAES" | u32 LE header length | JSON header | zero padding to 8 | float32 LE tensors.
STATE_MAGIC = b"SOPHIAES"
STATE_FORMAT = "sophia.engine-state.v1"

DTYPES = {"float32": torch.float32, "float64": torch.float64}
GRPO_FIELDS = ("clip_eps", "kl_coef", "entropy_coef", "temperature")

Result = tuple[dict[str, Any], dict[str, np.ndarray]]


# ---- the model config and its parameters (engine/model/config.ts) ------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    name: str
    shape: tuple[int, ...]
    init: str  # 'normal' | 'zeros' | 'ones'
    decay: bool


def image_tokens(config: dict[str, Any]) -> int:
    return (config["image"]["size"] // config["image"]["patch"]) ** 2


def validate_config(config: Any, field: str = "config") -> dict[str, Any]:
    """The checks of config.ts `validateModelConfig` (a state's config was validated when it was written; this names
    what is wrong with a hand-made or foreign one)."""
    if not isinstance(config, dict):
        raise BadValue(f"{field} must be a model config object", field)
    if config.get("kind") not in ("policy", "reward"):
        raise BadValue(f"{field}.kind must be 'policy' or 'reward' (got {config.get('kind')!r})", f"{field}.kind")

    def positive(value: Any, name: str, limit: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            raise BadValue(f"{field}.{name} must be an integer in [1, {limit}] (got {value!r})", f"{field}.{name}")

    for name, limit in (("vocabSize", 1 << 20), ("maxLength", 8192), ("layers", 128), ("width", 16384), ("heads", 256), ("mlpRatio", 16)):
        positive(config.get(name), name, limit)
    image = config.get("image")
    if not isinstance(image, dict):
        raise BadValue(f"{field}.image must be an object {{size, channels, patch}}", f"{field}.image")
    for name, limit in (("size", 1024), ("channels", 4), ("patch", 1024)):
        positive(image.get(name), f"image.{name}", limit)
    if config["width"] % config["heads"]:
        raise BadValue(f"{field}.width {config['width']} is not divisible by heads = {config['heads']}", f"{field}.width")
    if image["size"] % image["patch"]:
        raise BadValue(f"{field}.image.patch {image['patch']} does not divide image.size = {image['size']}", f"{field}.image.patch")
    std = config.get("initStd")
    if not isinstance(std, (int, float)) or isinstance(std, bool) or not 0 < std < 1:
        raise BadValue(f"{field}.initStd must be a number in (0, 1) (got {std!r})", f"{field}.initStd")
    return config


def parameter_specs(config: dict[str, Any]) -> list[ParamSpec]:
    """Every parameter in config.ts `parameterSpecs` order (state.bin's order and the flat gradient's)."""
    d = config["width"]
    hidden = d * config["mlpRatio"]
    patch_dim = config["image"]["channels"] * config["image"]["patch"] ** 2

    def w(name: str, *shape: int) -> ParamSpec:
        return ParamSpec(name, shape, "normal", True)

    def b(name: str, size: int) -> ParamSpec:
        return ParamSpec(name, (size,), "zeros", False)

    def g(name: str, size: int) -> ParamSpec:
        return ParamSpec(name, (size,), "ones", False)

    specs = [w("tok_emb", config["vocabSize"], d), w("pos_emb", config["maxLength"], d), w("patch_w", patch_dim, d), b("patch_b", d), w("img_pos", image_tokens(config), d)]
    for l in range(config["layers"]):
        p = f"h{l}."
        specs += [
            g(p + "ln1_g", d), b(p + "ln1_b", d), w(p + "qkv_w", d, 3 * d), b(p + "qkv_b", 3 * d), w(p + "proj_w", d, d), b(p + "proj_b", d),
            g(p + "ln2_g", d), b(p + "ln2_b", d), w(p + "fc_w", d, hidden), b(p + "fc_b", hidden), w(p + "out_w", hidden, d), b(p + "out_b", d),
        ]  # fmt: skip
    specs += [g("lnf_g", d), b("lnf_b", d)]
    specs += [w("head_w", d, config["vocabSize"])] if config["kind"] == "policy" else [w("score_w", d, 1), b("score_b", 1)]
    return specs


# ---- state.bin (engine/state.ts) ----------------------------------------------------------------------------------


@dataclass
class SophiaState:
    config: dict[str, Any]
    step: int
    params: dict[str, np.ndarray]  # float32, by parameter name, in parameter_specs order


def load_state_bin(path: str | Path, field: str = "args.state") -> SophiaState:
    """The parameters of an ONNX-engine state.bin (its AdamW moments are not read). A file that is not one — bad magic,
    truncated, another format, tensors that are not this config's parameters in order — is a BadValue naming it."""
    path = Path(path)
    if not path.is_file():
        raise BadValue(f"{field}: {str(path)!r} is not a file (an ONNX-engine state.bin)", field)
    raw = path.read_bytes()

    def fail(why: str) -> BadValue:
        return BadValue(f"{field}: {str(path)!r} is not an ONNX-engine state: {why}", field)

    if len(raw) < 12 or raw[:8] != STATE_MAGIC:
        raise fail("bad magic (expected SOPHIAES)")
    (hlen,) = struct.unpack_from("<I", raw, 8)
    if 12 + hlen > len(raw):
        raise fail("truncated header")
    try:
        header = json.loads(raw[12 : 12 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise fail("the header is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != STATE_FORMAT:
        raise fail(f"format {header.get('format') if isinstance(header, dict) else None!r}, expected {STATE_FORMAT}")
    config = validate_config(header.get("config"), f"{field} (state.config)")
    specs = parameter_specs(config)
    tensors = header.get("tensors")
    if not isinstance(tensors, list) or len(tensors) != 3 * len(specs):
        raise fail(f"it has {len(tensors) if isinstance(tensors, list) else 0} tensors, the model needs {3 * len(specs)}")
    start = (12 + hlen + 7) // 8 * 8
    params: dict[str, np.ndarray] = {}
    # Every tensor is checked as state.ts `decodeState` does (the AdamW moments too: a truncated file is refused
    # whole); only the parameters are read.
    for i, t in enumerate(tensors):
        spec = specs[i % len(specs)]
        name = f"{'pmv'[i // len(specs)]}:{spec.name}"
        length = math.prod(spec.shape)
        if not isinstance(t, dict) or t.get("name") != name or t.get("length") != length or not isinstance(t.get("offset"), int):
            got = f"{t.get('name')} × {t.get('length')}" if isinstance(t, dict) else repr(t)
            raise fail(f"tensor {i} is {got}, expected {name} × {length}")
        offset = start + t["offset"]
        if offset < start or offset + 4 * length > len(raw):
            raise fail(f"truncated: {name} runs past the end")
        if i < len(specs):
            params[spec.name] = np.frombuffer(raw, dtype="<f4", count=length, offset=offset).reshape(spec.shape).copy()
    step = header.get("step", 0)
    return SophiaState(config=config, step=int(step) if isinstance(step, int) else 0, params=params)


# ---- the model ------------------------------------------------------------------------------------------------------


class SophiaModel(torch.nn.Module):
    """engine/model/transformer.ts as a torch module. Parameters are plain attributes of `params` (a ParameterDict
    keyed by the spec name with '.' → '/'), in `parameter_specs` order; `flat_grad` concatenates their gradients in
    that order (the ONNX engine's flat gradient)."""

    def __init__(self, config: dict[str, Any], *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", seed: int = 0):
        super().__init__()
        self.config = validate_config(config)
        self.specs = parameter_specs(config)
        gen = torch.Generator().manual_seed(seed)
        params = {}
        for spec in self.specs:
            if spec.init == "normal":
                value = torch.randn(spec.shape, generator=gen, dtype=torch.float64) * config["initStd"]
            elif spec.init == "ones":
                value = torch.ones(spec.shape, dtype=torch.float64)
            else:
                value = torch.zeros(spec.shape, dtype=torch.float64)
            params[self._key(spec.name)] = torch.nn.Parameter(value.to(device=device, dtype=dtype))
        self.params = torch.nn.ParameterDict(params)

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "/")  # ParameterDict keys cannot hold '.'

    def p(self, name: str) -> torch.nn.Parameter:
        return self.params[self._key(name)]

    def ordered(self) -> list[torch.nn.Parameter]:
        return [self.p(s.name) for s in self.specs]

    @classmethod
    def from_state(cls, state: SophiaState, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> "SophiaModel":
        model = cls(state.config, dtype=dtype, device=device)
        with torch.no_grad():
            for spec in model.specs:
                model.p(spec.name).copy_(torch.from_numpy(state.params[spec.name]))
        return model

    @property
    def dtype(self) -> torch.dtype:
        return self.p("lnf_g").dtype

    def embed(self, image: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        c = self.config["image"]
        s, ch, p = c["size"], c["channels"], c["patch"]
        g, b = s // p, image.shape[0]
        patches = image.reshape(b, ch, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, ch * p * p)
        img = patches @ self.p("patch_w") + self.p("patch_b") + self.p("img_pos")
        txt = self.p("tok_emb")[tokens] + self.p("pos_emb")[positions]
        return torch.cat([img, txt], dim=1)

    def block(self, l: int, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        d, h = self.config["width"], self.config["heads"]
        hd = d // h
        pre = f"h{l}."
        b, n, _ = x.shape
        h1 = F.layer_norm(x, (d,), self.p(pre + "ln1_g"), self.p(pre + "ln1_b"), LN_EPS)
        q, k, v = (h1 @ self.p(pre + "qkv_w") + self.p(pre + "qkv_b")).split(d, dim=-1)
        q, k, v = (t.reshape(b, n, h, hd).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + bias
        attended = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, n, d)
        x = x + attended @ self.p(pre + "proj_w") + self.p(pre + "proj_b")
        h2 = F.layer_norm(x, (d,), self.p(pre + "ln2_g"), self.p(pre + "ln2_b"), LN_EPS)
        mlp = F.gelu(h2 @ self.p(pre + "fc_w") + self.p(pre + "fc_b"), approximate="tanh") @ self.p(pre + "out_w") + self.p(pre + "out_b")
        return x + mlp

    def forward(self, image: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states of the text positions: (B, T, d)."""
        b, t = tokens.shape
        n = image_tokens(self.config)
        x = self.embed(image, tokens, positions)
        key = torch.cat([torch.ones(b, n, dtype=x.dtype, device=x.device), attention_mask.to(x.dtype)], dim=1)
        causal = torch.triu(torch.full((n + t, n + t), MASKED, dtype=x.dtype, device=x.device), diagonal=1)
        bias = causal[None, None] + ((key - 1.0) * -MASKED)[:, None, None, :]
        for l in range(self.config["layers"]):
            x = self.block(l, x, bias)
        x = F.layer_norm(x, (self.config["width"],), self.p("lnf_g"), self.p("lnf_b"), LN_EPS)
        return x[:, n:]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.p("head_w")

    def score(self, hidden: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
        """(B) sigmoid of the scalar head at each row's `last_index` text position."""
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_index]
        return torch.sigmoid(last @ self.p("score_w") + self.p("score_b"))[:, 0]

    def flat_grad(self, grads: list[torch.Tensor | None]) -> torch.Tensor:
        """Per-parameter gradients (None: zero), flattened and concatenated in parameter order."""
        return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, self.ordered())])


# ---- token-level batches ------------------------------------------------------------------------------------------


@dataclass
class TokenBatch:
    """The ONNX engine's batch tensors (graph inputs of engine/model/graphs.ts), as torch tensors on the model's device."""

    image: torch.Tensor  # (B, C, S, S) model dtype
    tokens: torch.Tensor  # (B, T) int64
    positions: torch.Tensor  # (B, T) int64
    attention_mask: torch.Tensor  # (B, T) model dtype
    extra: dict[str, torch.Tensor]


def _array(tensors: dict[str, np.ndarray], name: str, kinds: tuple[str, ...], shape: tuple[int, ...], optional: bool = False) -> np.ndarray | None:
    a = request_tensor(tensors, name, kinds, optional)
    if a is not None and tuple(a.shape) != shape:
        raise BadValue(f"tensor {name!r} has shape {list(a.shape)}, expected {list(shape)}", f"tensors.{name}")
    return a


INTS = ("int32", "int64")
FLOATS = ("float32", "float64")


def token_batch(model: SophiaModel, tensors: dict[str, np.ndarray], needs: tuple[str, ...]) -> TokenBatch:
    """Checks and converts a batch. Always: `image` (B, C, S, S), `tokens` (B, T), `attention_mask` (B, T) (1 real,
    0 padding; float or uint8); `positions` (B, T) optional — default, as the ONNX engine's: the number of real
    tokens before each token in its row (a padding slot: that of the real token before it, 0 at the start). Token
    ids and positions of padding slots are not checked (the ONNX engine feeds 0 there; so does this).
    `needs`: the loss's tensors, from `targets`, `loss_mask`, `old_logprobs`, `ref_logprobs` (B, T), `advantages`,
    `score_targets` (B), `last_index` (B, optional: default each row's last real token)."""
    c = model.config
    if "tokens" not in tensors:
        raise BadValue("tensor 'tokens' is required", "tensors.tokens")
    if tensors["tokens"].ndim != 2:
        raise BadValue(f"tensor 'tokens' must be (B, T) (got shape {list(tensors['tokens'].shape)})", "tensors.tokens")
    tok = _array(tensors, "tokens", INTS, tuple(tensors["tokens"].shape))
    b, t = tok.shape
    if b < 1 or t < 1:
        raise BadValue(f"tensor 'tokens' has shape {[b, t]}: a batch needs at least one row and one position", "tensors.tokens")
    if t > c["maxLength"]:
        raise BadValue(f"tensor 'tokens' has {t} positions, more than the model's maxLength {c['maxLength']}", "tensors.tokens")
    s, ch = c["image"]["size"], c["image"]["channels"]
    image = _array(tensors, "image", FLOATS, (b, ch, s, s))
    mask = _array(tensors, "attention_mask", (*FLOATS, "uint8"), (b, t))
    real = mask != 0
    if not real.any(axis=1).all():
        r = int(np.flatnonzero(~real.any(axis=1))[0])
        raise BadValue(f"attention_mask row {r} has no real token", "tensors.attention_mask")
    ids = np.where(real, tok, 0).astype(np.int64)
    bad = np.argwhere(real & ((tok < 0) | (tok >= c["vocabSize"])))
    if bad.size:
        r, k = (int(x) for x in bad[0])
        raise BadValue(f"tokens[{r}][{k}] = {int(tok[r, k])} is outside the vocabulary [0, {c['vocabSize']})", "tensors.tokens")
    pos = _array(tensors, "positions", INTS, (b, t), optional=True)
    if pos is None:
        before = np.cumsum(real, axis=1) - real  # real tokens before each slot
        pos = np.where(real, before, np.maximum(before - 1, 0))
    else:
        bad = np.argwhere(real & ((pos < 0) | (pos >= c["maxLength"])))
        if bad.size:
            r, k = (int(x) for x in bad[0])
            raise BadValue(f"positions[{r}][{k}] = {int(pos[r, k])} is outside [0, {c['maxLength']})", "tensors.positions")
    pos = np.clip(pos, 0, c["maxLength"] - 1).astype(np.int64)
    dev, dt = model.p("lnf_g").device, model.dtype

    def floats(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(dev, dt)

    def longs(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64)).to(dev)

    extra: dict[str, torch.Tensor] = {}
    for name in needs:
        if name == "targets":
            a = _array(tensors, name, INTS, (b, t))
            bad = np.argwhere((a < 0) | (a >= c["vocabSize"]))
            if bad.size:
                r, k = (int(x) for x in bad[0])
                raise BadValue(f"targets[{r}][{k}] = {int(a[r, k])} is outside the vocabulary [0, {c['vocabSize']})", "tensors.targets")
            extra[name] = longs(a)
        elif name in ("loss_mask", "old_logprobs", "ref_logprobs"):
            extra[name] = floats(_array(tensors, name, FLOATS, (b, t)))
        elif name in ("advantages", "score_targets"):
            extra[name] = floats(_array(tensors, name, FLOATS, (b,)))
        elif name == "last_index":
            a = _array(tensors, name, INTS, (b,), optional=True)
            if a is None:
                a = t - 1 - np.argmax(real[:, ::-1], axis=1)
            elif ((a < 0) | (a >= t)).any():
                r = int(np.flatnonzero((a < 0) | (a >= t))[0])
                raise BadValue(f"last_index[{r}] = {int(a[r])} is outside [0, {t})", "tensors.last_index")
            extra[name] = longs(a)
        else:
            raise AssertionError(f"unknown batch tensor {name}")
    return TokenBatch(image=floats(image), tokens=longs(ids), positions=longs(pos), attention_mask=floats(real.astype(np.float64)), extra=extra)


LOSS_TENSORS = {
    "sft": ("targets", "loss_mask"),
    "grpo": ("targets", "loss_mask", "old_logprobs", "ref_logprobs", "advantages"),
    "rm": ("score_targets", "last_index"),
}


def batch_loss(model: SophiaModel, kind: str, batch: TokenBatch, hyper: dict[str, float] | None = None) -> losses.LossOutput:
    """The loss of a token-level batch, with losses.py over its (B·T) positions (rm: its B rows)."""
    hidden = model(batch.image, batch.tokens, batch.positions, batch.attention_mask)
    x = batch.extra
    if kind == "rm":
        return losses.rm_loss(model.score(hidden, x["last_index"]), x["score_targets"])
    logits = model.logits(hidden)
    b, t, v = logits.shape
    flat = logits.reshape(b * t, v)
    targets, mask = x["targets"].reshape(-1), x["loss_mask"].reshape(-1)
    if kind == "sft":
        return losses.sft_loss(flat, targets, mask)
    return losses.grpo_loss(
        flat, targets, mask, x["old_logprobs"].reshape(-1), x["ref_logprobs"].reshape(-1), x["advantages"].repeat_interleave(t), **(hyper or {})
    )


# ---- the ops --------------------------------------------------------------------------------------------------------

OPS = ("load_sophia", "sophia_logprobs", "sophia_grad")


def _str(args: dict[str, Any], name: str, default: str | None = None) -> str:
    value = args.get(name, default)
    if value is None:
        raise BadValue(f"args.{name} is required", f"args.{name}")
    if not isinstance(value, str):
        raise BadType(f"args.{name} must be a string (got {type(value).__name__})", f"args.{name}")
    return value


def _finite(spec: dict[str, Any], name: str, field: str, default: float | None = None) -> float:
    value = spec.get(name, default)
    if value is None:
        raise BadValue(f"{field} is required", field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadType(f"{field} must be a number (got {type(value).__name__})", field)
    if not math.isfinite(value):
        raise BadValue(f"{field} must be a finite number (got {value!r})", field)
    return float(value)


class SophiaOps:
    """The engine process's ops on Sophia's architecture. Separate from the Hugging Face model the process may hold
    (that one's `load` does not touch this one, nor the reverse); nothing here trains: `sophia_grad` returns the
    gradient and keeps nothing."""

    def __init__(self) -> None:
        self.model: SophiaModel | None = None
        self.path = ""
        self.step = 0

    def _require(self) -> SophiaModel:
        if self.model is None:
            raise StateError("no Sophia model is loaded: send op 'load_sophia' first", "op")
        return self.model

    def info(self) -> dict[str, Any]:
        m = self._require()
        first = next(iter(m.params.values()))
        return {
            "state": self.path,
            "config": m.config,
            "kind": m.config["kind"],
            "step": self.step,
            "dtype": str(m.dtype).removeprefix("torch."),
            "device": str(first.device),
            "parameters": sum(p.numel() for p in m.params.values()),
        }

    def load_sophia(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        """args: `state` (path of an ONNX-engine state.bin), `dtype` (float32 | float64, default float32), `device`
        (default cpu). The float32 weights are cast to `dtype`."""
        path = _str(args, "state")
        dtype_name = _str(args, "dtype", "float32")
        if dtype_name not in DTYPES:
            raise BadValue(f"args.dtype must be one of {list(DTYPES)} (got {dtype_name!r})", "args.dtype")
        device_name = _str(args, "device", "cpu")
        try:
            device = torch.device(device_name)
        except RuntimeError as err:
            raise BadValue(f"args.device {device_name!r} is not a torch device: {err}", "args.device") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise BadValue("args.device is cuda but this machine has no CUDA GPU (use 'cpu')", "args.device")
        state = load_state_bin(path)
        self.model = SophiaModel.from_state(state, dtype=DTYPES[dtype_name], device=device)
        self.path, self.step = str(Path(path).resolve()), state.step
        return {"model": self.info()}, {}

    def sophia_logprobs(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        """log softmax(logits / temperature)[target] at every position: `logprobs` (B, T) in the model's dtype."""
        m = self._require()
        if m.config["kind"] != "policy":
            raise BadType("sophia_logprobs needs a policy model (the loaded one is a reward model)", "op")
        temperature = _finite(args, "temperature", "args.temperature", 1.0)
        if temperature <= 0:
            raise BadValue(f"args.temperature must be > 0 (got {temperature})", "args.temperature")
        batch = token_batch(m, tensors, ("targets",))
        with torch.no_grad():
            logp = torch.log_softmax(m.logits(m(batch.image, batch.tokens, batch.positions, batch.attention_mask)) / temperature, dim=-1)
            picked = logp.gather(-1, batch.extra["targets"][..., None])[..., 0]
        return {}, {"logprobs": picked.cpu().numpy()}

    def sophia_grad(self, args: dict[str, Any], tensors: dict[str, np.ndarray]) -> Result:
        """The loss, its metrics and `grad`: the float64 flat gradient in the ONNX engine's parameter order."""
        m = self._require()
        spec = args.get("loss")
        if not isinstance(spec, dict):
            raise BadType("args.loss must be an object {kind, ...}", "args.loss")
        kind = spec.get("kind")
        if kind not in LOSS_TENSORS:
            raise BadValue(f"args.loss.kind must be 'sft', 'grpo' or 'rm' (got {kind!r})", "args.loss.kind")
        needs = "reward" if kind == "rm" else "policy"
        if m.config["kind"] != needs:
            raise BadType(f"the {kind} loss needs a {needs} model (the loaded one is a {m.config['kind']} model)", "args.loss.kind")
        hyper = {k: _finite(spec, k, f"args.loss.{k}") for k in GRPO_FIELDS} if kind == "grpo" else {}
        if kind == "grpo" and hyper["temperature"] <= 0:
            raise BadValue(f"args.loss.temperature must be > 0 (got {hyper['temperature']})", "args.loss.temperature")
        batch = token_batch(m, tensors, LOSS_TENSORS[kind])
        out = batch_loss(m, kind, batch, hyper)
        params = m.ordered()
        grads = torch.autograd.grad(out.loss, params, allow_unused=True)
        grad = m.flat_grad(list(grads)).detach().to(torch.float64)
        loss = float(out.loss.detach())
        finite = math.isfinite(loss) and bool(torch.isfinite(grad).all())
        return {"loss": loss, "metrics": {k: float(v) for k, v in out.metrics.items()}, "finite": finite}, {"grad": grad.cpu().numpy()}
