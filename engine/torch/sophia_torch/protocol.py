"""The engine process's wire format (documented in engine/README.md, "PyTorch engine: the protocol").

Every message, in both directions, is one frame:

    u32 little-endian  header length H
    H bytes            UTF-8 JSON header
    tensor buffers     raw little-endian bytes, one per entry of header["tensors"], in that order, no padding

Request headers are `{"op", "id", "args", "tensors": [{"name", "dtype", "shape", "nbytes"}]}`; replies are
`{"id", "ok": true, "result", "tensors"}` or `{"id", "ok": false, "error": {"type", "message", "field"}}`.

Two kinds of bad input:
- `FatalFrameError`: the stream itself is broken (a short read, a header that is not JSON or does not say how many
  bytes follow). The reader cannot know where the next frame starts, so the server replies once and exits.
- `RequestError` (and its `BadValue`/`BadType`/`StateError`): a well-framed request with a bad field. Its bytes
  were all read, so the server replies with the error and keeps serving.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

PROTOCOL_VERSION = 1

# Wire dtypes: name → numpy dtype (little-endian).
DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("<u1"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}

MAX_HEADER_BYTES = 64 << 20


class RequestError(Exception):
    """A request the server answers with an error and survives. `field` names what was wrong."""

    type = "Error"

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "message": str(self)}
        if self.field is not None:
            out["field"] = self.field
        return out


class BadValue(RequestError):
    """A value out of range, a wrong shape or length, a missing file or directory (the TS side's RangeError)."""

    type = "RangeError"


class BadType(RequestError):
    """A field of the wrong type or dtype, an op the loaded model's role cannot run (the TS side's TypeError)."""

    type = "TypeError"


class StateError(RequestError):
    """A call that the engine's state does not allow now (no model loaded, no gradients accumulated)."""

    type = "StateError"


def request_tensor(tensors: dict[str, np.ndarray], name: str, dtypes: tuple[str, ...], optional: bool = False) -> np.ndarray | None:
    """The request tensor `name`, checked to be present (unless `optional`: then None when absent) and of one of
    `dtypes`; refusals name `tensors.{name}`. Shapes are the caller's to check."""
    field = f"tensors.{name}"
    if name not in tensors:
        if optional:
            return None
        raise BadValue(f"tensor {name!r} is required", field)
    array = tensors[name]
    if array.dtype.name not in dtypes:
        raise BadType(f"tensor {name!r} must be {' or '.join(dtypes)} (got {array.dtype.name})", field)
    return array


class FatalFrameError(Exception):
    """The byte stream cannot be parsed further; `request_id` is the id if the header was readable."""

    def __init__(self, message: str, request_id: Any = None):
        super().__init__(message)
        self.request_id = request_id


class EndOfStream(Exception):
    """The peer closed the stream between frames."""


@dataclass
class Frame:
    header: dict[str, Any]
    buffers: list[bytes]


def _read_exact(stream: BinaryIO, n: int, what: str) -> bytes:
    chunks = []
    left = n
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            raise FatalFrameError(f"stream ended {n - left} bytes into {what} of {n} bytes")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO) -> Frame:
    """Reads one frame; `EndOfStream` at a clean end, `FatalFrameError` when the framing is broken."""
    first = stream.read(4)
    if not first:
        raise EndOfStream()
    if len(first) < 4:
        first += _read_exact(stream, 4 - len(first), "the header length")
    (length,) = struct.unpack("<I", first)
    if length == 0 or length > MAX_HEADER_BYTES:
        raise FatalFrameError(f"header length {length} is outside [1, {MAX_HEADER_BYTES}]")
    raw = _read_exact(stream, length, "the header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FatalFrameError(f"header is not UTF-8 JSON: {err}") from None
    if not isinstance(header, dict):
        raise FatalFrameError("header must be a JSON object")
    specs = header.get("tensors", [])
    if not isinstance(specs, list):
        raise FatalFrameError("header.tensors must be a list", header.get("id"))
    buffers = []
    for i, spec in enumerate(specs):
        nbytes = spec.get("nbytes") if isinstance(spec, dict) else None
        if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < 0:
            raise FatalFrameError(f"header.tensors[{i}].nbytes must be an integer >= 0 (the bytes that follow)", header.get("id"))
        buffers.append(_read_exact(stream, nbytes, f"tensor {i}"))
    return Frame(header, buffers)


def decode_tensors(frame: Frame) -> dict[str, np.ndarray]:
    """The frame's tensors by name, checked against their specs (read-only numpy views of the buffers)."""
    out: dict[str, np.ndarray] = {}
    for i, (spec, buf) in enumerate(zip(frame.header.get("tensors", []), frame.buffers)):
        field = f"tensors[{i}]"
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise BadType(f"{field}.name must be a non-empty string", f"{field}.name")
        if name in out:
            raise BadValue(f"tensor name {name!r} appears twice", f"{field}.name")
        dtype = DTYPES.get(spec.get("dtype"))  # type: ignore[arg-type]
        if dtype is None:
            raise BadType(f"{field}.dtype must be one of {sorted(DTYPES)} (got {spec.get('dtype')!r})", f"{field}.dtype")
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise BadValue(f"{field}.shape must be a list of integers >= 0 (got {shape!r})", f"{field}.shape")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * dtype.itemsize != len(buf):
            raise BadValue(
                f"tensor {name!r}: shape {shape} of {spec.get('dtype')} is {count * dtype.itemsize} bytes, but nbytes is {len(buf)}",
                f"{field}.nbytes",
            )
        out[name] = np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)
    return out


def json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: such floats travel as the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def encode_frame(header: dict[str, Any], tensors: dict[str, np.ndarray] | None = None) -> bytes:
    """One frame: the header (with its `tensors` list filled in) and the tensors' bytes, little-endian."""
    parts: list[bytes] = []
    specs = []
    for name, array in (tensors or {}).items():
        wire = next((k for k, d in DTYPES.items() if d == array.dtype.newbyteorder("<")), None)
        if wire is None:
            raise TypeError(f"tensor {name!r}: dtype {array.dtype} has no wire dtype")
        data = np.ascontiguousarray(array, dtype=DTYPES[wire]).tobytes()
        specs.append({"name": name, "dtype": wire, "shape": list(array.shape), "nbytes": len(data)})
        parts.append(data)
    body = json.dumps(json_safe({**header, "tensors": specs}), separators=(",", ":"), allow_nan=False).encode("utf-8")
    return struct.pack("<I", len(body)) + body + b"".join(parts)
