"""Training ops through the real engine process: sft, grpo, rm, the weighted accumulation, AdamW."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import ADAMW, IMAGES, PROMPTS, answers, rows
from reference import batch_logits, load_plain
from sophia_torch.client import EngineCallError


def test_sft_loss_falls(engine, tiny_dir):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["There are 3 red circles.", "The shape is green.", "One two three."])
    batch = rows([0, 1, 2], responses)
    losses = []
    for step in range(6):
        fb, _ = engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, batch)
        assert fb["finite"] and fb["metrics"]["tokens"] == sum(len(r) for r in responses)
        opt, _ = engine.call("optim_step", ADAMW)
        assert opt == {"step": step + 1, "grad_norm": pytest.approx(opt["grad_norm"]), "applied": True}
        losses.append(fb["loss"])
    assert losses[0] == pytest.approx(math.log(654), rel=0.05)  # a random model: about uniform over the vocabulary
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.6 * losses[0], losses


def test_micro_batches_weighted_by_tokens_make_the_whole_batch_step(engine, tiny_dir):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["There are 3 red circles.", "The shape is green.", "One two three, four five."])
    whole, _ = engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, rows([0, 1, 2], responses))
    whole_step, _ = engine.call("optim_step", ADAMW)

    def split(weights: bool):
        engine.call("load", {"model_dir": tiny_dir})
        a, _ = engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}, **({"weight": len(responses[0]) + len(responses[1])} if weights else {})}, rows([0, 1], responses[:2]))
        b, _ = engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}, **({"weight": len(responses[2])} if weights else {})}, rows([2], responses[2:]))
        step, _ = engine.call("optim_step", ADAMW)
        return a, b, step

    a, b, weighted = split(True)
    ta, tb = a["metrics"]["tokens"], b["metrics"]["tokens"]
    assert (a["loss"] * ta + b["loss"] * tb) / (ta + tb) == pytest.approx(whole["loss"], rel=1e-6)
    assert weighted["grad_norm"] == pytest.approx(whole_step["grad_norm"], rel=1e-5)
    _, _, plain = split(False)  # the plain mean of the micro-batch means is another gradient
    assert abs(plain["grad_norm"] - whole_step["grad_norm"]) > 1e-3 * whole_step["grad_norm"]


def test_grpo_step_matches_a_direct_computation(engine, tiny_dir):
    engine.call("load", {"model_dir": tiny_dir})
    sampled, out = engine.call("sample", {"prompts": PROMPTS, "n": 2, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6, "seed": 7}, IMAGES)
    index = [s["prompt_index"] for s in sampled["samples"]]
    lengths = out["lengths"].tolist()
    ids = out["token_ids"].tolist()
    responses, at = [], 0
    for n in lengths:
        responses.append(ids[at : at + n])
        at += n
    total = sum(lengths)
    rng = np.random.default_rng(0)
    # Old logprobs off the current policy by up to ±0.4 (so some ratios clip), reference ones by ±0.3, a loss mask
    # with holes, uneven advantages.
    old = (out["logprobs"] + rng.uniform(-0.4, 0.4, total)).astype(np.float32)
    ref = (out["logprobs"] + rng.uniform(-0.3, 0.3, total)).astype(np.float32)
    mask = (rng.uniform(0, 1, total) > 0.2).astype(np.float32)
    adv = rng.normal(0, 1, len(responses)).astype(np.float32)
    spec = {"kind": "grpo", "clip_eps": 0.2, "kl_coef": 0.04, "entropy_coef": 1e-3, "temperature": 0.8}
    tensors = rows(index, responses, old_logprobs=old, ref_logprobs=ref, loss_mask=mask, advantages=adv)
    fb, _ = engine.call("forward_backward", {"prompts": PROMPTS, "loss": spec}, tensors)
    opt, _ = engine.call("optim_step", ADAMW)

    # The same formula written out here, on float64 logits from plain transformers, row by row.
    model, processor = load_plain(tiny_dir, torch.float64)
    logits = batch_logits(model, processor, PROMPTS, IMAGES, index, responses) / spec["temperature"]
    logp = torch.log_softmax(logits, -1)
    targets = torch.tensor([t for r in responses for t in r])
    new = logp[torch.arange(total), targets]
    m, o, f = (torch.from_numpy(x.astype(np.float64)) for x in (mask, old, ref))
    a = torch.from_numpy(adv.astype(np.float64)).repeat_interleave(torch.tensor(lengths))
    ratio = torch.exp(torch.clamp(new - o, -10, 10))
    surrogate = torch.minimum(ratio * a, torch.clamp(ratio, 0.8, 1.2) * a)
    kl = torch.exp(f - new) - (f - new) - 1
    entropy = -(logp.exp() * logp).sum(-1)
    count = m.sum()
    per_token = -surrogate + spec["kl_coef"] * kl - spec["entropy_coef"] * entropy
    loss = (per_token * m).sum() / count
    expected = {k: float(v.detach()) for k, v in {
        "policy_loss": (-surrogate * m).sum() / count,
        "kl": (kl * m).sum() / count,
        "entropy": (entropy * m).sum() / count,
        "clip_fraction": ((torch.clamp(ratio, 0.8, 1.2) * a < ratio * a).double() * m).sum() / count,
        "ratio_mean": (ratio * m).sum() / count,
        "ratio_sq_mean": (ratio * ratio * m).sum() / count,
        "tokens": count,
    }.items()}
    assert 0 < expected["clip_fraction"] < 1  # the batch exercises both sides of the clip
    assert fb["finite"]
    assert fb["loss"] == pytest.approx(float(loss.detach()), rel=1e-5, abs=1e-7)
    for k, v in expected.items():
        assert fb["metrics"][k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    loss.backward()
    norm = math.sqrt(sum(float((p.grad**2).sum()) for p in model.parameters() if p.grad is not None))
    assert opt["grad_norm"] == pytest.approx(norm, rel=1e-4)


def test_truncated_importance_sampling_weights_each_token_by_the_capped_sampler_trainer_ratio(engine, tiny_dir):
    # The rollout logprobs perturbed by a constant δ: each token's weight is min(e^(trainer − sampler), cap) = min(e^−δ,
    # cap), the policy gradient the on-policy one (the PPO ratio is the trainer's own: 1) times that weight.
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["There are 3 red circles.", "The shape is green.", "One two three."])
    _, out = engine.call("logprobs", {"prompts": PROMPTS}, rows([0, 1, 2], responses))
    trainer = out["logprobs"].astype(np.float64)
    total = trainer.shape[0]
    lr0 = {**ADAMW, "lr": 0.0, "max_grad_norm": 1e9}
    base = {"kind": "grpo", "clip_eps": 0.2, "kl_coef": 0.0, "entropy_coef": 0.0, "temperature": 1.0}

    def step(delta: np.ndarray, cap: float | None) -> tuple[dict, float]:
        tensors = rows([0, 1, 2], responses, old_logprobs=(trainer + delta).astype(np.float32), ref_logprobs=trainer.astype(np.float32), advantages=np.ones(3, np.float32))
        spec = {**base, **({"tis_cap": cap} if cap is not None else {})}
        fb, _ = engine.call("forward_backward", {"prompts": PROMPTS, "loss": spec}, tensors)
        return fb, engine.call("optim_step", lr0)[0]["grad_norm"]

    on_policy, norm = step(np.zeros(total), None)
    assert on_policy["metrics"]["ratio_mean"] == pytest.approx(1, abs=1e-6) and on_policy["metrics"]["ratio_sq_mean"] == pytest.approx(1, abs=1e-6)
    for delta, cap, weight in ((-0.5, 2.0, math.exp(0.5)), (-1.5, 2.0, 2.0), (0.7, 3.0, math.exp(-0.7))):
        fb, tis_norm = step(np.full(total, delta), cap)
        assert tis_norm == pytest.approx(weight * norm, rel=1e-4), (delta, cap)
        assert fb["metrics"]["tis_capped_fraction"] == (1.0 if math.exp(-delta) > cap else 0.0)
        assert fb["metrics"]["clip_fraction"] == 0.0  # the ratio against the trainer's own policy never clips here
        assert fb["metrics"]["ratio_mean"] == pytest.approx(math.exp(-delta), rel=1e-5)
    # Without the correction the same perturbation clips: PPO drops the tokens whose sampler ratio left [0.8, 1.2].
    plain, plain_norm = step(np.full(total, -0.5), None)
    assert plain["metrics"]["clip_fraction"] == 1.0 and plain_norm == pytest.approx(0.0, abs=1e-7)
    # Uneven perturbations: the metrics give the importance weights' mean and mean square (their ESS).
    delta = np.random.default_rng(3).uniform(-0.6, 0.6, total)
    fb, _ = step(delta, 2.0)
    r = np.exp(-delta)
    assert fb["metrics"]["ratio_mean"] == pytest.approx(r.mean(), rel=1e-5)
    assert fb["metrics"]["ratio_sq_mean"] == pytest.approx((r * r).mean(), rel=1e-5)
    with pytest.raises(EngineCallError) as err:
        engine.call("forward_backward", {"prompts": PROMPTS, "loss": {**base, "tis_cap": 0.5}}, rows([0, 1, 2], responses, old_logprobs=trainer.astype(np.float32), ref_logprobs=trainer.astype(np.float32), advantages=np.ones(3, np.float32)))
    assert err.value.field == "args.loss.tis_cap"


def test_rm_loss_and_scores(engine, tiny_dir):
    engine.call("load", {"model_dir": tiny_dir, "role": "reward", "seed": 3})
    responses = answers(engine, ["There are 3 red circles.", "Four.", "The shape is green.", "One two three."])
    batch = rows([0, 0, 1, 2], responses)
    targets = np.array([1.0, 0.0, 1.0, 0.5], dtype=np.float32)
    _, scored = engine.call("score", {"prompts": PROMPTS}, batch)
    scores = scored["scores"]
    assert scores.shape == (4,) and np.all((scores > 0) & (scores < 1))
    fb, _ = engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "rm"}}, {**batch, "score_targets": targets})
    assert fb["loss"] == pytest.approx(float(np.mean((scores.astype(np.float64) - targets) ** 2)), rel=1e-6)
    assert fb["metrics"]["mae"] == pytest.approx(float(np.mean(np.abs(scores.astype(np.float64) - targets))), rel=1e-6)
    losses = [fb["loss"]]
    engine.call("optim_step", {**ADAMW, "lr": 3e-3})
    for _ in range(8):
        fb, _ = engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "rm"}}, {**batch, "score_targets": targets})
        engine.call("optim_step", {**ADAMW, "lr": 3e-3})
        losses.append(fb["loss"])
    assert losses[-1] < 0.5 * losses[0], losses
    # The head comes from the seed: another seed scores differently, the same seed the same.
    engine.call("load", {"model_dir": tiny_dir, "role": "reward", "seed": 3})
    assert np.array_equal(engine.call("score", {"prompts": PROMPTS}, batch)[1]["scores"], scores)
    engine.call("load", {"model_dir": tiny_dir, "role": "reward", "seed": 4})
    assert not np.array_equal(engine.call("score", {"prompts": PROMPTS}, batch)[1]["scores"], scores)


def test_non_finite_is_reported_and_never_applied(engine, tiny_dir):
    engine.call("load", {"model_dir": tiny_dir})
    responses = answers(engine, ["Four.", "Green.", "Three."])
    total = sum(len(r) for r in responses)
    bad_old = np.zeros(total, dtype=np.float32)
    bad_old[1] = np.nan
    spec = {"kind": "grpo", "clip_eps": 0.2, "kl_coef": 0.04, "entropy_coef": 1e-3, "temperature": 1.0}
    batch = rows([0, 1, 2], responses, old_logprobs=bad_old, ref_logprobs=np.zeros(total, np.float32), advantages=np.ones(3, np.float32))
    fb, _ = engine.call("forward_backward", {"prompts": PROMPTS, "loss": spec}, batch)
    assert fb["finite"] is False and fb["loss"] == "NaN"  # JSON has no NaN: it travels as a string
    with pytest.raises(Exception) as err:
        engine.call("optim_step", ADAMW)  # nothing was accumulated
    assert getattr(err.value, "type", None) == "StateError"
    # Finite loss and gradients whose global norm overflows float32: reported, not applied, weights unchanged.
    _, before = engine.call("logprobs", {"prompts": PROMPTS}, rows([0, 1, 2], responses))
    huge = rows([0, 1, 2], responses, old_logprobs=np.zeros(total, np.float32), ref_logprobs=np.zeros(total, np.float32), advantages=np.full(3, 1e30, np.float32))
    fb, _ = engine.call("forward_backward", {"prompts": PROMPTS, "loss": spec}, huge)
    assert fb["finite"] is True
    step, _ = engine.call("optim_step", ADAMW)
    assert step == {"step": 0, "grad_norm": "Infinity", "applied": False}
    _, after = engine.call("logprobs", {"prompts": PROMPTS}, rows([0, 1, 2], responses))
    assert np.array_equal(before["logprobs"], after["logprobs"])
    # The engine goes on: the next finite step applies.
    engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, rows([0, 1, 2], responses))
    assert engine.call("optim_step", ADAMW)[0]["applied"]


def test_gradient_checkpointing_gives_the_same_step(engine, tiny_dir):
    results = []
    for checkpointing in (False, True):
        info = engine.call("load", {"model_dir": tiny_dir, "gradient_checkpointing": checkpointing})[0]["model"]
        assert info["gradient_checkpointing"] is checkpointing
        responses = answers(engine, ["There are 3 red circles.", "The shape is green.", "One two three."])
        fb, _ = engine.call("forward_backward", {"prompts": PROMPTS, "loss": {"kind": "sft"}}, rows([0, 1, 2], responses))
        results.append((fb["loss"], engine.call("optim_step", ADAMW)[0]["grad_norm"]))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-6) and results[1][1] == pytest.approx(results[0][1], rel=1e-5)
