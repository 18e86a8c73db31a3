/**
 * The SFT warmup end to end through the CLI code path (`sophia sft --preset ci`): dataset into storage,
 * untrained evaluation, training, checkpoint commit, trained evaluation, report with plots.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sftCommand } from '../../cli/sft';
import { CheckpointStore } from '../../storage/checkpoints';
import { LocalStorage } from '../../storage/local';
import { REPO_ROOT } from './stack';

describe('sophia sft --preset ci', () => {
  it('trains the policy past its untrained self and writes checkpoint, data and report', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-sft-'));
    const chunks: string[] = [];
    const out = { write: (s: string) => chunks.push(s) } as unknown as NodeJS.WritableStream;
    try {
      const code = await sftCommand({ preset: 'ci', runId: 'ci-sft', storage: dir, env: {}, repoRoot: REPO_ROOT, out });
      expect(code).toBe(0);
      const report = JSON.parse(readFileSync(path.join(dir, 'runs/ci-sft/reports/sft/report.json'), 'utf8')) as {
        before: { test: { overall: { formatRate: number; accuracy: number } } };
        after: { test: { overall: { formatRate: number; accuracy: number } } };
        sft: { steps: number; bestStep: number };
        plots: string[];
      };
      expect(report.sft.steps).toBe(150);
      expect(report.after.test.overall.formatRate).toBeGreaterThan(report.before.test.overall.formatRate + 0.5);
      expect(report.after.test.overall.accuracy).toBeGreaterThan(report.before.test.overall.accuracy);
      expect(report.plots).toHaveLength(3);
      const md = readFileSync(path.join(dir, 'runs/ci-sft/reports/sft/report.md'), 'utf8');
      expect(md).toContain('| test | all |');
      const store = new CheckpointStore(new LocalStorage(dir));
      const latest = await store.latest('ci-sft', 'sft');
      expect(latest?.step).toBe(report.sft.bestStep);
      await store.verify(latest!.key);
      await store.close();
      expect(readFileSync(path.join(dir, 'runs/ci-sft/data/previews/test-ocr.png')).subarray(1, 4).toString()).toBe('PNG');
      expect(chunks.join('')).toContain('report     local:');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
