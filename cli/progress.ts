/**
 * Progress on the terminal for long CLI tasks.
 *
 *  - `ProgressBar`: one line, redrawn in place on a terminal (one line per 10 % otherwise, so CI logs stay
 *    readable). With a total it draws a bar, the step counter and an ETA; without one (a stage that has no steps,
 *    or whose steps have not started moving) it says what is being done and for how long, and guesses nothing.
 *  - `EtaEstimator`: time left from the rate of *recent* progress, and only once there is some: the time before
 *    the first step moves (loading, compiling, sampling) is not a rate, and a run attached to half-way through
 *    did not do its first half in no time.
 *  - `printAbove`: how anything else (the Temporal runtime's log lines) gets onto the terminal while a bar is
 *    drawn: the bar's line is cleared, the text printed on its own line, and the bar drawn again below it.
 */

type Out = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

/** `7s`, `4m00s`, `1h02m`: rounded to whole seconds (minutes past an hour) first, so 239.6 s is `4m00s`, never `3m60s`. */
export function formatSeconds(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  if (total < 60) return `${total}s`;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (total < 3600) return `${Math.floor(total / 60)}m${pad(total % 60)}s`;
  const minutes = Math.round(total / 60); // past an hour, to the minute (also rounded, never `1h60m`)
  return `${Math.floor(minutes / 60)}h${pad(minutes % 60)}m`;
}

export interface EtaOptions {
  /** Steps that must have moved since the first movement before there is an estimate. */
  minSteps: number;
  /** Seconds that must have passed since the first movement before there is an estimate. */
  minSeconds: number;
  /** The rate is measured over about this many most recent seconds. */
  windowSeconds: number;
}

const DEFAULT_ETA: EtaOptions = { minSteps: 3, minSeconds: 5, windowSeconds: 120 };

/**
 * Seconds left, from the rate of the last `windowSeconds` of progress. The first observation at which the step
 * count has moved anchors the measurement (whatever came before it, startup or steps done before this process
 * attached, is not a rate); until `minSteps` steps and `minSeconds` seconds have passed since then, there is no
 * estimate. A step count that goes back (a rewind to a checkpoint) starts over.
 */
export class EtaEstimator {
  private first: number | undefined;
  private last = 0;
  /** The first observation after the count moved: the measurement starts here. */
  private start: { t: number; done: number } | undefined;
  private samples: { t: number; done: number }[] = [];

  constructor(
    readonly total: number,
    private readonly options: EtaOptions = DEFAULT_ETA,
  ) {}

  /** Records `done` steps at `nowMs`; returns the seconds left, or undefined while there is too little to go on. */
  observe(done: number, nowMs: number): number | undefined {
    if (this.first === undefined || done < this.last) {
      this.first = done;
      this.start = undefined;
      this.samples = [];
    }
    this.last = done;
    if (done >= this.total) return 0;
    if (this.start === undefined) {
      if (done === this.first) return undefined;
      this.start = { t: nowMs, done };
      this.samples = [this.start];
      return undefined;
    }
    this.samples.push({ t: nowMs, done });
    // Keep one sample at or before the window's start, so the rate spans the whole window.
    while (this.samples.length > 2 && this.samples[1]!.t <= nowMs - this.options.windowSeconds * 1000) this.samples.shift();
    if (done - this.start.done < this.options.minSteps || (nowMs - this.start.t) / 1000 < this.options.minSeconds) return undefined;
    const anchor = this.samples[0]!;
    const moved = done - anchor.done;
    const seconds = (nowMs - anchor.t) / 1000;
    if (moved <= 0 || seconds <= 0) return undefined; // stalled for the whole window: no guess
    return ((this.total - done) * seconds) / moved;
  }
}

/** The bar that holds an unfinished line on a terminal, if any (see `printAbove`): its stream and how to redraw it. */
let openLine: { out: Out; redraw: () => void; owner: object } | undefined;

/** Prints `text` on its own line(s) without breaking a progress bar being drawn on `out`. */
export function printAbove(text: string, out: Out = process.stderr): void {
  const open = openLine?.out === out ? openLine : undefined;
  if (open) out.write('\r\x1b[2K');
  out.write(text.endsWith('\n') ? text : `${text}\n`);
  open?.redraw();
}

export interface ProgressBarOptions {
  out?: Out;
  /** The clock (ms), for tests. */
  now?: () => number;
  eta?: EtaOptions;
}

const WIDTH = 24;

export class ProgressBar {
  readonly out: Out;
  private readonly now: () => number;
  private readonly started: number;
  private readonly eta: EtaEstimator | undefined;
  private lastDecile = -1;
  private lastDetail: string | undefined;
  private line = '';
  private ended = false;
  /** A terminal bar that reached its total has ended its line; later updates leave it alone. */
  private completed = false;

  /** `total` undefined: no steps to count; the line says what is being done and for how long. */
  constructor(
    private readonly label: string,
    total: number | undefined,
    options: ProgressBarOptions = {},
  ) {
    this.out = options.out ?? process.stderr;
    this.now = options.now ?? Date.now;
    this.started = this.now();
    this.eta = total !== undefined && total > 0 ? new EtaEstimator(total, options.eta) : undefined;
  }

  /** Seconds since the bar was made. */
  elapsed(): number {
    return (this.now() - this.started) / 1000;
  }

  /**
   * Draws the bar at `done` finished steps. `current` is the step shown in the counter (the one in progress,
   * default `done`), so the counter agrees with a detail text that names the step being worked on.
   */
  update(done: number, detail = '', current = done): void {
    const elapsed = formatSeconds(this.elapsed());
    let changed: boolean;
    if (this.eta === undefined) {
      this.line = [this.label.padEnd(22), detail, `${elapsed} elapsed`].filter((s) => s.length > 0).join('  ');
      changed = detail !== this.lastDetail;
      this.lastDetail = detail;
    } else {
      const total = this.eta.total;
      const fraction = Math.min(1, Math.max(0, done / total));
      const filled = Math.round(fraction * WIDTH);
      const left = this.eta.observe(done, this.now());
      const timing = `${elapsed} elapsed${left !== undefined && done < total ? `, ~${formatSeconds(left)} left` : ''}`;
      this.line = `${this.label.padEnd(22)} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${Math.min(current, total)}/${total}${detail ? `  ${detail}` : ''}  ${timing}`;
      const decile = Math.floor(fraction * 10);
      changed = decile !== this.lastDecile;
      this.lastDecile = decile;
    }
    if (this.out.isTTY) {
      if (this.completed) return; // its last line stands
      this.ended = false;
      openLine = { out: this.out, redraw: () => this.redraw(), owner: this };
      this.redraw();
      if (this.eta !== undefined && done >= this.eta.total) {
        this.completed = true;
        this.end();
      }
    } else if (changed) {
      this.out.write(`${this.line}\n`);
    }
  }

  /** Draws the last line again (after `printAbove`). */
  redraw(): void {
    if (!this.out.isTTY || this.ended) return;
    const columns = (this.out.columns || 120) - 1;
    this.out.write(`\r${this.line.slice(0, columns).padEnd(columns)}`);
  }

  /** Ends the bar's line on a terminal, so whatever is printed next starts on a line of its own. */
  end(): void {
    if (openLine?.owner === this) openLine = undefined;
    if (this.out.isTTY && !this.ended && this.line) this.out.write('\n');
    this.ended = true;
  }
}
