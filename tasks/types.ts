/**
 * A run's examples: the tiny multimodal world's (docs/architecture.md §4) or a real dataset's (datasets/,
 * docs/datasets.md), as every stage reads them.
 *
 * Abstractions:
 *  - `Example`: one image (or more) + question with its answer and answer type; the tiny world's also carry the true
 *    intermediate steps (what a correct solution reasons through; the teacher writes SFT responses from them, the
 *    programmatic judge of the thinking-reward stage checks responses against them), a real dataset's have none;
 *  - `Family`: the tiny world's five task families, mirroring the paper's data mix: counting (general VQA), bar-chart
 *    reading (chart), digit strings (OCR), arithmetic over what is shown (math), multiple choice. A real dataset's
 *    examples are grouped by their category (or problem type) instead: `Example.family` is a string;
 *  - `Split`: `train`, `test` (same distribution, disjoint seeds) and `ood` (harder: more objects, more bars,
 *    longer strings) to measure generalization; a real dataset splits train/test by a hash of the id, ood is empty;
 *  - `Image`: an RGB pixel grid, row-major, 3 bytes per pixel; `EncodedImage`: a real dataset's image kept as its
 *    PNG/JPEG bytes (a tenth of the memory) and decoded when a prompt is built (`tasks/images.ts`).
 */
import type { AnswerType } from './grading';

export const FAMILIES = ['counting', 'chart', 'ocr', 'math', 'choice'] as const;
export type Family = (typeof FAMILIES)[number];

export const SPLITS = ['train', 'test', 'ood'] as const;
export type Split = (typeof SPLITS)[number];

export interface Image {
  width: number;
  height: number;
  /** width × height × 3 bytes, row-major RGB. */
  rgb: Uint8Array;
}

/** An image as its file's bytes (a real dataset's: already checked and, when too large, shrunk by datasets/). */
export interface EncodedImage {
  width: number;
  height: number;
  mime: 'image/png' | 'image/jpeg';
  bytes: Uint8Array;
}

export type ExampleImage = Image | EncodedImage;

export interface Example {
  /** `{split}-{family}-{index}` in the tiny world; a real dataset's row id. Unique within a dataset. */
  id: string;
  /** A tiny-world `Family`; a real dataset's category (or problem type): what results are grouped by. */
  family: string;
  split: Split;
  /** The seed this example was generated from (regenerates it exactly); 0 for a real dataset's. */
  seed: number;
  image: ExampleImage;
  /** Further images of a real dataset's row, shown after `image` and before the question. */
  moreImages?: ExampleImage[];
  /** Where a real dataset's example came from (its data source, or its file). */
  source?: string;
  question: string;
  /** Ground truth as the grader expects it ("7", "4719 3802", "A,C"). */
  answer: string;
  answerType: AnswerType;
  /** The true intermediate steps, in order, as short facts ("red at 2 7 11", "3 + 2 = 5"); none in a real dataset. */
  steps: string[];
  /** Structured ground truth behind the steps (counts per colour, bar heights, digits) for judges. */
  facts: Record<string, unknown>;
}

/**
 * The families of `examples` in the order results list them: the tiny world's in `FAMILIES` order, then any other
 * (a real dataset's categories) in the order first met.
 */
export function familiesOf(examples: readonly Pick<Example, 'family'>[]): string[] {
  const present = new Set(examples.map((e) => e.family));
  return [...FAMILIES.filter((f) => present.has(f)), ...[...present].filter((f) => !(FAMILIES as readonly string[]).includes(f))];
}

/** A tiny-world example: one of the five families, its image as pixels. */
export type TinyExample = Example & { family: Family; image: Image };

/** How hard a split is: the generators read their ranges from here. */
export interface Difficulty {
  /** Objects in a counting image. */
  objects: [number, number];
  /** Colours used in a counting image. */
  colors: [number, number];
  /** Bars in a chart. */
  bars: [number, number];
  /** Digits in a digit string (one or two rows of up to 4). */
  digits: [number, number];
  /** Colours summed in a math question. */
  addends: [number, number];
}

export const DIFFICULTY: Record<Split, Difficulty> = {
  train: { objects: [1, 6], colors: [2, 3], bars: [3, 4], digits: [2, 4], addends: [2, 2] },
  test: { objects: [1, 6], colors: [2, 3], bars: [3, 4], digits: [2, 4], addends: [2, 2] },
  ood: { objects: [7, 10], colors: [3, 4], bars: [5, 5], digits: [5, 8], addends: [3, 3] },
};
