/**
 * Child process of the token-level contract's exact-resume check (token-engine.contract.ts): makes an engine with
 * `createEngine(OPTIONS)`, loads the state files in IN_DIR, trains STEPS more steps on the step-indexed batches,
 * writes its state files to OUT_DIR.
 *   tsx engine/testing/resume-child.ts OPTIONS_JSON IN_DIR OUT_DIR STEPS
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { type OnnxEngineSettings, createEngine } from '../factory';
import { trainOnStepBatches } from './fixtures';

async function main(): Promise<void> {
  const [options, input, output, steps] = process.argv.slice(2) as [string, string, string, string];
  const engine = createEngine(JSON.parse(options) as OnnxEngineSettings);
  await engine.loadState(readdirSync(input).map((name) => ({ name, data: readFileSync(path.join(input, name)) })));
  await trainOnStepBatches(engine, Number(steps));
  mkdirSync(output, { recursive: true });
  for (const file of await engine.saveState()) writeFileSync(path.join(output, file.name), file.data);
  await engine.dispose();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
