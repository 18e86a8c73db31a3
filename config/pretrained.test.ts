/**
 * Reading a Hugging Face model's config.json: the parameter count of the published Qwen2.5-VL-7B/-3B, Qwen2-VL-7B
 * and Qwen2.5-7B configs equals transformers' own count (`sum(p.numel())` of the model built on the meta device with
 * transformers 5.23.0, numbers below), the two config.json layouts, and the errors for unsupported classes, missing
 * folders and malformed locations.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseModelLocation, pretrainedParameters, pretrainedShape, readPretrainedShape } from './pretrained';
import { QWEN2_5_VL_3B, QWEN2_5_VL_7B, QWEN2_5_7B, QWEN2_VL_7B, TINY_QWEN_NESTED } from './testing/hf-configs';
import { configError } from '../common/testing/config-error';

describe('pretrained model configs', () => {
  // transformers 5.23.0: sum(p.numel() for p in Model.from_config(cfg) on torch.device("meta")), and the "visual" part.
  it.each([
    ['Qwen2.5-VL-7B-Instruct', QWEN2_5_VL_7B, 8_292_166_656, 676_550_144],
    ['Qwen2.5-VL-3B-Instruct', QWEN2_5_VL_3B, 3_754_622_976, 668_684_288],
    ['Qwen2-VL-7B-Instruct', QWEN2_VL_7B, 8_291_375_616, 675_759_104],
    ['Qwen2.5-7B-Instruct (text)', QWEN2_5_7B, 7_615_616_512, 0],
    ['tiny_qwen (transformers 5 layout)', TINY_QWEN_NESTED, 398_912, 240_896],
  ])('counts the parameters of %s as transformers does', (_name, config, total, vision) => {
    const counted = pretrainedParameters(pretrainedShape(config, 'engine.model'));
    expect(counted.total).toBe(total);
    expect(counted.vision).toBe(vision);
  });

  it('lands within 1 % of the published sizes (~8.29 B and ~3.75 B)', () => {
    expect(Math.abs(pretrainedParameters(pretrainedShape(QWEN2_5_VL_7B, 'x')).total / 8.29e9 - 1)).toBeLessThan(0.01);
    expect(Math.abs(pretrainedParameters(pretrainedShape(QWEN2_5_VL_3B, 'x')).total / 3.75e9 - 1)).toBeLessThan(0.01);
  });

  it('reads both layouts: the Hub\'s flat text fields and transformers 5\'s text_config', () => {
    const flat = pretrainedShape(QWEN2_5_VL_3B, 'x');
    expect(flat.text).toMatchObject({ hidden: 2048, layers: 36, heads: 16, kvHeads: 2, headDim: 128, tiedEmbeddings: true, maxPositions: 128000 });
    expect(flat.vision).toMatchObject({ family: 'qwen2_5_vl', depth: 32, hidden: 1280, outHidden: 2048 });
    const nested = pretrainedShape(TINY_QWEN_NESTED, 'x');
    expect(nested.text).toMatchObject({ hidden: 64, layers: 2, kvHeads: 1, maxPositions: 4096, tiedEmbeddings: false });
    expect(pretrainedShape(QWEN2_5_7B, 'x').vision).toBeUndefined();
  });

  it('refuses classes it does not support, saying which it does', () => {
    const err = configError(() => pretrainedShape({ ...QWEN2_5_VL_7B, architectures: ['LlavaForConditionalGeneration'], model_type: 'llava' }, 'engine.model'));
    expect(err.message).toMatch(/^engine\.model: config\.json says architectures \["LlavaForConditionalGeneration"\], which is not a supported model class/);
    expect(err.message).toMatch(/Qwen2_5_VLForConditionalGeneration \(model_type qwen2_5_vl\), Qwen2VLForConditionalGeneration \(model_type qwen2_vl\), Qwen2ForCausalLM/);
    expect(configError(() => pretrainedShape({ model_type: 'bert' }, 'engine.rewardModel')).message).toMatch(/^engine\.rewardModel: config\.json says model_type "bert"/);
    expect(configError(() => pretrainedShape({ ...QWEN2_5_VL_7B, model_type: 'qwen2_vl' }, 'x')).message).toMatch(/has model_type qwen2_5_vl/);
    expect(configError(() => pretrainedShape({ ...QWEN2_5_VL_7B, hidden_size: undefined }, 'x')).message).toMatch(/hidden_size is missing/);
    // No architectures: model_type decides.
    expect(pretrainedShape({ ...QWEN2_5_VL_7B, architectures: undefined }, 'x').architecture).toBe('Qwen2_5_VLForConditionalGeneration');
  });

  describe('local directories', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-pretrained-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('reads config.json from a directory, naming the field when it is missing or wrong', () => {
      const model = path.join(dir, 'qwen');
      mkdirSync(model);
      expect(configError(() => readPretrainedShape(path.join(dir, 'nowhere'), 'engine.model')).message).toMatch(/^engine\.model: ".*nowhere" does not exist here \(ENOENT\)/);
      expect(configError(() => readPretrainedShape(model, 'engine.model')).message).toMatch(/has no readable config\.json \(ENOENT\): not a Hugging Face model directory/);
      writeFileSync(path.join(model, 'config.json'), '{ not json');
      expect(configError(() => readPretrainedShape(model, 'engine.model')).message).toMatch(/config\.json is not valid JSON/);
      writeFileSync(path.join(model, 'config.json'), JSON.stringify(QWEN2_5_VL_7B));
      expect(readPretrainedShape(model, 'engine.model').text.maxPositions).toBe(128000);
      writeFileSync(path.join(dir, 'file'), 'x');
      expect(configError(() => readPretrainedShape(path.join(dir, 'file'), 'engine.model')).message).toMatch(/is a file, not a model directory/);
    });
  });

  it('parses model locations: absolute directories and s3:// prefixes; refuses the rest with the fix', () => {
    expect(parseModelLocation('/models/qwen/', 'engine.model')).toEqual({ kind: 'local', dir: '/models/qwen' });
    expect(parseModelLocation('s3://models/qwen2.5-vl/7b/', 'engine.model')).toEqual({ kind: 's3', bucket: 'models', prefix: 'qwen2.5-vl/7b', uri: 's3://models/qwen2.5-vl/7b' });
    const refused: [string, RegExp][] = [
      ['Qwen/Qwen2.5-VL-7B-Instruct', /looks like a Hugging Face Hub id, and Sophia never downloads from the Hub at run time.*huggingface-cli download Qwen\/Qwen2\.5-VL-7B-Instruct/],
      ['models/qwen', /looks like a Hugging Face Hub id/],
      ['./qwen', /is a relative path/],
      ['https://example.com/qwen', /only local directories and s3:\/\/ prefixes/],
      ['s3://', /"" is not an S3 bucket name/],
      ['s3://Bad_Bucket/x', /"Bad_Bucket" is not an S3 bucket name/],
      ['s3://models', /names a bucket but no prefix/],
      ['s3://models/a/../b', /the prefix it has a "\.\." segment/],
      ['s3://models/a//b', /empty segment/],
      ['S3://models/a', /is not an s3:\/\/ URI/],
      ['  ', /is empty/],
    ];
    for (const [value, message] of refused) {
      const err = configError(() => parseModelLocation(value, 'engine.model'));
      expect(err.field).toBe('engine.model');
      expect(err.message).toMatch(message);
    }
  });
});
