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
  // Nucleus: the most likely tokens until their mass reaches topP, renormalized.
  const order = Array.from({ length: v }, (_, i) => i).sort((a, b) => e[b]! - e[a]! || a - b);
  let kept = 0;
  let mass = 0;
  while (kept < v && mass < topP * sum) mass += e[order[kept++]!]!;
  const u = rng.nextFloat() * mass;
  let acc = 0;
  for (let k = 0; k < kept; k++) {
    const i = order[k]!;
    acc += e[i]!;
    if (u < acc) return picked(logits, i, scale, lse);
  }
  return picked(logits, order[kept - 1]!, scale, lse);
}

function picked(logits: ArrayLike<number>, token: number, scale: number, lse: number): Pick {
  return { token, logprob: logits[token]! * scale - lse };
}
