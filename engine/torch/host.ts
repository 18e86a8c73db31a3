/**
 * One engine process shared by several `TorchEngine`s: a GPU worker's policy, reference and reward model live in
 * one Python process, so they share the GPU's CUDA context and PyTorch's caching allocator (memory one model freed
 * is there for the next; with a process per model each process keeps its own cache, and a GPU fills up with memory
 * nobody uses). Each engine is a named model in the process (`TorchEngineProcess.model(name)`), with its own state
 * and RNG (engine/README.md: several models in one process).
 *
 * The process is started on first use and restarted by the first load after it died; every model it held is then
 * gone, which each engine notices by the process's generation (`healthy()` false, calls rejected until it loads
 * again). An engine that is disposed unloads its model; the last one to go closes the process.
 */
import type { ProcessEnd } from './errors';
import { TorchEngineProcess, type TorchEngineProcessOptions } from './process';

export class TorchEngineHost {
  private starting: Promise<TorchEngineProcess> | undefined;
  private restarting: Promise<void> | undefined;
  private current: TorchEngineProcess | undefined;
  private readonly members = new Set<string>();
  private nextName = 1;
  /** Bumped each time a process starts: a model loaded in an earlier one is gone. */
  private gen = 0;
  /** How the process a restart replaced ended (what an engine whose model was in it is told). */
  private replacedEnd: ProcessEnd | null = null;

  constructor(private readonly options: TorchEngineProcessOptions = {}) {}

  /** The generation of the process now running (0 before the first start). */
  get generation(): number {
    return this.gen;
  }

  /** How the process before the current one ended, once a restart replaced it. */
  get previousEnd(): ProcessEnd | null {
    return this.replacedEnd;
  }

  /** The running process, if one was started (it may have died since). */
  get process(): TorchEngineProcess | undefined {
    return this.current;
  }

  /** The model names of the engines that use this host. */
  get models(): string[] {
    return [...this.members];
  }

  /** A new engine's model name in the process. */
  join(): string {
    const name = `m${this.nextName++}`;
    this.members.add(name);
    return name;
  }

  /** The process, started on first use; `fresh`: a new one if it died (a load follows). */
  async start(fresh = false): Promise<{ proc: TorchEngineProcess; generation: number }> {
    if (!this.starting) {
      const starting = TorchEngineProcess.start(this.options).then((proc) => {
        this.gen++;
        return proc;
      });
      this.starting = starting;
      starting.catch(() => {
        if (this.starting === starting) this.starting = undefined; // a failed start is tried again on the next call
      });
    }
    const proc = (this.current = await this.starting);
    if (fresh && proc.end) {
      this.restarting ??= (async () => {
        const end = proc.end;
        try {
          await proc.restart();
          this.replacedEnd = end;
          this.gen++;
        } finally {
          this.restarting = undefined;
        }
      })();
      await this.restarting;
    }
    return { proc, generation: this.gen };
  }

  /** An engine leaves: its model is unloaded; the last one closes the process. */
  async leave(name: string): Promise<void> {
    if (!this.members.delete(name)) return;
    const proc = this.current ?? (await this.starting?.catch(() => undefined));
    if (!proc) return;
    if (this.members.size === 0) {
      this.starting = undefined;
      this.current = undefined;
      await proc.close();
      return;
    }
    if (!proc.end) await proc.model(name).unload().catch(() => undefined);
  }
}

/**
 * The hosts of one worker, one per process settings (python, threads, environment): engines made with the same
 * settings share a process, engines of runs that ask for other threads get their own.
 */
export class TorchEngineHosts {
  private readonly hosts = new Map<string, TorchEngineHost>();

  constructor(private readonly onLog?: TorchEngineProcessOptions['onLog']) {}

  get(options: Pick<TorchEngineProcessOptions, 'python' | 'threads' | 'env' | 'processes'>): TorchEngineHost {
    const key = JSON.stringify([options.python ?? null, options.threads ?? null, options.env ?? null, options.processes ?? 1]);
    let host = this.hosts.get(key);
    if (!host) {
      host = new TorchEngineHost({ ...options, ...(this.onLog ? { onLog: this.onLog } : {}) });
      this.hosts.set(key, host);
    }
    return host;
  }
}
