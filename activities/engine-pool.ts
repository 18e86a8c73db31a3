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
 * to host memory first (`saveState`) and restored when the slot is used again, so runs that share a worker do not
 * throw away each other's uncommitted progress. At most `spillCapacity` states are kept; older ones are dropped
 * (their owners reload the last committed checkpoint).
 *
 * Engines are made with the options of the run that uses them (`engineOptionsOf(config)`: its config's `engine`
 * section), so a run's threads and execution provider are honoured on whichever worker runs its activities.
 */
import { totalmem } from 'node:os';
import { ConfigError } from '../common/errors';
import { estimateRun, formatBytes } from '../config/limits';
import type { RunConfig } from '../config/run-config';
import type { EngineOptions } from '../engine/factory';
import type { Engine, EngineFile } from '../engine/types';

/** What this worker lets one run's engines take: `SOPHIA_WORKER_MEMORY_GB`, else 80 % of the machine's memory. */
export function workerMemoryBytes(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const raw = env.SOPHIA_WORKER_MEMORY_GB?.trim();
  if (!raw) return 0.8 * totalmem();
  const gb = Number(raw);
  if (!Number.isFinite(gb) || gb <= 0) throw new ConfigError('SOPHIA_WORKER_MEMORY_GB', `${JSON.stringify(raw)} is not a positive number of GiB`);
  return gb * 1024 ** 3;
}

/**
 * The engine options of a run: its config's `engine` section (threads 0 = one per core of the worker's machine). A run
 * whose engines cannot fit this worker (`estimateRun`) is refused with a non-retryable `ConfigError` before any engine
 * is made: retrying it would only take down the next worker.
 */
export function engineOptionsOf(config: RunConfig, memoryBytes = workerMemoryBytes()): EngineOptions {
  const { kind, executionProvider, threads } = config.engine;
  if (kind !== 'onnx') {
    throw new ConfigError('engine.kind', `${JSON.stringify(kind)}: this worker has no such engine`, { hint: 'Use engine.kind: onnx (the built-in engine)' });
  }
  const { engineMemoryBytes, parameters } = estimateRun(config);
  if (engineMemoryBytes > memoryBytes) {
    throw new ConfigError('model', `the run's engines need about ${formatBytes(engineMemoryBytes)} (${parameters.toLocaleString('en-US')} parameters); this worker has ${formatBytes(memoryBytes)} for them`, {
      hint: 'Run it on a worker with more memory (SOPHIA_WORKER_MEMORY_GB says how much a worker gives a run), or use a smaller model or batches',
    });
  }
  return { kind, executionProvider, ...(threads > 0 ? { threads } : {}) };
}

interface Spilled {
  state: EngineFile[];
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
    if (slot && slot.options !== wanted) {
      this.slots.delete(name);
      this.spilled.delete(name);
      await slot.engine.dispose();
      slot = undefined;
    }
    if (!slot) {
      // Take this slot's spilled state out first, so making room cannot drop it.
      const spilled = this.spilled.get(name);
      this.spilled.delete(name);
      while (this.slots.size >= this.capacity) {
        const [oldestName, oldest] = [...this.slots.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed)[0]!;
        this.slots.delete(oldestName);
        if (oldest.checkpointKey !== undefined) this.spill(oldestName, { state: await oldest.engine.saveState(), checkpointKey: oldest.checkpointKey, lastUsed: oldest.lastUsed });
        await oldest.engine.dispose();
      }
      slot = { engine: this.create(options), options: wanted, checkpointKey: undefined, lastUsed: 0 };
      this.slots.set(name, slot);
      if (spilled) {
        await slot.engine.loadState(spilled.state);
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

  private spill(name: string, state: Spilled): void {
    this.spilled.set(name, state);
    while (this.spilled.size > this.spillCapacity) {
      const [oldest] = [...this.spilled.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed)[0]!;
      this.spilled.delete(oldest);
    }
  }

  /** Records that a slot's engine now equals `checkpointKey` (undefined: unknown, reload next time). */
  mark(name: string, checkpointKey: string | undefined): void {
    const slot = this.slots.get(name);
    if (slot) slot.checkpointKey = checkpointKey;
  }

  async dispose(): Promise<void> {
    for (const slot of this.slots.values()) await slot.engine.dispose();
    this.slots.clear();
    this.spilled.clear();
  }
}
