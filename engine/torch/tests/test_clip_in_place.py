"""optim_step's global-norm clip scales the engine's own gradients in place, so that no second copy of the whole
gradient is alive at the step's peak (a 7B model's bfloat16 gradient is 16.6 GB); gradients it does not own outright
(stride-0 or shared tensors, as autograd.grad may return) are scaled into copies. Either way the step is the same: the
same products, bit for bit. In-process (sophia_torch.engine.Engine), on the tiny Qwen2.5-VL."""
from __future__ import annotations

import torch

from conftest import PROMPTS, rows
from sophia_torch.engine import Engine

CLIPPING = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "max_grad_norm": 1e-3}  # always clips
RESPONSES = [[10, 20, 30, 642], [40, 50, 642], [60, 642]]


def loaded(tiny_dir: str) -> Engine:
    e = Engine()
    e.load({"model_dir": tiny_dir, "threads": 1}, {})
    return e


def step_seen_by_adamw(e: Engine) -> tuple[dict, list[torch.Tensor], list[torch.Tensor]]:
    """One forward_backward + optim_step; the pending gradients and the .grad tensors AdamW stepped with."""
    e.forward_backward({"prompts": PROMPTS, "loss": {"kind": "sft"}}, rows([0, 1, 2], RESPONSES))
    pending = list(e.pending.grads)
    seen: list[torch.Tensor] = []
    step = e.m.optimizer.step

    def spy(*args, **kwargs):
        seen.extend(p.grad for _, p in e.m.params)
        return step(*args, **kwargs)

    e.m.optimizer.step = spy
    result, _ = e.optim_step(CLIPPING, {})
    return result, pending, seen


def test_the_clip_scales_the_engines_own_gradients_in_place(tiny_dir):
    result, pending, seen = step_seen_by_adamw(loaded(tiny_dir))
    assert result["applied"] and result["grad_norm"] > CLIPPING["max_grad_norm"]
    assert len(seen) == len(pending)
    assert all(s is g for s, g in zip(seen, pending))  # before: p.grad was g * clip, a new tensor for every parameter


def test_gradients_it_does_not_own_are_copied_and_the_step_is_the_same(tiny_dir):
    a, b = loaded(tiny_dir), loaded(tiny_dir)
    for e in (a, b):
        e.forward_backward({"prompts": PROMPTS, "loss": {"kind": "sft"}}, rows([0, 1, 2], RESPONSES))
    grads = [g.clone() for g in a.pending.grads]
    k = next(i for i, g in enumerate(grads) if g.ndim == 1 and g.numel() > 1)
    grads[k] = torch.full_like(grads[k], 0.25)
    # a: the gradients as contiguous tensors of their own (scaled in place). b: the same values, but one an expanded
    # (stride-0) view and the first two views of one shared buffer (scaled into copies, left as they were).
    a.pending.grads = [g.clone() for g in grads]
    buffer = torch.cat([grads[0].flatten(), grads[1].flatten()])
    shared = [buffer[: grads[0].numel()].view_as(grads[0]), buffer[grads[0].numel() :].view_as(grads[1])] + [g.clone() for g in grads[2:]]
    shared[k] = torch.tensor(0.25, dtype=grads[k].dtype).expand_as(grads[k])
    b.pending.grads = shared
    out_a, _ = a.optim_step(CLIPPING, {})
    out_b, _ = b.optim_step(CLIPPING, {})
    assert out_a == out_b and out_a["applied"]
    assert all(torch.equal(x, y) for x, y in zip(shared, grads))  # not owned outright: left as they were
    assert all(torch.equal(pa, pb) for (_, pa), (_, pb) in zip(a.m.params, b.m.params))  # the same step, bit for bit
