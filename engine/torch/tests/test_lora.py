"""LoRA: only the adapter trains, a LoRA state resumes exactly, plain transformers reads it, a reward model starts
from a LoRA policy, bad settings are refused by name."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ADAMW, IMAGES, PROMPTS, answers, rows
from reference import batch_logits, load_plain
from sophia_torch.client import EngineCallError

LORA = {"rank": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
INDEX = [0, 1, 2]


def train(engine, responses, steps: range) -> None:
    for s in steps:
        engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, rows(INDEX, responses))
        assert engine.call("optim_step", {**ADAMW, "lr": 5e-2 * (1 - s / 10)})[0]["applied"]


def weights(directory: Path, prefix: str = "model") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(directory.glob(f"{prefix}*.safetensors")):
        out.update(load_file(f))
    return out


def everything(directory: Path) -> dict[str, torch.Tensor]:
    return {f"{f.name}:{k}": v for f in sorted(directory.glob("*.safetensors")) for k, v in load_file(f).items()}


def test_only_the_adapter_trains_and_starts_as_the_base_model(engine, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["There are 3 red circles.", "The shape is green.", "One two three."])
    _, base = engine.call("logprobs", {"prompts": PROMPTS}, rows(INDEX, responses))
    full = engine.call("hello")[0]["model"]

    info = engine.call("load", {"model_dir": tiny_dir, "lora": LORA, "seed": 3})[0]["model"]
    assert info["lora"] == {**LORA, "alpha": 8.0}
    # A and B of q_proj and v_proj in each of the 2 decoder layers: rank · (in + out) each.
    assert 0 < info["trainable_parameters"] < full["trainable_parameters"] / 50
    _, start = engine.call("logprobs", {"prompts": PROMPTS}, rows(INDEX, responses))
    np.testing.assert_array_equal(start["logprobs"], base["logprobs"])  # B = 0: the adapter adds nothing yet

    train(engine, responses, range(3))
    _, after = engine.call("logprobs", {"prompts": PROMPTS}, rows(INDEX, responses))
    assert after["logprobs"].sum() > base["logprobs"].sum() + 1.0  # SFT on these responses made them likelier
    engine.call("save", {"dir": str(tmp_path / "s")})
    saved, original = weights(tmp_path / "s"), weights(Path(tiny_dir))
    assert saved.keys() == original.keys()  # the base model's own names, no peft wrapper names
    assert all(torch.equal(saved[k], original[k]) for k in original)  # the base weights did not move
    adapter = load_file(tmp_path / "s" / "adapter_model.safetensors")
    assert adapter and all(k.startswith("base_model.model.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in adapter)
    assert all(v.dtype == torch.float32 for v in adapter.values())
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in adapter.items())
    meta = json.loads((tmp_path / "s" / "sophia_engine.json").read_text())
    assert meta["lora"] == info["lora"] and all(".lora_" in n for n in meta["trainable"])
    assert json.loads((tmp_path / "s" / "adapter_config.json").read_text())["base_model_name_or_path"] is None


def test_a_lora_state_resumes_bit_for_bit_in_a_new_process(engine, spawn, tiny_dir, tmp_path):
    # dropout 0.1 draws from the RNG on every training forward: the state carries it.
    engine.call("load", {"model_dir": tiny_dir, "lora": LORA, "seed": 5})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    train(engine, responses, range(4))
    engine.call("save", {"dir": str(tmp_path / "uninterrupted")})

    engine.call("load", {"model_dir": tiny_dir, "lora": LORA, "seed": 5})
    train(engine, responses, range(2))
    engine.call("save", {"dir": str(tmp_path / "at-2")})
    second = spawn("second")
    info = second.call("load_state", {"dir": str(tmp_path / "at-2")})[0]["model"]
    assert info["step"] == 2 and info["lora"]["rank"] == 4
    train(second, responses, range(2, 4))
    second.call("save", {"dir": str(tmp_path / "resumed")})

    a, b = everything(tmp_path / "uninterrupted"), everything(tmp_path / "resumed")
    assert a.keys() == b.keys() and any(":adamw.exp_avg::" in k and ".lora_A." in k for k in a)
    assert not [k for k in a if not torch.equal(a[k], b[k])]  # adapter, moments, steps, RNG, base
    # The same state saved twice, from different processes and folders: the same bytes.
    for name in ("adapter_config.json", "sophia_engine.json"):
        assert (tmp_path / "uninterrupted" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes()


def test_plain_transformers_loads_a_lora_state_with_its_adapter(engine, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir, "lora": {**LORA, "dropout": 0.0}, "seed": 1})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    train(engine, responses, range(3))
    engine.call("save", {"dir": str(tmp_path / "s")})
    _, ours = engine.call("logprobs", {"prompts": PROMPTS}, rows(INDEX, responses))

    model, processor = load_plain(str(tmp_path / "s"), torch.float32)  # AutoModelForImageTextToText: base + adapter
    targets = torch.tensor([t for r in responses for t in r])
    with torch.no_grad():
        plain = torch.log_softmax(batch_logits(model, processor, PROMPTS, IMAGES, INDEX, responses), -1)[torch.arange(len(targets)), targets]
        model.disable_adapters()
        without = torch.log_softmax(batch_logits(model, processor, PROMPTS, IMAGES, INDEX, responses), -1)[torch.arange(len(targets)), targets]
    assert np.abs(plain.numpy() - ours["logprobs"]).max() <= 1e-5
    assert np.abs(without.numpy() - ours["logprobs"]).max() > 1e-3  # the adapter is what makes the difference


def test_a_reference_from_a_lora_state_gives_the_policys_logprobs(engine, spawn, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir, "lora": LORA, "seed": 1})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    train(engine, responses, range(2))
    engine.call("save", {"dir": str(tmp_path / "s")})
    _, policy = engine.call("logprobs", {"prompts": PROMPTS}, rows(INDEX, responses))
    # As the pipeline loads its reference: the policy's state, inference only (no AdamW moments read).
    ref = spawn("ref")
    info = ref.call("load_state", {"dir": str(tmp_path / "s"), "fresh_optimizer": True})[0]["model"]
    assert info["step"] == 0 and info["lora"]["rank"] == 4
    _, frozen = ref.call("logprobs", {"prompts": PROMPTS}, rows(INDEX, responses))
    np.testing.assert_array_equal(frozen["logprobs"], policy["logprobs"])


def test_a_reward_model_from_a_lora_policy_folds_the_adapter_in(engine, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir, "lora": {**LORA, "dropout": 0.0}, "seed": 1})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    train(engine, responses, range(2))
    engine.call("save", {"dir": str(tmp_path / "policy")})
    adapter = load_file(tmp_path / "policy" / "adapter_model.safetensors")
    base = weights(tmp_path / "policy")

    # Without args.lora: a fully trainable reward model whose backbone is the policy's weights with W + (alpha/r)·B·A.
    info = engine.call("load_state", {"dir": str(tmp_path / "policy"), "reward_from_policy": True, "seed": 2})[0]["model"]
    assert info["role"] == "reward" and info["lora"] is None
    engine.call("save", {"dir": str(tmp_path / "rm-full")})
    merged = weights(tmp_path / "rm-full")
    key = next(k for k in base if k.endswith("layers.0.self_attn.q_proj.weight"))
    # The adapter's names are the model's in memory (model.language_model.layers…), the base files' the checkpoint's.
    a = next(v for k, v in adapter.items() if k.endswith("layers.0.self_attn.q_proj.lora_A.weight"))
    b = next(v for k, v in adapter.items() if k.endswith("layers.0.self_attn.q_proj.lora_B.weight"))
    torch.testing.assert_close(merged[key], base[key] + (8 / 4) * b @ a, rtol=0, atol=1e-6)
    assert not torch.equal(merged[key], base[key])

    # With args.lora: the same backbone, frozen, and a fresh adapter and head that train.
    info = engine.call("load_state", {"dir": str(tmp_path / "policy"), "reward_from_policy": True, "seed": 2, "lora": LORA})[0]["model"]
    assert info["lora"]["rank"] == 4 and info["trainable_parameters"] < 10_000
    engine.call("save", {"dir": str(tmp_path / "rm-lora")})
    assert torch.equal(weights(tmp_path / "rm-lora")[key], merged[key])
    score_rows = rows(INDEX, responses, score_targets=np.array([1.0, 0.0, 1.0]))
    before = engine.call("score", {"prompts": PROMPTS}, score_rows)[1]["scores"]
    engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "rm"}}, score_rows)
    assert engine.call("optim_step", {**ADAMW, "lr": 5e-2})[0]["applied"]
    after = engine.call("score", {"prompts": PROMPTS}, score_rows)[1]["scores"]
    assert not np.array_equal(before, after)


@pytest.mark.parametrize(
    ("lora", "field", "message"),
    [
        ({**LORA, "rank": 0}, "args.lora.rank", "integer in [1, 4096]"),
        ({**LORA, "alpha": -1}, "args.lora.alpha", "> 0"),
        ({**LORA, "dropout": 1.0}, "args.lora.dropout", "[0, 1)"),
        ({**LORA, "target_modules": []}, "args.lora.target_modules", "non-empty list"),
        ({**LORA, "target_modules": ["no_such_proj"]}, "args.lora.target_modules", "matches no layer"),
        ({**LORA, "ranks": 4}, "args.lora.ranks", "not a LoRA setting"),
        ("yes", "args.lora", "must be an object"),
    ],
)
def test_bad_lora_settings_are_refused_by_name_and_keep_the_loaded_model(engine, tiny_dir, lora, field, message):
    engine.call("load", {"model_dir": tiny_dir})
    with pytest.raises(EngineCallError) as err:
        engine.call("load", {"model_dir": tiny_dir, "lora": lora})
    assert err.value.field == field and message in str(err.value)
    assert engine.call("hello")[0]["model"]["lora"] is None  # the model loaded before is still there


def test_a_reference_refuses_an_adapter(engine, tiny_dir):
    with pytest.raises(EngineCallError) as err:
        engine.call("load", {"model_dir": tiny_dir, "role": "reference", "lora": LORA})
    assert err.value.field == "args.lora" and "frozen" in str(err.value)


def test_a_reference_adapter_over_the_policys_own_base_gives_the_reference_states_logprobs(engine, spawn, tiny_dir, tmp_path):
    # SFT: an adapter trained on the base, saved (the RL reference); RL: the policy continues it and holds the SFT
    # adapter as a frozen second one.
    engine.call("load", {"model_dir": tiny_dir, "lora": {**LORA, "dropout": 0.0}, "seed": 1})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    train(engine, responses, range(3))
    engine.call("save", {"dir": str(tmp_path / "sft")})
    _, sft = engine.call("logprobs", {"prompts": PROMPTS}, rows(INDEX, responses))

    policy = spawn("policy")
    policy.call("load_state", {"dir": str(tmp_path / "sft")})
    with pytest.raises(EngineCallError) as err:
        policy.call("logprobs", {"prompts": PROMPTS, "adapter": "reference"}, rows(INDEX, responses))
    assert err.value.field == "args.adapter" and "load_reference" in str(err.value)
    # Only the state's metadata and adapter files are read: the rest need not be there.
    adapter_only = tmp_path / "sft-adapter"
    adapter_only.mkdir()
    for name in ("sophia_engine.json", "adapter_config.json", "adapter_model.safetensors"):
        (adapter_only / name).write_bytes((tmp_path / "sft" / name).read_bytes())
    info = policy.call("load_reference", {"dir": str(adapter_only)})[0]["model"]
    assert info["reference_adapter"] == str(adapter_only)
    trainable = info["trainable_parameters"]
    train(policy, responses, range(3, 5))
    assert policy.call("hello")[0]["model"]["trainable_parameters"] == trainable  # the reference adapter does not train
    _, ref = policy.call("logprobs", {"prompts": PROMPTS, "adapter": "reference"}, rows(INDEX, responses))
    _, own = policy.call("logprobs", {"prompts": PROMPTS}, rows(INDEX, responses))
    np.testing.assert_allclose(ref["logprobs"], sft["logprobs"], rtol=0, atol=1e-6)
    assert np.abs(own["logprobs"] - sft["logprobs"]).max() > 1e-3  # the policy moved on; its reference did not
    # A save holds the policy's own adapter only, and the reference adapter does not survive a load.
    policy.call("save", {"dir": str(tmp_path / "rl")})
    saved = load_file(tmp_path / "rl" / "adapter_model.safetensors")
    assert saved.keys() == load_file(tmp_path / "sft" / "adapter_model.safetensors").keys()
    assert not any(".reference." in k for k in everything(tmp_path / "rl"))
    assert policy.call("load_state", {"dir": str(tmp_path / "rl")})[0]["model"]["reference_adapter"] is None


def test_load_reference_refuses_another_base_and_a_policy_without_an_adapter(engine, tiny_dir, tmp_path):
    from sophia_torch.tiny_qwen import build

    other = str(build(tmp_path / "other", seed=7))
    engine.call("load", {"model_dir": other, "lora": LORA, "seed": 1})
    engine.call("save", {"dir": str(tmp_path / "other-state")})
    engine.call("load", {"model_dir": tiny_dir, "lora": LORA, "seed": 1})
    with pytest.raises(EngineCallError) as err:
        engine.call("load_reference", {"dir": str(tmp_path / "other-state")})
    assert err.value.field == "args.dir" and "another base model" in str(err.value)
    assert engine.call("hello")[0]["model"]["reference_adapter"] is None
    engine.call("load", {"model_dir": tiny_dir})
    with pytest.raises(EngineCallError) as err:
        engine.call("load_reference", {"dir": str(tmp_path / "other-state")})
    assert err.value.type == "StateError" and "LoRA policy" in str(err.value)
