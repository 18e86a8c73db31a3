/**
 * Prometheus metrics of a worker process (`/metrics`, `serveMetrics`): Sophia's own, next to the Temporal SDK's
 * runtime metrics (the worker's Rust core exports those on a private port; `/metrics` appends them), and Node's
 * process metrics.
 *
 * Sophia's series (names carry their unit; labels are bounded: a stage, a split, a GPU index — never a run id, except
 * on the per-run gauges, which change once per step and keep only the `RUN_GAUGE_RUNS` newest runs):
 *
 *   sophia_training_steps_total{stage}                counter   optimizer steps taken (sft, rm, grpo)
 *   sophia_step_duration_seconds{stage}               histogram wall time from one step's record to the next
 *   sophia_trained_tokens_total{stage}                counter   tokens trained on (SFT and reward-model steps)
 *   sophia_generated_tokens_total{stage}              counter   tokens sampled by RL rollouts
 *   sophia_rollout_duration_seconds{stage}            histogram an RL step's sampling (weight pushes included)
 *   sophia_update_duration_seconds{stage}             histogram an RL step's policy update
 *   sophia_rollout_tokens_per_second{stage}           gauge     the last RL step's sampling throughput
 *   sophia_checkpoint_written_bytes_total{stage}      counter   committed checkpoint bytes
 *   sophia_checkpoint_save_duration_seconds{stage}    histogram from staging the state to the commit landing
 *   sophia_engine_processes_resident_memory_bytes     gauge     RSS of this process's child processes (engine processes)
 *   sophia_gpu_utilization_ratio{gpu}                 gauge     from nvidia-smi, when the machine has one
 *   sophia_gpu_memory_used_bytes{gpu}, sophia_gpu_memory_total_bytes{gpu}
 *   sophia_run_loss{run_id,stage}, sophia_run_reward{run_id,stage}, sophia_run_accuracy{run_id,stage},
 *   sophia_run_eval_accuracy{run_id,split}, sophia_run_step{run_id,stage}   gauges, the newest runs only
 *
 * Everything a step reports reaches here through `observeRecords`, which `appendMetrics` calls with the records it
 * writes to `metrics.jsonl`: one declaration of what a step measured.
 */
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

/** Per-run gauges keep this many runs (the newest by last update); older runs' series are removed. */
export const RUN_GAUGE_RUNS = 20;

const seconds = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900];
const registers = [registry];

const steps = new Counter({ name: 'sophia_training_steps_total', help: 'Optimizer steps taken', labelNames: ['stage'], registers });
const stepDuration = new Histogram({ name: 'sophia_step_duration_seconds', help: 'Wall time between consecutive step records of a run', labelNames: ['stage'], buckets: seconds, registers });
const trainedTokens = new Counter({ name: 'sophia_trained_tokens_total', help: 'Tokens trained on (SFT and reward-model steps)', labelNames: ['stage'], registers });
const generatedTokens = new Counter({ name: 'sophia_generated_tokens_total', help: 'Tokens sampled by RL rollouts', labelNames: ['stage'], registers });
const rolloutDuration = new Histogram({ name: 'sophia_rollout_duration_seconds', help: "An RL step's sampling, weight pushes included", labelNames: ['stage'], buckets: seconds, registers });
const updateDuration = new Histogram({ name: 'sophia_update_duration_seconds', help: "An RL step's policy update", labelNames: ['stage'], buckets: seconds, registers });
const rolloutThroughput = new Gauge({ name: 'sophia_rollout_tokens_per_second', help: "The last RL step's sampling throughput", labelNames: ['stage'], registers });
const checkpointBytes = new Counter({ name: 'sophia_checkpoint_written_bytes_total', help: 'Committed checkpoint bytes', labelNames: ['stage'], registers });
const checkpointDuration = new Histogram({ name: 'sophia_checkpoint_save_duration_seconds', help: 'From staging the engine state to the commit landing', labelNames: ['stage'], buckets: seconds, registers });

const runGauges = {
  loss: new Gauge({ name: 'sophia_run_loss', help: "A run's latest training loss", labelNames: ['run_id', 'stage'], registers }),
  reward: new Gauge({ name: 'sophia_run_reward', help: "A run's latest mean RL reward", labelNames: ['run_id', 'stage'], registers }),
  accuracy: new Gauge({ name: 'sophia_run_accuracy', help: "A run's latest rollout accuracy (share of fully correct responses)", labelNames: ['run_id', 'stage'], registers }),
  evalAccuracy: new Gauge({ name: 'sophia_run_eval_accuracy', help: "A run's latest greedy evaluation accuracy", labelNames: ['run_id', 'split'], registers }),
  step: new Gauge({ name: 'sophia_run_step', help: "A run's latest step", labelNames: ['run_id', 'stage'], registers }),
};

/** Runs with per-run series, oldest first (re-inserted on every update), with the label sets each has. */
const runsSeen = new Map<string, Map<string, { gauge: Gauge; labels: Record<string, string> }>>();
/** The time of each (run, stage)'s latest step record, for step durations. */
const lastStep = new Map<string, { step: number; time: number }>();

/** Sets a per-run gauge, and forgets the oldest run's series once more than `RUN_GAUGE_RUNS` runs have them. */
function setRunGauge(name: keyof typeof runGauges, labels: Record<string, string> & { run_id: string }, value: number): void {
  const gauge = runGauges[name] as Gauge;
  const runId = labels.run_id;
  const series = runsSeen.get(runId) ?? new Map<string, { gauge: Gauge; labels: Record<string, string> }>();
  runsSeen.delete(runId);
  runsSeen.set(runId, series);
  series.set(`${name}${JSON.stringify(labels)}`, { gauge, labels });
  gauge.set(labels, value);
  while (runsSeen.size > RUN_GAUGE_RUNS) {
    const [oldest, old] = runsSeen.entries().next().value!;
    runsSeen.delete(oldest);
    for (const { gauge: g, labels: l } of old.values()) g.remove(l);
    for (const key of lastStep.keys()) if (key.startsWith(`${oldest}\u0000`)) lastStep.delete(key);
  }
}

/** A record as `metrics.jsonl` holds it (storage/metrics-log.ts `MetricRecord`). */
export interface ObservedRecord {
  stage: string;
  kind: string;
  step: number;
  time: string;
  [metric: string]: string | number;
}

const num = (v: string | number | undefined): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Updates the metrics from records a run appends to its metrics.jsonl (every step, validation and evaluation). */
export function observeRecords(runId: string, records: readonly ObservedRecord[]): void {
  for (const r of records) {
    const stage = r.stage;
    if (r.kind === 'eval') {
      for (const split of ['test', 'ood'] as const) {
        const accuracy = num(r[`${split}Accuracy`]);
        if (accuracy !== undefined) setRunGauge('evalAccuracy', { run_id: runId, split }, accuracy);
      }
      continue;
    }
    if (r.kind !== 'step') continue;
    steps.inc({ stage });
    setRunGauge('step', { run_id: runId, stage }, r.step);
    const key = `${runId}\u0000${stage}`;
    const time = Date.parse(r.time);
    const previous = lastStep.get(key);
    if (previous && r.step === previous.step + 1 && Number.isFinite(time) && time >= previous.time) stepDuration.observe({ stage }, (time - previous.time) / 1000);
    if (Number.isFinite(time)) lastStep.set(key, { step: r.step, time });
    const loss = num(r.loss);
    if (loss !== undefined) setRunGauge('loss', { run_id: runId, stage }, loss);
    const reward = num(r.reward);
    if (reward !== undefined) setRunGauge('reward', { run_id: runId, stage }, reward);
    const accuracy = num(r.accuracy);
    if (accuracy !== undefined) setRunGauge('accuracy', { run_id: runId, stage }, accuracy);
    const tokens = num(r.tokens);
    if (tokens !== undefined) trainedTokens.inc({ stage }, tokens);
    const rollout = num(r.rolloutSeconds);
    const throughput = num(r.rolloutTokensPerSecond);
    if (rollout !== undefined) {
      rolloutDuration.observe({ stage }, rollout);
      if (throughput !== undefined) {
        generatedTokens.inc({ stage }, Math.round(throughput * rollout));
        rolloutThroughput.set({ stage }, throughput);
      }
    }
    const update = num(r.updateSeconds);
    if (update !== undefined) updateDuration.observe({ stage }, update);
  }
}

/** A committed checkpoint of `stage`: its bytes and the seconds from staging to commit. */
export function observeCheckpoint(stage: string, bytes: number, durationSeconds: number): void {
  checkpointBytes.inc({ stage }, bytes);
  checkpointDuration.observe({ stage }, durationSeconds);
}

/** RSS of this process's descendants (Linux /proc; 0 elsewhere): the engine processes a worker runs. */
async function descendantsRss(pid = process.pid): Promise<number> {
  let total = 0;
  const children = async (p: number): Promise<number[]> => {
    const tasks = await readdir(`/proc/${p}/task`).catch(() => [] as string[]);
    const lists = await Promise.all(tasks.map((t) => readFile(`/proc/${p}/task/${t}/children`, 'utf8').catch(() => '')));
    return lists.flatMap((l) => l.trim().split(/\s+/).filter(Boolean).map(Number));
  };
  const queue = await children(pid);
  while (queue.length > 0) {
    const child = queue.shift()!;
    const status = await readFile(`/proc/${child}/status`, 'utf8').catch(() => '');
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    if (kb) total += Number(kb[1]) * 1024;
    queue.push(...(await children(child)));
  }
  return total;
}

new Gauge({
  name: 'sophia_engine_processes_resident_memory_bytes',
  help: "Resident memory of this process's child processes (the engine processes)",
  registers,
  async collect() {
    this.set(await descendantsRss());
  },
});

/** nvidia-smi's view of the GPUs: index, utilisation %, memory used and total MiB; [] without nvidia-smi. */
export function parseNvidiaSmi(csv: string): { gpu: string; utilization: number; usedBytes: number; totalBytes: number }[] {
  return csv
    .split('\n')
    .map((line) => line.split(',').map((s) => s.trim()))
    .filter((cols) => cols.length === 4 && cols.every((c) => /^\d+(\.\d+)?$/.test(c)))
    .map(([gpu, util, used, total]) => ({ gpu: gpu!, utilization: Number(util) / 100, usedBytes: Number(used) * 2 ** 20, totalBytes: Number(total) * 2 ** 20 }));
}

function nvidiaSmi(): Promise<string> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['--query-gpu=index,utilization.gpu,memory.used,memory.total', '--format=csv,noheader,nounits'], { timeout: 2000 }, (err, stdout) => resolve(err ? '' : stdout));
  });
}

const gpuMemoryUsed = new Gauge({ name: 'sophia_gpu_memory_used_bytes', help: 'GPU memory in use (nvidia-smi)', labelNames: ['gpu'] });
const gpuMemoryTotal = new Gauge({ name: 'sophia_gpu_memory_total_bytes', help: 'GPU memory in all (nvidia-smi)', labelNames: ['gpu'] });
new Gauge({
  name: 'sophia_gpu_utilization_ratio',
  help: 'GPU utilisation (nvidia-smi), 0–1',
  labelNames: ['gpu'],
  registers,
  // One nvidia-smi call per scrape sets the three GPU gauges (this one is collected first: the other two are
  // registered after it). Machines without nvidia-smi have none of them.
  async collect() {
    for (const g of parseNvidiaSmi(await nvidiaSmi())) {
      this.set({ gpu: g.gpu }, g.utilization);
      gpuMemoryUsed.set({ gpu: g.gpu }, g.usedBytes);
      gpuMemoryTotal.set({ gpu: g.gpu }, g.totalBytes);
    }
  },
});
registry.registerMetric(gpuMemoryUsed);
registry.registerMetric(gpuMemoryTotal);
