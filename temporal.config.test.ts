import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_TEMPORAL_CONFIG, heartbeatOverdueMs, loadTemporalConfig, TEMPORAL_ENV_VARS, toActivityOptions, toLocalActivityOptions, validateTemporalConfig } from './temporal.config';
import { configError } from './common/testing/config-error';

describe('loadTemporalConfig', () => {
  it('returns the defaults for an empty environment without sharing objects with them', () => {
    const config = loadTemporalConfig({});
    expect(config).toEqual(DEFAULT_TEMPORAL_CONFIG);
    config.activities.gpu.retry.nonRetryableErrorTypes.push('X');
    expect(DEFAULT_TEMPORAL_CONFIG.activities.gpu.retry.nonRetryableErrorTypes).not.toContain('X');
  });

  it('uses the design queue names and one engine activity per GPU worker', () => {
    const config = loadTemporalConfig({});
    expect(config.taskQueues).toEqual({ cpu: 'sophia-cpu', gpu: 'sophia-gpu' });
    expect(config.workers.gpu.maxConcurrentActivityTaskExecutions).toBe(1);
    expect(config.activities.gpu.retry.nonRetryableErrorTypes).toContain('CorruptCheckpointError');
  });

  it('applies overrides to every place a value is used', () => {
    const config = loadTemporalConfig({
      TEMPORAL_ADDRESS: 'temporal.internal:7233',
      TEMPORAL_NAMESPACE: 'ml',
      SOPHIA_TASK_QUEUE_GPU: 'gpu-a100',
      SOPHIA_GPU_HEARTBEAT_TIMEOUT: '5m',
      SOPHIA_GPU_START_TO_CLOSE: '6h',
      SOPHIA_RETRY_MAX_ATTEMPTS: '0',
      SOPHIA_SHUTDOWN_GRACE: '2m',
      SOPHIA_CPU_ACTIVITY_SLOTS: '8',
    });
    expect(config.connection).toMatchObject({ address: 'temporal.internal:7233', namespace: 'ml', tls: false });
    expect(config.taskQueues.gpu).toBe('gpu-a100');
    expect(config.activities.gpu.taskQueue).toBe('gpu-a100');
    expect(config.activities.gpu.heartbeatTimeoutMs).toBe(300_000);
    expect(config.activities.gpu.startToCloseTimeoutMs).toBe(21_600_000);
    expect(config.activities.cpu.retry.maximumAttempts).toBe(0);
    expect(config.activities.gpu.retry.maximumAttempts).toBe(0);
    expect(config.workers.cpu.shutdownGraceTimeMs).toBe(120_000);
    expect(config.workers.cpu.maxConcurrentActivityTaskExecutions).toBe(8);
  });

  it('puts a heartbeat overdue at a fraction of its heartbeat timeout (SOPHIA_HEARTBEAT_OVERDUE, default a quarter)', () => {
    const { gpu, cpu } = DEFAULT_TEMPORAL_CONFIG.activities;
    expect([heartbeatOverdueMs(DEFAULT_TEMPORAL_CONFIG, gpu.heartbeatTimeoutMs), heartbeatOverdueMs(DEFAULT_TEMPORAL_CONFIG, cpu.heartbeatTimeoutMs)]).toEqual([30_000, 15_000]);
    const config = loadTemporalConfig({ SOPHIA_HEARTBEAT_OVERDUE: '0.5', SOPHIA_GPU_HEARTBEAT_TIMEOUT: '20s' });
    expect(heartbeatOverdueMs(config, config.activities.gpu.heartbeatTimeoutMs)).toBe(10_000);
    for (const raw of ['30s', '0', '1', '-0.2']) {
      const err = configError(() => loadTemporalConfig({ SOPHIA_HEARTBEAT_OVERDUE: raw }));
      expect(err.field).toBe('SOPHIA_HEARTBEAT_OVERDUE');
      expect(err.message).toMatch(/not a fraction between 0 and 1/);
    }
  });

  it('derives the task queues from the deployment: the default one keeps sophia-cpu/sophia-gpu', () => {
    expect(loadTemporalConfig({}).deployment).toBe('sophia');
    const lab = loadTemporalConfig({ SOPHIA_DEPLOYMENT: 'lab_2' });
    expect(lab.deployment).toBe('lab_2');
    expect(lab.taskQueues).toEqual({ cpu: 'lab_2-cpu', gpu: 'lab_2-gpu' });
    expect([lab.activities.cpu.taskQueue, lab.activities.gpu.taskQueue]).toEqual(['lab_2-cpu', 'lab_2-gpu']);
    // An explicit queue still wins over the derived one (whatever the variables' order).
    expect(loadTemporalConfig({ SOPHIA_TASK_QUEUE_GPU: 'gpu-a100', SOPHIA_DEPLOYMENT: 'lab' }).taskQueues).toEqual({ cpu: 'lab-cpu', gpu: 'gpu-a100' });
  });

  it.each(['team-a', 'Lab', '_lab', 'a'.repeat(33), 'lab one'])('refuses the deployment name %j, naming SOPHIA_DEPLOYMENT and the fix', (name) => {
    const err = configError(() => loadTemporalConfig({ SOPHIA_DEPLOYMENT: name }));
    expect(err.field).toBe('SOPHIA_DEPLOYMENT');
    expect(err.message).toContain(JSON.stringify(name));
    expect(err.message).toMatch(/lowercase letters, digits and "_"/);
  });

  it('treats empty variables as unset', () => {
    expect(loadTemporalConfig({ TEMPORAL_ADDRESS: '', SOPHIA_GPU_ACTIVITY_SLOTS: '' })).toEqual(DEFAULT_TEMPORAL_CONFIG);
  });

  it('turns TLS on with an API key unless explicitly off', () => {
    expect(loadTemporalConfig({ TEMPORAL_API_KEY: 'k' }).connection).toMatchObject({ tls: true, apiKey: 'k' });
    expect(loadTemporalConfig({ TEMPORAL_API_KEY: 'k', TEMPORAL_TLS: 'false' }).connection.tls).toBe(false);
  });

  it.each([
    ['SOPHIA_GPU_HEARTBEAT_TIMEOUT', 'soon', /not a positive duration.*"90s"/],
    ['SOPHIA_GPU_HEARTBEAT_TIMEOUT', '0s', /not a positive duration/],
    ['SOPHIA_CPU_ACTIVITY_SLOTS', '0', /integer ≥ 1/],
    ['SOPHIA_GPU_ACTIVITY_SLOTS', '1.5', /integer ≥ 1/],
    ['SOPHIA_RETRY_MAX_ATTEMPTS', '-1', /integer ≥ 0/],
    ['SOPHIA_RETRY_BACKOFF', '0.5', /number ≥ 1/],
    ['TEMPORAL_ADDRESS', 'http://localhost:7233', /host:port/],
    ['TEMPORAL_TLS', 'maybe', /boolean/],
    ['SOPHIA_TASK_QUEUE_CPU', 'bad queue', /task queue name/],
  ])('names %s when it is %j', (name, value, message) => {
    const err = configError(() => loadTemporalConfig({ [name]: value }));
    expect(err.field).toBe(name);
    expect(err.message).toMatch(new RegExp(`^${name}: `));
    expect(err.message).toMatch(message);
    expect(err.retryable).toBe(false);
  });

  it('rejects a heartbeat timeout longer than the attempt timeout, naming the fix', () => {
    const err = configError(() =>
      loadTemporalConfig({ SOPHIA_CPU_HEARTBEAT_TIMEOUT: '20m', SOPHIA_CPU_START_TO_CLOSE: '10m' }),
    );
    expect(err.field).toBe('activities.cpu.heartbeatTimeoutMs');
    expect(err.message).toContain('SOPHIA_CPU_HEARTBEAT_TIMEOUT');
  });

  it('rejects retry intervals in the wrong order', () => {
    const err = configError(() => loadTemporalConfig({ SOPHIA_RETRY_INITIAL_INTERVAL: '5m', SOPHIA_RETRY_MAX_INTERVAL: '1m' }));
    expect(err.field).toBe('activities.cpu.retry');
  });

  it('rejects profiles whose queue disagrees with taskQueues', () => {
    const config = loadTemporalConfig({});
    config.activities.gpu.taskQueue = 'elsewhere';
    expect(() => validateTemporalConfig(config)).toThrow(/activities\.gpu\.taskQueue: is elsewhere but taskQueues\.gpu is sophia-gpu/);
  });

  it('rejects a GPU queue equal to the CPU queue', () => {
    const err = configError(() => loadTemporalConfig({ SOPHIA_TASK_QUEUE_GPU: 'sophia-cpu' }));
    expect(err.field).toBe('SOPHIA_TASK_QUEUE_GPU');
  });

  it('takes the model cache and the scratch folder as absolute paths, refusing others by name', () => {
    expect(loadTemporalConfig({ SOPHIA_SCRATCH: ' /var/tmp/sophia ', SOPHIA_MODEL_CACHE: '/cache/models' })).toMatchObject({ scratchDir: '/var/tmp/sophia', modelCacheDir: '/cache/models' });
    expect(loadTemporalConfig({}).scratchDir).toBeUndefined();
    expect(configError(() => loadTemporalConfig({ SOPHIA_SCRATCH: 'tmp/sophia' })).message).toMatch(/^SOPHIA_SCRATCH: "tmp\/sophia" is not an absolute path\. Give a local folder on a disk with room for two checkpoints/);
    expect(configError(() => loadTemporalConfig({ SOPHIA_MODEL_CACHE: 'models' })).message).toMatch(/^SOPHIA_MODEL_CACHE: "models" is not an absolute path/);
  });

  it('documents every variable it reads, here and in the README', () => {
    const names = TEMPORAL_ENV_VARS.map((v) => v.name);
    expect(new Set(names).size).toBe(names.length);
    for (const v of TEMPORAL_ENV_VARS) expect(v.doc.length).toBeGreaterThan(10);
    const readme = readFileSync(path.join(__dirname, 'README.md'), 'utf8');
    expect(names.filter((name) => !readme.includes(`\`${name}\``))).toEqual([]);
  });
});

describe('toActivityOptions', () => {
  it('maps a profile to proxyActivities options', () => {
    const options = toActivityOptions(DEFAULT_TEMPORAL_CONFIG.activities.gpu);
    expect(options).toMatchObject({
      taskQueue: 'sophia-gpu',
      startToCloseTimeout: 7_200_000,
      heartbeatTimeout: 120_000,
      retry: { initialInterval: 1000, backoffCoefficient: 2, maximumInterval: 60_000, maximumAttempts: 10 },
    });
  });

  it('gives local activities the profile\'s timeout and retry policy, without queue or heartbeat', () => {
    const profile = DEFAULT_TEMPORAL_CONFIG.activities.cpu;
    const options = toLocalActivityOptions(profile);
    expect(options).toEqual({ startToCloseTimeout: profile.startToCloseTimeoutMs, retry: toActivityOptions(profile).retry });
    expect(options).not.toHaveProperty('taskQueue');
    expect(options).not.toHaveProperty('heartbeatTimeout');
  });
});
