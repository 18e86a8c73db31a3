import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { type BarChartSpec, type LineChartSpec, renderBarChart, renderLineChart } from './charts';

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function lossCurve(scale: number): [number, number][] {
  return Array.from({ length: 50 }, (_, i) => [i * 10, scale * (0.4 + 2 * Math.exp(-i / 10)) + 0.02 * Math.sin(i)]);
}

const lineSpec: LineChartSpec = {
  title: 'Training loss',
  xLabel: 'step',
  yLabel: 'loss',
  series: [
    { name: 'train', points: lossCurve(1) },
    { name: 'validation', points: lossCurve(1.1) },
  ],
};

const barSpec: BarChartSpec = {
  title: 'Accuracy per task family',
  categories: ['math', 'charts', 'geometry', 'science'],
  series: [
    { name: 'untrained', values: [0.3, 0.41, 0.27, 0.55] },
    { name: 'after SFT', values: [0.48, 0.6, 0.39, 0.68] },
  ],
  yLabel: 'accuracy',
  yMin: 0,
  yMax: 1,
  valueLabels: true,
};

/** Counts pixels by kind: pure white (background) and clearly not white (lines, bars, text). */
function pixelCensus(png: Uint8Array): { width: number; height: number; white: number; ink: number } {
  const image = PNG.sync.read(Buffer.from(png));
  let white = 0;
  let ink = 0;
  for (let i = 0; i < image.data.length; i += 4) {
    const [r, g, b] = [image.data[i]!, image.data[i + 1]!, image.data[i + 2]!];
    if (r === 255 && g === 255 && b === 255) white++;
    else if (Math.min(r, g, b) < 200) ink++;
  }
  return { width: image.width, height: image.height, white, ink };
}

describe.each([
  ['renderLineChart', () => renderLineChart(lineSpec), ['Training loss', 'train', 'validation', 'step', 'loss']],
  ['renderBarChart', () => renderBarChart(barSpec), ['Accuracy per task family', 'untrained', 'after SFT', 'accuracy']],
] as const)('%s', (_name, render, texts) => {
  const chart = render();

  it('returns a PNG of the default size (800×450)', () => {
    expect([...chart.png.subarray(0, 8)]).toEqual(PNG_SIGNATURE);
    const { width, height } = pixelCensus(chart.png);
    expect([width, height]).toEqual([800, 450]);
  });

  it('draws on a white background, with a meaningful amount of ink', () => {
    const { white, ink } = pixelCensus(chart.png);
    const total = 800 * 450;
    expect(white / total).toBeGreaterThan(0.5); // mostly background
    expect(ink).toBeGreaterThan(2_000); // lines or bars and text were drawn, not just a blank page
    expect(ink / total).toBeLessThan(0.5);
  });

  it('puts the title, series names and axis names in the SVG as text', () => {
    expect(chart.svg.startsWith('<svg')).toBe(true);
    for (const text of texts) expect(chart.svg).toContain(`>${text}</text>`);
    expect(chart.svg).toContain('DejaVu Sans');
  });

  it('renders the same spec to the same bytes', () => {
    const again = render();
    expect(again.svg).toBe(chart.svg);
    expect(Buffer.from(again.png).equals(Buffer.from(chart.png))).toBe(true);
  });
});

describe('renderLineChart', () => {
  it('honours width and height', () => {
    const { width, height } = pixelCensus(renderLineChart({ ...lineSpec, width: 400, height: 300 }).png);
    expect([width, height]).toEqual([400, 300]);
  });

  it('changes the picture when the data changes', () => {
    const moved = { ...lineSpec, series: [lineSpec.series[0]!, { name: 'validation', points: lossCurve(1.5) }] };
    expect(Buffer.from(renderLineChart(moved).png).equals(Buffer.from(renderLineChart(lineSpec).png))).toBe(false);
  });

  it('shows a legend only when there are two or more series', () => {
    const single = renderLineChart({ ...lineSpec, series: [{ name: 'only-series', points: lossCurve(1) }] });
    expect(single.svg).not.toContain('>only-series</text>');
    expect(renderLineChart(lineSpec).svg).toContain('>validation</text>');
  });

  it('skips NaN and infinite points instead of failing', () => {
    const clean: LineChartSpec = { ...lineSpec, series: [{ name: 'loss', points: [[0, 2], [1, 1.5], [2, 1]] }] };
    const points: [number, number][] = [[0, 2], [0.5, Number.NaN], [1, 1.5], [1.5, Infinity], [Number.NaN, 3], [2, 1]];
    const dirty: LineChartSpec = { ...lineSpec, series: [{ name: 'loss', points }] };
    const rendered = renderLineChart(dirty);
    expect(rendered.svg).not.toMatch(/NaN|Infinity/);
    expect(rendered.svg).toBe(renderLineChart(clean).svg); // the same curve as if the bad points were never there
  });

  it('formats large axis values compactly', () => {
    const tokens = renderLineChart({ ...lineSpec, series: [{ name: 'tokens', points: [[0, 0], [20_000, 3e6]] }] });
    expect(tokens.svg).toContain('>20k</text>');
    expect(tokens.svg).toContain('>3M</text>');
  });

  it.each<[string, Partial<LineChartSpec>, RegExp]>([
    ['empty series', { series: [] }, /series is empty/],
    ['zero width', { width: 0 }, /width must be/],
    ['fractional height', { height: 300.5 }, /height must be/],
    ['inverted y range', { yMin: 1, yMax: 0 }, /yMin and yMax/],
    ['NaN yMax', { yMax: Number.NaN }, /yMin and yMax/],
  ])('rejects %s with a RangeError naming the field', (_case, change, message) => {
    expect(() => renderLineChart({ ...lineSpec, ...change })).toThrow(RangeError);
    expect(() => renderLineChart({ ...lineSpec, ...change })).toThrow(message);
  });
});

describe('renderBarChart', () => {
  it('labels bars with their values, all with the same decimals', () => {
    const { svg } = renderBarChart(barSpec);
    expect(svg).toContain('>0.30</text>'); // 0.3 is padded to line up with 0.48
    expect(svg).toContain('>0.48</text>');
    expect(renderBarChart({ ...barSpec, valueLabels: false }).svg).not.toContain('>0.48</text>');
  });

  it('changes the picture when the data changes', () => {
    const moved = { ...barSpec, series: [barSpec.series[0]!, { name: 'after SFT', values: [0.9, 0.9, 0.9, 0.9] }] };
    expect(Buffer.from(renderBarChart(moved).png).equals(Buffer.from(renderBarChart(barSpec).png))).toBe(false);
  });

  it('starts the value axis at 0 so bar lengths compare honestly', () => {
    const series = [{ name: 'high', values: [0.8, 0.82, 0.85, 0.9] }];
    expect(renderBarChart({ ...barSpec, yMin: undefined, yMax: undefined, series }).svg).toContain('>0</text>');
  });

  it('leaves out bars whose value is not finite', () => {
    const spec = { ...barSpec, series: [{ name: 'partial', values: [0.5, Number.NaN, 0.25, Infinity] }] };
    const { svg } = renderBarChart(spec);
    expect(svg).toContain('>0.50</text>');
    expect(svg).not.toMatch(/NaN|Infinity/);
  });

  it('shows every category name, slanting them when they do not fit side by side', () => {
    const categories = Array.from({ length: 12 }, (_, i) => `family-number-${i}`);
    const spec = { ...barSpec, categories, series: [{ name: 'x', values: categories.map((_, i) => i / 12) }] };
    const { svg } = renderBarChart(spec);
    for (const name of categories) expect(svg).toContain(`>${name}</text>`);
  });

  it.each<[string, Partial<BarChartSpec>, string]>([
    ['empty series', { series: [] }, 'series is empty'],
    ['no categories', { categories: [], series: [{ name: 'a', values: [] }] }, 'categories is empty'],
    [
      'values of the wrong length',
      { series: [barSpec.series[0]!, { name: 'short', values: [0.1, 0.2, 0.3] }] },
      'series[1].values has 3 values, categories has 4',
    ],
  ])('rejects %s with a RangeError naming the field', (_case, change, message) => {
    expect(() => renderBarChart({ ...barSpec, ...change })).toThrow(RangeError);
    expect(() => renderBarChart({ ...barSpec, ...change })).toThrow(message);
  });
});
