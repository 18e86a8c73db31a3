/**
 * Choosing the next token from logits (pure functions, used by the sampler and tested alone).
 *
 * temperature 0 → greedy (argmax, lowest index on ties), logprob under the untempered distribution;
 * otherwise z = logits / temperature, logprob = z[token] − logsumexp(z) (before top-p truncation), and the token
 * is drawn from the smallest set of most likely tokens whose probability reaches `topP`, renormalized.
 * All arithmetic is float64 in JS, so the same logits, settings and random number give the same token anywhere.
 */
import type { Rng } from './rng';

export interface Pick {
  token: number;
  logprob: number;
}

/**
 * Picks a token from one row of logits. `scratch` (length ≥ V) avoids an allocation per call in the sampler's
 * inner loop.
 */
export function pickToken(logits: ArrayLike<number>, temperature: number, topP: number, rng: Rng, scratch?: Float64Array): Pick {
  const v = logits.length;
  const scale = temperature === 0 ? 1 : 1 / temperature;
  const e = scratch && scratch.length >= v ? scratch : new Float64Array(v);
  let max = -Infinity;
  let best = 0;
  for (let i = 0; i < v; i++) {
    const z = logits[i]! * scale;
    if (z > max) {
      max = z;
      best = i;
    }
  }
  let sum = 0;
  for (let i = 0; i < v; i++) {
    const x = Math.exp(logits[i]! * scale - max);
    e[i] = x;
    sum += x;
  }
  const lse = max + Math.log(sum);
  // (No closure for the logprob: one made per call is also renamed per call under tsx's keepNames transform.)
  if (temperature === 0) return picked(logits, best, scale, lse);
  if (topP >= 1) {
    // Inverse CDF over the unnormalized weights e[i] (total `sum`).
    const u = rng.nextFloat() * sum;
    let acc = 0;
    for (let i = 0; i < v; i++) {
      acc += e[i]!;
      if (u < acc) return picked(logits, i, scale, lse);
    }
    return picked(logits, v - 1, scale, lse);
  }
  // Nucleus: the most likely tokens (heaviest first, the lower index first on ties) until their mass reaches
  // topP, renormalized. Only the tokens that can be in it are sorted (see `nucleusCandidates`); should rounding
  // leave the candidates' mass, summed heaviest first, a hair short of the target, every token is sorted.
  let order = nucleusCandidates(e, v, topP * sum);
  let kept = 0;
  let mass = 0;
  while (kept < order.length && mass < topP * sum) mass += e[order[kept++]!]!;
  if (mass < topP * sum && order.length < v) {
    order = sortedByWeight(e, Array.from({ length: v }, (_, i) => i));
    kept = 0;
    mass = 0;
    while (kept < v && mass < topP * sum) mass += e[order[kept++]!]!;
  }
  const u = rng.nextFloat() * mass;
  let acc = 0;
  for (let k = 0; k < kept; k++) {
    const i = order[k]!;
    acc += e[i]!;
    if (u < acc) return picked(logits, i, scale, lse);
  }
  return picked(logits, order[kept - 1]!, scale, lse);
}

/**
 * The tokens at or above a weight θ whose total weight already reaches `target`, sorted heaviest first. The
 * nucleus is a subset: its lightest token cannot be lighter than θ, or the tokens above it — all of these —
 * would have reached the target before it. θ starts at ½ (the heaviest weight is exp(0) = 1) and falls by 4×
 * per pass over the weights until the target is met; typically one or two passes, and a sort of a few tokens
 * instead of the vocabulary (the full sort took 11 µs per token at V = 64, against 1 µs at top-p = 1; now 4 µs).
 * The index buffer and the comparator are made once, not per call.
 */
function nucleusCandidates(e: Float64Array, v: number, target: number): number[] {
  let theta = 0.5;
  for (;;) {
    let mass = 0;
    for (let i = 0; i < v; i++) if (e[i]! >= theta) mass += e[i]!;
    if (mass >= target || theta === 0) break;
    theta = theta < 1e-200 ? 0 : theta / 4;
  }
  candidates.length = 0;
  for (let i = 0; i < v; i++) if (e[i]! >= theta) candidates.push(i);
  return sortedByWeight(e, candidates);
}

const candidates: number[] = [];
let sortWeights: Float64Array = new Float64Array(0);
const heavierFirst = (a: number, b: number): number => sortWeights[b]! - sortWeights[a]! || a - b;

/** `indices` sorted in place by weight `e`, heaviest first, the lower index first on ties. */
function sortedByWeight(e: Float64Array, indices: number[]): number[] {
  sortWeights = e;
  return indices.sort(heavierFirst);
}

function picked(logits: ArrayLike<number>, token: number, scale: number, lse: number): Pick {
  return { token, logprob: logits[token]! * scale - lse };
}
