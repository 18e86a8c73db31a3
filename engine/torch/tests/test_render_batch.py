"""Prompts are rendered in one processor call per request (`_render_batch`), split back into each prompt's own tokens,
image-token types, patches and grids: the same tensors as rendering each prompt alone (`_render_one`), and a batch
the processor refuses still names the prompt that fails. In-process (sophia_torch.engine.Engine), tiny Qwen2.5-VL.

A batched render leaves nothing behind in the processor: the padded call must not leave padding switched on in the
fast tokenizer's backend (`tokenizers.Tokenizer.enable_padding`, which `processor.save_pretrained` writes into
tokenizer.json), or a state saved after it differs from the same state saved by a fresh engine (a273d45)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import IMAGES, PROMPTS, png, rows
from sophia_torch.engine import Engine
from sophia_torch.protocol import BadValue

MORE = [
    {"messages": [{"role": "user", "content": [{"type": "image", "tensor": "green"}, {"type": "image", "tensor": "blue"}, {"type": "text", "text": "Same?"}]}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "Then:"}, {"type": "image", "tensor": "red"}]}], "add_generation_prompt": False},
]
TENSORS = {**IMAGES, "blue": png(112, 56, (20, 30, 200), 3)}


def fresh(tiny_dir: str) -> Engine:
    e = Engine()
    e.load({"model_dir": tiny_dir, "threads": 1}, {})
    return e


@pytest.fixture(scope="module")
def engine(tiny_dir: str) -> Engine:
    return fresh(tiny_dir)


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


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def differing(a: dict[str, bytes], b: dict[str, bytes]) -> list[tuple[str, int, int]]:
    """(name, size in a, size in b) of each file the two directories do not hold byte for byte (-1: missing)."""
    return [(n, len(a[n]) if n in a else -1, len(b[n]) if n in b else -1) for n in sorted(a.keys() | b.keys()) if a.get(n) != b.get(n)]


def test_a_batched_render_leaves_every_file_the_processor_saves_unchanged(tiny_dir, tmp_path):
    e = fresh(tiny_dir)  # not the module's engine: this one has rendered nothing before the first save
    e.m.processor.save_pretrained(tmp_path / "before")
    e._render_prompts(e.m, {"prompts": PROMPTS + MORE}, TENSORS)
    e.m.processor.save_pretrained(tmp_path / "after")
    before, after = files_of(tmp_path / "before"), files_of(tmp_path / "after")
    assert "tokenizer.json" in before
    # Before the fix: [("tokenizer.json", 33074, 33239)], its "padding" null before, BatchLongest/right after.
    assert differing(before, after) == []


def test_a_tokenizer_saved_with_padding_and_truncation_keeps_them(tiny_dir, tmp_path):
    """A tokenizer.json may ship its own padding and truncation: the batched call switches both (padding to the
    batch's longest on the right, truncation off), the unpadded calls switch both off, and each puts back what it
    found."""
    e = fresh(tiny_dir)
    backend = e.m.processor.tokenizer._tokenizer
    backend.enable_padding(direction="left", pad_id=7, pad_token="<|endoftext|>", pad_to_multiple_of=8)
    backend.enable_truncation(max_length=4096, stride=2, strategy="only_first")
    e.m.processor.save_pretrained(tmp_path / "before")
    e._render_prompts(e.m, {"prompts": PROMPTS + MORE}, TENSORS)
    e.m.processor.save_pretrained(tmp_path / "after")
    assert differing(files_of(tmp_path / "before"), files_of(tmp_path / "after")) == []
    assert backend.padding["direction"] == "left" and backend.truncation["max_length"] == 4096
    # Nor do the calls without padding (one prompt; the tokenize op), which transformers makes with padding and
    # truncation switched off on the backend.
    e._render_prompts(e.m, {"prompts": PROMPTS[:1]}, TENSORS)
    e.tokenize({"texts": ["Three.", "Green."]}, {})
    e.m.processor.save_pretrained(tmp_path / "unpadded")
    assert differing(files_of(tmp_path / "before"), files_of(tmp_path / "unpadded")) == []


def test_a_state_saved_after_batched_requests_is_the_state_a_fresh_engine_saves(tiny_dir, tmp_path):
    """What engine/torch/engine.contract.test.ts checks across processes ("same files after load"), in one: the
    requests that render prompts in one processor call change no saved byte."""
    used = fresh(tiny_dir)
    assert used.prompt_lengths({"prompts": PROMPTS + MORE}, TENSORS)[0]["prompt_tokens"]
    used.logprobs({"prompts": PROMPTS}, rows([0, 1, 2], [[5, 6], [7], [8]]))
    saved = {}
    for name, e in (("used", used), ("fresh", fresh(tiny_dir))):
        torch.manual_seed(0)  # the process's RNG, which the state carries, the same for both
        e.save({"dir": str(tmp_path / name)}, {})
        saved[name] = files_of(tmp_path / name)
    # Before the fix: tokenizer.json (33239 bytes, 33074 fresh) and sophia_engine.json, which lists its size.
    assert differing(saved["used"], saved["fresh"]) == []
