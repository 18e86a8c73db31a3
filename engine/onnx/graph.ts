/**
 * A small ONNX graph builder with static shapes, the base of Sophia's training graphs.
 *
 * Model code calls op functions (`ops.ts`) that append nodes to a `Graph` and return `Value`s whose dtype and
 * shape are known at build time. Every node is recorded in order (a tape), so `autodiff.ts` can walk it
 * backwards and append the gradient nodes to the same graph; `optim.ts` appends the AdamW update. `toModel()`
 * serializes the result as an ONNX ModelProto (opset 20) that onnxruntime runs as an ordinary inference session.
 *
 * Shapes are fully static (one graph per batch/sequence bucket, cached by the engine): this keeps broadcasting
 * gradients (which axes to sum) decidable at build time and lets onnxruntime plan memory once.
 */
import { onnx } from 'onnx-proto';

export type DType = 'float32' | 'float64' | 'int64' | 'bool';
export type FloatDType = 'float32' | 'float64';
export type Shape = readonly number[];

/** A tensor in the graph: the output of a node, a graph input or a constant. */
export interface Value {
  readonly id: number;
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
}

export type Attr =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'ints'; value: readonly number[] }
  | { kind: 'string'; value: string };

export const int = (value: number): Attr => ({ kind: 'int', value });
export const float = (value: number): Attr => ({ kind: 'float', value });
export const ints = (value: readonly number[]): Attr => ({ kind: 'ints', value });
export const str = (value: string): Attr => ({ kind: 'string', value });

/** One recorded operation. `meta` carries builder-level facts VJP rules need (e.g. the original axes). */
export interface NodeRecord {
  readonly op: string;
  readonly inputs: readonly Value[];
  readonly outputs: readonly Value[];
  readonly attrs: Readonly<Record<string, Attr>>;
  readonly meta?: Readonly<Record<string, unknown>>;
}

/** onnxruntime's own operators (its `com.microsoft` domain) that graphs may use (see engine/README.md); every other op is standard ONNX. */
const CONTRIB_DOMAIN = 'com.microsoft';
const CONTRIB_OPS: ReadonlySet<string> = new Set(['FusedMatMul']);

export type TypedData = Float32Array | Float64Array | BigInt64Array | Uint8Array;

const ELEM_TYPE: Record<DType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
};

export function numel(shape: Shape): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Same rank and the same size on every axis. */
export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function shapeString(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

/** Typed array of the right kind for a dtype, filled from plain numbers. */
export function typedData(dtype: DType, values: ArrayLike<number>): TypedData {
  switch (dtype) {
    case 'float32':
      return Float32Array.from(values);
    case 'float64':
      return Float64Array.from(values);
    case 'int64':
      return BigInt64Array.from(Array.from(values, (v) => BigInt(Math.trunc(v))));
    case 'bool':
      return Uint8Array.from(values, (v) => (v ? 1 : 0));
  }
}

export class Graph {
  /** The float type of this graph's activations and parameters (float64 for gradient checks). */
  readonly floatType: FloatDType;
  readonly name: string;
  readonly nodes: NodeRecord[] = [];
  readonly inputs: Value[] = [];
  readonly outputs: { value: Value; name: string }[] = [];
  private readonly initializers = new Map<number, { value: Value; data: TypedData }>();
  /** Values made once and shared by every use (`once`). */
  private readonly shared = new Map<string, Value>();
  private readonly names = new Set<string>();
  /** Value id → the node that computes it. */
  private readonly producers = new Map<number, NodeRecord>();
  private nextId = 0;

  constructor(name: string, floatType: FloatDType = 'float32') {
    this.name = name;
    this.floatType = floatType;
  }

  private newValue(dtype: DType, shape: Shape, name?: string): Value {
    const id = this.nextId++;
    const valueName = name ?? `v${id}`;
    if (this.names.has(valueName)) throw new Error(`graph ${this.name}: duplicate value name ${valueName}`);
    this.names.add(valueName);
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new RangeError(`graph ${this.name}: invalid dimension ${d} in ${shapeString(shape)}`);
    }
    return { id, name: valueName, dtype, shape: [...shape] };
  }

  /** A graph input (fed at run time). */
  input(name: string, dtype: DType, shape: Shape): Value {
    const value = this.newValue(dtype, shape, name);
    this.inputs.push(value);
    return value;
  }

  /** A constant tensor stored in the model. */
  constant(dtype: DType, shape: Shape, values: ArrayLike<number> | TypedData): Value {
    if (values.length !== numel(shape)) {
      throw new RangeError(`constant of shape ${shapeString(shape)} needs ${numel(shape)} values, got ${values.length}`);
    }
    const value = this.newValue(dtype, shape);
    const data = ArrayBuffer.isView(values) ? (values) : typedData(dtype, values);
    this.initializers.set(value.id, { value, data });
    return value;
  }

  /** A rank-0 constant, shared between uses. */
  scalar(x: number, dtype: DType = this.floatType): Value {
    return this.once(`scalar ${dtype}:${Object.is(x, -0) ? '-0' : String(x)}`, () => this.constant(dtype, [], [x]));
  }

  /**
   * The value `key` names, made by `make` on first use and shared after that. Values never change once made, so
   * one node serves every use of, say, the same transpose of the same value; `key` must name the operation and
   * its operands.
   */
  once(key: string, make: () => Value): Value {
    let value = this.shared.get(key);
    if (!value) this.shared.set(key, (value = make()));
    return value;
  }

  /** A 1-D int64 constant (shapes, axes, indices). */
  int64s(values: readonly number[]): Value {
    return this.constant('int64', [values.length], values);
  }

  /** Appends a node; the caller states the outputs' dtypes and shapes (ops.ts infers them). */
  addNode(
    op: string,
    inputs: readonly Value[],
    outputSpecs: readonly { dtype: DType; shape: Shape }[],
    attrs: Record<string, Attr> = {},
    meta?: Record<string, unknown>,
  ): Value[] {
    const outputs = outputSpecs.map((spec) => this.newValue(spec.dtype, spec.shape));
    const node: NodeRecord = { op, inputs: [...inputs], outputs, attrs, ...(meta ? { meta } : {}) };
    this.nodes.push(node);
    for (const out of outputs) this.producers.set(out.id, node);
    return outputs;
  }

  /** The node that computes `value` (undefined for inputs, constants and initializers). */
  producerOf(value: Value): NodeRecord | undefined {
    return this.producers.get(value.id);
  }

  /** Marks `value` as a graph output named `name`. */
  output(value: Value, name: string): void {
    if (this.outputs.some((o) => o.name === name)) throw new Error(`graph ${this.name}: duplicate output ${name}`);
    if (this.names.has(name) && value.name !== name) throw new Error(`graph ${this.name}: output name ${name} is taken`);
    this.outputs.push({ value, name });
  }

  private tensorProto(name: string, dtype: DType, shape: Shape, data: TypedData): onnx.ITensorProto {
    return {
      name,
      dataType: ELEM_TYPE[dtype],
      dims: [...shape],
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    };
  }

  private valueInfo(name: string, dtype: DType, shape: Shape): onnx.IValueInfoProto {
    return { name, type: { tensorType: { elemType: ELEM_TYPE[dtype], shape: { dim: shape.map((d) => ({ dimValue: d })) } } } };
  }

  private attrProto(name: string, attr: Attr): onnx.IAttributeProto {
    const T = onnx.AttributeProto.AttributeType;
    switch (attr.kind) {
      case 'int':
        return { name, type: T.INT, i: attr.value };
      case 'float':
        return { name, type: T.FLOAT, f: attr.value };
      case 'ints':
        return { name, type: T.INTS, ints: [...attr.value] };
      case 'string':
        return { name, type: T.STRING, s: new TextEncoder().encode(attr.value) };
    }
  }

  /** Serializes the graph as an ONNX model (opset 20). Only nodes that feed an output are kept. */
  toModel(): Uint8Array {
    const needed = new Set<number>(this.outputs.map((o) => o.value.id));
    const kept: NodeRecord[] = [];
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const node = this.nodes[i]!;
      if (node.outputs.some((o) => needed.has(o.id))) {
        kept.push(node);
        for (const input of node.inputs) needed.add(input.id);
      }
    }
    kept.reverse();
    // A node's result that is a graph output takes the output's name, so no Identity node copies it (a copy of
    // a parameter-sized output costs a full pass over it). Graph inputs, initializers and a value exposed
    // under a second name still go through Identity.
    const produced = new Set<number>(kept.flatMap((node) => node.outputs.map((v) => v.id)));
    const renamed = new Map<number, string>();
    for (const { value, name } of this.outputs) {
      if (value.name !== name && produced.has(value.id) && !renamed.has(value.id)) renamed.set(value.id, name);
    }
    const nameOf = (v: Value) => renamed.get(v.id) ?? v.name;
    const nodes: onnx.INodeProto[] = kept.map((node, i) => ({
      name: `${node.op}_${i}`,
      opType: node.op,
      ...(CONTRIB_OPS.has(node.op) ? { domain: CONTRIB_DOMAIN } : {}),
      input: node.inputs.map(nameOf),
      output: node.outputs.map(nameOf),
      attribute: Object.entries(node.attrs).map(([name, attr]) => this.attrProto(name, attr)),
    }));
    for (const { value, name } of this.outputs) {
      if (nameOf(value) !== name) nodes.push({ name: `out_${name}`, opType: 'Identity', input: [nameOf(value)], output: [name] });
    }
    const initializers = [...this.initializers.values()]
      .filter(({ value }) => needed.has(value.id))
      .map(({ value, data }) => this.tensorProto(value.name, value.dtype, value.shape, data));
    const graph: onnx.IGraphProto = {
      name: this.name,
      node: nodes,
      initializer: initializers,
      input: this.inputs.map((v) => this.valueInfo(v.name, v.dtype, v.shape)),
      output: this.outputs.map(({ value, name }) => this.valueInfo(name, value.dtype, value.shape)),
    };
    const model = onnx.ModelProto.create({
      irVersion: 9,
      producerName: 'sophia',
      opsetImport: [{ domain: '', version: 20 }, ...(kept.some((n) => CONTRIB_OPS.has(n.op)) ? [{ domain: CONTRIB_DOMAIN, version: 1 }] : [])],
      graph,
    });
    return onnx.ModelProto.encode(model).finish();
  }
}
