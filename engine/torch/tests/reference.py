"""Direct computations with plain transformers, row by row, for the tests to check the engine against: the model's
own forward (its own M-RoPE positions from `mm_token_type_ids`), no batching, no Sophia code."""
from __future__ import annotations

import io

import numpy as np
import torch


def hf_prompt(prompt: dict, images: dict[str, np.ndarray]):
    """The protocol's prompt as transformers' chat messages, and its PIL images in order."""
    from PIL import Image

    messages, pil = [], []
    for message in prompt["messages"]:
        content = message["content"]
        if isinstance(content, str):
            messages.append(message)
            continue
        parts = []
        for part in content:
            if part["type"] == "image":
                pil.append(Image.open(io.BytesIO(images[part["tensor"]].tobytes())).convert("RGB"))
                parts.append({"type": "image"})
            else:
                parts.append(part)
        messages.append({"role": message["role"], "content": parts})
    return messages, pil


def row_logits(model, processor, prompt: dict, images: dict[str, np.ndarray], response: list[int], with_mm_token_types: bool = True) -> torch.Tensor:
    """(L, V) logits that predict `response` after `prompt`, from the model's plain forward."""
    messages, pil = hf_prompt(prompt, images)
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    enc = processor(text=[text], images=pil or None, return_tensors="pt")
    p = enc["input_ids"].shape[1]
    ids = torch.cat([enc["input_ids"], torch.tensor([response], dtype=torch.int64)], dim=1)
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if pil:
        kwargs.update(pixel_values=enc["pixel_values"], image_grid_thw=enc["image_grid_thw"])
    if with_mm_token_types:
        kwargs["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], torch.zeros((1, len(response)), dtype=torch.int64)], dim=1)
    model.model.rope_deltas = None
    logits = model(**kwargs).logits[0]
    return logits[p - 1 : p - 1 + len(response)]


def batch_logits(model, processor, prompts, images, prompt_index, responses, **kw) -> torch.Tensor:
    """(N, V) logits of every row's response, rows in order (flat, as the protocol's per-token arrays)."""
    return torch.cat([row_logits(model, processor, prompts[p], images, r, **kw) for p, r in zip(prompt_index, responses)])


def load_plain(model_dir: str, dtype=torch.float64):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype).eval()
    return model, AutoProcessor.from_pretrained(model_dir)
