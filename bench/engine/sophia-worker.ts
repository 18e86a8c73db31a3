/**
 * Sophia side of bench/engine: loads the shared engine state and batch, times training steps and KV-cache
 * sampling exactly as the PyTorch worker does, and writes the same JSON fields.
 *   tsx bench/engine/sophia-worker.ts STATE BATCH.json RESULT.json
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { OnnxEngine } from '../../engine/onnx-engine';
import type { BenchBatch } from './shared';

async function main(): Promise<void> {
  const [statePath, batchPath, outPath] = process.argv.slice(2) as [string, string, string];
  const spec = JSON.parse(readFileSync(batchPath, 'utf8')) as BenchBatch;
  const engine = new OnnxEngine(process.env.BENCH_THREADS ? { threads: Number(process.env.BENCH_THREADS) } : {});
  await engine.loadState(readFileSync(statePath));
  const batch = {
    batchSize: spec.batchSize,
    seqLen: spec.seqLen,
    images: Float32Array.from(spec.images),
    tokens: Int32Array.from(spec.tokens),
    positions: Int32Array.from(spec.positions),
    attentionMask: Uint8Array.from(spec.attentionMask),
    targets: Int32Array.from(spec.targets),
    lossMask: Float32Array.from(spec.lossMask),
  };
  const times: number[] = [];
  let firstLoss: number | undefined;
  for (let i = 0; i < spec.steps; i++) {
    const t0 = performance.now();
    const result = await engine.trainStep(batch, { kind: 'sft' }, spec.adamw);
    times.push(performance.now() - t0);
    firstLoss ??= result.loss;
  }
  const s = spec.sample;
  const request = {
    images: Float32Array.from(s.images),
    prompts: s.prompts.map((p) => Int32Array.from(p)),
    n: s.n,
    temperature: s.temperature,
    topP: 1,
    maxTokens: s.maxTokens,
    stopToken: s.stopToken,
  };
  // Warm-up: builds and loads the sampling sessions, and lets V8 optimize the sampler's loop (the first calls
  // run partly unoptimized). The PyTorch worker makes the same calls with the same seeds.
  for (let i = 0; i < s.warmupCalls; i++) await engine.sample({ ...request, seed: i });
  const rates: number[] = [];
  let generated = 0;
  for (let i = 0; i < s.timedCalls; i++) {
    const t0 = performance.now();
    const out = await engine.sample({ ...request, seed: s.warmupCalls + i });
    rates.push(out.generatedTokens / ((performance.now() - t0) / 1000));
    generated += out.generatedTokens;
  }
  await engine.dispose();
  writeFileSync(
    outPath,
    JSON.stringify({
      trainStepMs: times,
      firstLoss,
      sampleTokensPerSec: rates.sort((a, b) => a - b)[Math.floor(rates.length / 2)],
      generatedTokens: generated,
      peakRssMB: process.resourceUsage().maxRSS / 1024,
    }),
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
