/**
 * `sophia eval --model DIR --benchmarks mathvista,chartqa --data ROOT [--limit N] [--out DIR] …`: evaluates a Hugging
 * Face model directory (a Qwen2-VL / Qwen2.5-VL checkpoint, e.g. one a Sophia run exported) on benchmarks read from
 * their published files, without training and without Temporal: the PyTorch engine in a process of its own, greedy
 * answers, each benchmark's own scoring (benchmarks/evaluate.ts, the functions `sophia score` uses).
 *
 * `--model RUN_ID[/STAGE]` evaluates a run's checkpoint (cli/eval-model.ts): a torch run's as above; an onnx run's
 * (Sophia's own tiny model) on the ONNX engine, each prompt adapted to what that model reads (one small square
 * image, its alphabet, its few positions: `onnxPromptFit`), which is said in a printed line and in results.json —
 * the path is the same end to end, the numbers mean nothing about a real vision-language model.
 *
 * Output: progress lines while it runs; per benchmark the accuracy, the per-category table and the rows it skipped
 * (by field); a side-by-side table with published numbers (benchmarks/reference.ts); and in `--out` (default
 * ./sophia-eval-<time>): `results.json` (every number) and `<benchmark>.predictions.jsonl` (one line per row: the
 * response, what was extracted, whether it is correct, the categories) for inspection.
 *
 * With `--extract-url` and `--extract-model`, a judge model behind an OpenAI-compatible endpoint reads each answer
 * before the rule scores it (benchmarks/llm-extract.ts), its answers cached in `--extract-cache`.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { type BenchmarkEvalSettings, type BenchmarkResult, evaluateBenchmark } from '../benchmarks/evaluate';
import { BENCHMARK_NAMES, type BenchmarkName, benchmarkByName } from '../benchmarks/index';
import { benchmarkRecords } from '../benchmarks/data';
import { DEFAULT_EVAL_TEMPLATE, validateEvalTemplate } from '../benchmarks/inputs';
import { LlmExtractor } from '../benchmarks/llm-extract';
import { REFERENCE_MODELS } from '../benchmarks/reference';
import { SophiaError } from '../common/errors';
import { INFERENCE_ONLY } from '../activities/engine-checkpoints';
import { createEngine, prepareEngine } from '../engine/factory';
import type { ModelConfig } from '../engine/model/config';
import type { Engine } from '../engine/types';
import { type RunModel, fetchRunModel, onnxAdaptationLine, onnxPromptFit, parseModelArg } from './eval-model';
import { defaultStorage, userPath } from './paths';

type Env = Readonly<Record<string, string | undefined>>;

const REPO_ROOT = path.resolve(__dirname, '..');

export const EVAL_HELP = `usage: sophia eval --model DIR --benchmarks NAME[,NAME…] --data ROOT|NAME=PATH[,NAME=PATH…] [options]

Evaluates a Hugging Face model directory (Qwen2-VL / Qwen2.5-VL) on benchmarks, greedy, with each benchmark's own
answer extraction and scoring (docs/benchmarks.md), without training. Benchmarks: ${BENCHMARK_NAMES.join(', ')}.

  --model DIR          the model directory (config.json, weights, processor files), or
  --model RUN_ID[/STAGE]  a run's checkpoint (STAGE grpo, sft or init; default: its latest RL, else SFT one). An
                       onnx run's checkpoint (Sophia's own tiny model) runs on the ONNX engine with each prompt
                       adapted to what it reads: the first image resized to its size, the text folded to its alphabet
                       and cut to fit; the path works, the numbers say nothing about a real vision-language model
  --storage DIR|s3://…  the run's storage (default: SOPHIA_STORAGE, else the local default)
  --benchmarks LIST    comma-separated benchmark names
  --data ROOT          each benchmark read from ROOT/<name> (a folder of its published .parquet/.jsonl files), or
  --data NAME=PATH,…   each from its own folder or file (absolute, or s3://bucket/prefix)
  --limit N            only the first N rows of each benchmark
  --max-tokens N       most tokens per answer (default 1024; Sophia's tiny model: half its text positions)
  --batch N            prompts per engine call (default 8)
  --template TEXT      the prompt around each question; {question} is the benchmark's question (default: reason in
                       <think></think>, answer in <answer></answer>)
  --device cpu|cuda    default: cuda when the engine sees a GPU (PyTorch engine only)
  --dtype D            float32 | bfloat16 | float16 (default: bfloat16 on a GPU, float32 on CPU; PyTorch engine only)
  --threads N          torch threads, or onnxruntime's for Sophia's model (default: the engine's choice)
  --out DIR            where results.json and the predictions go (default ./sophia-eval-<time>)

Answer extraction (optional; by default each benchmark's rules read the answer from the response):
  --extract-url URL    an OpenAI-compatible endpoint up to /v1 (e.g. http://localhost:8000/v1) whose model reads
                       the final answer out of each response before the benchmark's rule scores it
  --extract-model NAME the model to ask, as the server names it (required with --extract-url)
  --extract-cache DIR  answers by (model, prompt), so re-scoring asks nothing twice (default <out>/extract-cache)
  --extract-api-key-env VAR
                       the environment variable holding the endpoint's API key (default: no key is sent)
  An endpoint that keeps failing stops the evaluation; the answers read so far stay cached.`;

const DTYPES = ['float32', 'float64', 'bfloat16', 'float16'] as const;

function positiveInt(value: string | undefined, flag: string, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new SophiaError('input', `${flag} must be a whole number >= 1 (got ${JSON.stringify(value)})`, { hint: EVAL_HELP });
  return n;
}

/** `--data`: one root for all, or NAME=PATH pairs; every benchmark asked for must get a location. */
export function dataLocations(value: string, benchmarks: readonly BenchmarkName[], env: Env): Record<BenchmarkName, string> {
  const out = {} as Record<BenchmarkName, string>;
  if (!value.includes('=')) {
    const root = userPath(value, env);
    for (const b of benchmarks) out[b] = /^s3:\/\//i.test(root) ? `${root.replace(/\/+$/, '')}/${b}` : path.join(root, b);
    return out;
  }
  for (const pair of value.split(',')) {
    const at = pair.indexOf('=');
    const name = pair.slice(0, at).trim();
    benchmarkByName(name, '--data');
    out[name as BenchmarkName] = userPath(pair.slice(at + 1).trim(), env);
  }
  const missing = benchmarks.filter((b) => out[b] === undefined);
  if (missing.length > 0) throw new SophiaError('input', `--data names no location for ${missing.join(', ')}`, { hint: 'Add NAME=PATH for each benchmark in --benchmarks, or give one ROOT folder' });
  return out;
}

const pct = (x: number) => (100 * x).toFixed(1);

/** The printed report of one benchmark: overall, per category, skipped rows. */
export function formatResult(r: BenchmarkResult): string {
  const lines = [`${r.benchmark} (${r.title}): ${pct(r.overall.accuracy)} % (${r.overall.correct} / ${r.overall.examples})`];
  lines.push(`  mean answer ${r.meanTokens.toFixed(0)} tokens; ${pct(r.truncatedShare)} % ran into --max-tokens`);
  for (const [key, values] of Object.entries(r.byCategory)) {
    lines.push(`  by ${key}:`);
    for (const [value, t] of Object.entries(values)) lines.push(`    ${value.padEnd(36)} ${pct(t.accuracy).padStart(5)} %  (${t.correct} / ${t.examples})`);
  }
  if (r.skipped.rows > 0) {
    lines.push(`  skipped ${r.skipped.rows} rows: ${Object.entries(r.skipped.byField).map(([f, n]) => `${n} for ${f}`).join(', ')}`);
    for (const s of r.skipped.first) lines.push(`    row ${s.index}: ${s.message}`);
  }
  return lines.join('\n');
}

/** Side by side with the published numbers (benchmarks/reference.ts). */
export function formatComparison(results: readonly BenchmarkResult[], model: string): string {
  const names = results.map((r) => r.benchmark);
  const header = ['model', ...names].map((c, i) => (i === 0 ? c.padEnd(34) : c.padStart(10))).join('');
  const row = (label: string, values: (number | undefined)[]) =>
    [label.padEnd(34), ...values.map((v) => (v === undefined ? '—' : v.toFixed(1)).padStart(10))].join('');
  return [
    header,
    row(`this run: ${path.basename(model)}`, results.map((r) => 100 * r.overall.accuracy)),
    ...REFERENCE_MODELS.map((m) => row(`${m.name} (${m.source})`, names.map((n) => m.accuracy[n]))),
  ].join('\n');
}

/** Which flag set each option of the extraction endpoint, for its errors. */
const EXTRACT_FLAGS: Partial<Record<string, string>> = { baseUrl: '--extract-url', model: '--extract-model', apiKey: '--extract-api-key-env' };

interface ExtractionFlags {
  baseUrl: string;
  model: string;
  cacheDir: string;
  apiKey?: string;
}

/**
 * The `--extract-*` flags, checked: none (no extraction step), or a URL with a model, an optional cache directory
 * and the variable holding the key (set). The URL itself is checked by the client (`LlmExtractor.open`).
 */
export function extractionFlags(values: Readonly<Record<string, string | boolean | undefined>>, outDir: string, env: Env): ExtractionFlags | undefined {
  const flag = (name: string) => {
    const v = values[name];
    return typeof v === 'string' ? v : undefined;
  };
  const url = flag('extract-url');
  if (url === undefined) {
    const stray = ['extract-model', 'extract-cache', 'extract-api-key-env'].find((f) => flag(f) !== undefined);
    if (stray) throw new SophiaError('input', `--${stray} needs --extract-url (the endpoint that extracts answers)`, { hint: EVAL_HELP });
    return undefined;
  }
  const model = flag('extract-model')?.trim();
  if (!model) throw new SophiaError('input', '--extract-model is required with --extract-url: the model to ask, as the server names it', { hint: 'e.g. --extract-model Qwen/Qwen2.5-7B-Instruct' });
  const keyVar = flag('extract-api-key-env');
  let apiKey: string | undefined;
  if (keyVar !== undefined) {
    if (!/^[A-Z_][A-Z0-9_]*$/.test(keyVar)) throw new SophiaError('input', `--extract-api-key-env must name an environment variable (got ${JSON.stringify(keyVar)})`, { hint: 'e.g. --extract-api-key-env OPENAI_API_KEY' });
    apiKey = env[keyVar];
    if (!apiKey) throw new SophiaError('input', `--extract-api-key-env: ${keyVar} is not set`, { hint: `Set ${keyVar} to the endpoint's API key, or leave out --extract-api-key-env for an endpoint without one` });
  }
  const cache = flag('extract-cache');
  return { baseUrl: url, model, cacheDir: cache === undefined ? path.join(outDir, 'extract-cache') : userPath(cache, env), ...(apiKey ? { apiKey } : {}) };
}

/** `args`: what follows `sophia eval`. Returns the exit code; bad input throws a `SophiaError` (exit 2). */
export async function evalCommand(args: string[], env: Env, out: NodeJS.WritableStream): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      benchmarks: { type: 'string' },
      data: { type: 'string' },
      limit: { type: 'string' },
      'max-tokens': { type: 'string' },
      batch: { type: 'string' },
      template: { type: 'string' },
      device: { type: 'string' },
      dtype: { type: 'string' },
      threads: { type: 'string' },
      out: { type: 'string' },
      storage: { type: 'string' },
      'extract-url': { type: 'string' },
      'extract-model': { type: 'string' },
      'extract-cache': { type: 'string' },
      'extract-api-key-env': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    out.write(`${EVAL_HELP}\n`);
    return 0;
  }
  if (!values.model || !values.benchmarks || !values.data) throw new SophiaError('input', '--model, --benchmarks and --data are required', { hint: EVAL_HELP });
  const benchmarks = [...new Set(values.benchmarks.split(',').map((s) => s.trim()).filter((s) => s !== ''))];
  for (const b of benchmarks) benchmarkByName(b, '--benchmarks');
  const names = benchmarks as BenchmarkName[];
  const locations = dataLocations(values.data, names, env);
  const template = values.template ?? DEFAULT_EVAL_TEMPLATE;
  validateEvalTemplate(template, '--template');
  if (values.dtype !== undefined && !(DTYPES as readonly string[]).includes(values.dtype)) throw new SophiaError('input', `--dtype must be one of ${DTYPES.join(', ')} (got ${values.dtype})`);
  if (values.device !== undefined && !/^(cpu|cuda(:\d+)?)$/.test(values.device)) throw new SophiaError('input', `--device must be cpu or cuda[:N] (got ${values.device})`);
  const limit = positiveInt(values.limit, '--limit', undefined);
  const maxTokensFlag = positiveInt(values['max-tokens'], '--max-tokens', undefined);
  const settings: BenchmarkEvalSettings = {
    maxTokens: maxTokensFlag ?? 1024,
    promptsPerBatch: positiveInt(values.batch, '--batch', 8)!,
    template,
    seed: 0,
    ...(limit !== undefined ? { limit } : {}),
  };
  const threads = positiveInt(values.threads, '--threads', undefined);
  const modelArg = parseModelArg(values.model, env);
  // Checked before the model loads (minutes for a large one): the model's config and each local benchmark copy.
  if (modelArg.kind === 'dir' && !existsSync(path.join(modelArg.dir, 'config.json'))) {
    throw new SophiaError('input', `--model ${modelArg.dir}: no config.json there`, { hint: 'Give a Hugging Face model directory (config.json, weights and processor files), or RUN_ID[/STAGE]' });
  }
  for (const name of names) {
    const where = locations[name];
    if (!/^s3:\/\//i.test(where) && !existsSync(where)) {
      throw new SophiaError('input', `--data: ${name}'s data ${where} does not exist`, { hint: "Give the folder of the benchmark's published files, or NAME=PATH for it" });
    }
  }
  const outDir = userPath(values.out ?? `sophia-eval-${new Date().toISOString().replace(/[:.]/g, '-')}`, env);
  const extraction = extractionFlags(values, outDir, env);
  // Opening the extractor checks --extract-url and reads the cache (a corrupt entry is a warning).
  const extractor = extraction && LlmExtractor.open({ ...extraction, field: (option) => EXTRACT_FLAGS[option], warn: (line) => out.write(`${line}\n`) });
  if (extraction && extractor) {
    settings.extract = (benchmark, record, response) => extractor.extract(benchmark, record, response);
    out.write(`answers read by ${extraction.model} at ${extraction.baseUrl}; cache ${extraction.cacheDir} (${extractor.cache.size} answers)\n`);
  }

  // A run's checkpoint: copied from the run's storage into a folder removed at the end.
  const fetched = modelArg.kind === 'run' ? mkdtempSync(path.join(tmpdir(), 'sophia-eval-model-')) : undefined;
  // Sophia's own model: the config its prompts are adapted to and the prompt tokens it keeps (absent for a Hugging Face model).
  let onnx: { model: ModelConfig; promptTokens: number } | undefined;
  try {
    if (modelArg.kind === 'dir') return await evaluate({ engine: 'torch', dir: modelArg.dir }, undefined);
    const storage = values.storage !== undefined ? userPath(values.storage, env) : defaultStorage(env, REPO_ROOT);
    out.write(`fetching ${values.model} from ${storage}\n`);
    const got = await fetchRunModel(modelArg, storage, fetched!, env);
    out.write(`  ${got.checkpointKey}\n`);
    return await evaluate(got, { runId: modelArg.runId, checkpointKey: got.checkpointKey });
  } finally {
    if (fetched) rmSync(fetched, { recursive: true, force: true });
  }

  /**
   * The engine for `model`, its weights loaded: the PyTorch engine for a Hugging Face directory; the ONNX engine for
   * Sophia's own model (`onnx`), whose prompts each benchmark then adapts, with its own default --max-tokens:
   * half its positions (the tiny world's evaluation answers in 64 of 128).
   */
  async function loadEngine(model: RunModel | { engine: 'torch'; dir: string }, label: string): Promise<Engine> {
    if (model.engine === 'onnx') {
      const torchOnly = (['device', 'dtype'] as const).find((f) => values[f] !== undefined);
      if (torchOnly) throw new SophiaError('input', `--${torchOnly} is a setting of the PyTorch engine; ${label} holds Sophia's own model, which runs on the ONNX engine`, { hint: `Leave out --${torchOnly}` });
      settings.maxTokens = maxTokensFlag ?? Math.floor(model.model.maxLength / 2);
      onnx = { model: model.model, promptTokens: onnxPromptFit(model.model, settings.maxTokens).promptTokens }; // (refuses a --max-tokens that leaves no room)
      out.write(`${onnxAdaptationLine(onnx.model, onnx.promptTokens)}\n`);
      const engine = createEngine({ kind: 'onnx', ...(threads !== undefined ? { threads } : {}) });
      try {
        out.write(`loading ${label}\n`);
        await engine.loadState(model.files, INFERENCE_ONLY);
      } catch (err) {
        await engine.dispose();
        throw err;
      }
      return engine;
    }
    await prepareEngine('torch', (line) => out.write(`${line}\n`));
    const engine = createEngine({
      kind: 'torch',
      ...(values.device ? { device: values.device } : {}),
      ...(values.dtype ? { dtype: values.dtype as (typeof DTYPES)[number] } : {}),
      ...(threads !== undefined ? { threads } : {}),
    });
    try {
      out.write(`loading ${label}\n`);
      await engine.init({ kind: 'policy', pretrained: model.dir }, 0);
    } catch (err) {
      await engine.dispose();
      throw err;
    }
    return engine;
  }

  /** Loads `model` and evaluates it on every benchmark; `source`: the run checkpoint it came from. */
  async function evaluate(model: RunModel | { engine: 'torch'; dir: string }, source: { runId: string; checkpointKey: string } | undefined): Promise<number> {
    const label = source?.checkpointKey ?? (model.engine === 'torch' ? model.dir : '');
    const engine = await loadEngine(model, label);
    const results: BenchmarkResult[] = [];
    const adapted: Partial<Record<BenchmarkName, ReturnType<typeof onnxPromptFit>['counts']>> = {};
    try {
      mkdirSync(outDir, { recursive: true });
      for (const name of names) {
        const started = Date.now();
        const before = extractor && { ...extractor.stats };
        const fitter = onnx && onnxPromptFit(onnx.model, settings.maxTokens);
        out.write(`${name}: reading ${locations[name]}\n`);
        const result = await evaluateBenchmark(engine, name, benchmarkRecords(locations[name], `--data (${name})`), fitter ? { ...settings, fit: fitter.fit } : settings, (answered, skipped) => {
          out.write(`  ${name}: ${answered} answered${skipped ? `, ${skipped} skipped` : ''} (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
        });
        results.push(result);
        if (extractor && before) out.write(`  ${name}: ${extractor.stats.requests - before.requests} answers asked of the endpoint, ${extractor.stats.cached - before.cached} from the cache\n`);
        if (fitter) {
          adapted[name] = fitter.counts;
          out.write(`  ${name}: ${fitter.counts.prompts} prompts adapted, ${fitter.counts.textCut} of them cut to ${fitter.promptTokens} characters, ${fitter.counts.imagesDropped} further images dropped\n`);
        }
        writeFileSync(path.join(outDir, `${name}.predictions.jsonl`), result.predictions.map((p) => JSON.stringify(p)).join('\n') + (result.predictions.length ? '\n' : ''));
        out.write(`${formatResult(result)}\n`);
      }
    } finally {
      await engine.dispose();
    }
    const summary = results.map(({ predictions: _p, ...r }) => r);
    const extractionSummary = extraction && { url: extraction.baseUrl, model: extraction.model, cache: extraction.cacheDir };
    // Said beside the numbers: they are those of prompts adapted to Sophia's tiny model, not the benchmark's own.
    const adaptation = onnx && {
      model: "Sophia's tiny model (onnx engine)",
      imageSize: onnx.model.image.size,
      maxLength: onnx.model.maxLength,
      promptTokens: onnx.promptTokens,
      byBenchmark: adapted,
    };
    writeFileSync(
      path.join(outDir, 'results.json'),
      `${JSON.stringify({ model: source ?? label, settings: { ...settings, template }, locations, ...(extractionSummary ? { extraction: extractionSummary } : {}), ...(adaptation ? { adaptation } : {}), results: summary }, null, 2)}\n`,
    );
    out.write(`\n${formatComparison(results, source ? source.runId : label)}\n\nresults: ${path.join(outDir, 'results.json')}; predictions: ${names.map((n) => `${n}.predictions.jsonl`).join(', ')}\n`);
    return 0;
  }
}
