/**
 * The AdamW graph (`adamwFlat`) against a plain float64 reference of docs/architecture.md §3's update: global-norm clipping,
 * bias-corrected moments, decoupled weight decay only where the mask says so, learning rate as an input.
 */
import { describe, expect, it } from 'vitest';
import type { AdamWSettings } from '../types';
import { Graph } from './graph';
import { pseudoRandom } from './gradcheck';
import { adamwFeeds, adamwFlat, adamwInputs } from './optim';
import { Session, hostTensor } from './runtime';

type Settings = AdamWSettings;

function reference(p: number[], grad: number[], m: number[], v: number[], mask: number[], s: Settings, step: number) {
  const norm = Math.sqrt(grad.reduce((acc, x) => acc + x * x, 0));
  const clip = Math.min(1, s.maxGradNorm / (norm + 1e-6));
  const bc1 = 1 - s.beta1 ** step;
  const bc2 = 1 - s.beta2 ** step;
  const m1 = m.map((mi, i) => s.beta1 * mi + (1 - s.beta1) * grad[i]! * clip);
  const v1 = v.map((vi, i) => s.beta2 * vi + (1 - s.beta2) * (grad[i]! * clip) ** 2);
  const p1 = p.map((pi, i) => pi * (1 - s.lr * s.weightDecay * mask[i]!) - (s.lr * (m1[i]! / bc1)) / (Math.sqrt(v1[i]! / bc2) + s.eps));
  return { p: p1, m: m1, v: v1, norm };
}

async function graphStep(p: number[], grad: number[], m: number[], v: number[], mask: number[], s: Settings, step: number) {
  const n = p.length;
  const g = new Graph('adamw', 'float64');
  const vec = (name: string) => g.input(name, 'float64', [n]);
  const out = adamwFlat(g, vec('params'), vec('grad'), vec('m'), vec('v'), g.constant(g.floatType, [n], mask), adamwInputs(g));
  g.output(out.params, 'new_params');
  g.output(out.m, 'new_m');
  g.output(out.v, 'new_v');
  g.output(out.gradNorm, 'grad_norm');
  const session = await Session.create(g.toModel());
  const f = (x: number[]) => hostTensor('float64', [x.length], Float64Array.from(x));
  const res = await session.run({ params: f(p), grad: f(grad), m: f(m), v: f(v), ...adamwFeeds(s, step, 'float64') });
  await session.dispose();
  const arr = (name: string) => Array.from(res[name]!.data as Float64Array);
  return { p: arr('new_params'), m: arr('new_m'), v: arr('new_v'), norm: arr('grad_norm')[0]! };
}

const maxRelDiff = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i]!) / (1e-12 + Math.abs(b[i]!))));

describe('adamwFlat', () => {
  const n = 37;
  const mask = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 0 : 1));
  const settings: Settings = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1 };

  it.each([
    ['clipping (gradient norm above the limit)', 5, 3],
    ['no clipping (gradient norm below the limit)', 0.01, 7],
  ])('matches the float64 reference over three steps: %s', async (_label, scale, seed) => {
    let p = pseudoRandom(n, seed);
    let m = new Array<number>(n).fill(0);
    let v = new Array<number>(n).fill(0);
    for (let step = 1; step <= 3; step++) {
      const grad = pseudoRandom(n, seed * 10 + step).map((x) => x * scale);
      const want = reference(p, grad, m, v, mask, settings, step);
      const got = await graphStep(p, grad, m, v, mask, settings, step);
      expect(Math.abs(got.norm - want.norm) / want.norm).toBeLessThan(1e-12);
      expect(maxRelDiff(got.m, want.m)).toBeLessThan(1e-10);
      expect(maxRelDiff(got.v, want.v)).toBeLessThan(1e-10);
      expect(maxRelDiff(got.p, want.p)).toBeLessThan(1e-10);
      ({ p, m, v } = got);
    }
    // Decay applies only where the mask is 1: with a zero gradient, unmasked parameters stay put.
    const still = await graphStep(p, new Array<number>(n).fill(0), new Array<number>(n).fill(0), new Array<number>(n).fill(0), mask, settings, 4);
    mask.forEach((k, i) => {
      if (k === 0) expect(still.p[i]).toBe(p[i]);
      else expect(still.p[i]).toBeCloseTo(p[i]! * (1 - settings.lr * settings.weightDecay), 12);
    });
  });
});
