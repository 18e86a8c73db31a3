/**
 * Plots for run reports: training/validation loss curves, accuracy per task family, reward/γ curves.
 *
 * echarts renders each chart to an SVG string on the server (no DOM, no canvas), and resvg turns that SVG into a
 * PNG using the DejaVu fonts bundled in `dejavu-fonts-ttf` rather than system fonts, so the same spec gives the
 * same bytes on every machine. Callers hand in plain data (a spec) and get both formats back: SVG for HTML
 * reports, PNG for places that only take images.
 */
import { dirname, join } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as echarts from 'echarts';

/** One curve: `[x, y]` points, e.g. `[step, loss]`. Points with a non-finite coordinate are skipped. */
export interface LineSeries {
  name: string;
  points: readonly (readonly [number, number])[];
}

export interface LineChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly LineSeries[];
  /** Pixels; default 800. */
  width?: number;
  /** Pixels; default 450. */
  height?: number;
  /** Fixed y range; by default the axis fits the data (it does not force 0 in). */
  yMin?: number;
  yMax?: number;
}

/** Grouped bars: one group per category, one bar per series in each group. */
export interface BarChartSpec {
  title: string;
  categories: readonly string[];
  /** `values[i]` belongs to `categories[i]`; a non-finite value leaves its bar out. */
  series: readonly { name: string; values: readonly number[] }[];
  yLabel: string;
  width?: number;
  height?: number;
  yMin?: number;
  yMax?: number;
  /** Print each bar's value above it. */
  valueLabels?: boolean;
}

export interface RenderedChart {
  svg: string;
  png: Uint8Array;
}

const TEXT_COLOR = '#333333';
const SERIES_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const FONT_FAMILY = 'DejaVu Sans';
const FONT_DIR = join(dirname(require.resolve('dejavu-fonts-ttf/package.json')), 'ttf');
const FONT_FILES = [join(FONT_DIR, 'DejaVuSans.ttf'), join(FONT_DIR, 'DejaVuSans-Bold.ttf')];
/** Advance widths of DejaVu Sans for ASCII 32–126, in thousandths of an em (from the font's hmtx table). */
const DEJAVU_WIDTHS = `318 401 460 838 636 950 780 275 390 390 500 838 318 361 318 337 636 636 636 636 636 636 636 636
  636 636 337 337 838 838 838 531 1000 684 686 698 770 632 575 775 752 295 295 656 557 863 748 787 603 787 695 635 611
  732 684 989 685 611 685 390 337 390 838 500 500 613 635 550 635 615 352 635 634 278 278 579 278 974 634 612 635 635
  411 521 392 634 592 818 592 592 525 636 337 636 838`
  .split(/\s+/)
  .map(Number);

/**
 * Without a canvas, echarts guesses text widths from an Arial-like table, but resvg draws DejaVu Sans, which is
 * 10–15% wider: legends would crowd, wrapped labels overflow, and the layout would leave too little room for
 * tick labels. Measuring with DejaVu's own widths keeps echarts' layout true to the rendered PNG. (This sets
 * echarts' process-wide platform hook; nothing else in Sophia renders echarts.)
 */
echarts.setPlatformAPI({
  measureText(text: string, font = '') {
    const size = Number(/([\d.]+)px/.exec(font)?.[1] ?? 12);
    return { width: textWidth(text, size) * (/bold|[6-9]00/.test(font) ? 1.12 : 1) }; // Bold is ~12% wider
  },
});

/** Width in px of `text` in DejaVu Sans at `size` px; characters outside ASCII count as 0.75 em. */
function textWidth(text: string, size: number): number {
  let em = 0;
  for (const ch of text) em += (DEJAVU_WIDTHS[(ch.codePointAt(0) ?? 0) - 32] ?? 750) / 1000;
  return em * size;
}

export function renderLineChart(spec: LineChartSpec): RenderedChart {
  checkCommon(spec);
  const series = spec.series.map((s): echarts.LineSeriesOption => {
    const data = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y]) => [x, y]);
    // Markers only on sparse curves (a handful of evals), where they show where the measurements are.
    return { type: 'line', name: s.name, data, showSymbol: data.length <= 20, symbolSize: 5, lineStyle: { width: 2 } };
  });
  return render(spec, spec.series.length, {
    xAxis: { type: 'value', scale: true, ...axisName(spec.xLabel, 'x'), axisLabel: { formatter: formatTick } },
    yAxis: valueAxis(spec, true),
    series,
  });
}

export function renderBarChart(spec: BarChartSpec): RenderedChart {
  checkCommon(spec);
  const n = spec.categories.length;
  if (n === 0) throw new RangeError('categories is empty: give at least one category');
  spec.series.forEach(({ values }, i) => {
    if (values.length !== n) {
      throw new RangeError(`series[${i}].values has ${values.length} values, categories has ${n}`);
    }
  });
  const decimals = labelDecimals(spec.series.flatMap((s) => s.values));
  const formatter: echarts.LabelFormatterCallback = ({ value }) =>
    typeof value === 'number' ? formatValue(value, decimals) : '';
  const series: echarts.BarSeriesOption[] = spec.series.map((s) => ({
    type: 'bar',
    name: s.name,
    barMaxWidth: 48,
    data: s.values.map((v) => (Number.isFinite(v) ? v : null)),
    label: { show: spec.valueLabels === true, position: 'top', fontSize: 11, color: TEXT_COLOR, formatter },
  }));
  // Every category name is shown (`interval: 0`). A name wider than its group's slot (plot width ≈ chart width
  // less ~110 px of margins and y labels) wraps at spaces; if even one word does not fit, all names are slanted.
  const slot = ((spec.width ?? 800) - 110) / n - 8;
  const words = spec.categories.flatMap((c) => c.split(/\s+/));
  const slant = words.some((w) => textWidth(w, 12) > slot);
  return render(spec, spec.series.length, {
    xAxis: {
      type: 'category',
      data: [...spec.categories],
      axisLabel: slant ? { interval: 0, rotate: 30 } : { interval: 0, width: slot, overflow: 'break' },
    },
    yAxis: valueAxis(spec, false),
    series,
  });
}

/** Validation shared by both chart kinds; messages name the field at fault. */
function checkCommon(spec: LineChartSpec | BarChartSpec): void {
  if (spec.series.length === 0) throw new RangeError('series is empty: give at least one series to plot');
  for (const field of ['width', 'height'] as const) {
    const v = spec[field];
    if (v !== undefined && !(Number.isInteger(v) && v >= 100 && v <= 10_000)) {
      throw new RangeError(`${field} must be an integer number of pixels in [100, 10000], got ${v}`);
    }
  }
  const { yMin, yMax } = spec;
  if (!(Number.isFinite(yMin ?? 0) && Number.isFinite(yMax ?? 0) && (yMin ?? -Infinity) < (yMax ?? Infinity))) {
    throw new RangeError(`yMin and yMax must be finite with yMin < yMax, got yMin=${yMin}, yMax=${yMax}`);
  }
}

/** The y axis. Bars are read by their length, so a bar chart's axis always takes in 0; a line's need not. */
function valueAxis(spec: LineChartSpec | BarChartSpec, scale: boolean): echarts.YAXisComponentOption {
  const { yMin: min, yMax: max } = spec;
  return { type: 'value', scale, min, max, ...axisName(spec.yLabel, 'y'), axisLabel: { formatter: formatTick } };
}

/** Axis name centred along the axis, outside the tick labels (the y name is rotated to read bottom-up). */
function axisName(name: string, axis: 'x' | 'y') {
  const nameGap = axis === 'x' ? 30 : 50;
  return { name, nameLocation: 'middle' as const, nameGap, nameTextStyle: { fontSize: 13, color: TEXT_COLOR } };
}

/** The parts every chart shares: title, legend (only when it tells series apart), grid, fonts, no animation. */
function render(
  spec: { title: string; width?: number; height?: number },
  seriesCount: number,
  parts: Pick<echarts.EChartsOption, 'xAxis' | 'yAxis' | 'series'>,
): RenderedChart {
  const width = spec.width ?? 800;
  const height = spec.height ?? 450;
  const withLegend = seriesCount >= 2;
  const option: echarts.EChartsOption = {
    animation: false,
    backgroundColor: '#ffffff',
    color: SERIES_COLORS,
    textStyle: { fontFamily: FONT_FAMILY, color: TEXT_COLOR },
    title: { text: spec.title, left: 'center', top: 10, textStyle: { fontSize: 16, color: TEXT_COLOR } },
    legend: { show: withLegend, top: 38, left: 'center', itemGap: 20 },
    // The grid rect is the outer bound: echarts shrinks the plot area inside it until tick labels and axis
    // names fit, so nothing is clipped whatever the label widths. The top leaves room for title and legend.
    grid: { left: 15, right: 30, top: withLegend ? 75 : 55, bottom: 10, outerBoundsMode: 'same' },
    ...parts,
  };
  const chart = echarts.init(null, null, { renderer: 'svg', ssr: true, width, height });
  let svg: string;
  try {
    chart.setOption(option);
    svg = chart.renderToSVGString();
  } finally {
    chart.dispose(); // SSR instances still hold timers; without this the process never exits
  }
  // zrender numbers CSS classes and clip paths ("zr3-cls-41", "zr3-c0") from process-wide counters; renumber
  // them by first appearance so the same spec renders to the same bytes however many charts came before.
  const ids = new Map<string, string>();
  svg = svg.replace(/\bzr\d+-[\w-]+/g, (id) => {
    if (!ids.has(id)) ids.set(id, `zr-${ids.size}`);
    return ids.get(id) ?? id;
  });
  const font = { loadSystemFonts: false, fontFiles: FONT_FILES, defaultFontFamily: FONT_FAMILY };
  const png = new Resvg(svg, { background: 'white', font }).render().asPng();
  return { svg, png: new Uint8Array(png.buffer, png.byteOffset, png.byteLength) };
}

/** Tick labels: short and exact-looking (0.3, not 0.30000000000000004; 12k, not 12,000). */
function formatTick(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 1e9) return `${trim(value / 1e9)}G`;
  if (abs >= 1e6) return `${trim(value / 1e6)}M`;
  if (abs >= 1e4) return `${trim(value / 1e3)}k`;
  return trim(value);
}

/**
 * Decimals for bar value labels: enough for three significant digits of every value (capped at 3), shared by
 * all bars so that labels line up as 0.60 / 0.48 rather than 0.6 / 0.48.
 */
function labelDecimals(values: readonly number[]): number {
  const decimals = values.filter(Number.isFinite).map((v) => String(Number(v.toPrecision(3))).split('.')[1] ?? '');
  return Math.min(3, Math.max(0, ...decimals.map((d) => d.length)));
}

function formatValue(value: number, decimals: number): string {
  return Math.abs(value) >= 1e4 ? formatTick(value) : value.toFixed(decimals);
}

function trim(value: number): string {
  return String(Number(value.toPrecision(6)));
}
