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

export function blankImage(size: number): Image {
  return { size, rgb: new Uint8Array(size * size * 3) };
}

function setPixel(img: Image, x: number, y: number, color: Rgb): void {
  if (x < 0 || y < 0 || x >= img.size || y >= img.size) throw new RangeError(`pixel (${x}, ${y}) is outside a ${img.size}×${img.size} image`);
  const i = (y * img.size + x) * 3;
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
  const side = img.size * scale;
  const png = new PNG({ width: side, height: side });
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const src = (Math.floor(y / scale) * img.size + Math.floor(x / scale)) * 3;
      const dst = (y * side + x) * 4;
      png.data[dst] = img.rgb[src]!;
      png.data[dst + 1] = img.rgb[src + 1]!;
      png.data[dst + 2] = img.rgb[src + 2]!;
      png.data[dst + 3] = 255;
    }
  }
  return PNG.sync.write(png);
}

/** Decodes a PNG written by `encodePng` (scale 1) back into an image. */
export function decodePng(bytes: Uint8Array): Image {
  const png = PNG.sync.read(Buffer.from(bytes));
  if (png.width !== png.height) throw new RangeError(`image must be square (got ${png.width}×${png.height})`);
  const img = blankImage(png.width);
  for (let i = 0; i < png.width * png.height; i++) {
    img.rgb[i * 3] = png.data[i * 4]!;
    img.rgb[i * 3 + 1] = png.data[i * 4 + 1]!;
    img.rgb[i * 3 + 2] = png.data[i * 4 + 2]!;
  }
  return img;
}

/** The engine's input layout: (C, S, S) floats in [0, 1], channel-major. */
export function imageToTensor(img: Image, out: Float32Array = new Float32Array(3 * img.size * img.size), offset = 0): Float32Array {
  const plane = img.size * img.size;
  for (let p = 0; p < plane; p++) {
    out[offset + p] = img.rgb[p * 3]! / 255;
    out[offset + plane + p] = img.rgb[p * 3 + 1]! / 255;
    out[offset + 2 * plane + p] = img.rgb[p * 3 + 2]! / 255;
  }
  return out;
}
