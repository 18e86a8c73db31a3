/**
 * The engines a GPU worker keeps in memory between activities, so a run's consecutive training chunks find
 * their model already loaded (the worker's own task queue routes them back here), and a lock so that one
 * engine activity runs at a time per worker (one GPU, one model doing work).
 *
 * Each slot (e.g. "run-7/sft") remembers which committed checkpoint its engine currently equals; an activity
 * reuses the engine only if that is the checkpoint it must start from, otherwise it reloads from storage.
 */
import type { Engine } from '../engine/types';

interface Slot {
  engine: Engine;
  /** The committed checkpoint the engine's state equals, if any. */
  checkpointKey: string | undefined;
  lastUsed: number;
}

export class EnginePool {
  private readonly slots = new Map<string, Slot>();
  private queue: Promise<void> = Promise.resolve();
  private clock = 0;

  constructor(
    private readonly create: () => Engine,
    private readonly capacity = 2,
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

  /** The engine of a slot, created if needed (evicting the least recently used beyond capacity). */
  async slot(name: string): Promise<{ engine: Engine; checkpointKey: string | undefined }> {
    let slot = this.slots.get(name);
    if (!slot) {
      while (this.slots.size >= this.capacity) {
        const [oldest] = [...this.slots.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed);
        this.slots.delete(oldest![0]);
        await oldest![1].engine.dispose();
      }
      slot = { engine: this.create(), checkpointKey: undefined, lastUsed: 0 };
      this.slots.set(name, slot);
    }
    slot.lastUsed = ++this.clock;
    return { engine: slot.engine, checkpointKey: slot.checkpointKey };
  }

  /** Records that a slot's engine now equals `checkpointKey` (undefined: unknown, reload next time). */
  mark(name: string, checkpointKey: string | undefined): void {
    const slot = this.slots.get(name);
    if (slot) slot.checkpointKey = checkpointKey;
  }

  async dispose(): Promise<void> {
    for (const slot of this.slots.values()) await slot.engine.dispose();
    this.slots.clear();
  }
}
