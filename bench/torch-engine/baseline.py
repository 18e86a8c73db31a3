"""Plain PyTorch/transformers side of bench/torch-engine: the same model, batch and settings as the Sophia side,
without the engine: AutoModelForImageTextToText + AutoProcessor, a labels forward, backward, clip, AdamW, and
model.generate.

    python baseline.py SPEC.json

SPEC.json (written by bench/torch-engine.ts): `model_dir`, `threads`, `images` (a raw file of RGB bytes) and
`prompts` ({text, width, height, offset} each: one user message of an image then the text), `rows` ({prompt,
response: token ids}), `adamw` (lr, beta1, beta2, eps, weight_decay, max_grad_norm), `max_new_tokens`.

Commands on stdin, one JSON line each; one JSON line back each, after a first {"ready": true}:
- {"cmd": "train"}: one step, timed from the raw images and messages to the updated weights: the processor renders
  the rows' prompts (chat template, image resizing and patches, in one batched call), the response ids are appended, labels are -100
  except on the response tokens; model(**inputs, labels) → loss.backward() → clip_grad_norm_(max_grad_norm) →
  AdamW (foreach, decoupled decay on tensors of 2 or more dimensions, as the engine) → zero_grad. Replies
  {ms, inputs_ms, loss, tokens}.
- {"cmd": "sample"}: greedy model.generate for every prompt (left-padded, one batch), up to max_new_tokens, ending
  at the generation config's eos ids, the vision tokens suppressed (as the engine's sampler); timed from the raw
  prompts. Replies {ms, tokens, ids: [[...] per prompt]} (each row's tokens up to and including its eos).
- {"cmd": "end"}: replies {} and exits.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch


def main() -> int:
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(int(spec["threads"]))
    import transformers
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    transformers.utils.logging.disable_progress_bar()

    device = torch.device(spec.get("device", "cpu"))
    dtype = getattr(torch, spec.get("dtype", "float32"))
    model = AutoModelForImageTextToText.from_pretrained(spec["model_dir"], dtype=dtype, local_files_only=True).to(device)
    processor = AutoProcessor.from_pretrained(spec["model_dir"], local_files_only=True)
    tok = processor.tokenizer
    raw = open(spec["images"], "rb").read()
    images = [
        Image.fromarray(np.frombuffer(raw, dtype=np.uint8, count=p["width"] * p["height"] * 3, offset=p["offset"]).reshape(p["height"], p["width"], 3))
        for p in spec["prompts"]
    ]
    messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p["text"]}]}] for p in spec["prompts"]]

    def render(indices: list[int]) -> list[str]:
        return [processor.apply_chat_template(messages[i], tokenize=False, add_generation_prompt=True) for i in indices]

    rows = spec["rows"]
    a = spec["adamw"]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim >= 2], "weight_decay": a["weight_decay"]}, {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
        lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"], foreach=True,
    )
    pad = tok.pad_token_id
    cfg = model.config
    vision = [cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id, tok.convert_tokens_to_ids("<|vision_pad|>")]
    suppress = sorted({int(i) for i in vision} | set(range(len(tok), cfg.text_config.vocab_size)))
    eos = list(model.generation_config.eos_token_id)

    def train() -> dict:
        start = time.perf_counter()
        enc = processor(
            text=render([r["prompt"] for r in rows]), images=[images[r["prompt"]] for r in rows],
            padding=True, padding_side="right", return_tensors="pt", return_mm_token_type_ids=True,
        )
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        t = max(n + len(r["response"]) for n, r in zip(lengths, rows))
        b = len(rows)
        input_ids = torch.full((b, t), pad, dtype=torch.long)
        mask = torch.zeros((b, t), dtype=torch.long)
        mm = torch.zeros((b, t), dtype=torch.long)
        labels = torch.full((b, t), -100, dtype=torch.long)
        for i, (n, r) in enumerate(zip(lengths, rows)):
            response = torch.tensor(r["response"], dtype=torch.long)
            input_ids[i, :n] = enc["input_ids"][i, :n]
            input_ids[i, n : n + len(response)] = response
            mask[i, : n + len(response)] = 1
            mm[i, :n] = enc["mm_token_type_ids"][i, :n]
            labels[i, n : n + len(response)] = response
        inputs = {"input_ids": input_ids, "attention_mask": mask, "mm_token_type_ids": mm, "labels": labels, "pixel_values": enc["pixel_values"].to(dtype), "image_grid_thw": enc["image_grid_thw"]}
        inputs = {k: v.to(device) for k, v in inputs.items()}
        inputs_ms = 1000 * (time.perf_counter() - start)
        model.train()
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, a["max_grad_norm"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.eval()
        value = float(loss.detach())
        if device.type == "cuda":
            torch.cuda.synchronize()
        return {"ms": 1000 * (time.perf_counter() - start), "inputs_ms": inputs_ms, "loss": value, "tokens": int(mask.sum())}

    def sample() -> dict:
        start = time.perf_counter()
        enc = processor(text=render(list(range(len(images)))), images=images, padding=True, padding_side="left", return_tensors="pt", return_mm_token_type_ids=True).to(device)
        enc["pixel_values"] = enc["pixel_values"].to(dtype)
        with torch.no_grad():
            out = model.generate(
                **enc, do_sample=False, max_new_tokens=spec["max_new_tokens"], eos_token_id=eos, pad_token_id=pad,
                suppress_tokens=suppress, temperature=None, top_p=None, top_k=None,
            )
        ms = 1000 * (time.perf_counter() - start)
        ids = []
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            end = next((i for i, x in enumerate(row) if x in eos), len(row) - 1)
            ids.append(row[: end + 1])
        return {"ms": ms, "tokens": sum(len(r) for r in ids), "ids": ids}

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)["cmd"]
        reply = train() if cmd == "train" else sample() if cmd == "sample" else {}
        print(json.dumps(reply), flush=True)
        if cmd == "end":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
