/**
 * Replay tests (docs/architecture.md §5): every recorded history under `histories/` must replay without a determinism
 * error against the current workflow code. A change that alters what a workflow does for an existing history
 * fails here and needs `patched()`. Record a new history with
 *   temporal workflow show -w WORKFLOW_ID -o json > test/replay/histories/NAME__WORKFLOW_ID.json
 * (with "/" in the workflow id written as "~"): the pipeline derives its stages' ids from its own id, so the
 * replay must run under the recorded id.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORKFLOWS_PATH } from '../../workers/worker';

const HISTORIES = path.join(__dirname, 'histories');
const files = readdirSync(HISTORIES).filter((f) => f.endsWith('.json'));

/** `NAME__WORKFLOW_ID.json` → the recorded workflow id ("~" stands for "/"). */
function workflowIdOf(file: string): string {
  return file.replace(/\.json$/, '').split('__')[1]!.replaceAll('~', '/');
}

function load(file: string) {
  return historyFromJSON(JSON.parse(readFileSync(path.join(HISTORIES, file), 'utf8')));
}

describe('workflow replay over recorded histories', () => {
  beforeAll(() => {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
  });

  it('has histories to replay', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  it.each(files)('replays %s deterministically', async (file) => {
    await Worker.runReplayHistory({ workflowsPath: WORKFLOWS_PATH }, load(file), workflowIdOf(file));
  });

  describe('detects a non-deterministic change', () => {
    // A variant of stackSmoke that verifies before it writes: same name, different commands.
    const dir = path.join(__dirname, '..', '..', '.sophia', 'replay-variant');
    beforeAll(() => {
      mkdirSync(dir, { recursive: true });
      writeFileSync(
        path.join(dir, 'index.ts'),
        `import { proxyActivities } from '@temporalio/workflow';
const acts = proxyActivities<Record<string, (x: unknown) => Promise<unknown>>>({ startToCloseTimeout: '1m' });
export async function stackSmoke(input: { runId: string }): Promise<unknown> {
  return acts.verifySmokeCheckpoint({ checkpointKey: input.runId });
}
`,
      );
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('fails the replay with a determinism violation', async () => {
      const history = load(files.find((f) => f.startsWith('stackSmoke'))!);
      await expect(Worker.runReplayHistory({ workflowsPath: dir }, history)).rejects.toBeInstanceOf(DeterminismViolationError);
    });
  });
});
