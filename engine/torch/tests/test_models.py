"""Several models in one engine process: each its own state and RNG, as if it ran alone; unload frees one."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ADAMW, PROMPTS, answers, rows
from sophia_torch.client import EngineCallError

LORA = {"rank": 4, "alpha": 8, "dropout": 0.2, "target_modules": ["q_proj", "v_proj"]}


def step(engine, responses, model=None) -> None:
    engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, rows([0, 1, 2], responses), model=model)
    assert engine.call("optim_step", {**ADAMW, "lr": 5e-2}, model=model)[0]["applied"]


def state(directory: Path) -> dict[str, torch.Tensor]:
    return {f"{f.name}:{k}": v for f in sorted(directory.glob("*.safetensors")) for k, v in load_file(f).items()}


def test_two_models_interleaved_in_one_process_train_as_each_would_alone(spawn, tiny_dir, tmp_path):
    # Dropout in the adapters draws from the torch RNG on every training forward: interleaving the two models'
    # steps must not change what either draws.
    alone = spawn("alone")
    alone.call("load", {"model_dir": tiny_dir, "lora": LORA, "seed": 1})
    responses = answers(alone, ["Three.", "Green.", "One two three."])
    for _ in range(3):
        step(alone, responses)
    alone.call("save", {"dir": str(tmp_path / "a-alone")})
    alone.call("load", {"model_dir": tiny_dir, "lora": LORA, "seed": 2})
    for _ in range(3):
        step(alone, responses)
    alone.call("save", {"dir": str(tmp_path / "b-alone")})

    shared = spawn("shared")
    shared.call("load", {"model_dir": tiny_dir, "lora": LORA, "seed": 1}, model="a")
    shared.call("load", {"model_dir": tiny_dir, "lora": LORA, "seed": 2}, model="b")
    assert shared.call("hello")[0]["models"] == ["a", "b"]
    for _ in range(3):
        step(shared, responses, model="a")
        step(shared, responses, model="b")
    shared.call("save", {"dir": str(tmp_path / "a-shared")}, model="a")
    shared.call("save", {"dir": str(tmp_path / "b-shared")}, model="b")
    for who in ("a", "b"):
        x, y = state(tmp_path / f"{who}-alone"), state(tmp_path / f"{who}-shared")
        assert x.keys() == y.keys()
        assert not [k for k in x if not torch.equal(x[k], y[k])], who
    assert not torch.equal(state(tmp_path / "a-shared")["sophia_rng.safetensors:rng.cpu"], state(tmp_path / "b-shared")["sophia_rng.safetensors:rng.cpu"])


def test_unload_drops_one_model_and_keeps_the_others(spawn, tiny_dir):
    engine = spawn("unload")
    engine.call("load", {"model_dir": tiny_dir}, model="policy")
    engine.call("load", {"model_dir": tiny_dir, "role": "reward"}, model="rm")
    assert engine.call("unload", model="rm")[0]["models"] == ["policy"]
    with pytest.raises(EngineCallError) as err:
        engine.call("score", {"prompts": PROMPTS}, rows([0], [[1, 2]]), model="rm")
    assert err.value.type == "StateError"  # a new, empty model of that name
    assert engine.call("hello", model="policy")[0]["model"]["role"] == "policy"
    with pytest.raises(EngineCallError) as err:
        engine.call("hello", model="no spaces allowed")
    assert err.value.field == "model"
