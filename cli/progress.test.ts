import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { EtaEstimator, ProgressBar, formatSeconds, printAbove } from './progress';

/** A stream that records what is written, optionally pretending to be a terminal. */
function sink(isTTY: boolean) {
  const stream = new PassThrough() as PassThrough & { isTTY?: boolean; columns?: number };
  stream.isTTY = isTTY;
  stream.columns = 200;
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return { stream, text: () => text };
}

/** A clock the test moves. */
function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (seconds: number) => (t += seconds * 1000) };
}

describe('formatSeconds', () => {
  it('rounds to whole seconds before splitting into minutes (239.6 s is 4m00s, not 3m60s)', () => {
    expect(formatSeconds(239.6)).toBe('4m00s');
    expect(formatSeconds(59.6)).toBe('1m00s');
    expect(formatSeconds(119.5)).toBe('2m00s');
    expect(formatSeconds(61)).toBe('1m01s');
  });

  it('writes seconds, minutes and hours', () => {
    expect(formatSeconds(0)).toBe('0s');
    expect(formatSeconds(7.4)).toBe('7s');
    expect(formatSeconds(29 * 60 + 3)).toBe('29m03s');
    expect(formatSeconds(3600 + 2 * 60 + 40)).toBe('1h03m');
    expect(formatSeconds(2 * 3600 - 10)).toBe('2h00m');
    expect(formatSeconds(-3)).toBe('0s');
  });
});

describe('EtaEstimator', () => {
  it('gives no estimate before the count has moved a few steps, however long the start took', () => {
    const eta = new EtaEstimator(400);
    expect(eta.observe(0, 0)).toBeUndefined();
    expect(eta.observe(0, 600_000)).toBeUndefined(); // ten minutes of loading: not a rate
    expect(eta.observe(1, 601_000)).toBeUndefined(); // first movement: the measurement starts here
    expect(eta.observe(2, 602_000)).toBeUndefined();
    expect(eta.observe(3, 603_000)).toBeUndefined(); // 2 steps since the first movement
    expect(eta.observe(4, 604_000)).toBeUndefined(); // 3 steps, but 3 s
    // 1 step/s since the first movement: 396 steps left is 396 s, not the ~50 min the startup would suggest.
    expect(eta.observe(6, 606_000)).toBeCloseTo(394, 6);
  });

  it('does not count steps done before watching began (attached half-way) as done in no time', () => {
    const eta = new EtaEstimator(2000);
    expect(eta.observe(1000, 0)).toBeUndefined();
    expect(eta.observe(1002, 4_000)).toBeUndefined();
    for (let s = 1; s <= 10; s++) eta.observe(1002 + s, 4_000 + s * 2000);
    // 0.5 step/s since the first movement: 987 steps left.
    expect(eta.observe(1013, 26_000)).toBeCloseTo(1974, 6);
  });

  it('follows the recent rate, not the average since the start', () => {
    const eta = new EtaEstimator(1000, { minSteps: 3, minSeconds: 5, windowSeconds: 60 });
    eta.observe(0, 0);
    let t = 0;
    let done = 0;
    for (; t < 300_000; t += 1000) eta.observe(++done, t + 1000); // 1 step/s for 5 minutes
    for (let i = 0; i < 120; i++) {
      t += 1000;
      if (i % 4 === 0) done++; // then 0.25 step/s for two minutes
      eta.observe(done, t);
    }
    const left = eta.observe(done, t + 1000)!;
    expect(left / (1000 - done)).toBeGreaterThan(3.5); // ~4 s per step, not ~1.3
  });

  it('starts over when the count goes back (a rewind), and says 0 when done', () => {
    const eta = new EtaEstimator(100, { minSteps: 1, minSeconds: 1, windowSeconds: 60 });
    eta.observe(10, 0);
    eta.observe(11, 1000);
    expect(eta.observe(13, 3000)).toBeCloseTo(87, 6);
    expect(eta.observe(5, 4000)).toBeUndefined();
    expect(eta.observe(100, 5000)).toBe(0);
  });
});

describe('ProgressBar', () => {
  it('shows no ETA on the first updates, and one from the recent rate later', () => {
    const out = sink(false);
    const c = clock();
    const bar = new ProgressBar('2/5 sftWarmup', 10, { out: out.stream, now: c.now });
    bar.update(0, 'starting');
    c.advance(60);
    bar.update(1);
    for (let s = 2; s <= 5; s++) {
      c.advance(2);
      bar.update(s);
    }
    const lines = out.text().trim().split('\n');
    expect(lines[0]).toContain('0/10  starting  0s elapsed');
    expect(lines[0]).not.toContain('left');
    expect(lines[1]).not.toContain('left'); // 10 %: the count just moved
    expect(lines.at(-1)).toContain('5/10');
    expect(lines.at(-1)).toContain('1m08s elapsed, ~10s left'); // 2 s per step since it moved
  });

  it('without a total says what is being done and for how long: no counter, no ETA', () => {
    const out = sink(false);
    const c = clock();
    const bar = new ProgressBar('5/5 evaluation', undefined, { out: out.stream, now: c.now });
    bar.update(0, 'evaluating the initial weights (baseline)');
    c.advance(30);
    bar.update(0, 'evaluating the initial weights (baseline)'); // unchanged: no new line in a log
    bar.update(0, 'evaluating the initial weights (baseline) · test 37/100');
    const lines = out.text().trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^5\/5 evaluation\s+evaluating the initial weights \(baseline\) {2}0s elapsed$/);
    expect(lines[1]).toContain('test 37/100  30s elapsed');
    expect(out.text()).not.toMatch(/0\/1|left/);
  });

  it('shows the step in progress in the counter when told, with the fill at the steps finished', () => {
    const out = sink(false);
    const bar = new ProgressBar('4/5 trustGrpo', 150, { out: out.stream, now: clock().now });
    bar.update(28, 'RL step 29/150', 29);
    expect(out.text()).toContain('29/150  RL step 29/150');
    expect(out.text()).toContain(`[${'#'.repeat(4)}${'.'.repeat(20)}]`); // 28/150 of 24
  });

  it('on a terminal, redraws one line and ends it once when the total is reached', () => {
    const out = sink(true);
    const bar = new ProgressBar('sft', 2, { out: out.stream, now: clock().now });
    bar.update(1);
    bar.update(2);
    bar.update(2);
    expect(out.text().split('\n')).toHaveLength(2); // one ended line, nothing after it
    expect(out.text().startsWith('\r')).toBe(true);
  });
});

describe('printAbove', () => {
  it('prints a log line on its own line above a bar being drawn, then draws the bar again (no splicing)', () => {
    const out = sink(true);
    const bar = new ProgressBar('4/5 trustGrpo', 150, { out: out.stream, now: clock().now });
    bar.update(28, 'RL step 29/150', 29);
    printAbove('WARN TMPRL1104 Workflow task duration exceeded', out.stream);
    const text = out.text();
    const warning = text.indexOf('WARN TMPRL1104');
    // The bar's line was cleared before the warning, and the warning ends its line before the bar is redrawn.
    expect(text.slice(warning - 5, warning)).toBe('\r\x1b[2K');
    expect(text.slice(warning)).toMatch(/^WARN TMPRL1104 Workflow task duration exceeded\n\r4\/5 trustGrpo/);
    bar.end();
    printAbove('later', out.stream);
    expect(out.text().endsWith('\nlater\n')).toBe(true); // no bar open: printed as is
  });
});
