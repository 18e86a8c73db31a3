import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import type { EvalReport, FamilySummary } from '../evaluation/evaluate';
import { writeReport } from '../report/report';
import { LocalStorage } from '../storage/local';
import { FAMILIES } from '../tasks/types';
import { buildSftReport } from './sft-report';

function evalReport(split: string, accuracy: number): EvalReport {
  const s = (a: number): FamilySummary => ({ examples: 10, accuracy: a, meanReward: a, formatRate: 1, meanLength: 30, passAtK: Math.min(1, a + 0.1) });
  return { split, k: 4, overall: s(accuracy), byFamily: Object.fromEntries(FAMILIES.map((f, i) => [f, s(accuracy / (i + 1))])), examples: [] };
}

describe('SFT report', () => {
  it('tabulates before/after per family and split, plots loss and accuracy, and writes it all to storage', async () => {
    const report = buildSftReport({
      runId: 'r1',
      preset: 'ci',
      parameters: 123_456,
      trainExamples: 1000,
      seconds: { sft: 60, total: 75 },
      sft: {
        steps: 40,
        stoppedEarly: false,
        bestValLoss: 0.5,
        bestStep: 40,
        history: Array.from({ length: 40 }, (_, i) => ({ step: i + 1, loss: 2 - i / 40, lr: 1e-3, gradNorm: 1, tokens: 100 })),
        validations: [
          { step: 20, valLoss: 1 },
          { step: 40, valLoss: 0.5 },
        ],
        bestState: undefined,
      },
      before: { test: evalReport('test', 0), ood: evalReport('ood', 0) },
      after: { test: evalReport('test', 0.8), ood: evalReport('ood', 0.4) },
      checkpointKey: 'runs/r1/sft/checkpoints/00000040',
    });
    expect(report.markdown).toContain('| test | counting | 10 | 0.0 % | 80.0 % |');
    expect(report.markdown).toContain('| ood | all | 10 | 0.0 % | 40.0 % |');
    expect(report.markdown).toContain('123,456 parameters');
    expect(report.plots.map((p) => p.name)).toEqual(['loss', 'accuracy-test', 'accuracy-ood']);
    expect(report.json).toMatchObject({ sft: { bestStep: 40 }, after: { test: { overall: { accuracy: 0.8 } } } });

    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-report-'));
    try {
      const storage = new LocalStorage(dir);
      const written = await writeReport(storage, 'r1', report, 'sft');
      expect(written.markdown).toBe('runs/r1/reports/sft/report.md');
      const md = new TextDecoder().decode(await storage.get(written.markdown));
      expect(md).toContain('![Accuracy per family (test)](accuracy-test.png)');
      const png = PNG.sync.read(Buffer.from(await storage.get('runs/r1/reports/sft/loss.png')));
      expect(png.width).toBe(800);
      const json = JSON.parse(new TextDecoder().decode(await storage.get(written.json))) as { plots: string[] };
      expect(json.plots).toHaveLength(3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
