"""Offloaded models: weights in host memory, streamed to the device for each forward (here the device is the CPU,
so the mechanism runs — the weights sit on the meta device between forwards — and the outputs must not change)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import ADAMW, PROMPTS, answers, rows
from sophia_torch.client import EngineCallError

INDEX = [0, 1, 2]
LORA = {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def trained_state(engine, tiny_dir, path, **load) -> list[list[int]]:
    engine.call("load", {"model_dir": tiny_dir, "seed": 1, **load})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    for _ in range(2):
        engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, rows(INDEX, responses))
        engine.call("optim_step", {**ADAMW, "lr": 5e-2})
    engine.call("save", {"dir": str(path)})
    return responses


def test_an_offloaded_reference_gives_the_same_logprobs_saves_and_refuses_to_train(engine, tiny_dir, tmp_path):
    responses = trained_state(engine, tiny_dir, tmp_path / "policy")
    _, plain = engine.call("logprobs", {"prompts": PROMPTS}, rows(INDEX, responses))
    info = engine.call("load_state", {"dir": str(tmp_path / "policy"), "fresh_optimizer": True, "offload": True})[0]["model"]
    assert info["offloaded"] is True and info["trainable_parameters"] == 0
    _, offloaded = engine.call("logprobs", {"prompts": PROMPTS}, rows(INDEX, responses))
    np.testing.assert_allclose(offloaded["logprobs"], plain["logprobs"], rtol=0, atol=1e-6)
    for op, args in (("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}), ("optim_step", ADAMW)):
        with pytest.raises(EngineCallError) as err:
            engine.call(op, args, rows(INDEX, responses) if op == "forward_backward" else None)
        assert err.value.type == "StateError" and "offloaded" in str(err.value)
    # Its save (what the engine pool spills) is the model's weights: loaded plainly, the same logprobs.
    engine.call("save", {"dir": str(tmp_path / "spilled")})
    engine.call("load_state", {"dir": str(tmp_path / "spilled"), "fresh_optimizer": True})
    _, back = engine.call("logprobs", {"prompts": PROMPTS}, rows(INDEX, responses))
    np.testing.assert_allclose(back["logprobs"], plain["logprobs"], rtol=0, atol=1e-6)


def test_an_offloaded_reward_model_scores_as_before(engine, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir, "role": "reward", "seed": 3})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    engine.call("save", {"dir": str(tmp_path / "rm")})
    _, plain = engine.call("score", {"prompts": PROMPTS}, rows(INDEX, responses))
    engine.call("load_state", {"dir": str(tmp_path / "rm"), "offload": True})
    _, offloaded = engine.call("score", {"prompts": PROMPTS}, rows(INDEX, responses))
    np.testing.assert_allclose(offloaded["scores"], plain["scores"], rtol=0, atol=1e-6)


def test_an_offloaded_lora_state_has_its_adapter_folded_in(engine, tiny_dir, tmp_path):
    responses = trained_state(engine, tiny_dir, tmp_path / "lora", lora=LORA)
    _, plain = engine.call("logprobs", {"prompts": PROMPTS}, rows(INDEX, responses))
    info = engine.call("load_state", {"dir": str(tmp_path / "lora"), "offload": True})[0]["model"]
    assert info["offloaded"] is True and info["lora"] is None
    _, offloaded = engine.call("logprobs", {"prompts": PROMPTS}, rows(INDEX, responses))
    np.testing.assert_allclose(offloaded["logprobs"], plain["logprobs"], rtol=0, atol=1e-5)


def test_offload_is_refused_for_models_that_train(engine, tiny_dir, tmp_path):
    trained_state(engine, tiny_dir, tmp_path / "policy")
    with pytest.raises(EngineCallError) as err:
        engine.call("load_state", {"dir": str(tmp_path / "policy"), "reward_from_policy": True, "offload": True})
    assert err.value.field == "args.offload"
    with pytest.raises(EngineCallError) as err:
        engine.call("load", {"model_dir": tiny_dir, "lora": LORA, "offload": True})
    assert err.value.field == "args.lora" and "offloaded" in str(err.value)
