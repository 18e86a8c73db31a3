"""What the TypeScript `Engine` (engine/torch/engine.ts) needs from the process: raw RGB images, prompt lengths,
the end token, sampling clipped to the model's positions, a state directory that says which files it holds (so a
missing, truncated or foreign file is refused by name), and a reward model made from a policy's state."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ADAMW, IMAGES, PROMPTS, answers, rows
from sophia_torch.client import EngineCallError
from sophia_torch.tiny_qwen import build


def raw(png: np.ndarray) -> np.ndarray:
    """The (H, W, 3) uint8 pixels of a PNG's bytes."""
    return np.asarray(Image.open(io.BytesIO(png.tobytes())).convert("RGB"), dtype=np.uint8)


def refused(engine, op, args, tensors=None) -> EngineCallError:
    with pytest.raises(EngineCallError) as err:
        engine.call(op, args, tensors)
    return err.value


def test_an_image_may_be_raw_rgb_pixels_and_reads_as_its_png(engine, tiny_dir):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    batch = rows([0, 1, 2], responses)
    _, from_png = engine.call("logprobs", {"prompts": PROMPTS}, batch)
    pixels = {name: raw(data) for name, data in IMAGES.items()}
    assert pixels["red"].shape == (90, 60, 3)
    _, from_raw = engine.call("logprobs", {"prompts": PROMPTS}, {**batch, **pixels})
    assert np.array_equal(from_png["logprobs"], from_raw["logprobs"])
    # Not (H, W, 3) uint8: refused by the part's field.
    for bad in (np.zeros((90, 60, 4), np.uint8), np.zeros((90, 60, 3), np.float32), np.zeros((2, 90, 60, 3), np.uint8), np.zeros((0, 60, 3), np.uint8)):
        err = refused(engine, "logprobs", {"prompts": PROMPTS}, {**batch, **pixels, "red": bad})
        assert err.field == "args.prompts[0].messages[0].content[0].tensor", err.message
        assert "(H, W, 3)" in err.message


def test_prompt_lengths_are_the_rendered_prompts_tokens(engine, tiny_dir):
    info = engine.call("load", {"model_dir": tiny_dir})[0]["model"]
    result, _ = engine.call("prompt_lengths", {"prompts": PROMPTS}, IMAGES)
    sampled, _ = engine.call("sample", {"prompts": PROMPTS, "max_new_tokens": 1}, IMAGES)
    assert result["prompt_tokens"] == sampled["prompt_tokens"]
    assert all(n > 5 for n in result["prompt_tokens"])
    # The end token: the tokenizer's eos (Qwen's end of an assistant turn), one of the tokens sampling stops at.
    assert info["end_token_id"] == engine.call("tokenize", {"texts": ["<|im_end|>"]})[1]["ids"].tolist()[0]
    assert info["end_token_id"] in info["eos_token_ids"]


def test_sampling_clipped_to_the_models_positions(engine, tmp_path):
    small = str(build(tmp_path / "small", seed=0, max_positions=64))
    info = engine.call("load", {"model_dir": small})[0]["model"]
    assert info["max_length"] == 64
    lengths = engine.call("prompt_lengths", {"prompts": PROMPTS}, IMAGES)[0]["prompt_tokens"]
    room = [64 - n for n in lengths]
    args = {"prompts": PROMPTS, "n": 2, "max_new_tokens": 200, "seed": 3, "temperature": 1.0}
    err = refused(engine, "sample", args, IMAGES)  # without clipping: refused as before
    assert err.field == "args.max_new_tokens"
    result, out = engine.call("sample", {**args, "clip_to_max_length": True}, IMAGES)
    for s, n in zip(result["samples"], out["lengths"].tolist()):
        assert n <= room[s["prompt_index"]]
        assert s["finish_reason"] == "eos" or n == room[s["prompt_index"]]
    # A prompt that leaves no room: refused by the prompt's field.
    long = {"messages": [{"role": "user", "content": "one " * 80}]}
    err = refused(engine, "sample", {**args, "prompts": [PROMPTS[2], long], "clip_to_max_length": True})
    assert err.type == "RangeError" and err.field == "args.prompts[1]", err.message


def test_save_lists_its_files_and_load_state_refuses_a_missing_truncated_extra_or_foreign_file_by_name(engine, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["Three."])
    _, before = engine.call("logprobs", {"prompts": PROMPTS}, rows([0], responses))
    saved = engine.call("save", {"dir": str(tmp_path / "s")})[0]
    meta = json.loads((tmp_path / "s" / "sophia_engine.json").read_text())
    assert sorted(meta["files"]) == sorted(f for f in saved["files"] if f != "sophia_engine.json")
    assert meta["files"]["model.safetensors"] == (tmp_path / "s" / "model.safetensors").stat().st_size
    assert meta["base_model_dir"] == tiny_dir

    def variant(name: str, change) -> str:
        d = tmp_path / name
        d.mkdir()
        for f in (tmp_path / "s").iterdir():
            (d / f.name).write_bytes(f.read_bytes())
        change(d)
        return str(d)

    cases = {
        "model.safetensors": variant("missing", lambda d: (d / "model.safetensors").unlink()),
        "tokenizer.json": variant("truncated", lambda d: (d / "tokenizer.json").write_bytes((d / "tokenizer.json").read_bytes()[:100])),
        "stray.bin": variant("extra", lambda d: (d / "stray.bin").write_bytes(b"123")),
        "sophia_engine.json": variant("meta", lambda d: (d / "sophia_engine.json").write_text((d / "sophia_engine.json").read_text()[:50])),
    }
    foreign = tmp_path / "onnx"
    foreign.mkdir()
    (foreign / "state.bin").write_bytes(b"\x00" * 64)
    cases["state.bin"] = str(foreign)
    for name, directory in cases.items():
        err = refused(engine, "load_state", {"dir": directory})
        assert err.type == "RangeError" and err.field == "args.dir" and name in err.message, (name, err.message)
    _, after = engine.call("logprobs", {"prompts": PROMPTS}, rows([0], responses))
    assert np.array_equal(before["logprobs"], after["logprobs"])
    assert engine.call("hello")[0]["model"]["model_dir"] == tiny_dir  # the model it had


def test_a_loaded_state_keeps_the_base_model_dir(engine, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir})
    engine.call("save", {"dir": str(tmp_path / "a")})
    info = engine.call("load_state", {"dir": str(tmp_path / "a")})[0]["model"]
    assert info["model_dir"] == str(tmp_path / "a") and info["base_model_dir"] == tiny_dir
    engine.call("save", {"dir": str(tmp_path / "b")})
    assert json.loads((tmp_path / "b" / "sophia_engine.json").read_text())["base_model_dir"] == tiny_dir


def test_a_reward_model_from_a_policys_state(engine, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    batch = rows([0, 1, 2], responses)
    engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, batch)
    engine.call("optim_step", ADAMW)
    engine.call("save", {"dir": str(tmp_path / "policy")})

    def reward(seed: int) -> tuple[dict, np.ndarray]:
        info = engine.call("load_state", {"dir": str(tmp_path / "policy"), "reward_from_policy": True, "seed": seed})[0]["model"]
        return info, engine.call("score", {"prompts": PROMPTS}, batch)[1]["scores"]

    info, scores = reward(4)
    assert info["role"] == "reward" and info["step"] == 0 and info["base_model_dir"] == tiny_dir
    assert ((scores > 0) & (scores < 1)).all()
    assert np.array_equal(reward(4)[1], scores)  # a function of (state, seed)
    assert not np.array_equal(reward(5)[1], scores)  # another head
    # Its backbone is the trained policy's, not the base model's.
    engine.call("load", {"model_dir": tiny_dir, "role": "reward", "seed": 4})
    assert not np.array_equal(engine.call("score", {"prompts": PROMPTS}, batch)[1]["scores"], scores)
    # Zero moments, step 0: it trains as a reward model from there.
    reward(4)
    engine.call("save", {"dir": str(tmp_path / "rm0")})
    from safetensors.torch import load_file

    assert not any(k.startswith("adamw.") for k in load_file(tmp_path / "rm0" / "sophia_optimizer.safetensors"))
    engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "rm"}}, {**batch, "score_targets": np.array([1, 0, 1], np.float32)})
    assert engine.call("optim_step", ADAMW)[0]["step"] == 1
    # A reward model's state is not a policy's: refused, and the engine keeps its model.
    engine.call("save", {"dir": str(tmp_path / "rm1")})
    err = refused(engine, "load_state", {"dir": str(tmp_path / "rm1"), "reward_from_policy": True, "seed": 1})
    assert err.type == "RangeError" and err.field == "args.dir" and "policy" in err.message
    assert engine.call("hello")[0]["model"]["step"] == 1


def test_train_step_is_forward_backward_and_optim_step_with_the_settings_checked_first(engine, tiny_dir):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    batch = rows([0, 1, 2], responses)
    sft = {"prompts": PROMPTS, "loss": {"kind": "sft"}}
    # A bad setting is refused before the forward pass: nothing is accumulated.
    err = refused(engine, "train_step", {**sft, **ADAMW, "beta2": 1.0}, batch)
    assert err.type == "RangeError" and err.field == "args.beta2"
    assert refused(engine, "optim_step", ADAMW).type == "StateError"
    fused = engine.call("train_step", {**sft, **ADAMW}, batch)[0]
    assert fused["finite"] and fused["applied"] and fused["step"] == 1
    _, after_fused = engine.call("logprobs", {"prompts": PROMPTS}, batch)
    # A non-finite loss with nothing accumulated: reported, not applied, the step unchanged.
    n = sum(len(r) for r in responses)
    grpo = {"prompts": PROMPTS, "loss": {"kind": "grpo", "clip_eps": 0.2, "kl_coef": 0.04, "entropy_coef": 0.001, "temperature": 1.0}, **ADAMW}
    poisoned = {**batch, "old_logprobs": np.full(n, np.nan, np.float32), "ref_logprobs": np.full(n, -2.0, np.float32), "advantages": np.ones(3, np.float32)}
    result = engine.call("train_step", grpo, poisoned)[0]
    assert result["finite"] is False and result["applied"] is False and result["step"] == 1 and result["grad_norm"] == "NaN"
    assert np.array_equal(engine.call("logprobs", {"prompts": PROMPTS}, batch)[1]["logprobs"], after_fused["logprobs"])
    # The same step as forward_backward + optim_step, from a new load.
    engine.call("load", {"model_dir": tiny_dir})
    fb = engine.call("forward_backward", sft, batch)[0]
    step = engine.call("optim_step", ADAMW)[0]
    assert fb["loss"] == fused["loss"] and step["grad_norm"] == fused["grad_norm"]
    assert np.array_equal(engine.call("logprobs", {"prompts": PROMPTS}, batch)[1]["logprobs"], after_fused["logprobs"])


def test_a_non_finite_number_is_a_range_error_naming_the_field(engine, tiny_dir):
    # JSON has no NaN: the TS side sends "NaN"/"Infinity"/"-Infinity" (the protocol's strings), which are numbers
    # out of range, not values of the wrong type.
    engine.call("load", {"model_dir": tiny_dir})
    for value in ("NaN", "Infinity", "-Infinity"):
        err = refused(engine, "optim_step", {**ADAMW, "lr": value})
        assert (err.type, err.field) == ("RangeError", "args.lr"), err.message
        assert value in err.message
    err = refused(engine, "optim_step", {**ADAMW, "lr": "fast"})
    assert (err.type, err.field) == ("TypeError", "args.lr")
