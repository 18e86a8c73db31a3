"""A text-only causal LM (Qwen2.5-class `Qwen2ForCausalLM`, model_type qwen2) through the real engine process: the
tiny one `tiny_qwen --text-only` builds, every op as on the VLM, plain 1-D positions, image parts refused by name,
checkpoints that `AutoModelForCausalLM` + `AutoTokenizer` load. One engine process for the module."""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from conftest import ADAMW, IMAGES, answers, split, start_engine
from conftest import rows as conftest_rows
from sophia_torch.client import EngineCallError, EngineClient
from sophia_torch.tiny_qwen import CHAT_TEMPLATE, build, build_tokenizer, main

# Text prompts only: strings and lists of text parts (a list is joined into one string for the model's template).
PROMPTS = [
    {"messages": [{"role": "user", "content": "How many red circles are there?"}]},
    {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [{"type": "text", "text": "What color "}, {"type": "text", "text": "is the shape?"}]},
        ]
    },
    {"messages": [{"role": "user", "content": "Count to three."}]},
]
GRPO = {"kind": "grpo", "clip_eps": 0.2, "kl_coef": 0.04, "entropy_coef": 1e-3, "temperature": 0.8}


def rows(prompt_index: list[int], responses: list[list[int]], **extra: np.ndarray) -> dict[str, np.ndarray]:
    return conftest_rows(prompt_index, responses, images=False, **extra)


def plain_logits(model_dir: str, index: list[int], responses: list[list[int]], dtype=torch.float32) -> torch.Tensor:
    """(N, V) logits that predict each response token, from plain transformers (AutoModelForCausalLM +
    AutoTokenizer), row by row, no padding, the model's own default positions: the reference for the engine."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    assert type(model).__name__ == "Qwen2ForCausalLM"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    out = []
    for p, response in zip(index, responses):
        messages = [{**m, "content": m["content"] if isinstance(m["content"], str) else "".join(x["text"] for x in m["content"])} for m in PROMPTS[p]["messages"]]
        ids = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out.append(model(input_ids=torch.tensor([ids + response])).logits[0, len(ids) - 1 : len(ids) - 1 + len(response)])
    return torch.cat(out)


def picked(logp: torch.Tensor, responses: list[list[int]]) -> torch.Tensor:
    targets = torch.tensor([t for r in responses for t in r])
    return logp[torch.arange(len(targets)), targets]


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build(tmp_path_factory.mktemp("tiny-text") / "model", seed=0, text_only=True))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineClient]:
    client = start_engine(tmp_path_factory.mktemp("logs"), "text-only")
    yield client
    client.close()


def test_the_builder_writes_a_qwen2_causal_lm_with_the_vlm_tokenizer(text_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(text_dir)
    tokenizer = AutoTokenizer.from_pretrained(text_dir)
    cfg = model.config
    assert type(model).__name__ == "Qwen2ForCausalLM" and cfg.model_type == "qwen2" and cfg.architectures == ["Qwen2ForCausalLM"]
    assert cfg.hidden_size == 64 and cfg.num_hidden_layers == 2 and cfg.hidden_size // cfg.num_attention_heads >= 32
    assert cfg.tie_word_embeddings  # as Qwen2.5-0.5B/1.5B/3B
    assert tokenizer.get_vocab() == build_tokenizer().get_vocab() and tokenizer.chat_template == CHAT_TEMPLATE
    assert cfg.vocab_size == len(tokenizer) and tokenizer.eos_token == "<|im_end|>"
    # Deterministic for a seed, from the command line too.
    assert main([str(tmp_path / "again"), "--text-only"]) == 0
    for f in sorted(Path(text_dir).iterdir()):
        assert (tmp_path / "again" / f.name).read_bytes() == f.read_bytes(), f.name


def test_load_sample_and_logprobs_agree_with_plain_transformers(engine, text_dir):
    info = engine.call("load", {"model_dir": text_dir})[0]["model"]
    assert info["architecture"] == "Qwen2ForCausalLM" and info["model_type"] == "qwen2"
    assert info["reads_images"] is False and info["image_token_id"] is None
    assert info["max_length"] == 4096 and info["vocab_size"] == info["tokenizer_size"] == 654
    result, out = engine.call("sample", {"prompts": PROMPTS, "n": 3, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "seed": 3})
    assert [s["prompt_index"] for s in result["samples"]] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    ids, _ = split(out)
    assert result["generated_tokens"] == sum(map(len, ids)) > 9
    index = [s["prompt_index"] for s in result["samples"]]
    # Sampled (left-padded prompts, KV cache) = teacher-forced (right-padded rows) = plain transformers, fp32.
    _, forced = engine.call("logprobs", {"prompts": PROMPTS}, rows(index, ids))
    assert np.abs(forced["logprobs"] - out["logprobs"]).max() <= 1e-5
    plain = picked(torch.log_softmax(plain_logits(text_dir, index, ids), -1), ids)
    assert np.abs(plain.numpy() - out["logprobs"]).max() <= 1e-5
    # prompt_lengths and tokenize: the tokenizer's own chat template, no special tokens added.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(text_dir)
    lengths = engine.call("prompt_lengths", {"prompts": PROMPTS})[0]["prompt_tokens"]
    assert lengths[0] == len(tokenizer.apply_chat_template(PROMPTS[0]["messages"], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    assert result["prompt_tokens"] == lengths
    assert engine.call("tokenize", {"texts": ["Three."]})[1]["ids"].tolist() == tokenizer.encode("Three.", add_special_tokens=False)


def test_sft_loss_falls_and_a_grpo_step_matches_a_direct_computation(engine, text_dir):
    engine.call("load", {"model_dir": text_dir})
    responses = answers(engine, ["There are 3 red circles.", "The shape is green.", "One two three."])
    losses = []
    for _ in range(5):
        r, _ = engine.call("train_step", {"prompts": PROMPTS, "loss": {"kind": "sft"}, **ADAMW}, rows([0, 1, 2], responses))
        assert r["finite"] and r["applied"]
        losses.append(r["loss"])
    assert losses[0] == pytest.approx(math.log(654), rel=0.05)
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.7 * losses[0], losses

    engine.call("load", {"model_dir": text_dir})
    sampled, out = engine.call("sample", {"prompts": PROMPTS, "n": 2, "temperature": 1.0, "max_new_tokens": 6, "seed": 7})
    index = [s["prompt_index"] for s in sampled["samples"]]
    ids, _ = split(out)
    total = sum(map(len, ids))
    rng = np.random.default_rng(0)
    old = (out["logprobs"] + rng.uniform(-0.4, 0.4, total)).astype(np.float32)
    ref = (out["logprobs"] + rng.uniform(-0.3, 0.3, total)).astype(np.float32)
    adv = rng.normal(0, 1, len(ids)).astype(np.float32)
    fb, _ = engine.call("forward_backward", {"prompts": PROMPTS, "loss": GRPO}, rows(index, ids, old_logprobs=old, ref_logprobs=ref, advantages=adv))
    assert engine.call("optim_step", ADAMW)[0]["applied"]
    # The same loss written out on plain transformers' float64 logits.
    logp = torch.log_softmax(plain_logits(text_dir, index, ids, torch.float64) / GRPO["temperature"], -1)
    new = picked(logp, ids)
    o, f = torch.from_numpy(old.astype(np.float64)), torch.from_numpy(ref.astype(np.float64))
    a = torch.from_numpy(adv.astype(np.float64)).repeat_interleave(torch.tensor([len(x) for x in ids]))
    ratio = torch.exp(torch.clamp(new - o, -10, 10))
    surrogate = torch.minimum(ratio * a, torch.clamp(ratio, 0.8, 1.2) * a)
    kl = torch.exp(f - new) - (f - new) - 1
    entropy = -(logp.exp() * logp).sum(-1)
    loss = (-surrogate + GRPO["kl_coef"] * kl - GRPO["entropy_coef"] * entropy).mean()
    assert fb["finite"] and fb["metrics"]["tokens"] == total
    assert 0 < fb["metrics"]["clip_fraction"] < 1
    assert fb["loss"] == pytest.approx(float(loss), rel=1e-5, abs=1e-7)
    assert fb["metrics"]["kl"] == pytest.approx(float(kl.mean()), rel=1e-5, abs=1e-7)
    assert fb["metrics"]["entropy"] == pytest.approx(float(entropy.mean()), rel=1e-5, abs=1e-7)


def test_reward_scores_train_and_a_reward_model_from_a_policy_state(engine, text_dir, tmp_path):
    engine.call("load", {"model_dir": text_dir, "role": "reward", "seed": 3})
    responses = answers(engine, ["There are 3 red circles.", "Four.", "The shape is green.", "One two three."])
    batch = rows([0, 0, 1, 2], responses)
    targets = np.array([1.0, 0.0, 1.0, 0.5], dtype=np.float32)
    scores = engine.call("score", {"prompts": PROMPTS}, batch)[1]["scores"]
    assert scores.shape == (4,) and np.all((scores > 0) & (scores < 1))
    losses = []
    for _ in range(8):
        r, _ = engine.call("train_step", {"prompts": PROMPTS, "loss": {"kind": "rm"}, **ADAMW, "lr": 1e-3}, {**batch, "score_targets": targets})
        losses.append(r["loss"])
    assert losses[0] == pytest.approx(float(np.mean((scores.astype(np.float64) - targets) ** 2)), rel=1e-6)
    assert losses[-1] < 0.5 * losses[0], losses
    # A policy's state as a reward model: its backbone, a head from the seed.
    engine.call("load", {"model_dir": text_dir})
    engine.call("save", {"dir": str(tmp_path / "policy")})
    info = engine.call("load_state", {"dir": str(tmp_path / "policy"), "reward_from_policy": True, "seed": 3})[0]["model"]
    assert info["role"] == "reward" and info["step"] == 0 and info["architecture"] == "Qwen2ForCausalLM"
    assert np.array_equal(engine.call("score", {"prompts": PROMPTS}, batch)[1]["scores"], scores)


def test_save_loads_in_plain_transformers_and_load_state_continues(engine, text_dir, tmp_path):
    engine.call("load", {"model_dir": text_dir})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    batch = rows([0, 1, 2], responses)
    for _ in range(2):
        engine.call("train_step", {"prompts": PROMPTS, "loss": {"kind": "sft"}, **ADAMW}, batch)
    saved = engine.call("save", {"dir": str(tmp_path / "ckpt")})[0]
    assert saved["step"] == 2 and {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(saved["files"])
    _, ours = engine.call("logprobs", {"prompts": PROMPTS}, batch)
    plain = picked(torch.log_softmax(plain_logits(str(tmp_path / "ckpt"), [0, 1, 2], responses), -1), responses)  # no Sophia code
    assert np.abs(plain.numpy() - ours["logprobs"]).max() <= 1e-5
    # Two more steps, then back to the saved state: the same step and outputs, and the same next step.
    after = [engine.call("train_step", {"prompts": PROMPTS, "loss": {"kind": "sft"}, **ADAMW}, batch)[0]["loss"] for _ in range(2)]
    info = engine.call("load_state", {"dir": str(tmp_path / "ckpt")})[0]["model"]
    assert info["step"] == 2 and info["base_model_dir"] == text_dir and info["architecture"] == "Qwen2ForCausalLM"
    assert np.array_equal(engine.call("logprobs", {"prompts": PROMPTS}, batch)[1]["logprobs"], ours["logprobs"])
    again = [engine.call("train_step", {"prompts": PROMPTS, "loss": {"kind": "sft"}, **ADAMW}, batch)[0]["loss"] for _ in range(2)]
    assert again == after


def test_an_image_part_is_refused_naming_the_part(engine, text_dir):
    engine.call("load", {"model_dir": text_dir})
    responses = answers(engine, ["Three."])
    batch = rows([0], responses)
    _, before = engine.call("logprobs", {"prompts": PROMPTS[:1]}, batch)
    with_image = [{"messages": [{"role": "user", "content": [{"type": "text", "text": "Count them."}, {"type": "image", "tensor": "red"}]}]}]
    for op, args, tensors in (
        ("sample", {"prompts": with_image, "max_new_tokens": 2}, IMAGES),
        ("logprobs", {"prompts": with_image}, {**batch, **IMAGES}),
        ("prompt_lengths", {"prompts": with_image}, IMAGES),
        ("forward_backward", {"prompts": with_image, "loss": {"kind": "sft"}}, {**batch, **IMAGES}),
    ):
        with pytest.raises(EngineCallError) as err:
            engine.call(op, args, tensors)
        assert err.value.type == "RangeError" and err.value.field == "args.prompts[0].messages[0].content[1]", op
        assert "Qwen2ForCausalLM" in err.value.message and "reads no images" in err.value.message
    # Nothing was accumulated and the model is as it was.
    with pytest.raises(EngineCallError) as err:
        engine.call("optim_step", ADAMW)
    assert err.value.type == "StateError"
    assert np.array_equal(engine.call("logprobs", {"prompts": PROMPTS[:1]}, batch)[1]["logprobs"], before["logprobs"])


def test_a_text_model_without_a_chat_template_is_refused_naming_the_directory(engine, text_dir, tmp_path):
    bare = tmp_path / "no-template"
    shutil.copytree(text_dir, bare)
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(EngineCallError) as err:
        engine.call("load", {"model_dir": str(bare)})
    assert err.value.type == "RangeError" and err.value.field == "args.model_dir" and "no chat template" in err.value.message
    (bare / "config.json").write_text((bare / "config.json").read_text().replace('"qwen2"', '"llama"'))
    with pytest.raises(EngineCallError) as err:
        engine.call("load", {"model_dir": str(bare)})
    assert err.value.field == "args.model_dir" and "model_type 'llama' is not supported" in err.value.message and "'qwen2'" in err.value.message
