/**
 * The backbone's last block computes only the positions its caller reads (`from`): the result must be the rows of
 * the full computation, with the same keys and values, whatever `from` is — inside the image tokens, at the first
 * text token (training), at the last position (the sampler's prefill) — and with a left-padded row.
 */
import { describe, expect, it } from 'vitest';
import { pseudoRandom } from '../onnx/gradcheck';
import { Graph, type Value } from '../onnx/graph';
import * as op from '../onnx/ops';
import { Session, hostTensor } from '../onnx/runtime';
import { checkConfig, checkParams } from '../testing/fixtures';
import { imageTokens, parameterSpecs } from './config';
import { type SequenceInputs, backbone } from './transformer';

const config = checkConfig('policy', 6);
const B = 2;
const T = 5;
const N = imageTokens(config); // 4
const L = N + T;

/** A float64 graph with the model's parameters and one batch's sequence as inputs. */
function modelGraph(name: string): { g: Graph; params: Record<string, Value>; inputs: SequenceInputs } {
  const g = new Graph(name, 'float64');
  const params = Object.fromEntries(parameterSpecs(config).map((s) => [s.name, g.input(`p:${s.name}`, 'float64', s.shape)]));
  const inputs = {
    image: g.input('image', 'float64', [B, 3, 4, 4]),
    tokens: g.input('tokens', 'int64', [B, T]),
    positions: g.input('positions', 'int64', [B, T]),
    attentionMask: g.input('attention_mask', 'float64', [B, T]),
  };
  return { g, params, inputs };
}

async function run(from: number): Promise<{ reference: Float64Array; partial: Float64Array; kvSame: boolean }> {
  const { g, params, inputs } = modelGraph('backbone_from');
  const full = backbone(g, config, params, inputs, 0);
  const part = backbone(g, config, params, inputs, from);
  g.output(op.slice(g, full.hidden, 1, from, L), 'reference');
  g.output(part.hidden, 'partial');
  full.kv.forEach((kv, l) => {
    g.output(op.sub(g, kv.k, part.kv[l]!.k), `dk${l}`);
    g.output(op.sub(g, kv.v, part.kv[l]!.v), `dv${l}`);
  });
  const session = await Session.create(g.toModel());
  const f64 = (shape: number[], values: number[]) => hostTensor('float64', shape, Float64Array.from(values));
  const i64 = (shape: number[], values: number[]) => hostTensor('int64', shape, BigInt64Array.from(values.map(BigInt)));
  const feeds = {
    ...Object.fromEntries(checkParams(config, 200).map((p) => [`p:${p.name}`, f64(p.shape, p.values)])),
    image: f64([B, 3, 4, 4], pseudoRandom(B * 48, 7).map((x) => (x + 1) / 2)),
    tokens: i64([B, T], [1, 2, 3, 4, 5, 0, 0, 6, 2, 1]), // row 2 is left-padded by two
    positions: i64([B, T], [0, 1, 2, 3, 4, 0, 0, 0, 1, 2]),
    attention_mask: f64([B, T], [1, 1, 1, 1, 1, 0, 0, 1, 1, 1]),
  };
  const out = await session.run(feeds);
  await session.dispose();
  const kvSame = Object.entries(out)
    .filter(([name]) => name.startsWith('dk') || name.startsWith('dv'))
    .every(([, t]) => (t.data as Float64Array).every((x) => x === 0));
  return { reference: out.reference!.data as Float64Array, partial: out.partial!.data as Float64Array, kvSame };
}

describe('backbone: the last block computes only the positions read', () => {
  it.each([
    ['from the first text position (training graphs)', N],
    ['from the last position (prefill)', L - 1],
    ['from inside the image tokens', 2],
    ['from the first position (everything)', 0],
  ])('%s: the rows of the full computation, the same keys and values', async (_name, from) => {
    const { reference, partial, kvSame } = await run(from);
    expect(partial.length).toBe(B * (L - from) * config.width);
    expect(partial.length).toBe(reference.length);
    let worst = 0;
    for (let i = 0; i < partial.length; i++) worst = Math.max(worst, Math.abs(partial[i]! - reference[i]!));
    expect(worst).toBeLessThan(1e-12);
    expect(kvSame).toBe(true);
  });

  it('rejects a start outside the sequence', () => {
    const { g, params, inputs } = modelGraph('bad');
    expect(() => backbone(g, config, params, inputs, L)).toThrow(/from = 9 is outside \[0, 9\)/);
  });
});
