"""Training across the GPUs of one machine: one engine process per GPU, launched by torchrun, the policy sharded
with FSDP2 (`torch.distributed.fsdp.fully_shard`).

`python -m torch.distributed.run --standalone --nproc-per-node N -m sophia_torch.server` (engine.processes: N): rank 0
speaks the protocol on stdin/stdout as a single process does and hands every request to the other ranks
(`broadcast`), which run the same op on their own copy of the engine; only rank 0 replies. A policy's weights,
gradients and AdamW moments are split across the ranks (each decoder and vision block its own FSDP unit, the rest in
the root unit); each rank computes its block of a batch's rows (`row_block`), with the losses normalised by the
whole batch's token (or row) count so that the ranks' gradients add up to the whole batch's, and the metrics are
summed across ranks (maxima: the largest). Saving gathers the full weights and moments (Hugging Face files, as one
process writes them); loading a state splits them again. Reference and reward models are not sharded: every rank
holds them whole and computes whole batches with them (the same numbers on every rank).

NCCL on GPUs (one device per rank: cuda:LOCAL_RANK), gloo on CPU (the tests: 2 processes on the tiny model give the
losses and saved weights of one process).
"""
from __future__ import annotations

import os
from typing import Any

import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def active() -> bool:
    return world_size() > 1


def init() -> None:
    """Joins torchrun's process group (no-op in a single process)."""
    if not active():
        return
    import torch.distributed as dist

    if dist.is_initialized():
        return
    _die_with_parent()
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank()))
    else:
        dist.init_process_group("gloo")


def _die_with_parent() -> None:
    """A rank ends when torchrun does (Linux: PR_SET_PDEATHSIG). torchrun starts each rank in a session of its own,
    so a SIGKILLed engine (its torchrun) would otherwise leave the ranks behind, waiting for each other."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the call
        os._exit(1)


def default_device() -> str:
    return f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"


def broadcast(obj: Any = None) -> Any:
    """Rank 0's `obj` on every rank (pickled)."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    import torch.distributed as dist

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce(values: torch.Tensor, op: str = "sum") -> torch.Tensor:
    import torch.distributed as dist

    dist.all_reduce(values, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return values


def row_block(rows: int) -> tuple[int, int]:
    """This rank's contiguous block [start, end) of a batch's rows (the first ranks take one more when it does not
    divide); empty for ranks past the rows of a batch smaller than the world."""
    w, r = world_size(), rank()
    return rows * r // w, rows * (r + 1) // w


def shard(model: torch.nn.Module, device: torch.device) -> "Runner":
    """FSDP2 over the ranks: every block of every ModuleList (the decoder layers, the vision blocks) its own unit,
    the rest (embeddings, norms, heads) the root's, a `Runner` around the model (returned: forwards go through it)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size(),))
    for module in list(model.modules()):
        if isinstance(module, torch.nn.ModuleList):
            for block in module:
                fully_shard(block, mesh=mesh)
    runner = Runner(model)
    fully_shard(runner, mesh=mesh)
    return runner


def is_sharded(t: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a sharded tensor (a plain tensor as it is)."""
    return t.to_local() if is_sharded(t) else t


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole of a sharded tensor (a collective: every rank calls it in the same order)."""
    return t.full_tensor() if is_sharded(t) else t


def like(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """`value` (whole) split like `param` (a sharded parameter), or as it is for a plain one."""
    if not is_sharded(param):
        return value
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value, param.device_mesh, param.placements)


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The sharded model's whole state dict in host memory on rank 0 (empty elsewhere); a collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


class Runner(torch.nn.Module):
    """The FSDP root over a model: `runner(fn, *args)` runs `fn(model, *args)` inside the root's forward, so that the
    engine's own forwards (the decoder without its LM head, the head on a few positions, the decode loop's steps) gather
    and release the root unit's weights (embeddings, norms, LM head, vision patch embedding and merger) and reduce their
    gradients as a plain `model(...)` call would."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(self.model, *args, **kwargs)
