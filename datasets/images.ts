/**
 * Checking a dataset image and shrinking it as the model's processor would.
 *
 * Every image is decoded (pngjs, jpeg-js: pure JS) so that a truncated or corrupt file is caught here, as a
 * counted bad row, instead of inside a training step. The original bytes are kept unless the image is too large:
 * Qwen2-VL / Qwen2.5-VL's image processor resizes every image to `smartResize`'s size, and when that size is
 * bounded by `maxPixels` we shrink it here, once, to exactly that size and store a PNG, so a 40-megapixel scan is
 * not carried through the pipeline only to be shrunk at every rollout. Smaller images keep their bytes: the
 * processor's own rounding to multiples of 28 happens in the engine.
 *
 * `smartResize` is the arithmetic of transformers' `smart_resize` (models/qwen2_vl/image_processing_qwen2_vl.py),
 * including Python's round-half-to-even; its defaults are Qwen2.5-VL-7B-Instruct's preprocessor_config.json
 * (min_pixels 3136, max_pixels 12845056, patch 14 × merge 2 = factor 28). The resampling is bicubic (the processor's
 * `resample`), with PIL's widened kernel when shrinking.
 */
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import type { DatasetImage, ImageOptions } from './types';

export const QWEN_IMAGE_DEFAULTS: Required<ImageOptions> = { maxPixels: 12845056, minPixels: 3136, factor: 28 };

/** Longest side over shortest side that the processor accepts. */
export const MAX_ASPECT_RATIO = 200;

/** Python's `round`: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * The size the Qwen2-VL processor resizes an image to: both sides multiples of `factor`, the area within
 * [minPixels, maxPixels], the aspect ratio kept as closely as that allows. Throws a RangeError past
 * `MAX_ASPECT_RATIO`, as the processor does.
 */
export function smartResize(height: number, width: number, options: ImageOptions = {}): { height: number; width: number } {
  const { factor, minPixels, maxPixels } = { ...QWEN_IMAGE_DEFAULTS, ...options };
  if (Math.max(height, width) / Math.min(height, width) > MAX_ASPECT_RATIO) {
    throw new RangeError(`absolute aspect ratio must be at most ${MAX_ASPECT_RATIO}, got ${width}×${height}`);
  }
  let h = roundHalfEven(height / factor) * factor;
  let w = roundHalfEven(width / factor) * factor;
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return { height: h, width: w };
}

/** The size to shrink to, or undefined when the processor's size is not bounded by `maxPixels`. */
export function shrinkTarget(height: number, width: number, options: ImageOptions = {}): { height: number; width: number } | undefined {
  const { factor, maxPixels } = { ...QWEN_IMAGE_DEFAULTS, ...options };
  const rounded = roundHalfEven(height / factor) * factor * roundHalfEven(width / factor) * factor;
  return rounded > maxPixels ? smartResize(height, width, options) : undefined;
}

export type ImageKind = 'png' | 'jpeg' | 'gif' | 'webp' | 'bmp' | 'unknown';

/** The format from the magic bytes (file names lie). */
export function sniffImage(bytes: Uint8Array): ImageKind {
  const b = (i: number): number => bytes[i] ?? -1;
  if (b(0) === 0x89 && b(1) === 0x50 && b(2) === 0x4e && b(3) === 0x47) return 'png';
  if (b(0) === 0xff && b(1) === 0xd8 && b(2) === 0xff) return 'jpeg';
  if (b(0) === 0x47 && b(1) === 0x49 && b(2) === 0x46) return 'gif';
  if (b(0) === 0x52 && b(1) === 0x49 && b(2) === 0x46 && b(3) === 0x46 && b(8) === 0x57 && b(9) === 0x45) return 'webp';
  if (b(0) === 0x42 && b(1) === 0x4d) return 'bmp';
  return 'unknown';
}

/** Decoded pixels: (H, W, 4) RGBA bytes, row-major. */
export interface Pixels {
  width: number;
  height: number;
  rgba: Uint8Array;
}

export function decodeImage(bytes: Uint8Array, kind: 'png' | 'jpeg'): Pixels {
  if (kind === 'png') {
    const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    return { width: png.width, height: png.height, rgba: png.data };
  }
  const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: 200 });
  return { width: img.width, height: img.height, rgba: img.data };
}

/** PNG bytes of RGBA pixels, written as RGB (the processor converts to RGB; alpha is dropped as PIL does). */
export function encodePngRgb(pixels: Pixels): Uint8Array {
  const png = new PNG({ width: pixels.width, height: pixels.height });
  png.data = Buffer.from(pixels.rgba.buffer, pixels.rgba.byteOffset, pixels.rgba.byteLength);
  return PNG.sync.write(png, { colorType: 2 });
}

/** PIL's bicubic kernel (a = -0.5). */
function bicubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

/** For each output index: the first input index and normalised weights (PIL's `precompute_coeffs`). */
function coefficients(inSize: number, outSize: number): { start: number; weights: Float64Array }[] {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale;
  const out: { start: number; weights: Float64Array }[] = [];
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const start = Math.max(0, Math.trunc(center - support + 0.5));
    const end = Math.min(inSize, Math.trunc(center + support + 0.5));
    const weights = new Float64Array(end - start);
    let sum = 0;
    for (let x = start; x < end; x++) sum += weights[x - start] = bicubic((x - center + 0.5) / filterScale);
    if (sum !== 0) for (let k = 0; k < weights.length; k++) weights[k]! /= sum;
    out.push({ start, weights });
  }
  return out;
}

/** Separable bicubic resize of RGBA pixels; alpha is set opaque. */
export function resizeBicubic(src: Pixels, width: number, height: number): Pixels {
  const xs = coefficients(src.width, width);
  const ys = coefficients(src.height, height);
  const tmp = new Float32Array(width * src.height * 3); // (H_in, W_out, 3) after the horizontal pass
  for (let y = 0; y < src.height; y++) {
    for (let x = 0; x < width; x++) {
      const { start, weights } = xs[x]!;
      let r = 0, g = 0, b = 0;
      for (let k = 0; k < weights.length; k++) {
        const p = (y * src.width + start + k) * 4;
        const w = weights[k]!;
        r += src.rgba[p]! * w;
        g += src.rgba[p + 1]! * w;
        b += src.rgba[p + 2]! * w;
      }
      const q = (y * width + x) * 3;
      tmp[q] = r;
      tmp[q + 1] = g;
      tmp[q + 2] = b;
    }
  }
  const rgba = new Uint8Array(width * height * 4); // (H_out, W_out, 4)
  const clamp = (v: number): number => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));
  for (let y = 0; y < height; y++) {
    const { start, weights } = ys[y]!;
    for (let x = 0; x < width; x++) {
      let r = 0, g = 0, b = 0;
      for (let k = 0; k < weights.length; k++) {
        const q = ((start + k) * width + x) * 3;
        const w = weights[k]!;
        r += tmp[q]! * w;
        g += tmp[q + 1]! * w;
        b += tmp[q + 2]! * w;
      }
      const p = (y * width + x) * 4;
      rgba[p] = clamp(r);
      rgba[p + 1] = clamp(g);
      rgba[p + 2] = clamp(b);
      rgba[p + 3] = 255;
    }
  }
  return { width, height, rgba };
}

export type ImageCheck = { ok: DatasetImage } | { bad: 'unreadable-image' | 'unsupported-image' | 'bad-aspect-ratio'; detail: string };

/** Decodes and checks one image; shrinks it when the processor would (see the module comment). */
export function checkImage(bytes: Uint8Array, options: ImageOptions = {}): ImageCheck {
  const checked = decodeChecked(bytes, options);
  return 'bad' in checked ? checked : { ok: checked.ok };
}

/** `checkImage`, and the pixels it decoded (after shrinking, when it shrank them), for callers that need them too. */
export function decodeChecked(bytes: Uint8Array, options: ImageOptions = {}): { ok: DatasetImage; pixels: Pixels } | Extract<ImageCheck, { bad: string }> {
  const kind = sniffImage(bytes);
  if (kind !== 'png' && kind !== 'jpeg') {
    return { bad: 'unsupported-image', detail: `${kind === 'unknown' ? 'not an image format Sophia reads' : kind.toUpperCase()} (only PNG and JPEG are read)` };
  }
  let pixels: Pixels;
  try {
    pixels = decodeImage(bytes, kind);
  } catch (err) {
    return { bad: 'unreadable-image', detail: `${kind.toUpperCase()} does not decode: ${(err as Error).message}` };
  }
  const { width, height } = pixels;
  if (width < 1 || height < 1) return { bad: 'unreadable-image', detail: `${width}×${height} pixels` };
  if (Math.max(width, height) / Math.min(width, height) > MAX_ASPECT_RATIO) {
    return { bad: 'bad-aspect-ratio', detail: `${width}×${height} pixels: more than ${MAX_ASPECT_RATIO}:1` };
  }
  const mime = kind === 'png' ? 'image/png' : 'image/jpeg';
  const target = shrinkTarget(height, width, options);
  if (target === undefined) return { ok: { bytes, mime, width, height }, pixels };
  const resized = resizeBicubic(pixels, target.width, target.height);
  return { ok: { bytes: encodePngRgb(resized), mime: 'image/png', width: target.width, height: target.height, resizedFrom: { width, height } }, pixels: resized };
}
