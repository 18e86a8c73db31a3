"""The three losses, with the ONNX engine's semantics (engine/model/losses.ts), over flat token arrays.

Every per-token array here is flat over the batch's response tokens (N = Σ response lengths), in row order:
exactly the arrays the protocol carries. `logits` are the model's logits at the positions that predict those
tokens, (N, V), in float32 or wider.

- `sft`:  −Σ log π(target)·mask / max(Σ mask, 1)                                    metrics: tokens
- `grpo`: per token  −min(r·A, clip(r, 1−ε, 1+ε)·A) + β·KL_k3 − c_ent·H,  r = exp(clamp(log π − log π_old, ±10)),
          KL_k3 = e^(ref − new) − (ref − new) − 1,  H the entropy of π over the vocabulary; log π and H from
          logits / temperature; averaged as Σ x·mask / max(Σ mask, 1)
          metrics: policy_loss, kl, entropy, clip_fraction, ratio_mean, ratio_sq_mean (the mean of r², for the
          importance weights' effective sample size (Σr)²/(N·Σr²)), logprob_diff_mean, logprob_diff_max (mean and
          max of |log π − log π_old| over the mask's tokens), tokens.
          With `tis_cap` C (truncated importance sampling of the sampler–trainer mismatch; torch engine only): the
          PPO ratio is taken against the trainer's own policy before the update, r = exp(log π − sg(log π)) (1 at
          the step's one update, its gradient ∇log π), and each token's policy term is weighted by
          w = min(exp(sg(log π) − log π_old), C), log π_old being the sampler's; metric tis_capped_fraction (tokens
          whose weight the cap cut).
- `rm`:   Σ (score − target)² / B over the batch's B rows                             metrics: mae
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossOutput:
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


def _count(mask: torch.Tensor) -> torch.Tensor:
    return torch.clamp(mask.sum(), min=1.0)


def _mean(x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / count


def sft_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, count: torch.Tensor | None = None) -> LossOutput:
    """`count`: the denominator when the tokens here are part of a larger batch's (a rank's block: distributed.py)."""
    picked = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None])[:, 0]
    count = _count(mask) if count is None else count
    return LossOutput(-_mean(picked, mask, count), {"tokens": count.detach()})


def grpo_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_eps: float,
    kl_coef: float,
    entropy_coef: float,
    temperature: float,
    tis_cap: float | None = None,
    count: torch.Tensor | None = None,
) -> LossOutput:
    """`advantages` is per token here (each row's advantage repeated over its tokens). `count`: as for sft_loss."""
    logp = torch.log_softmax(logits / temperature, dim=-1)
    new = logp.gather(-1, targets[:, None])[:, 0]
    count = _count(mask) if count is None else count
    # The sampler-vs-trainer importance weight of each token (the PPO ratio at the step's one update).
    sampled = torch.exp(torch.clamp(new.detach() - old_logprobs, -10.0, 10.0))
    if tis_cap is None:
        ratio = torch.exp(torch.clamp(new - old_logprobs, -10.0, 10.0))
        weight = None
    else:
        ratio = torch.exp(new - new.detach())
        weight = torch.clamp(sampled, max=tis_cap)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    policy = -torch.minimum(unclipped, clipped)
    if weight is not None:
        policy = weight * policy
    ref_minus_new = ref_logprobs - new
    kl = torch.exp(ref_minus_new) - ref_minus_new - 1.0
    entropy = -(torch.exp(logp) * logp).sum(-1)
    per_token = policy + kl_coef * kl - entropy_coef * entropy
    loss = _mean(per_token, mask, count)
    with torch.no_grad():
        metrics = {
            "policy_loss": _mean(policy, mask, count),
            "kl": _mean(kl, mask, count),
            "entropy": _mean(entropy, mask, count),
            "clip_fraction": _mean((clipped < unclipped).to(mask.dtype), mask, count),
            "ratio_mean": _mean(sampled, mask, count),
            "ratio_sq_mean": _mean(sampled * sampled, mask, count),
            # |log π − log π_old| on the loss tokens (the sampler–trainer mismatch at an RL step's first update).
            "logprob_diff_mean": _mean((new - old_logprobs).abs(), mask, count),
            "logprob_diff_max": ((new - old_logprobs).abs() * mask).max(),
            "tokens": count,
        }
        if tis_cap is not None:
            metrics["tis_capped_fraction"] = _mean((sampled > tis_cap).to(mask.dtype), mask, count)
    return LossOutput(loss, {k: v.detach() for k, v in metrics.items()})


def rm_loss(scores: torch.Tensor, targets: torch.Tensor) -> LossOutput:
    diff = scores - targets
    b = scores.shape[0]
    return LossOutput((diff * diff).sum() / b, {"mae": (diff.abs().sum() / b).detach()})
