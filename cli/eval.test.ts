/**
 * `sophia eval` end to end on the PyTorch engine's tiny random Qwen2.5-VL: benchmarks in their published layouts
 * (ChartQA as a parquet file with an image struct column, MathVista and MMMU as JSONL with base64 images), a row
 * without its image skipped by name, every prediction scored by the benchmark's own rule (re-scoring the stored
 * response gives what was stored), results.json and the comparison table written. Skipped where the engine is not
 * installed. And on an onnx run's checkpoint (Sophia's own tiny model, untrained): the same path on the ONNX engine,
 * each prompt adapted to what that model reads, the adaptation said in a printed line and in results.json.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { saveEngineCheckpoint } from '../activities/engine-checkpoints';
import { BENCHMARKS } from '../benchmarks/index';
import { chartQaParquet, chartQaRows } from '../benchmarks/testing/fixtures';
import { completion, serveChat, stopChatServers } from '../common/testing/chat-server';
import { noisePng, tempDir } from '../datasets/testing/fixtures';
import { createEngine } from '../engine/factory';
import { presetConfig } from '../engine/model/config';
import { Tokenizer } from '../engine/model/tokenizer';
import { buildTinyQwen, torchSkipReason } from '../engine/testing/tiny-qwen';
import { CheckpointStore } from '../storage/checkpoints';
import { LocalStorage } from '../storage/local';
import { dataLocations, evalCommand, formatComparison } from './eval';

const skip = torchSkipReason();
let root = '';
let model = '';

const chartRows = chartQaRows();

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');
const mathvista = [
  {
    pid: '1', question: 'How many bars?', query: 'Question: How many bars are there?', decoded_image: b64(noisePng(56, 84, 3)), image: 'images/1.png',
    question_type: 'free_form', answer_type: 'integer', precision: null, choices: null, unit: null, answer: '3', metadata: { task: 'figure question answering', skills: ['numeric commonsense'] },
  },
  {
    pid: '2', question: 'Which is bigger?', query: 'Question: Which is bigger?\nChoices:\n(A) left\n(B) right', decoded_image: b64(noisePng(60, 60, 4)), image: 'images/2.png',
    question_type: 'multi_choice', answer_type: 'text', precision: null, choices: ['left', 'right'], unit: null, answer: 'right', metadata: { task: 'visual question answering', skills: ['logical reasoning'] },
  },
];
const mmmu = [
  { id: 'validation_Art_Theory_1', question: 'Who painted <image 1>?', options: "['Monet', 'Manet']", question_type: 'multiple-choice', answer: 'A', image_1: b64(noisePng(64, 64, 5)) },
];

beforeAll(() => {
  if (skip) return;
  root = tempDir('eval');
  model = buildTinyQwen(path.join(root, 'model'), { maxPositions: 512 });
  mkdirSync(path.join(root, 'data', 'chartqa'), { recursive: true });
  writeFileSync(path.join(root, 'data', 'chartqa', 'test-00000-of-00001.parquet'), chartQaParquet(chartRows));
  mkdirSync(path.join(root, 'data', 'mathvista', 'data'), { recursive: true });
  writeFileSync(path.join(root, 'data', 'mathvista', 'data', 'testmini.jsonl'), mathvista.map((r) => JSON.stringify(r)).join('\n'));
  mkdirSync(path.join(root, 'mmmu-copy'), { recursive: true });
  writeFileSync(path.join(root, 'mmmu-copy', 'validation.jsonl'), mmmu.map((r) => JSON.stringify(r)).join('\n'));
}, 300_000);
afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});
afterEach(stopChatServers);

describe('dataLocations', () => {
  it('reads one root for all benchmarks, or NAME=PATH pairs that must cover every benchmark', () => {
    expect(dataLocations('/data', ['chartqa', 'mmmu'], {})).toEqual({ chartqa: '/data/chartqa', mmmu: '/data/mmmu' });
    expect(dataLocations('s3://bench/copies/', ['mmstar'], {})).toEqual({ mmstar: 's3://bench/copies/mmstar' });
    expect(dataLocations('chartqa=/a/c.parquet,mmmu=/m', ['chartqa', 'mmmu'], {})).toEqual({ chartqa: '/a/c.parquet', mmmu: '/m' });
    expect(() => dataLocations('chartqa=/a', ['chartqa', 'mmmu'], {})).toThrow(/--data names no location for mmmu/);
    expect(() => dataLocations('chartqaa=/a', ['chartqa'], {})).toThrow(/--data: unknown benchmark "chartqaa"/);
  });
});

describe('sophia eval refuses bad input before loading anything, naming the flag', () => {
  const run = (args: string[]) => evalCommand(args, {}, new PassThrough());
  it('names the flag and the fix', async () => {
    const dir = tempDir('eval-args');
    try {
      writeFileSync(path.join(dir, 'config.json'), '{}');
      mkdirSync(path.join(dir, 'chartqa'));
      await expect(run(['--benchmarks', 'chartqa', '--data', dir])).rejects.toThrow(/--model, --benchmarks and --data are required/);
      await expect(run(['--model', path.join(dir, 'nope'), '--benchmarks', 'chartqa', '--data', dir])).rejects.toThrow(/--model .*nope: no config\.json there/);
      await expect(run(['--model', dir, '--benchmarks', 'chartqa,mmstar', '--data', dir])).rejects.toThrow(/--data: mmstar's data .*mmstar does not exist/);
      await expect(run(['--model', dir, '--benchmarks', 'chart', '--data', dir])).rejects.toThrow(/--benchmarks: unknown benchmark "chart"; known benchmarks: mathvista/);
      await expect(run(['--model', dir, '--benchmarks', 'chartqa', '--data', dir, '--limit', '0'])).rejects.toThrow(/--limit must be a whole number >= 1/);
      await expect(run(['--model', dir, '--benchmarks', 'chartqa', '--data', dir, '--template', 'no placeholder'])).rejects.toThrow(/--template: the evaluation template has no \{question\}/);
      await expect(run(['--model', dir, '--benchmarks', 'chartqa', '--data', dir, '--dtype', 'int8'])).rejects.toThrow(/--dtype must be one of/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('checks the answer-extraction flags together, naming the flag', async () => {
    const dir = tempDir('eval-extract-args');
    const base = ['--model', dir, '--benchmarks', 'chartqa', '--data', dir, '--out', path.join(dir, 'out')];
    try {
      writeFileSync(path.join(dir, 'config.json'), '{}');
      mkdirSync(path.join(dir, 'chartqa'));
      await expect(run([...base, '--extract-model', 'judge'])).rejects.toThrow(/--extract-model needs --extract-url/);
      await expect(run([...base, '--extract-cache', dir])).rejects.toThrow(/--extract-cache needs --extract-url/);
      await expect(run([...base, '--extract-url', 'http://127.0.0.1:8000/v1'])).rejects.toThrow(/--extract-model is required with --extract-url/);
      await expect(run([...base, '--extract-url', 'http://127.0.0.1:8000/v1', '--extract-model', ' '])).rejects.toThrow(/--extract-model is required/);
      await expect(run([...base, '--extract-url', 'not a url', '--extract-model', 'judge'])).rejects.toThrow(/--extract-url: not a URL \(got "not a url"\)\. Give the endpoint up to \/v1/);
      await expect(run([...base, '--extract-url', 'ftp://judge.example/v1', '--extract-model', 'judge'])).rejects.toThrow(/--extract-url: must be http\(s\)/);
      await expect(run([...base, '--extract-url', 'http://user:pw@judge.example/v1', '--extract-model', 'judge'])).rejects.toThrow(/--extract-url: must not carry credentials.*--extract-api-key-env/);
      await expect(run([...base, '--extract-url', 'http://127.0.0.1:8000/v1', '--extract-model', 'judge', '--extract-api-key-env', 'my-key'])).rejects.toThrow(/--extract-api-key-env must name an environment variable/);
      await expect(run([...base, '--extract-url', 'http://127.0.0.1:8000/v1', '--extract-model', 'judge', '--extract-api-key-env', 'JUDGE_KEY'])).rejects.toThrow(/--extract-api-key-env: JUDGE_KEY is not set/);
      expect(existsSync(path.join(dir, 'out'))).toBe(false); // nothing written, no cache opened
      const help = new PassThrough();
      let printed = '';
      help.on('data', (chunk: Buffer) => (printed += chunk.toString()));
      expect(await evalCommand(['--help'], {}, help)).toBe(0);
      for (const flag of ['--extract-url URL', '--extract-model NAME', '--extract-cache DIR', '--extract-api-key-env']) expect(printed).toContain(flag);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(skip !== undefined)(`sophia eval on the tiny Qwen2.5-VL${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('answers every row it can show, scores each with its benchmark\'s rule, and writes results, predictions and the comparison', async () => {
    const out = new PassThrough();
    let printed = '';
    out.on('data', (chunk: Buffer) => (printed += chunk.toString()));
    const outDir = path.join(root, 'results');
    const code = await evalCommand(
      ['--model', model, '--benchmarks', 'chartqa,mathvista,mmmu', '--data', `chartqa=${root}/data/chartqa,mathvista=${root}/data/mathvista,mmmu=${root}/mmmu-copy`, '--max-tokens', '12', '--batch', '2', '--device', 'cpu', '--threads', '1', '--out', outDir],
      {},
      out,
    );
    expect(code).toBe(0);
    const results = JSON.parse(readFileSync(path.join(outDir, 'results.json'), 'utf8')) as { results: { benchmark: string; overall: { examples: number; correct: number }; skipped: { rows: number; byField: Record<string, number> }; byCategory: Record<string, Record<string, { examples: number }>> }[] };
    const byName = Object.fromEntries(results.results.map((r) => [r.benchmark, r]));
    expect(byName.chartqa!.overall.examples).toBe(2);
    expect(byName.chartqa!.skipped).toMatchObject({ rows: 1, byField: { image: 1 } });
    expect(Object.keys(byName.chartqa!.byCategory.human_or_machine!).sort()).toEqual(['human', 'machine']);
    expect(byName.mathvista!.overall.examples).toBe(2);
    expect(byName.mathvista!.byCategory.task!['visual question answering']!.examples).toBe(1);
    expect(byName.mmmu!.overall.examples).toBe(1);

    // Each stored prediction is its row's, scored by the benchmark's own rule.
    const sources: Record<string, Record<string, unknown>[]> = { chartqa: chartRows.slice(0, 2), mathvista, mmmu };
    for (const [name, rows] of Object.entries(sources)) {
      const lines = readFileSync(path.join(outDir, `${name}.predictions.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { index: number; response: string; correct: boolean; extracted: string | null; tokens: number });
      expect(lines.map((p) => p.index)).toEqual(rows.map((_, i) => i));
      for (const p of lines) {
        expect(p.tokens).toBeGreaterThan(0);
        const again = BENCHMARKS[name as keyof typeof BENCHMARKS].read(rows[p.index]!).score(p.response);
        expect({ correct: p.correct, extracted: p.extracted }).toEqual({ correct: again.correct, extracted: again.extracted });
      }
    }
    expect(printed).toMatch(/chartqa \(ChartQA test\): [\d.]+ % \(\d+ \/ 2\)/);
    expect(printed).toMatch(/skipped 1 rows: 1 for image/);
    expect(printed).toContain(formatComparison([], model).split('\n')[0]!.slice(0, 5));
    expect(printed).toMatch(/SophiaVL-R1-7B \(SophiaVL-R1 paper\)\s+—\s+71\.3\s+61\.3/);
  }, 600_000);

  it('with --extract-url, scores what the extraction model reads (cached: a second run asks nothing), never showing the key', async () => {
    // The extraction model "reads" each ChartQA row's label, whatever the tiny model said: every row becomes correct.
    const labels: Record<string, string> = Object.fromEntries(chartRows.slice(0, 2).map((r) => [r.query, r.label[0]!]));
    const server = await serveChat((req) => {
      const prompt = req.body.messages[1]!.content as string;
      const question = /\[Question\]\n(.*)\n\[Model response\]/.exec(prompt.slice(prompt.lastIndexOf('Now this one:')))![1]!;
      return completion(`The response's final answer.\nExtracted answer: ${labels[question] ?? 'none'}`);
    });
    const evalChartQa = async (outDir: string) => {
      const out = new PassThrough();
      let printed = '';
      out.on('data', (chunk: Buffer) => (printed += chunk.toString()));
      const flags = ['--extract-url', server.baseUrl, '--extract-model', 'reader', '--extract-cache', path.join(root, 'extract-cache'), '--extract-api-key-env', 'READER_KEY'];
      const args = ['--model', model, '--benchmarks', 'chartqa', '--data', `${root}/data`, '--max-tokens', '8', '--device', 'cpu', '--threads', '1', '--out', outDir, ...flags];
      expect(await evalCommand(args, { READER_KEY: 'sk-reader-777' }, out)).toBe(0);
      const predictions = readFileSync(path.join(outDir, 'chartqa.predictions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { index: number; judgeExtracted: string | null; extracted: string | null; correct: boolean });
      return { printed, predictions, results: readFileSync(path.join(outDir, 'results.json'), 'utf8') };
    };

    const first = await evalChartQa(path.join(root, 'extract-1'));
    expect(server.received).toHaveLength(2);
    expect(server.received.every((r) => r.authorization === 'Bearer sk-reader-777' && r.body.model === 'reader' && r.body.temperature === 0)).toBe(true);
    expect(first.predictions.map((p) => [p.index, p.judgeExtracted, p.extracted, p.correct])).toEqual([
      [0, '45', '45', true],
      [1, '2019', '2019', true],
    ]);
    expect(first.printed).toMatch(/chartqa \(ChartQA test\): 100\.0 % \(2 \/ 2\)/);
    expect(first.printed).toContain('chartqa: 2 answers asked of the endpoint, 0 from the cache');
    expect(JSON.parse(first.results)).toMatchObject({ extraction: { url: server.baseUrl, model: 'reader', cache: path.join(root, 'extract-cache') }, results: [{ overall: { examples: 2, correct: 2, accuracy: 1 } }] });

    // The same responses again (greedy): every answer from the cache, no request.
    const second = await evalChartQa(path.join(root, 'extract-2'));
    expect(server.received).toHaveLength(2);
    expect(second.printed).toContain('chartqa: 0 answers asked of the endpoint, 2 from the cache');
    expect(second.predictions).toEqual(first.predictions);
    for (const text of [first.printed, first.results, second.printed]) expect(text).not.toContain('sk-reader-777');
  }, 600_000);
  it('evaluates a run\'s checkpoint by RUN_ID[/STAGE] from the run\'s storage: the same answers as the model directory it holds', async () => {
    const storageDir = path.join(root, 'storage');
    const store = new CheckpointStore(new LocalStorage(storageDir));
    const files = readdirSync(model).map((name) => ({ name, data: new Uint8Array(readFileSync(path.join(model, name))) }));
    await store.save({ runId: 'eval-run', stage: 'sft', step: 4, files: [...files, { name: 'sophia_optimizer.safetensors', data: new Uint8Array(64) }], configHash: 'x', meta: { model: { kind: 'policy', pretrained: model } } });
    await store.close();
    const outDir = path.join(root, 'results-run');
    const args = ['--benchmarks', 'chartqa', '--data', `chartqa=${root}/data/chartqa`, '--max-tokens', '12', '--batch', '2', '--device', 'cpu', '--threads', '1', '--storage', storageDir];
    // No RL checkpoint: the latest SFT one.
    expect(await evalCommand(['--model', 'eval-run', ...args, '--out', outDir], {}, new PassThrough())).toBe(0);
    const results = JSON.parse(readFileSync(path.join(outDir, 'results.json'), 'utf8')) as { model: { runId: string; checkpointKey: string } };
    expect(results.model).toEqual({ runId: 'eval-run', checkpointKey: 'runs/eval-run/sft/checkpoints/00000004' });
    const answers = (dir: string) => readFileSync(path.join(dir, 'chartqa.predictions.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { response: string }).response);
    expect(answers(outDir)).toEqual(answers(path.join(root, 'results'))); // greedy, the same weights: the same answers

    await expect(evalCommand(['--model', 'eval-run/grpo', ...args], {}, new PassThrough())).rejects.toThrow(/--model eval-run\/grpo: no grpo checkpoint of run eval-run/);
    await expect(evalCommand(['--model', 'eval-run/rm', ...args], {}, new PassThrough())).rejects.toThrow(/neither a model directory nor RUN_ID\[\/STAGE\] \(STAGE: grpo, sft, init\)/);
  }, 600_000);
});

describe("sophia eval on an onnx run's checkpoint (Sophia's own tiny model)", () => {
  it('evaluates it on the ONNX engine with every prompt adapted, says so, and scores each row by the benchmark\'s rule', async () => {
    const dir = tempDir('eval-onnx');
    try {
      const storageDir = path.join(dir, 'storage');
      const store = new CheckpointStore(new LocalStorage(storageDir));
      // The untrained policy of an onnx run (the `init` line the pipeline commits before SFT): the tiny preset.
      const model = presetConfig('tiny', 'policy', new Tokenizer().vocabSize);
      const engine = createEngine({ kind: 'onnx', threads: 1 });
      await engine.init(model, 7);
      const manifest = await saveEngineCheckpoint(store, engine, { runId: 'onnx-eval', stage: 'init', configHash: 'h' });
      await engine.dispose();
      // A checkpoint whose manifest records no model sophia eval can run.
      await store.save({ runId: 'odd-run', stage: 'grpo', step: 2, files: [{ name: 'state.bin', data: new Uint8Array(8) }], configHash: 'x', meta: { model: { kind: 'policy', vocabSize: 10 } } });
      await store.close();
      mkdirSync(path.join(dir, 'data', 'chartqa'), { recursive: true });
      writeFileSync(path.join(dir, 'data', 'chartqa', 'test-00000-of-00001.parquet'), chartQaParquet(chartRows));

      const out = new PassThrough();
      let printed = '';
      out.on('data', (chunk: Buffer) => (printed += chunk.toString()));
      const outDir = path.join(dir, 'results');
      const args = ['--benchmarks', 'chartqa', '--data', `${dir}/data`, '--batch', '2', '--threads', '1', '--storage', storageDir];
      expect(await evalCommand(['--model', 'onnx-eval/init', ...args, '--out', outDir], {}, out)).toBe(0);

      // The adaptation is said before the numbers: 16×16 images, 128 − 1 − 64 (the default: half the positions) characters.
      expect(printed).toContain(
        "Sophia's tiny model (the onnx engine, 16×16 images, 128 text positions): every prompt is adapted to what it reads — images resized to 16×16 (the first only), text folded to its alphabet and cut to 63 characters (a tag counts as one) — so these numbers measure the plumbing, not a real vision-language model",
      );
      expect(printed).toContain('chartqa: 2 prompts adapted, 2 of them cut to 63 characters, 0 further images dropped');
      expect(printed).toMatch(/chartqa \(ChartQA test\): [\d.]+ % \(\d+ \/ 2\)/);
      expect(printed).toMatch(/skipped 1 rows: 1 for image/);

      type Results = {
        model: unknown;
        settings: { maxTokens: number };
        adaptation: unknown;
        results: { benchmark: string; overall: { examples: number; correct: number; accuracy: number }; skipped: { rows: number; byField: Record<string, number> } }[];
      };
      const results = JSON.parse(readFileSync(path.join(outDir, 'results.json'), 'utf8')) as Results;
      expect(results.model).toEqual({ runId: 'onnx-eval', checkpointKey: manifest.key });
      expect(results.settings.maxTokens).toBe(64);
      expect(results.adaptation).toEqual({ model: "Sophia's tiny model (onnx engine)", imageSize: 16, maxLength: 128, promptTokens: 63, byBenchmark: { chartqa: { prompts: 2, textCut: 2, imagesDropped: 0 } } });
      const [chartqa] = results.results;
      expect(chartqa).toMatchObject({ benchmark: 'chartqa', overall: { examples: 2 }, skipped: { rows: 1, byField: { image: 1 } } });
      expect(chartqa!.overall.accuracy).toBeGreaterThanOrEqual(0);
      expect(chartqa!.overall.accuracy).toBeLessThanOrEqual(1);

      // Every row answered or skipped by name; each prediction scored by ChartQA's own rule.
      const predictions = readFileSync(path.join(outDir, 'chartqa.predictions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { index: number; response: string; correct: boolean; extracted: string | null; tokens: number });
      expect(predictions.map((p) => p.index)).toEqual([0, 1]);
      for (const p of predictions) {
        expect(p.tokens).toBeGreaterThan(0);
        expect(p.tokens).toBeLessThanOrEqual(64);
        const again = BENCHMARKS.chartqa.read(chartRows[p.index]!).score(p.response);
        expect({ correct: p.correct, extracted: p.extracted }).toEqual({ correct: again.correct, extracted: again.extracted });
      }

      // Refused, naming the flag: an answer that leaves the prompt no room, the PyTorch engine's settings; and a
      // checkpoint whose manifest records no model it can run.
      await expect(evalCommand(['--model', 'onnx-eval/init', ...args, '--max-tokens', '128', '--out', path.join(dir, 'r2')], {}, new PassThrough())).rejects.toThrow(
        /--max-tokens 128: maxTokens 128 does not fit the model's 128 text positions \(model\.maxLength\)/,
      );
      await expect(evalCommand(['--model', 'onnx-eval/init', ...args, '--device', 'cpu', '--out', path.join(dir, 'r3')], {}, new PassThrough())).rejects.toThrow(/--device is a setting of the PyTorch engine; .* holds Sophia's own model/);
      await expect(evalCommand(['--model', 'odd-run', ...args], {}, new PassThrough())).rejects.toThrow(/--model odd-run\/grpo: .* records no model sophia eval can run: meta\.model\.maxLength/);
      await expect(evalCommand(['--model', 'onnx-eval', ...args], {}, new PassThrough())).rejects.toThrow(/--model onnx-eval: no grpo or sft checkpoint of run onnx-eval/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
