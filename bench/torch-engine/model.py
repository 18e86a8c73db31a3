"""Random Qwen2.5-VL models for bench/torch-engine, built from configs alone (no download).

    python model.py OUT_DIR --size tiny|mid            # CPU sizes
    python model.py OUT_DIR --shape qwen2.5-vl-3b|7b   # the published shapes, random weights (GPU)

The tokenizer, chat template and image processor are sophia_torch.tiny_qwen's (a 654-token byte-level BPE with
Qwen's special tokens); only the network's shape changes:

- tiny: tiny_qwen's model as it is (text hidden 64, 2 layers; vision depth 2, hidden 64);
- mid: text hidden 512, MLP 2048, 4 layers, 8 heads / 2 key-value heads (head dim 64); vision depth 4, hidden 256;
- qwen2.5-vl-3b / -7b: the text and vision shapes of Qwen/Qwen2.5-VL-3B-Instruct and -7B-Instruct (config.json as
  published: hidden 2048 / 3584, 36 / 28 layers, vocabulary 151936 / 152064, vision depth 32, hidden 1280), and an
  image processor that keeps images up to 1280·28·28 pixels (448 × 448 → 256 image tokens) instead of tiny_qwen's
  112 × 112. The vocabulary rows past the tokenizer's 654 tokens are never sampled (the engine suppresses them)
  but are in the embedding and the LM head, so the FLOPs are the real model's.

Weights are the model's own initialisation under torch.manual_seed(0), made on the GPU when there is one (a 7B
model initialises in seconds there, minutes on CPU), in the dtype given (--dtype, default float32 on CPU sizes,
bfloat16 for the published shapes). Prints one JSON line: the directory and the parameter counts the benchmark's
FLOP estimate needs (bench/torch-engine/mfu.ts), the end token (`<|im_end|>`), and the GPU's name when there is one.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
from sophia_torch import tiny_qwen

TEXT_SHAPES = {
    "mid": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "mrope_section": [8, 12, 12]},
    "qwen2.5-vl-3b": {
        "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
        "mrope_section": [16, 24, 24], "rope_theta": 1000000.0, "vocab_size": 151936, "max_position_embeddings": 128000, "tie_word_embeddings": True,
    },
    "qwen2.5-vl-7b": {
        "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
        "mrope_section": [16, 24, 24], "rope_theta": 1000000.0, "vocab_size": 152064, "max_position_embeddings": 128000, "tie_word_embeddings": False,
    },
}
QWEN_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]}
VISION_SHAPES = {
    "mid": {"depth": 4, "hidden_size": 256, "intermediate_size": 512, "num_heads": 4, "window_size": 56, "fullatt_block_indexes": [1, 3]},
    "qwen2.5-vl-3b": QWEN_VISION,
    "qwen2.5-vl-7b": QWEN_VISION,
}
QWEN_MAX_PIXELS = 1280 * 28 * 28


def build_config(tokenizer, name: str):
    """tiny_qwen's config with the text and vision shapes of `name` (tiny: unchanged)."""
    from transformers import Qwen2_5_VLConfig

    config = tiny_qwen.build_config(tokenizer)
    if name == "tiny":
        return config
    d = config.to_dict()
    text, vision = dict(TEXT_SHAPES[name]), VISION_SHAPES[name]
    d["text_config"]["rope_parameters"] = {**d["text_config"]["rope_parameters"], "mrope_section": text.pop("mrope_section")}
    if "rope_theta" in text:
        d["text_config"]["rope_parameters"]["rope_theta"] = text.pop("rope_theta")
    d["tie_word_embeddings"] = text.pop("tie_word_embeddings", False)
    d["text_config"].update(text)
    d["text_config"]["layer_types"] = ["full_attention"] * text["num_hidden_layers"]
    d["vision_config"].update(vision, out_hidden_size=text["hidden_size"])
    return Qwen2_5_VLConfig.from_dict(d)


def build_processor(tokenizer, name: str):
    """tiny_qwen's processor; for the published shapes one that keeps images up to 1280·28·28 pixels."""
    if name in ("tiny", "mid"):
        return tiny_qwen.build_processor(tokenizer)
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    geometry = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}
    pixels = {"shortest_edge": tiny_qwen.MIN_PIXELS, "longest_edge": QWEN_MAX_PIXELS}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=pixels, **geometry),
        video_processor=Qwen2VLVideoProcessor(size=pixels, **geometry),
        tokenizer=tokenizer,
        chat_template=tiny_qwen.CHAT_TEMPLATE,
    )


def counts(model) -> dict[str, int]:
    """Parameter counts for the FLOP estimate: text matrix parameters (every text parameter but the input
    embedding, plus the LM head's vocab × hidden whether or not it is tied) and the vision tower's."""
    language = model.model.language_model
    cfg = model.config.text_config
    embedding = language.embed_tokens.weight.numel()
    text = sum(p.numel() for p in language.parameters()) - embedding + cfg.vocab_size * cfg.hidden_size
    vision = sum(p.numel() for p in model.model.visual.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {"parameters": total, "text_matrix_parameters": text, "vision_parameters": vision, "embedding_parameters": embedding}


def build(name: str, out_dir: str, dtype: torch.dtype, device: str) -> dict:
    """Writes the model of `name` (random weights made on `device` under torch.manual_seed(0), in `dtype`) and its
    processor to `out_dir`; returns its parameter counts (`counts`) and end token."""
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = tiny_qwen.build_tokenizer()
    processor = build_processor(tokenizer, name)
    config = build_config(tokenizer, name)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(default)
    im_end, eot = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config = GenerationConfig(bos_token_id=eot, eos_token_id=[im_end, eot], pad_token_id=eot)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    info = {"end_token_id": im_end, **counts(model)}
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return info


def main(argv: list[str] | None = None) -> int:
    import transformers

    transformers.utils.logging.disable_progress_bar()

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--size", choices=["tiny", "mid"])
    group.add_argument("--shape", choices=["qwen2.5-vl-3b", "qwen2.5-vl-7b"])
    parser.add_argument("--dtype", choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    name = args.size or args.shape
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.shape else "float32"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    info = {"dir": args.out_dir, "name": name, "dtype": str(dtype).removeprefix("torch."), **build(name, args.out_dir, dtype, device)}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
