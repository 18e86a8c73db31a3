/**
 * Child process of the exact-resume test: loads an engine state, trains more steps on the step-indexed
 * batches, writes the resulting state.   tsx engine/testing/resume-child.ts IN OUT STEPS
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { OnnxEngine } from '../onnx-engine';
import { trainOnStepBatches } from './fixtures';

async function main(): Promise<void> {
  const [input, output, steps] = process.argv.slice(2);
  const engine = new OnnxEngine();
  await engine.loadState(readFileSync(input!));
  await trainOnStepBatches(engine, Number(steps));
  writeFileSync(output!, await engine.saveState());
  await engine.dispose();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
