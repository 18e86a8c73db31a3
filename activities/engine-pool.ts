/**
 * The engines a GPU worker keeps in memory between activities, so a run's consecutive training chunks find
 * their model already loaded (the worker's own task queue routes them back here), and a lock so that one
 * engine activity runs at a time per worker (one GPU, one model doing work).
 *
 * Each slot (e.g. "run-7/sft") remembers which committed checkpoint its engine currently equals (or another tag
 * its owner understands, such as the RL step it is at); an activity reuses the engine only if that is the state it
 * must start from, otherwise it reloads from storage.
 *
 * Beyond `capacity` engines the least recently used slot is evicted; if its state is known (tagged) it is spilled
 * first (`saveState` into a folder under the scratch dir: in memory for the ONNX engine, on local disk for a
 * Hugging Face model) and restored when the slot is used again, so runs that share a worker do not throw away each
 * other's uncommitted progress. At most `spillCapacity` states are kept; older ones are dropped, their folders
 * removed (their owners reload the last committed checkpoint).
 *
 * Engines are made with the options of the run that uses them (`engineOptionsOf(config)`: its config's `engine`
 * section), so a run's engine kind, threads, execution provider, dtype and device are honoured on whichever worker
 * runs its activities.
 */
import { rm } from 'node:fs/promises';
import { totalmem } from 'node:os';
import * as path from 'node:path';
import { ConfigError } from '../common/errors';
import { describeMemory, estimateRun, formatBytes, memoryHint } from '../config/limits';
import type { RunConfig } from '../config/run-config';
import type { TorchEstimateOptions } from '../config/torch-estimate';
import type { EngineOptions, TorchEngineSettings } from '../engine/factory';
import type { Engine, EngineFile } from '../engine/types';
import { scratchFolder } from './engine-checkpoints';

const drop = (dir: string) => rm(dir, { recursive: true, force: true });

/** What this worker lets one run's engines take: `SOPHIA_WORKER_MEMORY_GB`, else 80 % of the machine's memory. */
export function workerMemoryBytes(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const raw = env.SOPHIA_WORKER_MEMORY_GB?.trim();
  if (!raw) return 0.8 * totalmem();
  const gb = Number(raw);
  if (!Number.isFinite(gb) || gb <= 0) throw new ConfigError('SOPHIA_WORKER_MEMORY_GB', `${JSON.stringify(raw)} is not a positive number of GiB`);
  return gb * 1024 ** 3;
}

/**
 * The engine options of a run: its config's `engine` section — the one place a run config becomes engine settings
 * (threads 0 = the engine's own choice; torch: dtype and device `auto` are left out, for the engine to decide from
 * the GPU it sees). A run whose engines cannot fit this worker (`estimateRun`; for torch `estimate.models` names the
 * local directories of s3:// models once `resolveModel` fetched them) is refused with a non-retryable `ConfigError`
 * before any engine is made: retrying it would only take down the next worker.
 */
export function engineOptionsOf(config: RunConfig, memoryBytes = workerMemoryBytes(), estimate: TorchEstimateOptions = {}): EngineOptions {
  const e = estimateRun(config, estimate);
  if (e.engineMemoryBytes > memoryBytes) {
    throw new ConfigError(config.engine.kind === 'torch' ? 'engine.model' : 'model', `the run's engines need ${describeMemory(e)}; this worker has ${formatBytes(memoryBytes)} for them`, {
      hint: `Run it on a worker with more memory (SOPHIA_WORKER_MEMORY_GB says how much a worker gives a run), or: ${memoryHint(config)}`,
    });
  }
  const engine = config.engine;
  if (engine.kind === 'onnx') {
    const { kind, executionProvider, threads } = engine;
    return { kind, executionProvider, ...(threads > 0 ? { threads } : {}) };
  }
  const { dtype, device, threads, gradientCheckpointing, lora, rollout, processes } = engine;
  return {
    kind: 'torch',
    ...(dtype !== 'auto' ? { dtype } : {}),
    ...(device !== 'auto' ? { device } : {}),
    ...(threads > 0 ? { threads } : {}),
    gradientCheckpointing,
    ...(lora ? { lora } : {}),
    ...(rollout ? { rollout } : {}),
    ...(processes > 1 ? { processes } : {}),
  } satisfies TorchEngineSettings;
}

/**
 * The engine options of a run's frozen models in RL (its reference and its thinking reward model, which only
 * score): the run's engine options, offloaded to host memory when the config says `engine.offloadFrozen`.
 */
export function frozenEngineOptionsOf(config: RunConfig, memoryBytes = workerMemoryBytes(), estimate: TorchEstimateOptions = {}): EngineOptions {
  const options = engineOptionsOf(config, memoryBytes, estimate);
  if (options.kind !== 'torch') return options;
  const { rollout: _sampler, ...frozen } = options; // the frozen models never sample
  return config.engine.kind === 'torch' && config.engine.offloadFrozen ? { ...frozen, offload: true } : frozen;
}

interface Spilled {
  state: EngineFile[];
  /** The folder the state was saved into (removed when the state is restored or dropped). */
  dir: string;
  checkpointKey: string;
  lastUsed: number;
}

interface Slot {
  engine: Engine;
  /** The options it was made with (JSON). */
  options: string;
  /** The committed checkpoint the engine's state equals, if any. */
  checkpointKey: string | undefined;
  lastUsed: number;
}

export class EnginePool {
  private readonly slots = new Map<string, Slot>();
  private readonly spilled = new Map<string, Spilled>();
  private queue: Promise<void> = Promise.resolve();
  private clock = 0;

  constructor(
    private readonly create: (options: EngineOptions) => Engine,
    private readonly capacity = 2,
    private readonly spillCapacity = 16,
  ) {}

  /** Runs `fn` with exclusive use of the worker's compute (activities queue up here). */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    let release!: () => void;
    const previous = this.queue;
    this.queue = new Promise<void>((resolve) => (release = resolve));
    await previous;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /**
   * The engine of a slot, made with `options` if needed (evicting the least recently used beyond capacity). A slot
   * whose engine was made with other options is made again (its state unknown: the caller reloads).
   */
  async slot(name: string, options: EngineOptions): Promise<{ engine: Engine; checkpointKey: string | undefined }> {
    const wanted = JSON.stringify(options);
    let slot = this.slots.get(name);
    // Made with other options, or lost its model (a dead engine process): a new engine, whose state the caller
    // reloads from its last committed checkpoint.
    if (slot && (slot.options !== wanted || slot.engine.healthy?.() === false)) {
      this.slots.delete(name);
      await this.unspill(name);
      await slot.engine.dispose().catch(() => undefined);
      slot = undefined;
    }
    if (!slot) {
      // Take this slot's spilled state out first, so making room cannot drop it.
      const spilled = this.spilled.get(name);
      this.spilled.delete(name);
      while (this.slots.size >= this.capacity) {
        const [oldestName, oldest] = [...this.slots.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed)[0]!;
        this.slots.delete(oldestName);
        if (oldest.checkpointKey !== undefined) {
          const dir = await scratchFolder('spill');
          const state = await oldest.engine.saveState({ dir: path.join(dir, 'state') }).catch(async (err: unknown) => {
            await drop(dir);
            throw err;
          });
          await this.spill(oldestName, { state, dir, checkpointKey: oldest.checkpointKey, lastUsed: oldest.lastUsed });
        }
        await oldest.engine.dispose();
      }
      slot = { engine: this.create(options), options: wanted, checkpointKey: undefined, lastUsed: 0 };
      this.slots.set(name, slot);
      if (spilled) {
        try {
          await slot.engine.loadState(spilled.state);
        } finally {
          await drop(spilled.dir);
        }
        slot.checkpointKey = spilled.checkpointKey;
      }
    }
    slot.lastUsed = ++this.clock;
    return { engine: slot.engine, checkpointKey: slot.checkpointKey };
  }

  /** Slots currently held as engines (for tests and metrics). */
  loaded(): string[] {
    return [...this.slots.keys()];
  }

  private async spill(name: string, state: Spilled): Promise<void> {
    this.spilled.set(name, state);
    while (this.spilled.size > this.spillCapacity) {
      const [oldest] = [...this.spilled.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed)[0]!;
      await this.unspill(oldest);
    }
  }

  /** Forgets a slot's spilled state and removes its folder. */
  private async unspill(name: string): Promise<void> {
    const spilled = this.spilled.get(name);
    this.spilled.delete(name);
    if (spilled) await drop(spilled.dir);
  }

  /** Records that a slot's engine now equals `checkpointKey` (undefined: unknown, reload next time). */
  mark(name: string, checkpointKey: string | undefined): void {
    const slot = this.slots.get(name);
    if (slot) slot.checkpointKey = checkpointKey;
  }

  async dispose(): Promise<void> {
    for (const slot of this.slots.values()) await slot.engine.dispose();
    this.slots.clear();
    for (const name of [...this.spilled.keys()]) await this.unspill(name);
  }
}
