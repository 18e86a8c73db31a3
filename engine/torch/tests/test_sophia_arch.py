"""Sophia's own architecture in torch (sophia_torch/sophia_arch.py): shapes and parameter layout, state.bin reading,
padding, float64 gradients against central differences, and its ops through a real engine process.

The equality with the ONNX engine itself (same state and batch → same losses, metrics and gradients) is checked
from TypeScript, where the ONNX graphs are built: engine/torch/cross-engine.test.ts.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from sophia_torch.client import EngineCallError
from sophia_torch.protocol import BadValue
from sophia_torch.sophia_arch import SophiaModel, TokenBatch, batch_loss, load_state_bin, parameter_specs, token_batch


def check_config(kind: str = "policy") -> dict:
    """engine/testing/fixtures.ts `checkConfig`: 2 layers, width 8, 2 heads, 4 image tokens, vocabulary 7."""
    return {"kind": kind, "vocabSize": 7, "maxLength": 8, "layers": 2, "width": 8, "heads": 2, "mlpRatio": 2, "image": {"size": 4, "channels": 3, "patch": 2}, "initStd": 0.02}


def write_state(path: Path, config: dict, params: dict[str, np.ndarray], step: int = 3) -> Path:
    """A state.bin as engine/state.ts `encodeState` writes it (zero moments)."""
    specs = parameter_specs(config)
    tensors, offset = [], 0
    for prefix in ("p", "m", "v"):
        for s in specs:
            length = math.prod(s.shape)
            tensors.append({"name": f"{prefix}:{s.name}", "shape": list(s.shape), "offset": offset, "length": length})
            offset += 4 * length
    header = json.dumps({"format": "sophia.engine-state.v1", "config": config, "step": step, "rng": {"s": [1, 2, 3, 4]}, "tensors": tensors}).encode()
    start = (12 + len(header) + 7) // 8 * 8
    data = bytearray(start + offset)
    data[:8] = b"SOPHIAES"
    data[8:12] = struct.pack("<I", len(header))
    data[12 : 12 + len(header)] = header
    at = start
    for s in specs:
        raw = np.ascontiguousarray(params[s.name], dtype="<f4").tobytes()
        data[at : at + len(raw)] = raw
        at += len(raw)
    path.write_bytes(bytes(data))
    return path


def seeded_params(config: dict, seed: int) -> dict[str, np.ndarray]:
    """Weights in ±0.5 and layer-norm gains near 1 (like fixtures.ts `checkParams`), float32."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in parameter_specs(config):
        x = rng.uniform(-1, 1, s.shape)
        out[s.name] = (1 + 0.3 * x if s.init == "ones" else 0.5 * x).astype(np.float32)
    return out


B, T = 2, 5


def batch_tensors(kind: str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {
        "image": rng.uniform(0, 1, (B, 3, 4, 4)),
        "tokens": np.array([[1, 2, 3, 4, 5], [0, 0, 6, 2, 1]], dtype=np.int64),  # row 2 left-padded by two
        "positions": np.array([[0, 1, 2, 3, 4], [0, 0, 0, 1, 2]], dtype=np.int64),
        "attention_mask": np.array([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]], dtype=np.float64),
    }
    if kind == "rm":
        return {**out, "score_targets": np.array([0.3, 0.9])}
    out["targets"] = np.array([[2, 3, 4, 5, 6], [0, 0, 2, 1, 3]], dtype=np.int64)
    out["loss_mask"] = np.array([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1]], dtype=np.float64)
    if kind == "grpo":
        out["old_logprobs"] = -2 + 0.6 * rng.uniform(-1, 1, (B, T))
        out["ref_logprobs"] = -2 + 0.6 * rng.uniform(-1, 1, (B, T))
        out["advantages"] = np.array([0.8, -1.1])
    return out


GRPO = {"clip_eps": 0.2, "kl_coef": 0.04, "entropy_coef": 1e-3, "temperature": 0.9}
NEEDS = {"sft": ("targets", "loss_mask"), "grpo": ("targets", "loss_mask", "old_logprobs", "ref_logprobs", "advantages"), "rm": ("score_targets", "last_index")}


def model64(kind: str, seed: int = 1) -> SophiaModel:
    config = check_config("reward" if kind == "rm" else "policy")
    model = SophiaModel(config, dtype=torch.float64)
    with torch.no_grad():
        for name, value in seeded_params(config, seed).items():
            model.p(name).copy_(torch.from_numpy(value))
    return model


def test_shapes_and_parameter_layout():
    for kind in ("policy", "reward"):
        config = check_config(kind)
        model = SophiaModel(config, seed=0)
        specs = parameter_specs(config)
        assert [tuple(p.shape) for p in model.ordered()] == [s.shape for s in specs]
        # config.ts's order: embeddings, 12 per layer, final norm, then the head.
        assert [s.name for s in specs[:5]] == ["tok_emb", "pos_emb", "patch_w", "patch_b", "img_pos"]
        assert specs[5].name == "h0.ln1_g" and specs[16].name == "h0.out_b" and specs[29].name == "lnf_g"
        assert [s.name for s in specs[31:]] == (["head_w"] if kind == "policy" else ["score_w", "score_b"])
        # The initial layout: normal(0, initStd) weights, zero biases, unit norm gains.
        assert torch.all(model.p("h0.ln1_g") == 1) and torch.all(model.p("h1.fc_b") == 0)
        assert 0.005 < float(model.p("h0.fc_w").detach().std()) < 0.04
        b = token_batch(model, batch_tensors("rm" if kind == "reward" else "sft"), NEEDS["rm" if kind == "reward" else "sft"])
        hidden = model(b.image, b.tokens, b.positions, b.attention_mask)
        assert hidden.shape == (B, T, 8)
        if kind == "policy":
            assert model.logits(hidden).shape == (B, T, 7)
        else:
            scores = model.score(hidden, b.extra["last_index"])
            assert scores.shape == (B,) and bool(((scores > 0) & (scores < 1)).all())
            assert b.extra["last_index"].tolist() == [4, 4]


def test_padding_slots_do_not_change_the_real_positions():
    model = model64("sft")
    full = batch_tensors("sft")
    padded = token_batch(model, full, ())
    # Row 2 alone, without its two padding slots.
    alone = {k: v[1:, 2:] if k != "image" else v[1:] for k, v in full.items() if k in ("image", "tokens", "positions", "attention_mask")}
    unpadded = token_batch(model, alone, ())
    with torch.no_grad():
        a = model(padded.image, padded.tokens, padded.positions, padded.attention_mask)[1, 2:]
        b = model(unpadded.image, unpadded.tokens, unpadded.positions, unpadded.attention_mask)[0]
    assert float((a - b).abs().max()) < 1e-12


def test_default_positions_count_the_real_tokens_before():
    model = model64("sft")
    tensors = {k: v for k, v in batch_tensors("sft").items() if k != "positions"}
    b = token_batch(model, tensors, ())
    assert b.positions.tolist() == [[0, 1, 2, 3, 4], [0, 0, 0, 1, 2]]
    assert b.tokens[1, :2].tolist() == [0, 0]


@pytest.mark.parametrize("kind", ["sft", "grpo", "rm"])
def test_float64_gradients_match_central_differences(kind: str):
    """Every parameter, up to 16 elements each: |analytic − numeric| ≤ 1e-7 + 1e-5·|numeric| (ε = 1e-6)."""
    model = model64(kind)
    batch: TokenBatch = token_batch(model, batch_tensors(kind), NEEDS[kind])
    hyper = GRPO if kind == "grpo" else None
    out = batch_loss(model, kind, batch, hyper)
    grads = torch.autograd.grad(out.loss, model.ordered(), allow_unused=True)
    flat = model.flat_grad(list(grads))
    assert flat.dtype == torch.float64 and flat.shape[0] == sum(p.numel() for p in model.ordered())
    assert bool(flat.abs().max() > 1e-4)
    if kind == "grpo":
        assert 0 < out.metrics["clip_fraction"] < 1 and out.metrics["kl"] > 0
    rng = np.random.default_rng(7)
    checked, eps = 0, 1e-6
    with torch.no_grad():
        for p, g in zip(model.ordered(), grads):
            g = torch.zeros_like(p) if g is None else g
            flat_p, flat_g = p.view(-1), g.reshape(-1)
            for i in rng.choice(flat_p.numel(), size=min(16, flat_p.numel()), replace=False):
                keep = float(flat_p[i])
                flat_p[i] = keep + eps
                up = float(batch_loss(model, kind, batch, hyper).loss)
                flat_p[i] = keep - eps
                down = float(batch_loss(model, kind, batch, hyper).loss)
                flat_p[i] = keep
                numeric = (up - down) / (2 * eps)
                assert abs(float(flat_g[i]) - numeric) <= 1e-7 + 1e-5 * abs(numeric), (kind, i, float(flat_g[i]), numeric)
                checked += 1
    assert checked > 300


def test_state_bin_is_read_and_bad_files_are_named(tmp_path: Path):
    config = check_config()
    params = seeded_params(config, 3)
    state = load_state_bin(write_state(tmp_path / "state.bin", config, params))
    assert state.step == 3 and state.config == config
    assert all(np.array_equal(state.params[k], v) for k, v in params.items())
    model = SophiaModel.from_state(state, dtype=torch.float64)
    assert model.dtype == torch.float64 and float(model.p("h1.qkv_w").detach()[2, 5]) == float(params["h1.qkv_w"][2, 5])

    good = (tmp_path / "state.bin").read_bytes()
    cases = {
        "bad magic": b"NOTSOPHI" + good[8:],
        "truncated": good[: len(good) - 16],
    }
    for why, data in cases.items():
        (tmp_path / "bad.bin").write_bytes(data)
        with pytest.raises(BadValue, match=why) as err:
            load_state_bin(tmp_path / "bad.bin")
        assert err.value.field == "args.state"
    # The tensors in another order (another layout): named, not silently permuted.
    swapped = json.loads(good[12 : 12 + struct.unpack_from("<I", good, 8)[0]])
    swapped["tensors"][0], swapped["tensors"][1] = swapped["tensors"][1], swapped["tensors"][0]
    header = json.dumps(swapped).encode()
    body = good[(12 + struct.unpack_from("<I", good, 8)[0] + 7) // 8 * 8 :]
    start = (12 + len(header) + 7) // 8 * 8
    (tmp_path / "swapped.bin").write_bytes(b"SOPHIAES" + struct.pack("<I", len(header)) + header + bytes(start - 12 - len(header)) + body)
    with pytest.raises(BadValue, match=r"tensor 0 is p:pos_emb × 64, expected p:tok_emb × 56"):
        load_state_bin(tmp_path / "swapped.bin")
    with pytest.raises(BadValue, match="is not a file"):
        load_state_bin(tmp_path / "missing.bin")


def test_ops_through_the_engine_process(engine, tmp_path: Path):
    config = check_config()
    path = write_state(tmp_path / "state.bin", config, seeded_params(config, 1))
    result, _ = engine.call("load_sophia", {"state": str(path), "dtype": "float64"})
    assert result["model"]["kind"] == "policy" and result["model"]["dtype"] == "float64" and result["model"]["step"] == 3
    tensors = batch_tensors("grpo")
    result, out = engine.call("sophia_grad", {"loss": {"kind": "grpo", **GRPO}}, tensors)
    here = model64("grpo")
    expected = batch_loss(here, "grpo", token_batch(here, tensors, NEEDS["grpo"]), GRPO)
    assert result["finite"] and result["loss"] == pytest.approx(float(expected.loss.detach()), rel=1e-12)
    assert set(result["metrics"]) == {"policy_loss", "kl", "entropy", "clip_fraction", "ratio_mean", "ratio_sq_mean", "logprob_diff_mean", "logprob_diff_max", "tokens"}
    assert out["grad"].dtype == np.float64 and out["grad"].shape == (sum(math.prod(s.shape) for s in parameter_specs(config)),)
    _, out = engine.call("sophia_logprobs", {"temperature": 0.9}, {k: tensors[k] for k in ("image", "tokens", "positions", "attention_mask", "targets")})
    assert out["logprobs"].shape == (B, T) and out["logprobs"].dtype == np.float64 and bool((out["logprobs"] < 0).all())

    refusals = [
        ("load_sophia", {"state": str(tmp_path / "missing.bin")}, {}, "args.state"),
        ("load_sophia", {"state": str(path), "dtype": "bfloat16"}, {}, "args.dtype"),
        ("sophia_grad", {"loss": {"kind": "rm"}}, batch_tensors("rm"), "args.loss.kind"),
        ("sophia_grad", {"loss": {"kind": "grpo", **GRPO, "temperature": 0}}, tensors, "args.loss.temperature"),
        ("sophia_grad", {"loss": {"kind": "sft"}}, {**batch_tensors("sft"), "targets": np.full((B, T), 7, dtype=np.int64)}, "tensors.targets"),
        ("sophia_grad", {"loss": {"kind": "sft"}}, {k: v for k, v in batch_tensors("sft").items() if k != "loss_mask"}, "tensors.loss_mask"),
        ("sophia_grad", {"loss": {"kind": "sft"}}, {**batch_tensors("sft"), "image": np.zeros((B, 3, 8, 8))}, "tensors.image"),
    ]
    for op, args, t, field in refusals:
        with pytest.raises(EngineCallError) as err:
            engine.call(op, args, t)
        assert err.value.field == field, (op, args, err.value.message)
    # Still serving, with the model it had.
    result, _ = engine.call("sophia_grad", {"loss": {"kind": "sft"}}, batch_tensors("sft"))
    assert result["finite"]
