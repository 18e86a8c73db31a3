"""A tiny random Qwen2.5-VL (or, with --text-only, a tiny Qwen2.5-class causal LM), built from configs alone (no
download), for tests and local runs.

    python -m sophia_torch.tiny_qwen OUT_DIR [--seed N] [--max-positions N] [--text-only]

writes a Hugging Face model directory that `AutoModelForImageTextToText.from_pretrained(OUT_DIR)` and
`AutoProcessor.from_pretrained(OUT_DIR)` load with no Sophia code:

- a byte-level BPE (Qwen2's pre-tokenizer, `Qwen2Tokenizer`) trained with `tokenizers` on text generated here
  from a fixed generator, plus Qwen's special tokens (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, the vision
  and box tokens) and a chat template of Qwen's form (`<|im_start|>role\\n…<|im_end|>\\n`, an image as
  `<|vision_start|><|image_pad|><|vision_end|>`);
- a `Qwen2VLImageProcessor` with small pixel bounds (56×56 to 112×112 pixels: 4 to 16 image tokens) and the
  Qwen2.5-VL processor, both from constructor arguments;
- a `Qwen2_5_VLForConditionalGeneration`: text hidden size 64, 2 layers, 2 attention heads and 1 key/value head
  (head dim 32), M-RoPE sections [4, 6, 6]; vision tower of depth 2, hidden 64, 2 heads (head dim 32), patch
  14, spatial merge 2, one windowed and one full-attention block. Weights are the model's own initialisation
  under `torch.manual_seed(seed)`.

With `--qwen2-vl` it writes a `Qwen2VLForConditionalGeneration` (model_type qwen2_vl) with a `Qwen2VLProcessor`: the
same tokenizer and text model, and Qwen2-VL's vision tower (LayerNorm, QuickGELU MLP, full attention in every block)
of depth 2, width 64.

With `--text-only` it writes a `Qwen2ForCausalLM` (model_type qwen2, what Qwen2.5-0.5B…72B are) that
`AutoModelForCausalLM` and `AutoTokenizer` load: the same tokenizer and chat template (its special tokens include the
vision ones, as Qwen2.5's do), the same text model (hidden 64, 2 layers, head dim 32; plain RoPE), input and output
embeddings tied as in Qwen2.5-0.5B/1.5B/3B, no processor and no vision tower.

The same seed gives the same files (the tokenizer does not depend on the seed; the weights do).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

# Qwen2.5-VL's special tokens, in the order Qwen's tokenizer appends them after the BPE vocabulary.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Messages: {"role": ..., "content": "text" | [{"type": "image"} | {"type": "text", "text": ...}]}.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] }}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' -%}"
    "{{ part['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- endif -%}"
)

BPE_VOCAB_SIZE = 640  # bytes (256) + merges; the special tokens come on top
MIN_PIXELS = 56 * 56
MAX_PIXELS = 112 * 112

_WORDS = (
    "the a an of to and in is it that what which how many answer image picture shows there are red green blue "
    "yellow black white circle square triangle shape color count left right top bottom number total first then "
    "so because think step let me look at see one two three four five six seven eight nine ten zero plus minus "
    "times equals question user assistant system you are helpful reason final box object small large"
).split()


def training_corpus(lines: int = 4000) -> list[str]:
    """Deterministic text in the shape of the prompts and answers the tests use (words, digits, chat markup)."""
    rng = random.Random(1234)
    out: list[str] = []
    for _ in range(lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 14))]
        if rng.random() < 0.5:
            words.insert(rng.randrange(len(words) + 1), str(rng.randint(0, 999)))
        text = " ".join(words)
        text = text[0].upper() + text[1:] + rng.choice([".", "?", "!", ":", ","])
        if rng.random() < 0.3:
            text = f"<think>{text}</think> <answer>{rng.randint(0, 99)}</answer>"
        role = rng.choice(["user", "assistant", "system"])
        out.append(f"{role}\n{text}\n")
    return out


def build_tokenizer():
    """Qwen2Tokenizer over a BPE trained here, with Qwen's special tokens and the chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    bpe.train_from_iterator(training_corpus(), trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    vocab = dict(model["vocab"])
    for token in SPECIAL_TOKENS:  # Qwen's ids: right after the BPE vocabulary, in Qwen's order
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=4096,
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_processor(tokenizer, qwen2_vl: bool = False):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    # The processor needs a video processor too (Sophia sends images only): the same patch geometry.
    geometry = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}
    pixels = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    return (Qwen2VLProcessor if qwen2_vl else Qwen2_5_VLProcessor)(
        image_processor=Qwen2VLImageProcessor(size=pixels, **geometry),
        video_processor=Qwen2VLVideoProcessor(size=pixels, **geometry),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def build_config(tokenizer, max_positions: int = 4096):
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": max_positions,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision = {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "in_channels": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "tokens_per_second": 2,
        "window_size": 56,
        "out_hidden_size": 64,
        "fullatt_block_indexes": [1],
    }
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_qwen2_vl_config(tokenizer, max_positions: int = 4096):
    """The Qwen2-VL form of `build_config`: the same text model; a Qwen2-VL vision tower (LayerNorm, QuickGELU MLP
    with ratio 2, full attention in every block), depth 2, width 64, 2 heads, merging into the text width."""
    from transformers import Qwen2VLConfig

    base = build_config(tokenizer, max_positions)
    vision = {"depth": 2, "embed_dim": 64, "hidden_size": 64, "mlp_ratio": 2, "num_heads": 2, "in_channels": 3, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
    return Qwen2VLConfig(
        text_config=base.text_config.to_dict(),
        vision_config=vision,
        image_token_id=base.image_token_id,
        video_token_id=base.video_token_id,
        vision_start_token_id=base.vision_start_token_id,
        vision_end_token_id=base.vision_end_token_id,
        tie_word_embeddings=False,
    )


def build_text_config(tokenizer, max_positions: int = 4096):
    """The text-only model's config: `build_config`'s text model as a `Qwen2Config` (1-D RoPE), embeddings tied."""
    from transformers import Qwen2Config

    text = build_config(tokenizer, max_positions).text_config.to_dict()
    shape = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "bos_token_id", "eos_token_id", "pad_token_id")
    return Qwen2Config(
        **{k: text[k] for k in shape},
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True,
        architectures=["Qwen2ForCausalLM"],
    )


def build(out_dir: str | os.PathLike, seed: int = 0, max_positions: int = 4096, text_only: bool = False, qwen2_vl: bool = False) -> Path:
    """Writes the tiny model and its processor (with `text_only`: the causal LM and its tokenizer; with `qwen2_vl`:
    a Qwen2-VL instead of the Qwen2.5-VL) into `out_dir` (created; must be empty if it exists); `max_positions` is
    the model's `max_position_embeddings` (prompt + response tokens at most)."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration, Qwen2ForCausalLM, Qwen2VLForConditionalGeneration

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: pass a new or empty directory")
    tokenizer = build_tokenizer()
    if text_only:
        files, config, cls = tokenizer, build_text_config(tokenizer, max_positions), Qwen2ForCausalLM
    elif qwen2_vl:
        files, config, cls = build_processor(tokenizer, qwen2_vl=True), build_qwen2_vl_config(tokenizer, max_positions), Qwen2VLForConditionalGeneration
    else:
        files, config, cls = build_processor(tokenizer), build_config(tokenizer, max_positions), Qwen2_5_VLForConditionalGeneration
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = cls(config).to(torch.float32).eval()
    im_end, eot = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config = GenerationConfig(bos_token_id=eot, eos_token_id=[im_end, eot], pad_token_id=eot)
    model.save_pretrained(out)
    files.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sophia_torch.tiny_qwen", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="directory to write (new or empty)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    parser.add_argument("--max-positions", type=int, default=4096, help="the model's max_position_embeddings (default 4096)")
    parser.add_argument("--text-only", action="store_true", help="a Qwen2ForCausalLM (AutoModelForCausalLM) instead of the Qwen2.5-VL")
    parser.add_argument("--qwen2-vl", action="store_true", help="a Qwen2VLForConditionalGeneration (Qwen2-VL) instead of the Qwen2.5-VL")
    args = parser.parse_args(argv)
    if args.text_only and args.qwen2_vl:
        print("error: --text-only and --qwen2-vl are two other models: give one", file=sys.stderr)
        return 2
    if args.max_positions < 16:
        print("error: --max-positions must be at least 16", file=sys.stderr)
        return 2
    try:
        out = build(args.out_dir, args.seed, args.max_positions, text_only=args.text_only, qwen2_vl=args.qwen2_vl)
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
