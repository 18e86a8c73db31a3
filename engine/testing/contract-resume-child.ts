/**
 * Child process of the prompt-level contract's exact-resume check (engine.contract.ts): makes the fixture's engine
 * with `createEngine`, loads the state files in IN_DIR, trains STEPS more SFT steps on the step-indexed batches,
 * writes its state files to OUT_DIR.
 *   tsx engine/testing/contract-resume-child.ts FIXTURE_JSON IN_DIR OUT_DIR STEPS
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { createEngine } from '../factory';
import { inMemory } from '../state-files';
import { type ModelFixture, trainOnStepBatches } from './contract-fixtures';

async function main(): Promise<void> {
  const [fixtureJson, input, output, steps] = process.argv.slice(2) as [string, string, string, string];
  const fixture = JSON.parse(fixtureJson) as ModelFixture;
  const engine = createEngine(fixture.options);
  try {
    await engine.loadState(readdirSync(input).map((name) => ({ name, data: new Uint8Array(readFileSync(path.join(input, name))) })));
    await trainOnStepBatches(engine, fixture.imageSize, Number(steps));
    mkdirSync(output, { recursive: true });
    for (const file of await inMemory(await engine.saveState())) writeFileSync(path.join(output, file.name), file.data);
  } finally {
    await engine.dispose();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
