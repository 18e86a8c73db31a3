/**
 * Reverse-mode automatic differentiation over a `Graph`'s tape.
 *
 * `gradients(g, loss, params)` appends to `g` the nodes that compute d loss / d param for each param, by
 * walking the recorded nodes from last to first and applying each op's vector-Jacobian product (`vjp.ts`).
 * Only nodes on a path from a param to the loss are differentiated; gradients reaching a value along several
 * paths are summed. Model code is written once, forward; its backward pass is derived here.
 */
import { type Graph, type Value, sameShape, shapeString } from './graph';
import { add, fill } from './ops';
import { NON_DIFFERENTIABLE, vjpRule } from './vjp';

const isFloat = (v: Value) => v.dtype === 'float32' || v.dtype === 'float64';

/**
 * Gradients of the scalar `loss` with respect to `params` (same order). A param that does not influence the
 * loss gets a zero gradient. `seed` (default 1) scales the result, e.g. for gradient accumulation.
 */
export function gradients(g: Graph, loss: Value, params: readonly Value[], seed?: Value): Value[] {
  if (loss.shape.length !== 0) throw new RangeError(`gradients: the loss must be a scalar (got shape ${shapeString(loss.shape)})`);
  // Forward pass over the tape: which values depend on some param (and so need gradients).
  const dependsOnParam = new Set<number>(params.map((p) => p.id));
  for (const node of g.nodes) {
    if (NON_DIFFERENTIABLE.has(node.op) || node.meta?.stopGradient) continue;
    if (node.inputs.some((v) => dependsOnParam.has(v.id))) {
      for (const out of node.outputs) if (isFloat(out)) dependsOnParam.add(out.id);
    }
  }
  const grads = new Map<number, Value>();
  grads.set(loss.id, seed ?? g.scalar(1, loss.dtype));
  const accumulate = (value: Value, grad: Value) => {
    if (!sameShape(grad.shape, value.shape)) {
      throw new Error(`autodiff: gradient of shape ${shapeString(grad.shape)} for value ${value.name} of shape ${shapeString(value.shape)}`);
    }
    const previous = grads.get(value.id);
    grads.set(value.id, previous ? add(g, previous, grad) : grad);
  };
  // The tape grows while we append gradient nodes: walk only the forward part.
  const forward = g.nodes.slice();
  for (let i = forward.length - 1; i >= 0; i--) {
    const node = forward[i]!;
    const gradOutputs = node.outputs.map((o) => grads.get(o.id));
    if (gradOutputs.every((gy) => gy === undefined)) continue;
    const needs = node.inputs.map((v) => dependsOnParam.has(v.id) && isFloat(v));
    if (!needs.some(Boolean)) continue;
    const rule = vjpRule(node.op);
    if (!rule) throw new Error(`autodiff: no gradient rule for ${node.op} (used on a path from a parameter to the loss)`);
    // Rules read the gradients of the outputs they use; only multi-output nodes (LayerNormalization's unused
    // statistics) leave some undefined.
    const inputGrads = rule(g, node, gradOutputs, needs);
    node.inputs.forEach((input, k) => {
      const gx = inputGrads[k];
      if (needs[k] && gx) accumulate(input, gx);
    });
  }
  return params.map((p) => grads.get(p.id) ?? fill(g, p.shape, 0, p.dtype));
}
