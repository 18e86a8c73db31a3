/**
 * Drawing the tiny world's images: a pixel canvas, a 3×5 pixel font for digits, and PNG encoding (optionally
 * upscaled with nearest-neighbour so a person can look at a 16×16 image).
 */
import { PNG } from 'pngjs';
import type { Image } from './types';

export type Rgb = readonly [number, number, number];

export const COLORS = {
  red: [230, 40, 40],
  green: [40, 200, 60],
  blue: [60, 100, 255],
  yellow: [240, 220, 40],
} as const satisfies Record<string, Rgb>;

export type ColorName = keyof typeof COLORS;
export const COLOR_NAMES = Object.keys(COLORS) as ColorName[];

const WHITE: Rgb = [235, 235, 235];
export const BAR: Rgb = [80, 200, 220];

/** A black square image (the tiny world's images are square). */
export function blankImage(size: number): Image {
  return { width: size, height: size, rgb: new Uint8Array(size * size * 3) };
}

function setPixel(img: Image, x: number, y: number, color: Rgb): void {
  if (x < 0 || y < 0 || x >= img.width || y >= img.height) throw new RangeError(`pixel (${x}, ${y}) is outside a ${img.width}×${img.height} image`);
  const i = (y * img.width + x) * 3;
  img.rgb[i] = color[0];
  img.rgb[i + 1] = color[1];
  img.rgb[i + 2] = color[2];
}

export function fillRect(img: Image, x: number, y: number, w: number, h: number, color: Rgb): void {
  for (let dy = 0; dy < h; dy++) for (let dx = 0; dx < w; dx++) setPixel(img, x + dx, y + dy, color);
}

/** 3×5 glyphs of the digits 0–9, one string per row, '#' = ink. */
const DIGIT_GLYPHS: readonly (readonly string[])[] = [
  ['###', '#.#', '#.#', '#.#', '###'],
  ['.#.', '##.', '.#.', '.#.', '###'],
  ['###', '..#', '###', '#..', '###'],
  ['###', '..#', '.##', '..#', '###'],
  ['#.#', '#.#', '###', '..#', '..#'],
  ['###', '#..', '###', '..#', '###'],
  ['###', '#..', '###', '#.#', '###'],
  ['###', '..#', '.#.', '.#.', '.#.'],
  ['###', '#.#', '###', '#.#', '###'],
  ['###', '#.#', '###', '..#', '###'],
];

export const GLYPH_HEIGHT = 5;

export function drawDigit(img: Image, digit: number, x: number, y: number, color: Rgb = WHITE): void {
  const glyph = DIGIT_GLYPHS[digit];
  if (!glyph) throw new RangeError(`drawDigit: ${digit} is not a digit`);
  glyph.forEach((row, dy) => {
    for (let dx = 0; dx < row.length; dx++) if (row[dx] === '#') setPixel(img, x + dx, y + dy, color);
  });
}

/** PNG bytes of the image, each pixel drawn as a scale × scale block. */
export function encodePng(img: Image, scale = 1): Uint8Array {
  const width = img.width * scale;
  const height = img.height * scale;
  const png = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const src = (Math.floor(y / scale) * img.width + Math.floor(x / scale)) * 3;
      const dst = (y * width + x) * 4;
      png.data[dst] = img.rgb[src]!;
      png.data[dst + 1] = img.rgb[src + 1]!;
      png.data[dst + 2] = img.rgb[src + 2]!;
      png.data[dst + 3] = 255;
    }
  }
  return PNG.sync.write(png);
}

/** Decodes a PNG (e.g. one written by `encodePng` at scale 1) into an image. */
export function decodePng(bytes: Uint8Array): Image {
  const png = PNG.sync.read(Buffer.from(bytes));
  const img: Image = { width: png.width, height: png.height, rgb: new Uint8Array(png.width * png.height * 3) };
  for (let i = 0; i < png.width * png.height; i++) {
    img.rgb[i * 3] = png.data[i * 4]!;
    img.rgb[i * 3 + 1] = png.data[i * 4 + 1]!;
    img.rgb[i * 3 + 2] = png.data[i * 4 + 2]!;
  }
  return img;
}
