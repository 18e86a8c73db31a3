"""Prompts are rendered in one processor call per request (`_render_batch`), split back into each prompt's own tokens,
image-token types, patches and grids: the same tensors as rendering each prompt alone (`_render_one`), and a batch
the processor refuses still names the prompt that fails. In-process (sophia_torch.engine.Engine), tiny Qwen2.5-VL."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import IMAGES, PROMPTS, png
from sophia_torch.engine import Engine
from sophia_torch.protocol import BadValue

MORE = [
    {"messages": [{"role": "user", "content": [{"type": "image", "tensor": "green"}, {"type": "image", "tensor": "blue"}, {"type": "text", "text": "Same?"}]}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "Then:"}, {"type": "image", "tensor": "red"}]}], "add_generation_prompt": False},
]
TENSORS = {**IMAGES, "blue": png(112, 56, (20, 30, 200), 3)}


@pytest.fixture(scope="module")
def engine(tiny_dir: str) -> Engine:
    e = Engine()
    e.load({"model_dir": tiny_dir, "threads": 1}, {})
    return e


def one_by_one(e: Engine, prompts: list[dict]) -> list:
    return [e._render_prompts(e.m, {"prompts": [p]}, TENSORS)[0] for p in prompts]


def same(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a.dtype == b.dtype and torch.equal(a, b))


def test_one_processor_call_renders_what_each_prompt_alone_renders(engine, monkeypatch):
    prompts = PROMPTS + MORE  # images, none, two in one prompt, a system message, no generation prompt
    alone = one_by_one(engine, prompts)
    calls = []
    cls = type(engine.m.processor)
    original = cls.__call__
    monkeypatch.setattr(cls, "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    batched = engine._render_prompts(engine.m, {"prompts": prompts}, TENSORS)
    assert len(calls) == 1  # before: one call per prompt (5)
    assert len(batched) == len(alone)
    for i, (x, y) in enumerate(zip(batched, alone)):
        for field in ("input_ids", "mm_token_type_ids", "pixel_values", "image_grid_thw"):
            assert same(getattr(x, field), getattr(y, field)), (i, field)


def test_a_prompt_the_processor_refuses_is_still_named(engine, monkeypatch):
    cls = type(engine.m.processor)
    original = cls.__call__

    def picky(self, *args, text=None, **kwargs):
        if any("Same?" in t for t in text):
            raise ValueError("no comparisons")
        return original(self, *args, text=text, **kwargs)

    monkeypatch.setattr(cls, "__call__", picky)
    with pytest.raises(BadValue) as err:
        engine._render_prompts(engine.m, {"prompts": PROMPTS + MORE}, TENSORS)
    assert err.value.field == "args.prompts[3]" and "no comparisons" in str(err.value)
    assert np.all([p is not None for p in engine._render_prompts(engine.m, {"prompts": PROMPTS}, TENSORS)])
