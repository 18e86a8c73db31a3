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

function logSumExp(z: Float64Array): number {
  let max = -Infinity;
  for (const x of z) if (x > max) max = x;
  let sum = 0;
  for (const x of z) sum += Math.exp(x - max);
  return max + Math.log(sum);
}

export function pickToken(logits: ArrayLike<number>, temperature: number, topP: number, rng: Rng): Pick {
  const v = logits.length;
  if (temperature === 0) {
    let best = 0;
    for (let i = 1; i < v; i++) if (logits[i]! > logits[best]!) best = i;
    const z = Float64Array.from(logits);
    return { token: best, logprob: z[best]! - logSumExp(z) };
  }
  const z = new Float64Array(v);
  for (let i = 0; i < v; i++) z[i] = logits[i]! / temperature;
  const lse = logSumExp(z);
  const probs = z.map((x) => Math.exp(x - lse));
  let order: number[];
  let mass = 1;
  if (topP < 1) {
    order = Array.from({ length: v }, (_, i) => i).sort((a, b) => probs[b]! - probs[a]! || a - b);
    let cumulative = 0;
    let keep = 0;
    while (keep < v && cumulative < topP) cumulative += probs[order[keep++]!]!;
    order = order.slice(0, keep);
    mass = cumulative;
  } else {
    order = Array.from({ length: v }, (_, i) => i);
  }
  const u = rng.nextFloat() * mass;
  let acc = 0;
  let token = order[order.length - 1]!;
  for (const i of order) {
    acc += probs[i]!;
    if (u < acc) {
      token = i;
      break;
    }
  }
  return { token, logprob: z[token]! - lse };
}
