/**
 * Sophia side of bench/engine: loads the shared engine state and batch and answers the orchestrator's commands
 * exactly as the PyTorch worker does (the protocol is `WorkerCommand` / `WorkerReply` in ./shared).
 *   tsx bench/engine/sophia-worker.ts STATE BATCH.json
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { OnnxEngine, loadStateBytes } from '../../engine/onnx-bench';
import { type BenchBatch, type WorkerCommand, type WorkerReply, engineInputs } from './shared';

async function main(): Promise<void> {
  const [statePath, batchPath] = process.argv.slice(2) as [string, string];
  const spec = JSON.parse(readFileSync(batchPath, 'utf8')) as BenchBatch;
  const engine = new OnnxEngine(process.env.BENCH_THREADS ? { threads: Number(process.env.BENCH_THREADS) } : {});
  await loadStateBytes(engine, readFileSync(statePath));
  const { batch, adamw, request } = engineInputs(spec);
  const reply = (r: WorkerReply | { ready: true }) => process.stdout.write(`${JSON.stringify(r)}\n`);
  reply({ ready: true });
  for await (const line of createInterface({ input: process.stdin })) {
    const cmd = JSON.parse(line) as WorkerCommand;
    if (cmd.cmd === 'train') {
      const t0 = performance.now();
      const result = await engine.trainStep(batch, { kind: 'sft' }, adamw);
      reply({ ms: performance.now() - t0, loss: result.loss });
    } else if (cmd.cmd === 'sample') {
      const t0 = performance.now();
      const out = await engine.sample({ ...request, seed: cmd.seed });
      reply({ tokens: out.generatedTokens, seconds: (performance.now() - t0) / 1000 });
    } else {
      await engine.dispose();
      reply({ peakRssMB: process.resourceUsage().maxRSS / 1024 });
      return;
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
