/**
 * The TensorBoard event files that `appendMetrics` writes (observability/tensorboard.ts), read by the real TensorBoard:
 * its `EventAccumulator` (the pinned tensorboard of infra/local/tensorboard-requirements.lock, in the venv that
 * infra/local/install-mlflow.sh builds) loads each stage's folder of a LocalStorage run, CRCs checked, and must find
 * exactly the numbers of metrics.jsonl, as float32, at their steps and wall times — also after a retried append that
 * rewrites steps. Needs no server: only the venv.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tensorBoardPrefix } from '../../observability/tensorboard';
import { LocalStorage } from '../../storage/local';
import { type MetricRecord, appendMetrics, readMetrics } from '../../storage/metrics-log';
import { REPO_ROOT, stackEnv } from './stack';

const run = promisify(execFile);

function pythonPath(): string {
  const bin = path.resolve(REPO_ROOT, stackEnv().SOPHIA_TOOLS_DIR!, 'mlflow-venv/bin/python');
  if (!existsSync(bin)) throw new Error(`the tools venv is not installed at ${bin}: run \`bash infra/local/install-mlflow.sh\` (it installs TensorBoard too)`);
  return bin;
}

/** Every scalar series of each folder given, as TensorBoard's EventAccumulator loads it. */
const READ_SCALARS = `
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
out = {}
for folder in sys.argv[1:]:
    acc = EventAccumulator(folder, size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    out[folder] = {
        "fileVersion": acc.file_version,
        "scalars": {tag: [[e.step, e.value, e.wall_time] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]},
    }
print(json.dumps(out))
`;

type Scalars = Record<string, [step: number, value: number, wallTime: number][]>;

/** What TensorBoard should show for a stage: every finite number of its records, tagged kind/metric, as float32. */
function expected(records: readonly MetricRecord[], stage: string): Scalars {
  const out: Scalars = {};
  for (const r of records.filter((x) => x.stage === stage)) {
    for (const [name, value] of Object.entries(r)) {
      if (['stage', 'kind', 'step', 'time'].includes(name) || typeof value !== 'number' || !Number.isFinite(value)) continue;
      (out[`${r.kind}/${name}`] ??= []).push([r.step, Math.fround(value), Date.parse(r.time) / 1000]);
    }
  }
  return out;
}

describe('TensorBoard reads the event files of appendMetrics', () => {
  let python: string;
  let dir: string;
  let storage: LocalStorage;
  const runId = 'tb-run';

  beforeAll(async () => {
    python = pythonPath();
    await run(python, ['-c', 'import tensorboard']).catch((err: Error) => {
      throw new Error(`tensorboard is not installed in ${python}: run \`bash infra/local/install-mlflow.sh\`\n${err.message}`);
    });
    dir = mkdtempSync(path.join(tmpdir(), 'sophia-tensorboard-'));
    storage = new LocalStorage(dir);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function read(stages: string[]): Promise<Record<string, { fileVersion: number; scalars: Scalars }>> {
    const folders = stages.map((s) => path.join(dir, tensorBoardPrefix(runId), s));
    const { stdout } = await run(python, ['-c', READ_SCALARS, ...folders], { maxBuffer: 64 << 20, timeout: 120_000 });
    const byFolder = JSON.parse(stdout) as Record<string, { fileVersion: number; scalars: Scalars }>;
    return Object.fromEntries(stages.map((s, i) => [s, byFolder[folders[i]!]!]));
  }

  it('shows every stage’s numbers at their steps, and a retried append’s rewritten steps', async () => {
    const t = (s: number) => new Date(Date.UTC(2025, 0, 1, 12, 0, s, 250)).toISOString();
    const step = (stage: string, n: number, metrics: Record<string, number | string>): MetricRecord => ({ stage, kind: 'step', step: n, time: t(n), ...metrics });
    await appendMetrics(storage, runId, [
      step('sft', 1, { loss: 2.5, lr: 1e-4, tokens: 512 }),
      step('sft', 2, { loss: 1.9, lr: 1e-4, tokens: 512 }),
      { stage: 'sft', kind: 'validation', step: 2, time: t(2), valLoss: 2.1 },
      step('sft', 3, { loss: 1.7, lr: 9e-5, tokens: 512 }),
    ]);
    await appendMetrics(storage, runId, [
      step('grpo', 1, { reward: 0.25, gamma: 0.9, note: 'not a number', loss: NaN }),
      step('grpo', 2, { reward: 0.5, gamma: 0.85, note: 'not a number', loss: 0.125 }),
      { stage: 'grpo', kind: 'eval', step: 2, time: t(2), testAccuracy: 0.625, oodAccuracy: 0.5 },
    ]);

    const first = await read(['sft', 'grpo']);
    let records = await readMetrics(storage, runId);
    expect(first.sft).toEqual({ fileVersion: 2, scalars: expected(records, 'sft') });
    expect(first.grpo).toEqual({ fileVersion: 2, scalars: expected(records, 'grpo') });
    expect(Object.keys(first.grpo!.scalars).sort()).toEqual(['eval/oodAccuracy', 'eval/testAccuracy', 'step/gamma', 'step/loss', 'step/reward']);
    expect(first.grpo!.scalars['step/loss']).toEqual([[2, 0.125, Date.parse(t(2)) / 1000]]); // NaN at step 1: skipped
    expect(first.sft!.scalars['step/lr']!.map(([, v]) => v)).toEqual([Math.fround(1e-4), Math.fround(1e-4), Math.fround(9e-5)]);

    // A chunk retried from step 2 redoes steps 2–4: the sft file is rewritten from the records kept and the new ones.
    await appendMetrics(storage, runId, [step('sft', 2, { loss: 1.8, lr: 1e-4, tokens: 512 }), step('sft', 3, { loss: 1.6, lr: 9e-5, tokens: 512 }), step('sft', 4, { loss: 1.5, lr: 8e-5, tokens: 512 })]);
    const second = await read(['sft', 'grpo']);
    records = await readMetrics(storage, runId);
    expect(second.sft!.scalars).toEqual(expected(records, 'sft'));
    expect(second.sft!.scalars['step/loss']!.map(([s, v]) => [s, v])).toEqual([
      [1, Math.fround(2.5)],
      [2, Math.fround(1.8)],
      [3, Math.fround(1.6)],
      [4, Math.fround(1.5)],
    ]);
    expect(second.sft!.scalars['validation/valLoss']).toEqual([[2, Math.fround(2.1), Date.parse(t(2)) / 1000]]);
    expect(second.grpo).toEqual(first.grpo);
    expect((await storage.listAll(`${tensorBoardPrefix(runId)}/`)).map((o) => o.key)).toEqual([
      `${tensorBoardPrefix(runId)}/grpo/events.out.tfevents.0000000000.sophia`,
      `${tensorBoardPrefix(runId)}/sft/events.out.tfevents.0000000000.sophia`,
    ]);
  });
});
