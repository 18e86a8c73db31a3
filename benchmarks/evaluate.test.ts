/**
 * `evaluateBenchmark`'s `fit` step, on Sophia's own model (the ONNX engine, a micro policy): the prompts a benchmark
 * builds for a real vision-language model (ChartQA's chart at its own size, its question in mixed case) are refused
 * by that model as they are, and answered once `fit` (engine/onnx-prompts.ts `fitPromptToModel`) has adapted each
 * one; a row that cannot be shown is still skipped by name before `fit` sees it.
 */
import { rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../datasets/testing/fixtures';
import { createEngine } from '../engine/factory';
import type { ModelConfig } from '../engine/model/config';
import { Tokenizer } from '../engine/model/tokenizer';
import { fitPromptToModel, renderPrompt } from '../engine/onnx-prompts';
import type { ChatPart, ChatPrompt } from '../engine/types';
import { benchmarkRecords } from './data';
import { type BenchmarkEvalSettings, evaluateBenchmark } from './evaluate';
import { DEFAULT_EVAL_TEMPLATE } from './inputs';
import { chartQaParquet, chartQaRows } from './testing/fixtures';

const model: ModelConfig = { kind: 'policy', vocabSize: new Tokenizer().vocabSize, maxLength: 48, layers: 1, width: 16, heads: 2, mlpRatio: 2, image: { size: 4, channels: 3, patch: 2 }, initStd: 0.02 };
const engine = createEngine({ kind: 'onnx', threads: 1 });
const dir = tempDir('evaluate-fit');
const file = path.join(dir, 'test-00000-of-00001.parquet');
writeFileSync(file, chartQaParquet(chartQaRows()));
afterAll(async () => {
  await engine.dispose();
  rmSync(dir, { recursive: true, force: true });
});
const records = () => benchmarkRecords(file, 'chartqa');

describe('evaluateBenchmark with fit', () => {
  const settings: BenchmarkEvalSettings = { maxTokens: 6, promptsPerBatch: 2, template: DEFAULT_EVAL_TEMPLATE, seed: 0 };

  it('shows the engine each row\'s prompt as fit made it; without fit Sophia\'s model refuses the real prompt', async () => {
    await engine.init(model, 1);
    await expect(evaluateBenchmark(engine, 'chartqa', records(), settings)).rejects.toThrow(/content\[0\]\.image: 90×60 .* this model reads 4×4 RGB images/);

    const seen: ChatPrompt[] = [];
    const fitted: ChatPrompt[] = [];
    const fit = (prompt: ChatPrompt) => {
      seen.push(prompt);
      fitted.push(fitPromptToModel(prompt, model, settings.maxTokens).prompt);
      return fitted[fitted.length - 1]!;
    };
    const result = await evaluateBenchmark(engine, 'chartqa', records(), { ...settings, fit });
    // Rows 0 and 1 were built, fitted and answered; row 2 (no image bytes) was skipped before fit.
    expect(seen).toHaveLength(2);
    const [image, text] = seen[0]!.messages[0]!.content as ChatPart[];
    expect(image).toMatchObject({ type: 'image', image: { width: 90, height: 60 } });
    expect(text?.type === 'text' ? text.text : '').toContain('What is the highest value?');
    expect(result.predictions.map((p) => p.index)).toEqual([0, 1]);
    expect(result.skipped).toMatchObject({ rows: 1, byField: { image: 1 } });
    expect(result.overall.examples).toBe(2);
    // What the engine read: the fitted prompt (a 4×4 image, the folded question cut to the room maxTokens leaves).
    for (const p of fitted) expect(renderPrompt(p, model, 'fitted').tokens.length).toBeLessThanOrEqual(model.maxLength - settings.maxTokens);
    expect(renderPrompt(fitted[0]!, model, 'fitted').tokens).toEqual(new Tokenizer().prompt('what is the highest value? First think the pro'.slice(0, model.maxLength - 1 - settings.maxTokens)));
  });
});
