"""The gradient finiteness check (`_all_finite`, engine.py) that forward_backward runs on every call: a fused pass
of per-tensor norms with an exact per-tensor check only where a norm is not finite. It must say exactly what
`isfinite().all()` on every tensor says, for every dtype the engine trains in, including finite values whose squares
overflow (the norm is then infinite but the gradient is finite) and the stride-0 tensors autograd.grad returns."""
from __future__ import annotations

import pytest
import torch

from sophia_torch.engine import _all_finite


def reference(tensors: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_all_finite_agrees_with_isfinite_on_every_tensor(dtype):
    big = torch.finfo(dtype).max / 2  # finite, but its square (and the 2-norm of two of them) overflows
    cases = {
        "plain": [torch.randn(4, 3, dtype=dtype), torch.randn(7, dtype=dtype)],
        "nan": [torch.randn(4, 3, dtype=dtype), torch.tensor([1.0, float("nan")], dtype=dtype)],
        "inf": [torch.tensor([float("inf")], dtype=dtype), torch.randn(3, dtype=dtype)],
        "-inf": [torch.randn(3, dtype=dtype), torch.tensor([0.0, -float("inf")], dtype=dtype)],
        "huge but finite": [torch.full((5,), big, dtype=dtype), torch.randn(2, dtype=dtype)],
        "huge and a nan": [torch.full((5,), big, dtype=dtype), torch.tensor([float("nan")], dtype=dtype)],
        "empty tensor": [torch.empty(0, dtype=dtype), torch.randn(2, dtype=dtype)],
        "none": [],
    }
    for name, tensors in cases.items():
        assert _all_finite(tensors) == reference(tensors), name
    assert _all_finite(cases["huge but finite"]) is True
    assert _all_finite(cases["huge and a nan"]) is False


def test_all_finite_reads_stride_0_gradients_and_writes_nothing():
    p = torch.nn.Parameter(torch.randn(4, 3))
    (grad,) = torch.autograd.grad(p.sum() * 2, p)
    assert grad.stride() == (0, 0)  # autograd.grad returns an expanded tensor here
    tensors = [grad, torch.tensor([1e30, -1e30])]
    before = [t.clone() for t in tensors]
    assert _all_finite(tensors) is True
    assert all(torch.equal(a, b) for a, b in zip(tensors, before))
