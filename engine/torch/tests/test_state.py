"""Saving and loading: exact resume across processes, checkpoints that plain transformers loads."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from conftest import ADAMW, IMAGES, PROMPTS, answers, rows
from reference import batch_logits, load_plain
from sophia_torch.client import EngineCallError

N, K = 4, 2
SMALL = 64 << 10  # args.shard_bytes that splits the tiny model's state (1.6 MB of weights) into many files


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


def check_shards(directory: Path, shard_bytes: int) -> dict:
    """A state saved with args.shard_bytes: weights and AdamW moments in several files each, and no file bigger than
    shard_bytes except a safetensors file holding one tensor alone (a tensor bigger than a shard is a shard of its own)."""
    names = sorted(p.name for p in directory.iterdir())
    meta = json.loads((directory / "sophia_engine.json").read_text())
    weights = [n for n in names if re.fullmatch(r"model-\d{5}-of-\d{5}\.safetensors", n)]
    optimizer = [n for n in names if n.startswith("sophia_optimizer")]
    assert "model.safetensors" not in names and "model.safetensors.index.json" in names and len(weights) >= 2
    assert "sophia_rng.safetensors" in names and len(optimizer) >= 2
    assert optimizer == [f"sophia_optimizer-{i:05d}-of-{len(optimizer):05d}.safetensors" for i in range(1, len(optimizer) + 1)]
    assert meta["optimizer_files"] == optimizer and set(meta["files"]) == set(names) - {"sophia_engine.json"}
    alone = []
    for name in names:
        size = (directory / name).stat().st_size
        if size > shard_bytes:
            assert name.endswith(".safetensors"), (name, size)
            with safe_open(directory / name, "pt") as f:
                assert len(list(f.keys())) == 1, (name, size, list(f.keys()))
            alone.append(name)
    # The rule is exercised: the tiny model has tensors bigger than SMALL (its patch embedding, 301 KB), and files
    # with several tensors.
    assert any(n in alone for n in weights) and any(n in alone for n in optimizer)
    assert any(n not in alone for n in weights) and any(n not in alone for n in optimizer)
    return meta


@pytest.mark.parametrize("shard_bytes", [None, SMALL], ids=["one-file-each", "small-shards"])
def test_save_then_resume_in_a_new_process_equals_an_uninterrupted_run(engine, spawn, tiny_dir, tmp_path, shard_bytes):
    shards = {} if shard_bytes is None else {"shard_bytes": shard_bytes}
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["There are 3 red circles.", "The shape is green.", "One two three."])
    train(engine, responses, range(N))
    saved = engine.call("save", {"dir": str(tmp_path / "uninterrupted"), **shards})[0]
    assert saved["step"] == N

    # K steps from a new load (in this process, after the run above: a load leaves nothing of it), saved; a new
    # process continues from the directory alone.
    engine.call("load", {"model_dir": tiny_dir})
    train(engine, responses, range(K))
    files = engine.call("save", {"dir": str(tmp_path / "at-k"), **shards})[0]["files"]
    if shard_bytes is None:
        assert {"config.json", "model.safetensors", "sophia_engine.json", "sophia_optimizer.safetensors", "sophia_rng.safetensors", "tokenizer.json"} <= set(files)
    else:
        check_shards(tmp_path / "at-k", shard_bytes)

    second = spawn("second")
    info = second.call("load_state", {"dir": str(tmp_path / "at-k")})[0]["model"]
    assert info["step"] == K
    train(second, responses, range(K, N))
    second.call("save", {"dir": str(tmp_path / "resumed"), **shards})

    a, b = tensors_of(tmp_path / "uninterrupted"), tensors_of(tmp_path / "resumed")
    assert a.keys() == b.keys() and any(k.startswith("sophia_optimizer") and ":adamw.exp_avg::" in k for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different  # weights, AdamW moments and step counts, RNG: bit for bit
    # Not trivially: the weights did move from the initial model.
    init = {k.split(":", 1)[1]: v for k, v in tensors_of(Path(tiny_dir)).items()}
    weights = {k.split(":", 1)[1]: v for k, v in a.items() if k.startswith("model")}
    assert weights.keys() == init.keys()
    moved = [k for k in init if not torch.equal(init[k], weights[k])]
    assert moved


@pytest.mark.parametrize("shard_bytes", [None, SMALL], ids=["one-file", "small-shards"])
def test_a_checkpoint_loads_in_plain_transformers_with_the_same_logits(engine, tiny_dir, tmp_path, shard_bytes):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    train(engine, responses, range(2))
    engine.call("save", {"dir": str(tmp_path / "ckpt"), **({} if shard_bytes is None else {"shard_bytes": shard_bytes})})
    if shard_bytes is not None:
        assert json.loads((tmp_path / "ckpt" / "model.safetensors.index.json").read_text())["weight_map"]
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


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_the_same_state_saves_to_the_same_bytes_in_small_shards(engine, spawn, tiny_dir, tmp_path):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    train(engine, responses, range(2))
    for name in ("a", "b"):
        engine.call("save", {"dir": str(tmp_path / name), "shard_bytes": SMALL})
    check_shards(tmp_path / "a", SMALL)
    a = files_of(tmp_path / "a")
    assert files_of(tmp_path / "b") == a
    # Saved, loaded in a new process and saved again: the same files, byte for byte.
    other = spawn("other")
    other.call("load_state", {"dir": str(tmp_path / "a")})
    other.call("save", {"dir": str(tmp_path / "c"), "shard_bytes": SMALL})
    assert files_of(tmp_path / "c") == a


def trained_and_saved_in_shards(engine, tiny_dir: str, directory: Path) -> tuple[list[list[int]], dict, dict]:
    """The tiny model after one SFT step, saved in SMALL shards into `directory`: the responses, the logprobs before
    the save, and the state's sophia_engine.json."""
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    train(engine, responses, range(1))
    _, before = engine.call("logprobs", {"prompts": PROMPTS}, rows([0, 1, 2], responses))
    engine.call("save", {"dir": str(directory), "shard_bytes": SMALL})
    return responses, before, json.loads((directory / "sophia_engine.json").read_text())


def test_a_missing_or_unreadable_optimizer_shard_is_refused_naming_it(engine, tiny_dir, tmp_path):
    responses, before, meta = trained_and_saved_in_shards(engine, tiny_dir, tmp_path / "s")
    second = meta["optimizer_files"][1]
    assert second.startswith("sophia_optimizer-00002-of-")
    (tmp_path / "s" / second).unlink()
    with pytest.raises(EngineCallError) as err:
        engine.call("load_state", {"dir": str(tmp_path / "s")})
    assert err.value.type == "RangeError" and err.value.field == "args.dir" and second in err.value.message and "missing" in err.value.message
    # The same size, other bytes (not a safetensors file): named too.
    (tmp_path / "s" / second).write_bytes(b"x" * meta["files"][second])
    with pytest.raises(EngineCallError) as err:
        engine.call("load_state", {"dir": str(tmp_path / "s")})
    assert err.value.field == "args.dir" and second in err.value.message
    # sophia_engine.json naming an optimizer shard that its file list does not hold.
    (tmp_path / "s" / second).unlink()
    del meta["files"][second]
    (tmp_path / "s" / "sophia_engine.json").write_text(json.dumps(meta))
    with pytest.raises(EngineCallError) as err:
        engine.call("load_state", {"dir": str(tmp_path / "s")})
    assert err.value.field == "args.dir" and second in err.value.message
    _, after = engine.call("logprobs", {"prompts": PROMPTS}, rows([0, 1, 2], responses))
    assert np.array_equal(before["logprobs"], after["logprobs"])


def test_an_inference_only_load_reads_no_optimizer_file(engine, tiny_dir, tmp_path):
    """fresh_optimizer (how the reference, reward-scoring, evaluation and sampling engines load a checkpoint) needs
    the weights and the RNG, not the AdamW moments: a 7B policy's are ~60 GB. Shown by garbling every optimizer shard
    (same sizes): the inference-only load still gives the same logprobs; a full load is refused naming a shard."""
    responses, before, meta = trained_and_saved_in_shards(engine, tiny_dir, tmp_path / "s")
    assert len(meta["optimizer_files"]) > 1
    for name in meta["optimizer_files"]:
        (tmp_path / "s" / name).write_bytes(b"x" * meta["files"][name])
    with pytest.raises(EngineCallError) as err:
        engine.call("load_state", {"dir": str(tmp_path / "s")})
    assert err.value.field == "args.dir" and meta["optimizer_files"][0] in err.value.message
    assert engine.call("load_state", {"dir": str(tmp_path / "s"), "fresh_optimizer": True})[0]["model"]["step"] == 0
    _, after = engine.call("logprobs", {"prompts": PROMPTS}, rows([0, 1, 2], responses))
    assert np.array_equal(after["logprobs"], before["logprobs"])


@pytest.mark.parametrize("value,kind", [(0, "RangeError"), (-1, "RangeError"), (1.5, "TypeError"), ("1GB", "TypeError"), (True, "TypeError")])
def test_a_bad_shard_size_is_refused_before_anything_is_written(engine, tiny_dir, tmp_path, value, kind):
    engine.call("load", {"model_dir": tiny_dir})
    with pytest.raises(EngineCallError) as err:
        engine.call("save", {"dir": str(tmp_path / "s"), "shard_bytes": value})
    assert err.value.type == kind and err.value.field == "args.shard_bytes"
    assert not (tmp_path / "s").exists()


def test_a_state_saved_in_the_version_1_layout_still_loads(engine, spawn, tiny_dir, tmp_path):
    """Version 1 (before sharding): the AdamW moments and the RNG in one sophia_optimizer.safetensors, no
    optimizer_files. Written here from a current state by that layout; it loads to the same state."""
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["Three.", "Green.", "One two three."])
    train(engine, responses, range(2))
    engine.call("save", {"dir": str(tmp_path / "v2")})
    v1 = tmp_path / "v1"
    v1.mkdir()
    meta = json.loads((tmp_path / "v2" / "sophia_engine.json").read_text())
    moments: dict[str, torch.Tensor] = {}
    for name in sorted((tmp_path / "v2").iterdir()):
        if name.name.startswith(("sophia_optimizer", "sophia_rng")):
            moments.update(load_file(name))
        elif name.name != "sophia_engine.json":
            (v1 / name.name).write_bytes(name.read_bytes())
    assert "rng.cpu" in moments and any(k.startswith("adamw.exp_avg::") for k in moments)
    save_file(moments, v1 / "sophia_optimizer.safetensors")
    meta.pop("optimizer_files", None)
    meta["version"] = 1
    meta["files"] = {p.name: p.stat().st_size for p in sorted(v1.iterdir())}
    (v1 / "sophia_engine.json").write_text(json.dumps(meta, indent=2) + "\n")

    other = spawn("v1")
    assert other.call("load_state", {"dir": str(v1)})[0]["model"]["step"] == 2
    other.call("save", {"dir": str(tmp_path / "again")})
    assert files_of(tmp_path / "again") == files_of(tmp_path / "v2")  # weights, moments, step and RNG as saved
