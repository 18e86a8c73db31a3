"""Sampling through the real engine process: text, ids, logprobs that equal teacher forcing, seeds, stops."""
from __future__ import annotations

import numpy as np
import torch

from conftest import IMAGES, PROMPTS, rows, split
from reference import batch_logits, load_plain


def sample(engine, **args):
    settings = {"prompts": PROMPTS, "n": 3, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 16, "seed": 11, **args}
    return engine.call("sample", settings, IMAGES)


def test_samples_with_images_have_text_ids_and_logprobs_equal_to_teacher_forcing(engine, tiny_dir):
    info = engine.call("load", {"model_dir": tiny_dir})[0]["model"]
    result, out = sample(engine)
    samples = result["samples"]
    assert [s["prompt_index"] for s in samples] == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # prompt-major
    ids, lps = split(out)
    assert result["generated_tokens"] == sum(len(x) for x in ids) == out["logprobs"].shape[0]
    eos = set(info["eos_token_ids"])
    for s, toks in zip(samples, ids):
        assert 1 <= len(toks) <= 16
        assert s["finish_reason"] in ("eos", "length") and s["stopped"] == (s["finish_reason"] == "eos")
        assert (toks[-1] in eos) == (s["finish_reason"] == "eos") and not any(t in eos for t in toks[:-1])
        assert isinstance(s["text"], str)
    # The sampler's logprob of each token is the teacher-forced one (fp32 on CPU, prompts of different lengths
    # left-padded together while sampling, right-padded when scored).
    _, forced = engine.call("logprobs", {"prompts": PROMPTS, "temperature": 1.0}, rows([s["prompt_index"] for s in samples], ids))
    diff = np.abs(forced["logprobs"] - out["logprobs"])
    assert diff.max() <= 1e-5, diff.max()
    # And both are the model's own: plain transformers, one row at a time, its own M-RoPE positions.
    model, processor = load_plain(tiny_dir, torch.float32)
    with torch.no_grad():
        plain = torch.log_softmax(batch_logits(model, processor, PROMPTS, IMAGES, [s["prompt_index"] for s in samples], ids), -1)
    targets = torch.tensor([t for x in ids for t in x])
    plain_lp = plain[torch.arange(len(targets)), targets].numpy()
    assert np.abs(plain_lp - out["logprobs"]).max() <= 1e-5


def test_temperature_scales_the_logprobs(engine, tiny_dir):
    engine.call("load", {"model_dir": tiny_dir})
    result, out = sample(engine, temperature=0.7, top_p=0.9, n=2)
    ids, _ = split(out)
    _, forced = engine.call("logprobs", {"prompts": PROMPTS, "temperature": 0.7}, rows([s["prompt_index"] for s in result["samples"]], ids))
    assert np.abs(forced["logprobs"] - out["logprobs"]).max() <= 1e-5


def test_seeds_make_sampling_reproducible(engine, tiny_dir):
    engine.call("load", {"model_dir": tiny_dir})
    a = sample(engine, seed=5)
    b = sample(engine, seed=5)
    c = sample(engine, seed=6)
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in ("token_ids", "logprobs", "lengths"))
    assert not np.array_equal(a[1]["token_ids"], c[1]["token_ids"])
    # A fresh load of the same model gives the same samples (no hidden state in the sampler).
    engine.call("load", {"model_dir": tiny_dir})
    d = sample(engine, seed=5)
    assert np.array_equal(a[1]["token_ids"], d[1]["token_ids"])


def test_vision_tokens_are_never_sampled(engine, tiny_dir):
    info = engine.call("load", {"model_dir": tiny_dir})[0]["model"]
    suppressed = set(info["suppressed_token_ids"])
    assert info["image_token_id"] in suppressed
    # A flat distribution samples every token eventually: 12 rows × 64 tokens at temperature 5 (unsuppressed,
    # the 5 vision tokens would come up ~6 times).
    _, out = sample(engine, temperature=5.0, n=4, max_new_tokens=64)
    assert out["token_ids"].shape[0] > 500
    assert not suppressed & set(out["token_ids"].tolist())


def test_greedy_and_stop_strings(engine, tiny_dir):
    engine.call("load", {"model_dir": tiny_dir})
    greedy, out = sample(engine, temperature=0.0, n=1, max_new_tokens=8)
    again, out2 = sample(engine, temperature=0.0, n=1, max_new_tokens=8, seed=99)
    assert np.array_equal(out["token_ids"], out2["token_ids"])  # greedy ignores the seed
    ids, _ = split(out)
    # Greedy logprobs are under the untempered distribution.
    _, forced = engine.call("logprobs", {"prompts": PROMPTS, "temperature": 1.0}, rows([0, 1, 2], ids))
    assert np.abs(forced["logprobs"] - out["logprobs"]).max() <= 1e-5
    # A stop string that the first row's greedy text first contains after its 3rd token ends that row there.
    def text(k: int) -> str:
        return engine.call("sample", {"prompts": PROMPTS[:1], "n": 1, "temperature": 0.0, "max_new_tokens": k}, IMAGES)[0]["samples"][0]["text"]

    stop = text(3)
    assert stop and stop not in text(2)
    result, stop_out = engine.call("sample", {"prompts": PROMPTS[:1], "n": 1, "temperature": 0.0, "max_new_tokens": 8, "stop": [stop]}, IMAGES)
    assert split(stop_out)[0][0] == ids[0][:3]
    assert result["samples"][0]["finish_reason"] == "stop" and result["samples"][0]["stopped"]
    assert result["samples"][0]["text"] == stop
