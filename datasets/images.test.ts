import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { checkImage, roundHalfEven, shrinkTarget, smartResize, sniffImage } from './images';
import { GIF_BYTES, jpegBytes, pngBytes, truncatedPng } from './testing/fixtures';

describe('smartResize (transformers Qwen2-VL arithmetic, factor 28, min 3136, max 12845056)', () => {
  // Each case worked by hand from the rule in images.ts.
  it('rounds each side to the nearest multiple of 28 inside the bounds', () => {
    // 1000/28 = 35.71 → 36 → 1008; 800/28 = 28.57 → 29 → 812; 1008·812 = 818496 is within bounds.
    expect(smartResize(1000, 800)).toEqual({ height: 1008, width: 812 });
    // A 12 MP phone photo already on the grid: 3024 = 108·28, 4032 = 144·28, 12192768 ≤ 12845056.
    expect(smartResize(3024, 4032)).toEqual({ height: 3024, width: 4032 });
  });

  it("rounds halves to even as Python's round does", () => {
    // 42/28 = 1.5 → 2 and 70/28 = 2.5 → 2 (Math.round would give 3 → 84), for either side.
    expect(roundHalfEven(1.5)).toBe(2);
    expect(roundHalfEven(2.5)).toBe(2);
    expect(roundHalfEven(3.5)).toBe(4);
    expect(smartResize(42, 70)).toEqual({ height: 56, width: 56 });
    expect(smartResize(70, 42)).toEqual({ height: 56, width: 56 });
  });

  it('scales down by beta = sqrt(h·w / max) and floors to the grid when over max_pixels', () => {
    // 4004·5992 > max; beta = sqrt(24e6 / 12845056) = 1.36690; 4000/beta/28 = 104.5 → 104·28 = 2912;
    // 6000/beta/28 = 156.8 → 156·28 = 4368.
    expect(smartResize(4000, 6000)).toEqual({ height: 2912, width: 4368 });
    // A custom bound: 196·308 > 23520; beta = sqrt(60000/23520) = 1.5972; 200/beta/28 = 4.47 → 112; 300/beta/28 = 6.71 → 168.
    expect(smartResize(200, 300, { maxPixels: 23520 })).toEqual({ height: 112, width: 168 });
  });

  it('scales up by beta = sqrt(min / (h·w)) and ceils to the grid when under min_pixels', () => {
    // 28·28 < 3136; beta = sqrt(3136/600) = 2.2862; 20·beta/28 = 1.63 → 56; 30·beta/28 = 2.45 → 84.
    expect(smartResize(20, 30)).toEqual({ height: 56, width: 84 });
    // A side that rounds to 0: 10/28 → 0, so the area is 0 < min; beta = 0.39608; 10·beta/28 → 1 → 28; 1999·beta/28 = 28.3 → 812.
    expect(smartResize(10, 1999)).toEqual({ height: 28, width: 812 });
  });

  it('refuses an aspect ratio over 200 as the processor does', () => {
    expect(() => smartResize(10, 2001)).toThrow(RangeError);
    expect(smartResize(10, 2000)).toEqual(expect.objectContaining({ height: 28 }));
  });

  it('shrinks only when the processor size is bounded by max_pixels', () => {
    expect(shrinkTarget(1000, 800)).toBeUndefined();
    expect(shrinkTarget(4000, 6000)).toEqual({ height: 2912, width: 4368 });
  });
});

describe('checkImage', () => {
  it('keeps a PNG and a JPEG as they are, with their size', () => {
    const png = pngBytes(30, 20);
    const a = checkImage(png);
    expect(a).toEqual({ ok: { bytes: png, mime: 'image/png', width: 30, height: 20 } });
    const b = checkImage(jpegBytes(16, 12));
    expect('ok' in b && b.ok.mime === 'image/jpeg' && b.ok.width === 16 && b.ok.height === 12).toBe(true);
  });

  it('shrinks an image over max_pixels to the smart_resize size and stores a PNG', () => {
    const result = checkImage(pngBytes(300, 200, [10, 120, 250]), { maxPixels: 23520 });
    if (!('ok' in result)) throw new Error(`expected ok, got ${JSON.stringify(result)}`);
    expect(result.ok).toMatchObject({ mime: 'image/png', width: 168, height: 112, resizedFrom: { width: 300, height: 200 } });
    const decoded = PNG.sync.read(Buffer.from(result.ok.bytes));
    expect([decoded.width, decoded.height]).toEqual([168, 112]);
    // A flat colour stays that colour: the bicubic weights are normalised.
    const centre = (56 * 168 + 84) * 4;
    expect([...decoded.data.subarray(centre, centre + 3)]).toEqual([10, 120, 250]);
  });

  it('names what is wrong with a bad image', () => {
    expect(checkImage(truncatedPng())).toMatchObject({ bad: 'unreadable-image' });
    const gif = checkImage(GIF_BYTES);
    expect(gif).toMatchObject({ bad: 'unsupported-image' });
    expect('detail' in gif && gif.detail.startsWith('GIF')).toBe(true);
    expect(checkImage(new TextEncoder().encode('not an image'))).toMatchObject({ bad: 'unsupported-image' });
    expect(checkImage(pngBytes(402, 2))).toMatchObject({ bad: 'bad-aspect-ratio' });
  });

  it('sniffs formats by their magic bytes', () => {
    expect(sniffImage(pngBytes(2, 2))).toBe('png');
    expect(sniffImage(jpegBytes(2, 2))).toBe('jpeg');
    expect(sniffImage(GIF_BYTES)).toBe('gif');
  });
});
