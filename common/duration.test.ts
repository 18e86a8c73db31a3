import { describe, expect, it } from 'vitest';
import { formatDurationMs, parseDurationMs } from './duration';

describe('parseDurationMs', () => {
  it.each([
    ['250', 250],
    ['250ms', 250],
    ['90s', 90_000],
    ['5m', 300_000],
    ['1.5h', 5_400_000],
    ['2d', 172_800_000],
    [' 30 s ', 30_000],
  ])('%j → %d ms', (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms);
  });

  it.each(['', 'abc', '-5s', '5 minutes', '1e3', 's', '5mm'])('rejects %j', (text) => {
    expect(parseDurationMs(text)).toBeUndefined();
  });
});

describe('formatDurationMs', () => {
  it('uses the largest exact unit', () => {
    expect(formatDurationMs(90_000)).toBe('90s');
    expect(formatDurationMs(300_000)).toBe('5m');
    expect(formatDurationMs(1_500)).toBe('1500ms');
    expect(formatDurationMs(7_200_000)).toBe('2h');
  });
});
