/**
 * Human durations ("250ms", "90s", "5m", "1.5h", "2d") to milliseconds.
 *
 * Pure and dependency-free so that `temporal.config.ts` (which workflow code may import) can use it.
 */

const UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const DURATION_RE = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/;

/**
 * Parses a duration; a bare number means milliseconds. Returns `undefined` when the text is not a duration
 * (callers turn that into an error that names their field).
 */
export function parseDurationMs(text: string): number | undefined {
  const match = DURATION_RE.exec(text.trim());
  if (!match) return undefined;
  const value = Number(match[1]);
  const unit = match[2] ?? 'ms';
  const ms = value * (UNIT_MS[unit] ?? Number.NaN);
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/** Formats milliseconds compactly for messages and docs ("90s", "5m", "1500ms"). */
export function formatDurationMs(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = UNIT_MS[unit]!;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
