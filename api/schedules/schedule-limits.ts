/**
 * How often a schedule fires and how many runs a backfill starts, checked before Temporal is asked: a schedule
 * that fires every second with `allow_all`, or a backfill over a long window, would otherwise start runs without
 * bound. The limits are the deployment's (`RunLimits` in `api/config.ts`); refusals are 422s naming the field.
 *
 * Cron expressions (UTC, 5 fields: minute hour day-of-month month day-of-week, or a macro such as `@daily`) are
 * read here, not by Temporal, so that their fire times can be counted: each field becomes the set of values it
 * allows (`*`, `5`, `1-5`, `*∕15`, `10-50/20`, lists, month and weekday names, `?` as `*`); a day matches when its
 * month matches and its day of month or weekday does (either, when both are restricted, as in every cron). The
 * shortest gap between two fire times is the shortest gap within a firing day (its times are the same every day)
 * or between the last time of a firing day and the first of the next one, over the next 400 days.
 */
import { formatDurationMs, parseDurationMs } from '../../common/duration';
import { ApiError } from '../common/errors';

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
/** Days searched for firing days: a year and a bit, so that every month and weekday combination shows up. */
const HORIZON_DAYS = 400;

const MACROS: Readonly<Record<string, string>> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

interface Field {
  name: string;
  min: number;
  max: number;
  names?: string[];
  /** The first name stands for this value (1 for months; 0 for weekdays). */
  nameBase?: number;
}
const FIELDS: readonly Field[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: MONTHS, nameBase: 1 },
  { name: 'day of week', min: 0, max: 7, names: WEEKDAYS, nameBase: 0 },
];

/** A cron expression as the sets of values its fields allow. */
export interface CronSpec {
  minutes: number[];
  hours: number[];
  days: Set<number>;
  months: Set<number>;
  weekdays: Set<number>;
  /** Whether day of month / day of week were restricted (not `*`): cron ORs them when both are. */
  daysRestricted: boolean;
  weekdaysRestricted: boolean;
}

function fail(message: string): never {
  throw new ApiError(422, 'body.cron', message);
}

function valueOf(text: string, field: Field): number {
  const lower = text.toLowerCase();
  const named = field.names?.indexOf(lower) ?? -1;
  const value = named >= 0 ? named + field.nameBase! : /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(value) || value < field.min || value > field.max) fail(`cron ${field.name} ${JSON.stringify(text)} is not a value in ${field.min}–${field.max}`);
  return value;
}

function parseField(text: string, field: Field): { values: Set<number>; restricted: boolean } {
  const values = new Set<number>();
  const restricted = text !== '*' && text !== '?';
  for (const part of text.split(',')) {
    const [range = '', stepText] = part.split('/');
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1) fail(`cron ${field.name} step ${JSON.stringify(stepText)} is not a positive integer`);
    let lo: number;
    let hi: number;
    if (range === '*' || range === '?') [lo, hi] = [field.min, field.max];
    else if (range.includes('-')) {
      const [a = '', b = ''] = range.split('-');
      [lo, hi] = [valueOf(a, field), valueOf(b, field)];
      if (lo > hi) fail(`cron ${field.name} range ${JSON.stringify(range)} runs backwards`);
    } else {
      lo = valueOf(range, field);
      hi = stepText === undefined ? lo : field.max;
    }
    for (let v = lo; v <= hi; v += step) values.add(v);
  }
  return { values, restricted };
}

/** Parses a 5-field cron expression or macro; a 422 on `body.cron` names what it cannot read. */
export function parseCron(expression: string): CronSpec {
  const text = expression.trim();
  const expanded = text.startsWith('@') ? MACROS[text.toLowerCase()] : text;
  if (expanded === undefined) fail(`cron macro ${JSON.stringify(text)} is not one of ${Object.keys(MACROS).join(', ')}`);
  const parts = expanded.split(/\s+/);
  if (parts.length !== 5) fail(`cron expression ${JSON.stringify(text)} has ${parts.length} fields; give 5 (minute hour day-of-month month day-of-week), e.g. "0 3 * * *"`);
  const [minute, hour, day, month, weekday] = parts.map((p, i) => parseField(p, FIELDS[i]!));
  const weekdays = new Set([...weekday!.values].map((d) => d % 7)); // 7 is Sunday too
  return {
    minutes: [...minute!.values].sort((a, b) => a - b),
    hours: [...hour!.values].sort((a, b) => a - b),
    days: day!.values,
    months: month!.values,
    weekdays,
    daysRestricted: day!.restricted,
    weekdaysRestricted: weekday!.restricted,
  };
}

function firesOn(spec: CronSpec, date: Date): boolean {
  if (!spec.months.has(date.getUTCMonth() + 1)) return false;
  const dom = spec.days.has(date.getUTCDate());
  const dow = spec.weekdays.has(date.getUTCDay());
  if (spec.daysRestricted && spec.weekdaysRestricted) return dom || dow;
  return (!spec.daysRestricted || dom) && (!spec.weekdaysRestricted || dow);
}

/** A firing day's fire times, in ms after midnight UTC, ascending. */
function timesOfDay(spec: CronSpec): number[] {
  return spec.hours.flatMap((h) => spec.minutes.map((m) => (h * 60 + m) * MINUTE_MS));
}

/** Midnight UTC of the days from `from`'s day on, for `days` days, on which the cron fires. */
function firingDays(spec: CronSpec, from: Date, days: number): number[] {
  const start = Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate());
  const out: number[] = [];
  for (let d = 0; d < days; d++) {
    const midnight = start + d * DAY_MS;
    if (firesOn(spec, new Date(midnight))) out.push(midnight);
  }
  return out;
}

/** The shortest gap between two consecutive fire times from `from` on (Infinity when it fires at most once in the horizon). */
export function shortestCronGapMs(spec: CronSpec, from: Date): number {
  const times = timesOfDay(spec);
  const days = firingDays(spec, from, HORIZON_DAYS);
  if (days.length === 0) return Infinity;
  let gap = Infinity;
  for (let i = 1; i < times.length; i++) gap = Math.min(gap, times[i]! - times[i - 1]!);
  for (let i = 1; i < days.length; i++) gap = Math.min(gap, days[i]! + times[0]! - (days[i - 1]! + times.at(-1)!));
  return gap;
}

/** Refuses (422) an `every` or cron that would fire more often than once per `minIntervalMs`. */
export function assertScheduleInterval(spec: { cron?: string | undefined; every?: string | undefined }, minIntervalMs: number, now = new Date()): void {
  const limit = `the shortest interval this deployment allows is ${formatDurationMs(minIntervalMs)} (SOPHIA_API_MIN_SCHEDULE_INTERVAL)`;
  if (spec.every !== undefined) {
    const every = parseDurationMs(spec.every) ?? 0;
    if (every < minIntervalMs) throw new ApiError(422, 'body.every', `every ${spec.every} would start a run every ${formatDurationMs(every)}: ${limit}`);
  }
  if (spec.cron !== undefined) {
    const gap = shortestCronGapMs(parseCron(spec.cron), now);
    if (gap < minIntervalMs) throw new ApiError(422, 'body.cron', `cron ${JSON.stringify(spec.cron.trim())} fires as often as every ${formatDurationMs(gap)}: ${limit}`);
  }
}

/** How many fire times a schedule has in [start, end], counting up to `cap + 1` at most (to compare with a cap). */
export function countFireTimes(spec: { cron?: string | undefined; every?: string | undefined }, start: Date, end: Date, cap: number): number {
  const [from, to] = [start.getTime(), end.getTime()];
  if (spec.every !== undefined) {
    // Temporal's intervals are aligned to the Unix epoch: fire times are the multiples of `every`.
    const every = parseDurationMs(spec.every)!;
    return Math.min(cap + 1, Math.max(0, Math.floor(to / every) - Math.ceil(from / every) + 1));
  }
  const cron = parseCron(spec.cron!);
  const times = timesOfDay(cron);
  let count = 0;
  for (let midnight = Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate()); midnight <= to && count <= cap; midnight += DAY_MS) {
    if (!firesOn(cron, new Date(midnight))) continue;
    for (const t of times) if (midnight + t >= from && midnight + t <= to) count++;
  }
  return Math.min(cap + 1, count);
}

/** Refuses (422) a backfill whose window holds more fire times than `maxRuns`. */
export function assertBackfillSize(spec: { cron?: string | undefined; every?: string | undefined }, start: Date, end: Date, maxRuns: number): void {
  const runs = countFireTimes(spec, start, end, maxRuns);
  if (runs > maxRuns) {
    throw new ApiError(422, 'body.end', `the backfill from ${start.toISOString()} to ${end.toISOString()} would start more than ${maxRuns} runs; this deployment allows ${maxRuns} per backfill (SOPHIA_API_MAX_BACKFILL_RUNS): backfill a shorter window`);
  }
}
