"""Saving and loading: exact resume across processes, checkpoints that plain transformers loads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ADAMW, IMAGES, PROMPTS, answers, rows
from reference import batch_logits, load_plain
from sophia_torch.client import EngineCallError

N, K = 4, 2


def train(engine, responses, steps: range) -> None:
    """Step s: two micro-batches weighted by their tokens (sft), AdamW with a schedule-like lr."""
    for s in steps:
        first, second = responses[: 1 + s % 2], responses[1 + s % 2 :]
        for part, index in ((first, list(range(len(first)))), (second, list(range(len(first), 3)))):
            engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}, "weight": sum(len(r) for r in part)}, rows(index, part))
        assert engine.call("optim_step", {**ADAMW, "lr": 1e-2 * (1 - s / 10)})[0]["applied"]


def tensors_of(directory: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(directory.glob("*.safetensors")):
        out.update({f"{f.name}:{k}": v for k, v in load_file(f).items()})
    return out


def test_save_then_resume_in_a_new_process_equals_an_uninterrupted_run(engine, spawn, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["There are 3 red circles.", "The shape is green.", "One two three."])
    train(engine, responses, range(N))
    saved = engine.call("save", {"dir": str(tmp_path / "uninterrupted")})[0]
    assert saved["step"] == N

    # K steps from a new load (in this process, after the run above: a load leaves nothing of it), saved; a new
    # process continues from the directory alone.
    engine.call("load", {"model_dir": tiny_dir})
    train(engine, responses, range(K))
    files = engine.call("save", {"dir": str(tmp_path / "at-k")})[0]["files"]
    assert {"config.json", "model.safetensors", "sophia_engine.json", "sophia_optimizer.safetensors", "tokenizer.json"} <= set(files)

    second = spawn("second")
    info = second.call("load_state", {"dir": str(tmp_path / "at-k")})[0]["model"]
    assert info["step"] == K
    train(second, responses, range(K, N))
    second.call("save", {"dir": str(tmp_path / "resumed")})

    a, b = tensors_of(tmp_path / "uninterrupted"), tensors_of(tmp_path / "resumed")
    assert a.keys() == b.keys() and any(k.startswith("sophia_optimizer.safetensors:adamw.exp_avg::") for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different  # weights, AdamW moments and step counts, RNG: bit for bit
    # Not trivially: the weights did move from the initial model.
    init = tensors_of(Path(tiny_dir))
    moved = [k for k in init if not torch.equal(init[k], a[k])]
    assert moved


def test_a_checkpoint_loads_in_plain_transformers_with_the_same_logits(engine, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    train(engine, responses, range(2))
    engine.call("save", {"dir": str(tmp_path / "ckpt")})
    index = [0, 1, 2]
    _, ours = engine.call("logprobs", {"prompts": PROMPTS}, rows(index, responses))

    model, processor = load_plain(str(tmp_path / "ckpt"), torch.float32)  # AutoModelForImageTextToText / AutoProcessor
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    targets = torch.tensor([t for r in responses for t in r])
    with torch.no_grad():
        plain = torch.log_softmax(batch_logits(model, processor, PROMPTS, IMAGES, index, responses), -1)[torch.arange(len(targets)), targets]
        flat = torch.log_softmax(batch_logits(model, processor, PROMPTS, IMAGES, index, responses, with_mm_token_types=False), -1)[torch.arange(len(targets)), targets]
    assert np.abs(plain.numpy() - ours["logprobs"]).max() <= 1e-5
    # Without mm_token_type_ids transformers falls back to 1-D positions: a real difference this test would see.
    assert np.abs(flat.numpy() - ours["logprobs"]).max() > 1e-4


def test_fresh_optimizer_keeps_the_weights_and_restarts_adamw(engine, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    train(engine, responses, range(2))
    engine.call("save", {"dir": str(tmp_path / "s")})
    _, kept = engine.call("logprobs", {"prompts": PROMPTS}, rows([0, 1, 2], responses))
    info = engine.call("load_state", {"dir": str(tmp_path / "s"), "fresh_optimizer": True})[0]["model"]
    assert info["step"] == 0
    _, again = engine.call("logprobs", {"prompts": PROMPTS}, rows([0, 1, 2], responses))
    assert np.array_equal(kept["logprobs"], again["logprobs"])
    engine.call("save", {"dir": str(tmp_path / "fresh")})
    state = load_file(tmp_path / "fresh" / "sophia_optimizer.safetensors")
    assert not any(k.startswith("adamw.") for k in state)  # no moments until the first step


def test_a_reward_model_saves_and_reloads_its_head(engine, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir, "role": "reward", "seed": 9})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    batch = rows([0, 1, 2], responses)
    engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "rm"}}, {**batch, "score_targets": np.array([1, 0, 1], np.float32)})
    engine.call("optim_step", ADAMW)
    scores = engine.call("score", {"prompts": PROMPTS}, batch)[1]["scores"]
    engine.call("save", {"dir": str(tmp_path / "rm")})
    assert (tmp_path / "rm" / "sophia_reward_head.safetensors").is_file()
    info = engine.call("load_state", {"dir": str(tmp_path / "rm")})[0]["model"]
    assert info["role"] == "reward" and info["step"] == 1
    assert np.array_equal(engine.call("score", {"prompts": PROMPTS}, batch)[1]["scores"], scores)


def test_bad_states_are_refused_and_the_engine_keeps_its_model(engine, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["Three."])
    _, before = engine.call("logprobs", {"prompts": PROMPTS}, rows([0], responses))
    with pytest.raises(EngineCallError) as err:
        engine.call("load_state", {"dir": tiny_dir})  # a model directory, not a saved engine state
    assert err.value.type == "RangeError" and err.value.field == "args.dir" and "sophia_engine.json" in err.value.message
    engine.call("save", {"dir": str(tmp_path / "s")})
    (tmp_path / "s" / "sophia_optimizer.safetensors").write_bytes(b"truncated")
    with pytest.raises(EngineCallError) as err:
        engine.call("load_state", {"dir": str(tmp_path / "s")})
    assert err.value.field == "args.dir" and "sophia_optimizer.safetensors" in err.value.message
    with pytest.raises(EngineCallError) as err:
        engine.call("save", {"dir": str(tmp_path / "s")})  # not empty
    assert err.value.field == "args.dir"
    _, after = engine.call("logprobs", {"prompts": PROMPTS}, rows([0], responses))
    assert np.array_equal(before["logprobs"], after["logprobs"])
