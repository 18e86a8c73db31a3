"""A Python client of the engine process (tests and scripts; the worker's client is TypeScript).

    with EngineClient() as engine:
        engine.call("load", {"model_dir": path})
        result, tensors = engine.call("logprobs", {...}, {"prompt_index": ..., ...})

`call` raises `EngineCallError` (with the reply's `type`, `message` and `field`) for an error reply; the
process keeps serving after one. `send_raw` writes arbitrary bytes, for tests of the framing.
"""
from __future__ import annotations

import struct
import subprocess
import sys
from itertools import count
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .protocol import decode_tensors, encode_frame, read_frame


class EngineCallError(Exception):
    def __init__(self, op: str, error: dict[str, Any]):
        super().__init__(f"{op}: {error.get('type')}: {error.get('message')}")
        self.op = op
        self.type = error.get("type")
        self.message = error.get("message")
        self.field = error.get("field")


class EngineClient:
    def __init__(self, python: str = sys.executable, args: tuple[str, ...] = (), stderr: BinaryIO | int | None = None, env: dict[str, str] | None = None, processes: int = 1):
        """`processes` > 1: a multi-process engine, launched by torchrun (distributed.py)."""
        package_root = Path(__file__).resolve().parent.parent
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] if processes > 1 else []
        self.proc = subprocess.Popen(
            [python, *launcher, "-m", "sophia_torch.server", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=package_root,
            env=env,
        )
        self._ids = count(1)

    def __enter__(self) -> "EngineClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, op: Any, args: Any = None, tensors: dict[str, np.ndarray] | None = None, request_id: Any = None, model: str | None = None) -> Any:
        request_id = next(self._ids) if request_id is None else request_id
        header = {"op": op, "id": request_id, "args": args if args is not None else {}}
        if model is not None:
            header["model"] = model
        self.send_raw(encode_frame(header, tensors))
        return request_id

    def receive(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        assert self.proc.stdout is not None
        frame = read_frame(self.proc.stdout)
        return frame.header, decode_tensors(frame)

    def call(self, op: str, args: dict[str, Any] | None = None, tensors: dict[str, np.ndarray] | None = None, model: str | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """One request to the model named `model` (the process's default one when None) and its reply."""
        request_id = self.send(op, args, tensors, model=model)
        header, out = self.receive()
        if header.get("id") != request_id:
            raise RuntimeError(f"reply id {header.get('id')!r} does not match request id {request_id!r}")
        if not header.get("ok"):
            raise EngineCallError(op, header.get("error", {}))
        return header.get("result", {}), out

    def close(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            try:
                self.send("shutdown")
                self.receive()
            except (OSError, ValueError, Exception):  # noqa: BLE001 - already gone
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                stream.close()
        return self.proc.returncode


def header_only(header: dict[str, Any]) -> bytes:
    """A frame of just this header (no tensors section is added): for framing tests."""
    import json

    body = json.dumps(header).encode()
    return struct.pack("<I", len(body)) + body
