"""The Qwen2-VL family (Qwen2VLForConditionalGeneration, its own vision tower and processor) through the engine:
sampling with images whose logprobs are plain transformers' and the engine's teacher forcing, SFT that lowers the
loss, an exact resume in a new process, and a checkpoint that plain transformers loads."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ADAMW, IMAGES, PROMPTS, answers, rows, split
from reference import batch_logits, load_plain
from sophia_torch.tiny_qwen import build


@pytest.fixture(scope="module")
def qwen2_vl(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build(tmp_path_factory.mktemp("qwen2-vl") / "model", seed=0, qwen2_vl=True))


def plain_logprobs(model_dir: str, index: list[int], responses: list[list[int]]) -> np.ndarray:
    model, processor = load_plain(model_dir, torch.float32)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    targets = torch.tensor([t for r in responses for t in r])
    with torch.no_grad():
        logits = batch_logits(model, processor, PROMPTS, IMAGES, index, responses)
    return torch.log_softmax(logits, -1)[torch.arange(len(targets)), targets].numpy()


def test_samples_and_logprobs_are_the_models_own(engine, qwen2_vl):
    info = engine.call("load", {"model_dir": qwen2_vl})[0]["model"]
    assert info["model_type"] == "qwen2_vl" and info["architecture"] == "Qwen2VLForConditionalGeneration" and info["reads_images"]
    result, out = engine.call("sample", {"prompts": PROMPTS, "n": 2, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "seed": 5}, IMAGES)
    ids, _ = split(out)
    index = [s["prompt_index"] for s in result["samples"]]
    assert not any(t in info["suppressed_token_ids"] for seq in ids for t in seq)
    _, forced = engine.call("logprobs", {"prompts": PROMPTS}, rows(index, ids))
    assert np.abs(forced["logprobs"] - out["logprobs"]).max() <= 1e-5
    assert np.abs(plain_logprobs(qwen2_vl, index, ids) - out["logprobs"]).max() <= 1e-5


def test_sft_resumes_exactly_and_its_checkpoint_loads_in_plain_transformers(engine, spawn, qwen2_vl, tmp_path):
    engine.call("load", {"model_dir": qwen2_vl})
    responses = answers(engine, ["There are 3 red circles.", "The shape is green.", "One two three."])

    def step(client) -> float:
        loss = client.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, rows([0, 1, 2], responses))[0]["loss"]
        assert client.call("optim_step", {**ADAMW, "lr": 1e-2})[0]["applied"]
        return loss

    losses = [step(engine) for _ in range(4)]
    assert losses[-1] < losses[0]
    engine.call("save", {"dir": str(tmp_path / "uninterrupted")})

    engine.call("load", {"model_dir": qwen2_vl})
    for _ in range(2):
        step(engine)
    engine.call("save", {"dir": str(tmp_path / "at-2")})
    second = spawn("qwen2-vl")
    second.call("load_state", {"dir": str(tmp_path / "at-2")})
    for _ in range(2):
        step(second)
    second.call("save", {"dir": str(tmp_path / "resumed")})
    for name in ("model.safetensors", "sophia_optimizer.safetensors", "sophia_rng.safetensors"):
        a, b = load_file(tmp_path / "uninterrupted" / name), load_file(tmp_path / "resumed" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name

    _, ours = second.call("logprobs", {"prompts": PROMPTS}, rows([0, 1, 2], responses))
    assert np.abs(plain_logprobs(str(tmp_path / "resumed"), [0, 1, 2], responses) - ours["logprobs"]).max() <= 1e-5
