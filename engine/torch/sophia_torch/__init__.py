"""Sophia's PyTorch engine (issue 21): a process serving one Hugging Face Qwen2-VL / Qwen2.5-VL model over the
binary stdio protocol of engine/README.md ("PyTorch engine"). Modules: `server` (the process), `engine` (the
ops), `losses` (sft / grpo / rm with the ONNX engine's semantics), `protocol` (framing), `client` (a Python
client), `tiny_qwen` (a tiny random Qwen2.5-VL built from configs, for tests)."""
