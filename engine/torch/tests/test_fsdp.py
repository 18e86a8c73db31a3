"""Training across processes (distributed.py): torchrun with 2 gloo processes on CPU, the policy sharded with FSDP2,
against one process on the same requests. Sharded and unsharded training give the same losses, metrics, logprobs
and samples (fp32 and fp64, ≤ 1e-6 relative) and the same saved weights (fp64: ≤ 1e-6 relative, element by element;
fp32: ≤ 1e-4 relative per tensor), and a sharded state resumes in one process (and back).

Why not fp32 weights element by element: the ranks add their parts of each gradient in another order than one
process does, a difference of float rounding (the losses and gradient norms agree to ~1e-6), and AdamW divides each
gradient element by its own running magnitude, so where a gradient is mathematically zero and only rounding noise
remains (the attention key bias: softmax ignores a constant shift of the keys) the update is ±lr times noise's sign
in either layout. In float64 that noise is ~1e-17 against AdamW's eps 1e-8, and the weights agree to ≤ 1e-6.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ADAMW, IMAGES, PROMPTS, rows, split
from sophia_torch.client import EngineCallError, EngineClient

SEED = 4


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):
    logs = tmp_path_factory.mktemp("fsdp-logs")
    one = EngineClient(python=sys.executable, args=("--threads", "1"), stderr=open(logs / "one.stderr", "wb"))
    two = EngineClient(python=sys.executable, args=("--threads", "1"), stderr=open(logs / "two.stderr", "wb"), processes=2)
    yield one, two
    for c in (one, two):
        c.close()


def both(pair, op, args=None, tensors=None):
    return [c.call(op, args, tensors) for c in pair]


def close(a: float, b: float, rel: float = 1e-6) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def close_norm(a: float, b: float) -> bool:
    """Gradient norms: sums over every weight, accumulated in another order when the ranks' parts are added (1.3e-6
    relative seen after 4 steps)."""
    return close(a, b, 1e-5)


def batch(engine, n_rows: int):
    """n_rows (prompt, response) rows over PROMPTS (with their images): responses sampled once, by `engine`."""
    result, out = engine.call("sample", {"prompts": PROMPTS, "n": 3, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 10, "seed": 7}, IMAGES)
    ids, lps = split(out)
    index = [s["prompt_index"] for s in result["samples"]][:n_rows]
    return index, ids[:n_rows], np.concatenate(lps[:n_rows]).astype(np.float32)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sharded_training_matches_one_process(pair, tiny_dir, tmp_path: Path, dtype: str):
    one, two = pair
    infos = both(pair, "load", {"model_dir": tiny_dir, "seed": SEED, "dtype": dtype})
    assert infos[0][0]["model"]["parameters"] == infos[1][0]["model"]["parameters"]
    # Sampling: every rank decodes the whole batch; the same tokens and logprobs as one process.
    (ra, oa), (rb, ob) = both(pair, "sample", {"prompts": PROMPTS, "n": 2, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, "seed": 3}, IMAGES)
    assert np.array_equal(oa["token_ids"], ob["token_ids"]) and np.allclose(oa["logprobs"], ob["logprobs"], atol=1e-6)

    # 7 rows over 2 ranks (blocks of 3 and 4): SFT steps, then a GRPO step, then logprobs.
    index, responses, old = batch(one, 7)
    tensors = rows(index, responses)
    for _ in range(3):
        (fa, _), (fb, _) = both(pair, "forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, tensors)
        assert close(fa["loss"], fb["loss"]) and fa["metrics"]["tokens"] == fb["metrics"]["tokens"]
        (sa, _), (sb, _) = both(pair, "optim_step", ADAMW)
        assert sa["applied"] and sb["applied"] and close_norm(sa["grad_norm"], sb["grad_norm"])
    spec = {"kind": "grpo", "clip_eps": 0.2, "kl_coef": 0.05, "entropy_coef": 0.01, "temperature": 1.0}
    adv = np.linspace(-1, 1, len(index)).astype(np.float32)
    grpo = rows(index, responses, old_logprobs=old, ref_logprobs=old - 0.01, advantages=adv)
    (fa, _), (fb, _) = both(pair, "forward_backward", {"prompts": PROMPTS, "loss": spec}, grpo)
    assert close(fa["loss"], fb["loss"])
    for k, v in fa["metrics"].items():
        assert close(v, fb["metrics"][k]), (k, v, fb["metrics"][k])
    (sa, _), (sb, _) = both(pair, "optim_step", ADAMW)
    assert close_norm(sa["grad_norm"], sb["grad_norm"])
    (_, la), (_, lb) = both(pair, "logprobs", {"prompts": PROMPTS, "temperature": 1.0}, tensors)
    assert la["logprobs"].shape == lb["logprobs"].shape and np.abs(la["logprobs"] - lb["logprobs"]).max() <= 1e-5

    # Saved states: the same weights and moments (the sharded one gathered whole by rank 0).
    a, b = tmp_path / "one", tmp_path / "two"
    one.call("save", {"dir": str(a)})
    saved = two.call("save", {"dir": str(b)})[0]
    assert "model.safetensors" in saved["files"]
    for name in ("model.safetensors", "sophia_optimizer.safetensors"):
        wa, wb = load_file(a / name), load_file(b / name)
        assert wa.keys() == wb.keys()
        for k in wa:
            x, y = wa[k].double(), wb[k].double()
            if dtype == "float64":
                assert torch.allclose(x, y, rtol=1e-6, atol=1e-6 * max(1e-3, float(x.abs().max()))), k
            elif name == "model.safetensors":
                assert float((x - y).norm()) <= 1e-4 * max(float(x.norm()), 1e-6), k

    # Resuming across layouts: the one-process state in two processes and the sharded state in one give the same step.
    for client, state in ((one, b), (two, a)):
        client.call("load_state", {"dir": str(state)})
    (fa, _), (fb, _) = both(pair, "forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, tensors)
    assert close(fa["loss"], fb["loss"])
    (sa, _), (sb, _) = both(pair, "optim_step", ADAMW)
    assert close_norm(sa["grad_norm"], sb["grad_norm"]) and sa["step"] == sb["step"] == 5


def test_a_batch_smaller_than_the_world_and_refusals(pair, tiny_dir):
    one, two = pair
    both(pair, "load", {"model_dir": tiny_dir, "seed": SEED})
    index, responses, _ = batch(one, 1)  # one row: the second rank computes a stand-in with no weight
    tensors = rows(index, responses)
    (fa, _), (fb, _) = both(pair, "forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, tensors)
    assert close(fa["loss"], fb["loss"])
    (sa, _), (sb, _) = both(pair, "optim_step", ADAMW)
    assert close_norm(sa["grad_norm"], sb["grad_norm"])
    (_, la), (_, lb) = both(pair, "logprobs", {"prompts": PROMPTS}, tensors)
    assert la["logprobs"].shape == lb["logprobs"].shape == (len(responses[0]),)
    # A refusal is every rank's (the same checks on the whole batch): the engine goes on serving.
    with pytest.raises(EngineCallError, match="prompt_index"):
        two.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, rows([9], responses))
    with pytest.raises(EngineCallError, match="args.rollout.tensor_parallel"):
        two.call("load", {"model_dir": tiny_dir, "rollout": {"backend": "vllm", "tensor_parallel": 4}})
    assert two.call("load", {"model_dir": tiny_dir, "seed": SEED})[0]["model"]["step"] == 0


def test_rows_without_images_on_one_rank_while_the_other_has_some(pair, tiny_dir):
    """A rank's block may hold no image while another's does: it runs the vision tower on a stand-in (else the
    ranks' collectives would differ and the engine would hang). Training and logprobs agree with one process."""
    one, _ = pair
    both(pair, "load", {"model_dir": tiny_dir, "seed": SEED})
    _, responses, _ = batch(one, 4)
    tensors = rows([0, 1, 2, 2], responses)  # rank 0: rows with images; rank 1: two rows of the text-only prompt
    for _ in range(2):
        (fa, _), (fb, _) = both(pair, "forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, tensors)
        assert close(fa["loss"], fb["loss"])
        (sa, _), (sb, _) = both(pair, "optim_step", ADAMW)
        assert close_norm(sa["grad_norm"], sb["grad_norm"])
    (_, la), (_, lb) = both(pair, "logprobs", {"prompts": PROMPTS}, tensors)
    assert np.abs(la["logprobs"] - lb["logprobs"]).max() <= 1e-5


def test_a_sharded_lora_policy_trains_saves_and_holds_its_reference_like_one_process(pair, tiny_dir, tmp_path: Path):
    """LoRA under FSDP: the frozen base and the adapters are sharded alike; only the adapters train. The same losses,
    gradient norms and samples as one process; the saved state (base files + peft adapter) the same files and weights,
    and it loads in one process; a reference adapter loaded beside the policy's gives the saved policy's logprobs."""
    one, two = pair
    lora = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    infos = both(pair, "load", {"model_dir": tiny_dir, "seed": SEED, "lora": lora})
    assert infos[0][0]["model"]["trainable_parameters"] == infos[1][0]["model"]["trainable_parameters"] < 10_000
    index, responses, _ = batch(one, 5)
    tensors = rows(index, responses)
    for _ in range(3):
        (fa, _), (fb, _) = both(pair, "forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, tensors)
        assert close(fa["loss"], fb["loss"])
        (sa, _), (sb, _) = both(pair, "optim_step", ADAMW)
        assert close_norm(sa["grad_norm"], sb["grad_norm"])
    (_, oa), (_, ob) = both(pair, "sample", {"prompts": PROMPTS, "n": 2, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, "seed": 5}, IMAGES)
    assert np.array_equal(oa["token_ids"], ob["token_ids"]) and np.abs(oa["logprobs"] - ob["logprobs"]).max() <= 1e-5
    one.call("save", {"dir": str(tmp_path / "one")})
    two.call("save", {"dir": str(tmp_path / "two")})
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in ("model.safetensors", "adapter_model.safetensors"):
        a, b = load_file(tmp_path / "one" / name), load_file(tmp_path / "two" / name)
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)
    # The sharded state in one process: the same loss on the next step's batch.
    (_, pa), = [one.call("logprobs", {"prompts": PROMPTS}, tensors)]
    one.call("load_state", {"dir": str(tmp_path / "two")})
    (_, pb), = [one.call("logprobs", {"prompts": PROMPTS}, tensors)]
    assert np.abs(pa["logprobs"] - pb["logprobs"]).max() <= 1e-5
    # RL's reference beside a sharded policy: the saved state's adapter, frozen, while the policy trains on.
    two.call("load_reference", {"dir": str(tmp_path / "two")})
    two.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, tensors)
    assert two.call("optim_step", ADAMW)[0]["applied"]
    _, ref = two.call("logprobs", {"prompts": PROMPTS, "adapter": "reference"}, tensors)
    _, own = two.call("logprobs", {"prompts": PROMPTS}, tensors)
    assert np.abs(ref["logprobs"] - pb["logprobs"]).max() <= 1e-5
    assert np.abs(own["logprobs"] - pb["logprobs"]).max() > 1e-4  # the policy moved on; its reference did not
