/**
 * Model FLOPs utilisation for bench/torch-engine's GPU mode: the model FLOPs a training step must do (6 per matrix
 * parameter per token: 2 forward, 4 backward), per second, over the GPU's peak.
 *
 * A Qwen2.5-VL step has two parts: the language model over every token of every row (prompt text, image tokens,
 * response) and the vision tower over every image patch (4 patches per image token: 2 × 2 are merged into one).
 * The text part counts every text parameter but the input embedding (a lookup, no product) plus the LM head's
 * vocab × hidden product even when it is tied to the embedding; attention's own T² products are left out, as in
 * the usual 6·N·D estimate (for a 7B model at ~1k tokens per row they would add ~2 %).
 */

/** Parameter counts as bench/torch-engine/model.py prints them. */
export interface FlopParameters {
  textMatrixParameters: number;
  visionParameters: number;
}

/** Model FLOPs of one training step (forward + backward) over `tokens` text positions and `patches` image patches. */
export function trainStepFlops(params: FlopParameters, tokens: number, patches: number): number {
  for (const [name, value] of Object.entries({ ...params, tokens, patches })) {
    if (!(Number.isFinite(value) && value >= 0)) throw new RangeError(`trainStepFlops: ${name} must be a finite number >= 0 (got ${value})`);
  }
  return 6 * (params.textMatrixParameters * tokens + params.visionParameters * patches);
}

/** Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from NVIDIA's data sheets, matched on the device name. */
export const PEAK_BF16_TFLOPS: readonly { match: RegExp; name: string; tflops: number }[] = [
  { match: /H200/, name: 'H200 (SXM)', tflops: 989 },
  { match: /H100.*PCIe/, name: 'H100 PCIe', tflops: 756 },
  { match: /H100.*NVL/, name: 'H100 NVL', tflops: 835 },
  { match: /H100/, name: 'H100 SXM', tflops: 989 },
  { match: /A100/, name: 'A100', tflops: 312 },
];

/**
 * The peak to divide by: `flag` (--peak-tflops) when given, else the table's entry for the device name. Neither is
 * a RangeError naming the flag.
 */
export function peakTflops(deviceName: string | undefined, flag: string | undefined): { tflops: number; source: string } {
  if (flag !== undefined) {
    const tflops = Number(flag);
    if (!(Number.isFinite(tflops) && tflops > 0)) throw new RangeError(`--peak-tflops must be a number > 0 (got ${JSON.stringify(flag)})`);
    return { tflops, source: '--peak-tflops' };
  }
  const entry = PEAK_BF16_TFLOPS.find((e) => deviceName !== undefined && e.match.test(deviceName));
  if (!entry) throw new RangeError(`no bf16 peak known for the device ${JSON.stringify(deviceName ?? 'none')}: pass --peak-tflops N (dense bf16 TFLOP/s)`);
  return { tflops: entry.tflops, source: `${entry.name} data sheet` };
}

/** MFU in [0, 1]: FLOPs per step over the step's seconds, over the peak. */
export function mfu(flopsPerStep: number, stepSeconds: number, peakTflopsPerSecond: number): number {
  if (!(stepSeconds > 0) || !(peakTflopsPerSecond > 0)) throw new RangeError(`mfu: stepSeconds and the peak must be > 0 (got ${stepSeconds}, ${peakTflopsPerSecond})`);
  return flopsPerStep / stepSeconds / (peakTflopsPerSecond * 1e12);
}

/**
 * Vision patches of one image that a Qwen2.5-VL processor keeps at its size: width and height must be multiples of
 * 28 (patch 14 × merge 2) inside the processor's pixel bounds, so that it does not resize; 4 patches per image token.
 */
export function qwenImagePatches(width: number, height: number): { patches: number; imageTokens: number } {
  if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width % 28 !== 0 || height % 28 !== 0 || width < 56 || height < 56) {
    throw new RangeError(`--image-size: ${width}×${height} must be multiples of 28 pixels, at least 56 (the processor would resize it; the FLOP count assumes it does not)`);
  }
  const imageTokens = (width / 28) * (height / 28);
  return { patches: 4 * imageTokens, imageTokens };
}
