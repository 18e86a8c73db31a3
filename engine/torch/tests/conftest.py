"""Fixtures: the tiny Qwen2.5-VL (built once per session into a temp dir), engine processes, batches.

Run: .tools/torch-venv/bin/python -m pytest engine/torch/tests   (after infra/local/install-torch.sh)
"""
from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from sophia_torch.client import EngineClient
from sophia_torch.tiny_qwen import build

ADAMW = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "max_grad_norm": 4.0}

# One torch thread, here and in the engine processes: the tiny models' ops are too small to gain from a second, and
# on 2 cores busy with other work two threads wait for each other (at a load of ~5 the suite took 177 s with two,
# 40 s with one; a float64 central-difference check alone 45 s, 0.5 s on a quiet machine). Engine processes with
# two threads: engine/torch/process.test.ts and engine.test.ts.
torch.set_num_threads(1)


def png(width: int, height: int, color: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A PNG's bytes: a coloured image with some noise (so patches differ)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color, dtype=np.int16)[None, None, :] + rng.integers(-40, 40, (height, width, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "PNG")
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


IMAGES = {"red": png(60, 90, (200, 30, 30), 1), "green": png(120, 100, (20, 200, 30), 2)}

PROMPTS = [
    {"messages": [{"role": "user", "content": [{"type": "image", "tensor": "red"}, {"type": "text", "text": "How many red circles are there?"}]}]},
    {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [{"type": "text", "text": "What color is the shape?"}, {"type": "image", "tensor": "green"}]},
        ]
    },
    {"messages": [{"role": "user", "content": "Count to three."}]},
]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build(tmp_path_factory.mktemp("tiny") / "model", seed=0))


def start_engine(log_dir: Path, name: str) -> EngineClient:
    return EngineClient(python=sys.executable, args=("--threads", "1"), stderr=open(log_dir / f"{name}.stderr.jsonl", "wb"))


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineClient]:
    """One engine process shared by the tests (each test loads the model it needs, which resets the state)."""
    client = start_engine(tmp_path_factory.mktemp("logs"), "shared")
    yield client
    client.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator:
    """Starts extra engine processes for one test; all are closed afterwards."""
    clients: list[EngineClient] = []

    def make(name: str = "extra") -> EngineClient:
        client = start_engine(tmp_path, f"{name}-{len(clients)}")
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


def rows(prompt_index: list[int], responses: list[list[int]], images: bool = True, **extra: np.ndarray) -> dict[str, np.ndarray]:
    """The row tensors of a batch (prompt_index, response_lengths, response_ids) plus the images (unless `images` is
    False: text-only prompts) and `extra`."""
    return {
        **(IMAGES if images else {}),
        "prompt_index": np.array(prompt_index, dtype=np.int32),
        "response_lengths": np.array([len(r) for r in responses], dtype=np.int32),
        "response_ids": np.array([t for r in responses for t in r], dtype=np.int32),
        **extra,
    }


def split(out: dict[str, np.ndarray]) -> tuple[list[list[int]], list[np.ndarray]]:
    """A `sample` result's flat token ids and logprobs, split into one list per sample."""
    ids, lps, at = [], [], 0
    for n in out["lengths"].tolist():
        ids.append(out["token_ids"][at : at + n].tolist())
        lps.append(out["logprobs"][at : at + n])
        at += n
    return ids, lps


def answers(engine: EngineClient, texts: list[str]) -> list[list[int]]:
    """Token ids of each text followed by the model's end of turn (its first eos id)."""
    result, out = engine.call("tokenize", {"texts": texts})
    eos = engine.call("hello")[0]["model"]["eos_token_ids"][0]
    ids, lengths = out["ids"].tolist(), out["lengths"].tolist()
    seqs, at = [], 0
    for n in lengths:
        seqs.append(ids[at : at + n] + [eos])
        at += n
    return seqs
