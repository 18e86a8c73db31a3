"""The engine process: `python -m sophia_torch.server [--threads N]`.

Reads request frames on stdin and writes one reply frame per request on stdout, in order (protocol.py; the ops
are `Engine`'s methods, documented in engine/README.md). stdout carries nothing else: file descriptor 1 is
pointed at stderr once the protocol stream is set aside, so a stray print from a library cannot corrupt it.
stderr carries logs, one JSON object per line ({"ts", "level", "msg", ...}).

One process serves several models (a GPU worker's policy, reference and reward model share its GPU, its CUDA
context and its memory allocator): a request's header may name its `model` (default "main"); each name is an
`Engine` of its own, made on first use, with its own torch RNG state (put in place around each of its ops, so
models interleaved in one process draw what each would draw alone). `unload` drops a model and frees its memory.

Exit codes: 0 after `shutdown` or when stdin closes between frames; 2 when the framing is broken (after an
error reply when one can be sent). The process then exits at once (os._exit), skipping the interpreter's teardown.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
import traceback
from typing import Any, BinaryIO

from .protocol import BadType, BadValue, EndOfStream, FatalFrameError, RequestError, decode_tensors, encode_frame, read_frame


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


log = logging.getLogger("sophia_torch")


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never a hub download at run time
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        import transformers

        transformers.utils.logging.disable_default_handler()
        transformers.utils.logging.enable_propagation()
        transformers.utils.logging.set_verbosity_warning()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


def take_stdout() -> BinaryIO:
    """The protocol's output stream; afterwards fd 1 (and sys.stdout) write to stderr."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def reply(out: BinaryIO, frame: bytes) -> None:
    out.write(frame)
    out.flush()


MODEL_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
DEFAULT_MODEL = "main"


class RngState:
    """The process's torch RNG (CPU and every CUDA device), captured and put back."""

    def __init__(self) -> None:
        import torch

        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []

    def restore(self) -> None:
        import torch

        torch.set_rng_state(self.cpu)
        if self.cuda:
            torch.cuda.set_rng_state_all(self.cuda)


def serve(inp: BinaryIO | None, out: BinaryIO | None) -> int:
    """Serves requests until stdin ends or a shutdown. In a multi-process engine (distributed.py) rank 0 reads them
    from stdin and hands each to the other ranks, which run it too (`inp` and `out` None) and reply to no one."""
    import gc

    import torch

    from . import distributed
    from .engine import OPS, Engine

    ranks = distributed.active()
    follower = inp is None

    def next_frame() -> Any:
        """The next request's frame; None at the end (rank 0 tells the others)."""
        if follower:
            return distributed.broadcast()
        try:
            frame = read_frame(inp)
        except (EndOfStream, FatalFrameError):
            if ranks:
                distributed.broadcast(None)
            raise
        if ranks:
            distributed.broadcast(frame)
        return frame

    engines: dict[str, Engine] = {}
    rngs: dict[str, RngState] = {}

    def answer(message: dict[str, Any], tensors: dict[str, Any] | None = None) -> None:
        """Replies to a request (rank 0). In a multi-process engine every rank first says how the op ended on it, so
        the reply comes once all have finished (the caller deletes an op's files once answered: a rank still reading
        them would find them gone) and reports a failure any rank had."""
        if ranks:
            outcomes = distributed.gather(None if message.get("ok") else message.get("error"))
            failed = [(r, e) for r, e in enumerate(outcomes) if e is not None]
            if message.get("ok") and failed:
                r, e = failed[0]
                message, tensors = {"id": message.get("id"), "ok": False, "error": {**e, "message": f"engine process rank {r}: {e.get('message')}"}}, None
        if out is not None:  # the other ranks reply to no one (and encode nothing)
            reply(out, encode_frame(message, tensors))

    log.info("engine process ready", extra={"fields": {"pid": os.getpid(), "torch": torch.__version__}})
    while True:
        try:
            frame = next_frame()
            if frame is None:
                return 0
        except EndOfStream:
            log.info("stdin closed: exiting")
            return 0
        except FatalFrameError as err:
            log.error("broken frame: exiting", extra={"fields": {"error": str(err)}})
            reply(out, encode_frame({"id": err.request_id, "ok": False, "error": {"type": "ProtocolError", "message": f"{err}; the stream cannot be read further, the engine process exits"}}))
            return 2
        header = frame.header
        request_id = header.get("id")
        op = header.get("op")
        started = time.monotonic()
        try:
            if not isinstance(op, str) or op not in OPS:
                raise BadValue(f"unknown op {op!r} (ops: {', '.join(OPS)})", "op")
            args = header.get("args", {})
            if args is None:
                args = {}
            if not isinstance(args, dict):
                raise BadType("args must be a JSON object", "args")
            name = header.get("model", DEFAULT_MODEL)
            if not isinstance(name, str) or not MODEL_NAME.match(name):
                raise BadValue(f"model must be a name of 1-128 letters, digits or _.:/- (got {name!r})", "model")
            tensors = decode_tensors(frame)
            if op == "shutdown":
                answer({"id": request_id, "ok": True, "result": {}})
                log.info("shutdown: exiting")
                return 0
            if op == "unload":
                engines.pop(name, None)
                rngs.pop(name, None)
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                answer({"id": request_id, "ok": True, "result": {"models": sorted(engines)}})
                log.info("op done", extra={"fields": {"op": op, "model": name, "id": request_id, "ms": round(1000 * (time.monotonic() - started), 1)}})
                continue
            engine = engines.get(name)
            if engine is None:
                engine = engines[name] = Engine()
            if name in rngs:
                rngs[name].restore()
            try:
                result, out_tensors = getattr(engine, op)(args, tensors)
            finally:
                rngs[name] = RngState()
            if op == "hello":
                result = {**result, "models": sorted(n for n, e in engines.items() if e.m is not None)}
            answer({"id": request_id, "ok": True, "result": result}, out_tensors)
            log.info("op done", extra={"fields": {"op": op, "model": name, "id": request_id, "ms": round(1000 * (time.monotonic() - started), 1)}})
        except RequestError as err:
            log.warning("op refused", extra={"fields": {"op": op, "id": request_id, "error": str(err), "field": err.field}})
            answer({"id": request_id, "ok": False, "error": err.to_json()})
        except Exception as err:  # noqa: BLE001 - an engine bug or a torch error: reported, and the process keeps serving
            log.error("op failed", extra={"fields": {"op": op, "id": request_id, "error": repr(err), "traceback": traceback.format_exc()}})
            answer({"id": request_id, "ok": False, "error": {"type": "InternalError", "message": f"{type(err).__name__}: {err}"}})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sophia_torch.server", description="Sophia's PyTorch engine process (binary protocol on stdin/stdout).")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's own choice)")
    args = parser.parse_args(argv)
    out = take_stdout()
    setup_logging()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from . import distributed

    distributed.init()
    if distributed.rank() != 0:
        # Another rank of a multi-process engine: rank 0 speaks the protocol; this one runs what it is handed.
        out.close()
        log.setLevel(logging.WARNING)
        return serve(None, None)
    return serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    code = main()
    # Every reply is written (the protocol stream is unbuffered) and the log flushed: exit now, without the
    # interpreter's teardown, which takes ~1 s once torch, transformers and torchvision are imported (a worker's
    # engine close, and every test's, waited for it).
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)
