/**
 * The five task generators of the tiny world. Each draws an image and asks one question about it, from a
 * seeded RNG, and records the answer and the true intermediate steps (docs/architecture.md §4).
 *
 *   counting  coloured squares on a grid of 4×4-pixel cells; "how many red squares?"      numeric
 *   chart     a bar chart (bars 2 px wide, heights in pixels); max / min / difference / sum  numeric
 *   ocr       digit strings in a 3×5 pixel font, one or two rows                            ocr
 *   math      arithmetic over what is shown: the sum of two (ood: three) colour counts       numeric
 *   choice    multiple choice about counts, options A–D, one or several correct             choice
 *             (colour options in a fixed order, numeric options ascending)
 *
 * Layouts scale with the image size (16 px for the tiny preset, 24 px for small); `DIFFICULTY` sets the ranges.
 */
import type { Rng } from '../engine/rng';
import { BAR, COLOR_NAMES, COLORS, type ColorName, GLYPH_HEIGHT, blankImage, drawDigit, fillRect } from './render';
import type { Difficulty, Example, Family, Image } from './types';

export type Generated = Omit<Example, 'id' | 'split' | 'seed' | 'family' | 'image'> & { image: Image };

const int = (rng: Rng, lo: number, hi: number) => lo + (rng.nextU32() % (hi - lo + 1));
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.nextU32() % xs.length]!;

function shuffle<T>(rng: Rng, xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.nextU32() % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

// ---- counting images (shared by counting, math, choice) ---------------------------------------------------

export interface CountingScene {
  /** 1-based cell index (row-major over the grid of 4×4-pixel cells) and colour of each square. */
  squares: { cell: number; color: ColorName }[];
  counts: Record<ColorName, number>;
}

function countingScene(rng: Rng, size: number, d: Difficulty) {
  const grid = Math.floor(size / 4);
  const colors = shuffle(rng, COLOR_NAMES).slice(0, int(rng, d.colors[0], d.colors[1]));
  const n = Math.min(grid * grid, int(rng, d.objects[0], d.objects[1]));
  const cells = shuffle(rng, Array.from({ length: grid * grid }, (_, i) => i + 1)).slice(0, n);
  cells.sort((a, b) => a - b);
  const squares = cells.map((cell) => ({ cell, color: pick(rng, colors) }));
  const counts = Object.fromEntries(COLOR_NAMES.map((c) => [c, 0])) as Record<ColorName, number>;
  for (const s of squares) counts[s.color]++;
  const image = blankImage(size);
  for (const { cell, color } of squares) {
    const row = Math.floor((cell - 1) / grid);
    const col = (cell - 1) % grid;
    fillRect(image, col * 4 + 1, row * 4 + 1, 2, 2, COLORS[color]);
  }
  return { image, scene: { squares, counts } satisfies CountingScene, colors };
}

const cellsOf = (scene: CountingScene, color: ColorName) => scene.squares.filter((s) => s.color === color).map((s) => s.cell);

function countStep(scene: CountingScene, color: ColorName): string {
  const cells = cellsOf(scene, color);
  return cells.length > 0 ? `${color} at ${cells.join(' ')}` : `no ${color}`;
}

function counting(rng: Rng, size: number, d: Difficulty): Generated {
  const { image, scene, colors } = countingScene(rng, size, d);
  // Mostly colours that are present; sometimes one that is not (answer 0).
  const color = rng.nextFloat() < 0.15 ? pick(rng, COLOR_NAMES) : pick(rng, colors);
  const question = pick(rng, [`how many ${color} squares?`, `count the ${color} squares.`, `number of ${color} squares?`]);
  const n = scene.counts[color];
  return { image, question, answer: String(n), answerType: 'numeric', steps: [countStep(scene, color), `${color} = ${n}`], facts: { ...scene, asked: color } };
}

function math(rng: Rng, size: number, d: Difficulty): Generated {
  const { image, scene, colors } = countingScene(rng, size, { ...d, colors: [Math.max(d.colors[0], d.addends[1]), Math.max(d.colors[1], d.addends[1])] });
  const k = int(rng, d.addends[0], d.addends[1]);
  const asked = shuffle(rng, colors).slice(0, k);
  const values = asked.map((c) => scene.counts[c]);
  const total = values.reduce((a, b) => a + b, 0);
  const question = k === 2 ? `${asked[0]} squares plus ${asked[1]} squares?` : `${asked.slice(0, -1).join(', ')} and ${asked.at(-1)} squares added?`;
  const steps = [...asked.map((c, i) => `${c} = ${values[i]}`), `${values.join(' + ')} = ${total}`];
  return { image, question, answer: String(total), answerType: 'numeric', steps, facts: { ...scene, asked } };
}

const LETTERS = ['A', 'B', 'C', 'D'] as const;

function choice(rng: Rng, size: number, d: Difficulty): Generated {
  const { image, scene, colors } = countingScene(rng, size, d);
  if (rng.nextFloat() < 0.5) {
    // Several may be correct: which colours have exactly N squares?
    const absent = COLOR_NAMES.some((c) => scene.counts[c] === 0);
    const target = pick(rng, [...colors.map((c) => scene.counts[c]), ...(absent ? [0] : [])]);
    const options = COLOR_NAMES; // always A:red B:green C:blue D:yellow
    const correct = options.map((c, i) => (scene.counts[c] === target ? LETTERS[i]! : '')).filter(Boolean);
    const question = `which colors have exactly ${target} squares? ${options.map((c, i) => `${LETTERS[i]}:${c}`).join(' ')}`;
    const steps = [options.map((c) => `${c} ${scene.counts[c]}`).join(' '), `${target}: ${correct.join(',')}`];
    return { image, question, answer: correct.join(','), answerType: 'choice', steps, facts: { ...scene, options, target } };
  }
  // One correct: how many X squares? with four numeric options.
  const color = pick(rng, colors);
  const n = scene.counts[color];
  const distractors = shuffle(rng, Array.from({ length: 11 }, (_, i) => i).filter((v) => v !== n)).slice(0, 3);
  const options = [n, ...distractors].sort((a, b) => a - b); // ascending, as numeric options usually are
  const letter = LETTERS[options.indexOf(n)]!;
  const question = `how many ${color} squares? ${options.map((v, i) => `${LETTERS[i]}:${v}`).join(' ')}`;
  return { image, question, answer: letter, answerType: 'choice', steps: [countStep(scene, color), `${color} = ${n}`, `${n} is ${letter}`], facts: { ...scene, options, asked: color } };
}

// ---- bar charts ---------------------------------------------------------------------------------------------

function chart(rng: Rng, size: number, d: Difficulty): Generated {
  const bars = int(rng, d.bars[0], d.bars[1]);
  const heights = Array.from({ length: bars }, () => int(rng, 1, size - 2));
  const image = blankImage(size);
  heights.forEach((h, i) => fillRect(image, 1 + 3 * i, size - h, 2, h, BAR));
  const listing = `bars ${heights.join(' ')}`;
  const kind = int(rng, 0, 3);
  const facts = { heights };
  if (kind === 0 || kind === 1) {
    const m = kind === 0 ? Math.max(...heights) : Math.min(...heights);
    const word = kind === 0 ? 'tallest' : 'shortest';
    return { image, question: `height of the ${word} bar?`, answer: String(m), answerType: 'numeric', steps: [listing, `${word} = ${m}`], facts };
  }
  if (kind === 2) {
    const [i, j] = shuffle(rng, Array.from({ length: bars }, (_, k) => k)).slice(0, 2) as [number, number];
    const [hi, lo] = heights[i]! >= heights[j]! ? [i, j] : [j, i];
    const diff = heights[hi]! - heights[lo]!;
    return {
      image,
      question: `bar ${hi + 1} minus bar ${lo + 1}?`,
      answer: String(diff),
      answerType: 'numeric',
      steps: [listing, `${heights[hi]} - ${heights[lo]} = ${diff}`],
      facts,
    };
  }
  const k = bars >= 5 ? 3 : 2;
  const idx = shuffle(rng, Array.from({ length: bars }, (_, x) => x)).slice(0, k).sort((a, b) => a - b);
  const values = idx.map((x) => heights[x]!);
  const total = values.reduce((a, b) => a + b, 0);
  const names = idx.map((x) => x + 1);
  const question = k === 2 ? `sum of bar ${names[0]} and bar ${names[1]}?` : `sum of bars ${names[0]}, ${names[1]} and ${names[2]}?`;
  return { image, question, answer: String(total), answerType: 'numeric', steps: [listing, `${values.join(' + ')} = ${total}`], facts };
}

// ---- digit strings -----------------------------------------------------------------------------------------

function ocr(rng: Rng, size: number, d: Difficulty): Generated {
  const perRow = Math.floor((size + 1) / 4);
  const n = Math.min(2 * perRow, int(rng, d.digits[0], d.digits[1]));
  const digits = Array.from({ length: n }, () => int(rng, 0, 9));
  const rows = n > perRow ? [digits.slice(0, Math.ceil(n / 2)), digits.slice(Math.ceil(n / 2))] : [digits];
  const image = blankImage(size);
  rows.forEach((row, r) => {
    // Digits sit in 4-pixel columns (one per image patch column), rows at any height.
    const x0 = 4 * int(rng, 0, perRow - row.length);
    const y = rows.length === 1 ? int(rng, 1, size - GLYPH_HEIGHT - 1) : 1 + r * (GLYPH_HEIGHT + 2);
    row.forEach((digit, i) => drawDigit(image, digit, x0 + 4 * i, y));
  });
  const question = pick(rng, ['read the digits.', 'what number is shown?', 'which digits are written?']);
  const steps = rows.map((row, r) => (rows.length === 1 ? `digits ${row.join(' ')}` : `row ${r + 1}: ${row.join(' ')}`));
  return { image, question, answer: rows.map((row) => row.join('')).join(' '), answerType: 'ocr', steps, facts: { rows } };
}

export const GENERATORS: Record<Family, (rng: Rng, size: number, d: Difficulty) => Generated> = { counting, chart, ocr, math, choice };
