/**
 * A one-line progress bar for long CLI tasks: redrawn in place on a terminal, one line per 10 % otherwise (so
 * logs in CI stay readable).
 */

export class ProgressBar {
  private readonly started = Date.now();
  private lastDecile = -1;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {}

  update(done: number, detail = ''): void {
    const fraction = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const elapsed = (Date.now() - this.started) / 1000;
    const eta = fraction > 0 ? (elapsed / fraction) * (1 - fraction) : 0;
    const width = 24;
    const filled = Math.round(fraction * width);
    const line = `${this.label.padEnd(10)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${this.total} ${detail}  ${formatSeconds(elapsed)} elapsed, ~${formatSeconds(eta)} left`;
    if (this.out.isTTY) {
      this.out.write(`\r${line.slice(0, (this.out.columns || 120) - 1).padEnd((this.out.columns || 120) - 1)}`);
      if (done >= this.total) this.out.write('\n');
    } else {
      const decile = Math.floor(fraction * 10);
      if (decile !== this.lastDecile) {
        this.lastDecile = decile;
        this.out.write(`${line}\n`);
      }
    }
  }
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(0)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
}
