import { describe, expect, it } from 'vitest';
import { ApiError } from '../common/errors';
import { assertBackfillSize, assertScheduleInterval, countFireTimes, parseCron, shortestCronGapMs } from './schedule-limits';

const HOUR = 3_600_000;
const MIN = 60_000;
const now = new Date('2026-12-06T14:00:00Z');

function refusal(fn: () => void): { status: number; field: string; message: string } {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    const e = err as ApiError;
    return { status: e.getStatus(), ...(e.getResponse() as { field: string; message: string }) };
  }
  throw new Error('expected a refusal');
}

describe('schedule interval', () => {
  it.each([
    ['* * * * *', MIN],
    ['*/15 * * * *', 15 * MIN],
    ['0,30 9-17 * * mon-fri', 30 * MIN],
    ['0 * * * *', HOUR],
    ['@hourly', HOUR],
    ['0 */2 * * *', 2 * HOUR],
    ['0 3 * * *', 24 * HOUR],
    ['@daily', 24 * HOUR],
    ['30 23 * * 1,2', 24 * HOUR], // Monday 23:30 → Tuesday 23:30
    ['0 3 * * 0', 7 * 24 * HOUR],
    ['0 0 1 * *', 28 * 24 * HOUR], // February (of 2027, within the horizon)
    ['59 23 * * *', 24 * HOUR],
    ['0 0,23 * * *', HOUR], // 23:00 → midnight of the next day
    ['0 0 1,15 * 5', 24 * HOUR], // the 1st or 15th, or any Friday: a Friday the 14th, then the 15th
  ])('%s fires at most every %d ms', (cron, gap) => {
    expect(shortestCronGapMs(parseCron(cron), now)).toBe(gap);
  });

  it('refuses every and cron below the minimum with a 422 naming the field, and accepts the rest', () => {
    expect(refusal(() => assertScheduleInterval({ every: '1s' }, HOUR, now))).toMatchObject({ status: 422, field: 'body.every', message: expect.stringMatching(/every 1s .*shortest interval this deployment allows is 1h \(SOPHIA_API_MIN_SCHEDULE_INTERVAL\)/) as unknown });
    expect(refusal(() => assertScheduleInterval({ cron: '*/5 * * * *' }, HOUR, now))).toMatchObject({ status: 422, field: 'body.cron', message: expect.stringMatching(/fires as often as every 5m/) as unknown });
    expect(refusal(() => assertScheduleInterval({ cron: '0 0,23 * * *' }, 2 * HOUR, now)).message).toMatch(/every 1h/);
    expect(() => assertScheduleInterval({ every: '1h' }, HOUR, now)).not.toThrow();
    expect(() => assertScheduleInterval({ cron: '0 3 * * *' }, HOUR, now)).not.toThrow();
    expect(() => assertScheduleInterval({ cron: '@hourly' }, HOUR, now)).not.toThrow();
  });

  it('refuses cron expressions it cannot read (so they cannot slip past the check), naming the problem', () => {
    expect(refusal(() => parseCron('*/0 * * * *')).message).toMatch(/minute step "0"/);
    expect(refusal(() => parseCron('61 * * * *')).message).toMatch(/minute "61" is not a value in 0–59/);
    expect(refusal(() => parseCron('0 0 * * * *')).message).toMatch(/has 6 fields; give 5/);
    expect(refusal(() => parseCron('@every 1s')).message).toMatch(/macro/);
    expect(refusal(() => parseCron('0 5-1 * * *')).message).toMatch(/runs backwards/);
    expect(parseCron('0 0 * JAN,jul SUN-tue').weekdays).toEqual(new Set([0, 1, 2]));
    expect(parseCron('0 0 * * 7').weekdays).toEqual(new Set([0]));
  });
});

describe('backfill size', () => {
  const start = new Date('2026-12-01T00:00:00Z');
  it('counts the runs a window would start', () => {
    expect(countFireTimes({ every: '1s' }, start, new Date(start.getTime() + 5 * MIN), 1e6)).toBe(301);
    expect(countFireTimes({ every: '1h' }, start, new Date('2026-12-01T10:30:00Z'), 100)).toBe(11);
    expect(countFireTimes({ cron: '0 3 * * *' }, start, new Date('2026-12-08T00:00:00Z'), 100)).toBe(7);
    expect(countFireTimes({ cron: '0 3 * * *' }, new Date('2026-12-01T04:00:00Z'), new Date('2026-12-03T02:00:00Z'), 100)).toBe(1);
    expect(countFireTimes({ cron: '* * * * *' }, start, new Date('2027-12-01T00:00:00Z'), 10)).toBe(11); // stops counting past the cap
  });

  it('refuses a window with more runs than the limit with a 422 on body.end, and accepts one within it', () => {
    expect(refusal(() => assertBackfillSize({ cron: '0 3 * * *' }, start, new Date('2027-01-01T00:00:00Z'), 10))).toMatchObject({
      status: 422,
      field: 'body.end',
      message: expect.stringMatching(/would start more than 10 runs; .*SOPHIA_API_MAX_BACKFILL_RUNS/) as unknown,
    });
    expect(() => assertBackfillSize({ cron: '0 3 * * *' }, start, new Date('2026-12-08T00:00:00Z'), 10)).not.toThrow();
    expect(() => assertBackfillSize({ every: '1s' }, start, new Date(start.getTime() + 5 * MIN), 10)).toThrow(ApiError);
  });
});
