"""The tiny Qwen2.5-VL builder: deterministic for a seed, loadable with transformers' Auto classes alone."""
from __future__ import annotations

from pathlib import Path

import pytest

from sophia_torch.tiny_qwen import SPECIAL_TOKENS, build, main


def test_the_same_seed_gives_the_same_files_and_another_seed_other_weights(tiny_dir, tmp_path):
    again = build(tmp_path / "again", seed=0)
    other = build(tmp_path / "other", seed=1)
    names = sorted(p.name for p in Path(tiny_dir).iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert (Path(tiny_dir) / name).read_bytes() == (again / name).read_bytes(), name
    assert (other / "model.safetensors").read_bytes() != (again / "model.safetensors").read_bytes()
    assert (other / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()  # the tokenizer has no seed


def test_auto_classes_load_it_with_qwen_tokens_and_shapes(tiny_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    processor = AutoProcessor.from_pretrained(tiny_dir)
    cfg = model.config
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration" and type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert cfg.text_config.hidden_size == 64 and cfg.text_config.num_hidden_layers == 2 and cfg.vision_config.depth == 2
    assert cfg.text_config.hidden_size // cfg.text_config.num_attention_heads >= 32
    assert cfg.vision_config.hidden_size // cfg.vision_config.num_heads >= 32
    tok = processor.tokenizer
    ids = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert ids == list(range(ids[0], ids[0] + len(SPECIAL_TOKENS))) and cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n<|im_start|>assistant\n"


def test_the_command_refuses_a_directory_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "x").write_text("x")
    assert main([str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
