"""The GPU measurements of the vLLM / multi-GPU work, as one Python script for a GPU machine that has PyTorch and
transformers but no Node, no vLLM and no network (the device machine lent to some sessions: minutes of time, so one
script run once).

    PYTHONPATH=engine/torch python bench/gpu/device_check.py [--shape qwen2.5-vl-3b] [--out DIR]
    PYTHONPATH=engine/torch python bench/gpu/device_check.py --shape tiny --device cpu   # a check of the script

It builds a random-init model of the published shape (bench/torch-engine/model.py: Qwen2.5-VL-3B-Instruct's
config.json, tiny_qwen's tokenizer and a processor keeping images up to 1280·28·28 pixels) and measures, printing one
table per part and writing every number to DIR/device-check.json:

1. The trainer (Sophia's engine, in this process: `sophia_torch.engine.Engine`): SFT `train_step`s of `--rows` rows,
   each an image prompt (448 × 448: 256 image tokens) and `--response-tokens` response tokens; step time (median),
   tokens/s and MFU (6 FLOPs per matrix parameter per token, as bench/torch-engine/mfu.ts counts them, over the
   device's dense bf16 peak).
2. FSDP on one GPU against none: the same steps with plain transformers + AdamW, and again with the model under
   `fully_shard` on a 1-process group, the engine's own sharding (distributed.shard). The ratio is FSDP's cost where
   there is nothing to shard: what `engine.processes: N` pays per step beyond its communication.
3. Decoding, `--prompts` prompts × `--samples` samples × `--new-tokens` new tokens (eos never ends a row: the
   tokens/s compare like with like): plain `model.generate` (dynamic KV cache); `generate` with a static KV cache and
   its forward compiled (transformers' `cache_implementation="static"`, which compiles the decode step); and the
   engine's own `sample` (its hf decode loop). Tokens/s each, and the ratios.

Nothing is downloaded; nothing of a run is read or written. A part that fails prints its error and the script goes on
with the next (a device session is too short to rerun for one failure).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "torch-engine"))

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from NVIDIA's data sheets, by device name (the same table
# as bench/torch-engine/mfu.ts).
PEAKS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("A100", 312.0))


def peak_tflops(name: str, given: float | None) -> float | None:
    if given:
        return given
    for match, tflops in PEAKS:
        if match in name:
            return tflops
    return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    synchronize(device)
    started = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - started, out


def png(width: int, height: int, seed: int) -> np.ndarray:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), "RGB").save(buf, "PNG")
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def build(shape: str, out: Path, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """model.py's model of `shape` (random weights made on `device`), saved to `out`; its parameter counts."""
    import model as shapes  # bench/torch-engine/model.py

    return shapes.build(shape, str(out), dtype, device.type)


def release(engine: Any, device: torch.device) -> None:
    """Drops an in-process engine's model (the next part needs the memory)."""
    import gc

    engine.m = None
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def image_size(shape: str) -> int:
    return 112 if shape in ("tiny", "mid") else 448  # tiny_qwen's processor keeps up to 112 × 112


def prompts_and_images(count: int, size: int) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    images = {f"img{i}": png(size, size, i) for i in range(count)}
    prompts = [
        {"messages": [{"role": "user", "content": [{"type": "image", "tensor": f"img{i}"}, {"type": "text", "text": f"Describe picture number {i} in detail."}]}]}
        for i in range(count)
    ]
    return prompts, images


# ---- 1. the trainer -------------------------------------------------------------------------------------------------


def trainer(model_dir: Path, counts: dict[str, Any], args: argparse.Namespace, device: torch.device, peak: float | None) -> dict[str, Any]:
    from sophia_torch.engine import Engine

    engine = Engine()
    info, _ = engine.load({"model_dir": str(model_dir), "device": device.type, "dtype": args.dtype, "gradient_checkpointing": args.gradient_checkpointing}, {})
    vocab = info["model"]["tokenizer_size"]
    prompts, images = prompts_and_images(args.rows, image_size(args.shape))
    rng = np.random.default_rng(0)
    responses = rng.integers(10, vocab - 20, (args.rows, args.response_tokens)).astype(np.int32)
    tensors = {
        **images,
        "prompt_index": np.arange(args.rows, dtype=np.int32),
        "response_lengths": np.full(args.rows, args.response_tokens, dtype=np.int32),
        "response_ids": responses.reshape(-1),
    }
    prompt_tokens = engine.prompt_lengths({"prompts": prompts}, images)[0]["prompt_tokens"]
    step_args = {"prompts": prompts, "loss": {"kind": "sft"}, "lr": 1e-6, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "max_grad_norm": 1.0}
    times = []
    for i in range(args.warmup + args.steps):
        seconds, (result, _) = timed(lambda: engine.train_step(step_args, tensors), device)
        if i >= args.warmup:
            times.append(seconds)
    tokens = sum(prompt_tokens) + args.rows * args.response_tokens
    image_tokens = (image_size(args.shape) // 28) ** 2
    flops = 6 * (counts["text_matrix_parameters"] * tokens + counts["vision_parameters"] * 4 * image_tokens * args.rows)
    median = statistics.median(times)
    out = {"rows": args.rows, "tokens_per_step": tokens, "step_seconds": times, "median_step_seconds": median, "tokens_per_second": tokens / median, "loss": result["loss"],
           "model_tflops_per_step": flops / 1e12, "mfu": flops / median / (peak * 1e12) if peak else None, "peak_tflops": peak}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    release(engine, device)
    return out


# ---- 2. FSDP on one GPU vs none -------------------------------------------------------------------------------------


def fsdp_one_device(model_dir: Path, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    import torch.distributed as dist
    from sophia_torch import distributed
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    prompts, images = prompts_and_images(args.rows, image_size(args.shape))
    from PIL import Image

    pil = [Image.open(io.BytesIO(images[f"img{i}"].tobytes())).convert("RGB") for i in range(args.rows)]
    texts = [processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}], tokenize=False, add_generation_prompt=True) for _ in range(args.rows)]
    batch = processor(text=texts, images=pil, return_tensors="pt", padding=True)
    rng = np.random.default_rng(1)
    response = torch.from_numpy(rng.integers(10, len(processor.tokenizer) - 20, (args.rows, args.response_tokens)))
    input_ids = torch.cat([batch["input_ids"], response], dim=1)
    mask = torch.cat([batch["attention_mask"], torch.ones_like(response)], dim=1)
    labels = torch.cat([torch.full_like(batch["input_ids"], -100), response], dim=1)
    inputs = {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "pixel_values": batch["pixel_values"], "image_grid_thw": batch["image_grid_thw"]}
    inputs = {k: v.to(device) for k, v in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(getattr(torch, args.dtype))

    def run(sharded: bool) -> list[float]:
        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=getattr(torch, args.dtype)).to(device)
        if args.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        model.train()
        # Sharded: every ModuleList block a unit, the rest under the Runner root, whose forward the model's runs in.
        runner = distributed.shard(model, device) if sharded else None
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6, foreach=True)
        times = []
        for i in range(args.warmup + args.steps):
            def step() -> None:
                loss = runner(lambda m: m(**inputs).loss) if runner is not None else model(**inputs).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            seconds, _ = timed(step, device)
            if i >= args.warmup:
                times.append(seconds)
        del model, optimizer, runner
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return times

    plain = run(False)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(29500 + os.getpid() % 1000), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    try:
        sharded = run(True)
    finally:
        dist.destroy_process_group()
    return {"plain_step_seconds": plain, "fsdp_step_seconds": sharded, "fsdp_over_plain": statistics.median(sharded) / statistics.median(plain)}


# ---- 3. decoding ----------------------------------------------------------------------------------------------------


def decoding(model_dir: Path, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    prompts, images = prompts_and_images(args.prompts, image_size(args.shape))
    pil = [Image.open(io.BytesIO(images[f"img{i}"].tobytes())).convert("RGB") for i in range(args.prompts)]
    texts = [
        processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p["messages"][0]["content"][1]["text"]}]}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    batch = processor(text=texts, images=pil, return_tensors="pt", padding=True).to(device)
    batch["pixel_values"] = batch["pixel_values"].to(getattr(torch, args.dtype))
    rows, new = args.prompts * args.samples, args.new_tokens
    out: dict[str, Any] = {"prompts": args.prompts, "samples": args.samples, "new_tokens": new}
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=getattr(torch, args.dtype)).to(device).eval()
    settings = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "num_return_sequences": args.samples, "max_new_tokens": new, "min_new_tokens": new}

    def generate(**extra: Any) -> float:
        torch.manual_seed(0)
        seconds, ids = timed(lambda: model.generate(**batch, **settings, **extra), device)
        assert ids.shape[0] == rows and ids.shape[1] - batch["input_ids"].shape[1] == new, ids.shape
        return seconds

    for name, extra in (("generate_dynamic", {}), ("generate_static_compiled", {"cache_implementation": "static"})):
        try:
            first = generate(**extra)  # the static cache's first call compiles
            again = generate(**extra)
            out[name] = {"first_seconds": first, "seconds": again, "tokens_per_second": rows * new / again}
        except Exception as err:  # a part that fails is reported, the others still run
            out[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=5)}
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()

    from sophia_torch.engine import Engine

    engine = Engine()
    engine.load({"model_dir": str(model_dir), "device": device.type, "dtype": args.dtype}, {})
    # The engine ends a row at eos; a random model's eos is one token in ~150k per step, so the rows run to the limit
    # in practice (the generated token count is reported and divides the time).
    sample = {"prompts": prompts, "n": args.samples, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": new, "seed": 0}
    engine.sample(sample, images)
    seconds, (result, _) = timed(lambda: engine.sample(sample, images), device)
    out["engine_hf_loop"] = {"seconds": seconds, "generated_tokens": result["generated_tokens"], "tokens_per_second": result["generated_tokens"] / seconds}
    release(engine, device)
    base = out["generate_dynamic"].get("tokens_per_second")
    if base:
        out["ratios_to_generate_dynamic"] = {k: out[k]["tokens_per_second"] / base for k in ("generate_static_compiled", "engine_hf_loop") if "tokens_per_second" in out[k]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="qwen2.5-vl-3b", choices=["tiny", "mid", "qwen2.5-vl-3b", "qwen2.5-vl-7b"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--response-tokens", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--parts", default="trainer,fsdp,decoding")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    args.dtype = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_tflops(name, args.peak_tflops)
    report: dict[str, Any] = {"device": name, "shape": args.shape, "dtype": args.dtype, "torch": torch.__version__, "args": vars(args)}
    import transformers

    transformers.utils.logging.disable_progress_bar()
    report["transformers"] = transformers.__version__
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        seconds, counts = timed(lambda: build(args.shape, model_dir, device, getattr(torch, args.dtype)), device)
        report["model"] = {**counts, "build_seconds": seconds}
        print(f"{args.shape} on {name} ({args.dtype}): {counts['parameters'] / 1e9:.3f} B parameters, built in {seconds:.1f} s", flush=True)
        parts = {"trainer": lambda: trainer(model_dir, counts, args, device, peak), "fsdp": lambda: fsdp_one_device(model_dir, args, device), "decoding": lambda: decoding(model_dir, args, device)}
        for part in args.parts.split(","):
            try:
                seconds, report[part] = timed(parts[part], device)
                report[part]["part_seconds"] = seconds
            except Exception as err:
                report[part] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=8)}
            print(f"== {part}\n{json.dumps(report[part], indent=1, default=str)}", flush=True)
            (out / "device-check.json").write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
