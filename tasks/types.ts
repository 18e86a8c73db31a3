/**
 * The tiny multimodal world: types of its examples and datasets (docs/architecture.md §4).
 *
 * Abstractions:
 *  - `Example`: one image + question with its answer, answer type, and the true intermediate steps (what a
 *    correct solution reasons through; the teacher writes SFT responses from them, the programmatic judge of the
 *    thinking-reward stage checks responses against them);
 *  - `Family`: the five task families, mirroring the paper's data mix: counting (general VQA), bar-chart reading
 *    (chart), digit strings (OCR), arithmetic over what is shown (math), multiple choice;
 *  - `Split`: `train`, `test` (same distribution, disjoint seeds) and `ood` (harder: more objects, more bars,
 *    longer strings) to measure generalization;
 *  - `Image`: a small RGB pixel grid, row-major, 3 bytes per pixel.
 */
import type { AnswerType } from './grading';

export const FAMILIES = ['counting', 'chart', 'ocr', 'math', 'choice'] as const;
export type Family = (typeof FAMILIES)[number];

export const SPLITS = ['train', 'test', 'ood'] as const;
export type Split = (typeof SPLITS)[number];

export interface Image {
  /** Width = height in pixels. */
  size: number;
  /** size × size × 3 bytes, row-major RGB. */
  rgb: Uint8Array;
}

export interface Example {
  /** `{split}-{family}-{index}`, unique within a dataset. */
  id: string;
  family: Family;
  split: Split;
  /** The seed this example was generated from (regenerates it exactly). */
  seed: number;
  image: Image;
  question: string;
  /** Ground truth as the grader expects it ("7", "4719 3802", "A,C"). */
  answer: string;
  answerType: AnswerType;
  /** The true intermediate steps, in order, as short facts ("red at 2 7 11", "3 + 2 = 5"). */
  steps: string[];
  /** Structured ground truth behind the steps (counts per colour, bar heights, digits) for judges. */
  facts: Record<string, unknown>;
}

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
