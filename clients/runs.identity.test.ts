/**
 * What a run records about where it belongs: the deployment that started it and the store (location and id) its
 * workers must write to (`pipelineInput`).
 */
import { describe, expect, it } from 'vitest';
import { RUN_PRESETS, parseRunConfig } from '../config/run-config';
import { loadTemporalConfig } from '../temporal.config';
import { pipelineInput } from './runs';

describe('pipelineInput', () => {
  const config = parseRunConfig(RUN_PRESETS.ci, 'ci');

  it('records the store\'s location and id, and the deployment', () => {
    const temporal = loadTemporalConfig({ SOPHIA_DEPLOYMENT: 'lab' });
    const input = pipelineInput('r1', config, { location: 'local:/data/sophia', id: 'ab'.repeat(16) }, temporal);
    expect(input).toMatchObject({ runId: 'r1', storage: 'local:/data/sophia', storeId: 'ab'.repeat(16), deployment: 'lab' });
    expect(input.profiles.cpu.taskQueue).toBe('lab-cpu');
  });

  it('records no store id for a bare location (workers then check the location only)', () => {
    const input = pipelineInput('r1', config, 'local:/data/sophia', loadTemporalConfig({}));
    expect(input.storage).toBe('local:/data/sophia');
    expect(input).not.toHaveProperty('storeId');
    expect(input.deployment).toBe('sophia');
  });
});
