/**
 * Smoke activities: the smallest real round trip through the stack — write a checkpoint to storage from a
 * worker, then load and verify it. Used by the `stackSmoke` workflow, which `sophia run` executes until the
 * training stages land, and by the end-to-end integration test.
 */
import { heartbeat } from '@temporalio/activity';
import type { CheckpointStore } from '../storage/checkpoints';
import { hashConfig } from '../storage/hashing';
import { withFailureMapping } from './failures';

export interface SmokeActivityDeps {
  store: CheckpointStore;
}

export interface WriteSmokeCheckpointInput {
  runId: string;
  step: number;
  /** Bytes of synthetic payload to write (deterministic from run id and step). */
  payloadBytes: number;
}

export interface SmokeCheckpointRef {
  /** Claim-check handle: the checkpoint's directory key. */
  checkpointKey: string;
  step: number;
  totalBytes: number;
}

export interface VerifiedSmokeCheckpoint extends SmokeCheckpointRef {
  files: string[];
  sha256: string;
}

/** Deterministic payload: the same run id and step always produce the same bytes (idempotent re-writes). */
function payload(runId: string, step: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (step + 1) * 2654435761;
  for (const ch of runId) x = Math.imul(x ^ ch.charCodeAt(0), 16777619);
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export function createSmokeActivities({ store }: SmokeActivityDeps) {
  return withFailureMapping({
    async writeSmokeCheckpoint(input: WriteSmokeCheckpointInput): Promise<SmokeCheckpointRef> {
      heartbeat({ step: input.step });
      const manifest = await store.save({
        runId: input.runId,
        stage: 'smoke',
        step: input.step,
        configHash: hashConfig({ kind: 'smoke', payloadBytes: input.payloadBytes }),
        metrics: { step: input.step },
        files: [
          { name: 'payload.bin', data: payload(input.runId, input.step, input.payloadBytes) },
          { name: 'state.json', data: new TextEncoder().encode(JSON.stringify({ step: input.step })) },
        ],
      });
      heartbeat({ step: input.step, checkpointKey: manifest.key });
      return { checkpointKey: manifest.key, step: manifest.step, totalBytes: manifest.totalBytes };
    },

    async verifySmokeCheckpoint(input: { checkpointKey: string }): Promise<VerifiedSmokeCheckpoint> {
      const { manifest } = await store.load(input.checkpointKey);
      return {
        checkpointKey: manifest.key,
        step: manifest.step,
        totalBytes: manifest.totalBytes,
        files: manifest.files.map((f) => f.name),
        sha256: manifest.files.find((f) => f.name === 'payload.bin')?.sha256 ?? '',
      };
    },
  });
}

export type SmokeActivities = ReturnType<typeof createSmokeActivities>;
