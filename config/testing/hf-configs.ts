/**
 * Hugging Face `config.json` contents for tests of what Sophia reads before loading a model (shape, parameter count,
 * positions): the published configs of Qwen2.5-VL-7B/-3B-Instruct, Qwen2-VL-7B-Instruct and Qwen2.5-7B-Instruct (the
 * Hub's flat layout; fields that do not change a shape are left out), and the tiny random Qwen2.5-VL of
 * `sophia_torch.tiny_qwen` as transformers 5 writes it (`text_config` + `vision_config`). Configs only: no weights.
 */

const QWEN2_5_VL_VISION = {
  depth: 32,
  hidden_act: 'silu',
  hidden_size: 1280,
  intermediate_size: 3420,
  num_heads: 16,
  in_chans: 3,
  out_hidden_size: 3584,
  patch_size: 14,
  spatial_merge_size: 2,
  spatial_patch_size: 14,
  window_size: 112,
  fullatt_block_indexes: [7, 15, 23, 31],
  tokens_per_second: 2,
  temporal_patch_size: 2,
};

export const QWEN2_5_VL_7B = {
  architectures: ['Qwen2_5_VLForConditionalGeneration'],
  model_type: 'qwen2_5_vl',
  hidden_act: 'silu',
  hidden_size: 3584,
  intermediate_size: 18944,
  max_position_embeddings: 128000,
  max_window_layers: 28,
  num_attention_heads: 28,
  num_hidden_layers: 28,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  use_sliding_window: false,
  vision_config: QWEN2_5_VL_VISION,
  rope_scaling: { type: 'mrope', mrope_section: [16, 24, 24] },
  vocab_size: 152064,
};

export const QWEN2_5_VL_3B = {
  ...QWEN2_5_VL_7B,
  hidden_size: 2048,
  intermediate_size: 11008,
  max_window_layers: 70,
  num_attention_heads: 16,
  num_hidden_layers: 36,
  num_key_value_heads: 2,
  tie_word_embeddings: true,
  vision_config: { ...QWEN2_5_VL_VISION, out_hidden_size: 2048 },
  vocab_size: 151936,
};

export const QWEN2_VL_7B = {
  architectures: ['Qwen2VLForConditionalGeneration'],
  model_type: 'qwen2_vl',
  hidden_size: 3584,
  intermediate_size: 18944,
  max_position_embeddings: 32768,
  num_attention_heads: 28,
  num_hidden_layers: 28,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  tie_word_embeddings: false,
  vocab_size: 152064,
  vision_config: { depth: 32, embed_dim: 1280, mlp_ratio: 4, num_heads: 16, in_chans: 3, hidden_size: 3584, patch_size: 14, spatial_merge_size: 2, spatial_patch_size: 14, temporal_patch_size: 2 },
  rope_scaling: { type: 'mrope', mrope_section: [16, 24, 24] },
};

export const QWEN2_5_7B = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  hidden_size: 3584,
  intermediate_size: 18944,
  max_position_embeddings: 32768,
  num_attention_heads: 28,
  num_hidden_layers: 28,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  tie_word_embeddings: false,
  vocab_size: 152064,
};

/** `python -m sophia_torch.tiny_qwen DIR` writes this config.json (transformers 5.23.0), less token ids and init fields. */
export const TINY_QWEN_NESTED = {
  architectures: ['Qwen2_5_VLForConditionalGeneration'],
  dtype: 'float32',
  model_type: 'qwen2_5_vl',
  text_config: {
    hidden_act: 'silu',
    hidden_size: 64,
    intermediate_size: 128,
    max_position_embeddings: 4096,
    model_type: 'qwen2_5_vl_text',
    num_attention_heads: 2,
    num_hidden_layers: 2,
    num_key_value_heads: 1,
    rms_norm_eps: 1e-6,
    rope_parameters: { mrope_section: [4, 6, 6], rope_theta: 10000.0, rope_type: 'default' },
    vocab_size: 654,
  },
  tie_word_embeddings: false,
  vision_config: {
    depth: 2,
    fullatt_block_indexes: [1],
    hidden_act: 'silu',
    hidden_size: 64,
    in_channels: 3,
    intermediate_size: 128,
    model_type: 'qwen2_5_vl_vision',
    num_heads: 2,
    out_hidden_size: 64,
    patch_size: 14,
    spatial_merge_size: 2,
    temporal_patch_size: 2,
    tokens_per_second: 2,
    window_size: 56,
  },
};
