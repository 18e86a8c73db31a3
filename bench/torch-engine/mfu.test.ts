import { describe, expect, it } from 'vitest';
import { mfu, peakTflops, qwenImagePatches, trainStepFlops } from './mfu';

describe('bench/torch-engine MFU arithmetic', () => {
  it('counts 6 FLOPs per matrix parameter per token, text over tokens and vision over patches', () => {
    expect(trainStepFlops({ textMatrixParameters: 1000, visionParameters: 10 }, 5, 20)).toBe(6 * (1000 * 5 + 10 * 20));
    // Qwen2.5-VL-7B's counts (model.py on the published shape): 8 rows of 256 image tokens + 264 text tokens.
    const flops = trainStepFlops({ textMatrixParameters: 7_070_619_136, visionParameters: 676_550_144 }, 8 * 520, 8 * 1024);
    expect(flops / 1e12).toBeCloseTo(209.7, 1);
    expect(() => trainStepFlops({ textMatrixParameters: Number.NaN, visionParameters: 0 }, 1, 1)).toThrow(/textMatrixParameters/);
    expect(() => trainStepFlops({ textMatrixParameters: 1, visionParameters: 0 }, -1, 1)).toThrow(/tokens/);
  });

  it('divides by the step time and the peak', () => {
    expect(mfu(989e12, 2, 989)).toBeCloseTo(0.5, 12);
    expect(() => mfu(1, 0, 989)).toThrow(RangeError);
  });

  it('takes the peak from --peak-tflops, else from the device name', () => {
    expect(peakTflops('NVIDIA H200', undefined)).toEqual({ tflops: 989, source: 'H200 (SXM) data sheet' });
    expect(peakTflops('NVIDIA H100 80GB HBM3', undefined).tflops).toBe(989);
    expect(peakTflops('NVIDIA H100 PCIe', undefined).tflops).toBe(756);
    expect(peakTflops('NVIDIA H100 PCIe', '500')).toEqual({ tflops: 500, source: '--peak-tflops' });
    expect(() => peakTflops('NVIDIA L4', undefined)).toThrow(/--peak-tflops/);
    expect(() => peakTflops(undefined, 'fast')).toThrow(/--peak-tflops must be a number/);
  });

  it('counts 4 patches per image token for sizes the processor keeps', () => {
    expect(qwenImagePatches(448, 448)).toEqual({ patches: 1024, imageTokens: 256 });
    expect(qwenImagePatches(112, 56)).toEqual({ patches: 32, imageTokens: 8 });
    expect(() => qwenImagePatches(100, 100)).toThrow(/--image-size/);
  });
});
