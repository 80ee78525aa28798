/**
 * Small ONNX graph-building helpers on top of the hand-written codec (used by the tiny-model
 * generator; handy for tests too).
 */
import {
  AttributeType,
  TensorDataType,
  type AttributeProto,
  type GraphProto,
  type Int64,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from '../../src/diffusion/onnx/proto.js';

/** A dimension: a fixed size or a symbolic name (dynamic axis). */
export type Dim = number | string;

export type AttrValue = number | string | number[] | { ints: number[] } | { floats: number[] } | { float: number } | TensorProto;

/** Deterministic PRNG (mulberry32) — uniform floats in [0, 1). */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Uniform in [-a, a) with the given standard deviation (a = std·√3): no transcendental calls. */
  uniformStd(std: number): number {
    return (this.next() * 2 - 1) * std * Math.sqrt(3);
  }
  floats(count: number, std: number): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.uniformStd(std);
    return out;
  }
}

function rawBytes(a: Float32Array | Int32Array | BigInt64Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
}

export function floatTensor(name: string, dims: number[], data: Float32Array | number[]): TensorProto {
  const arr = data instanceof Float32Array ? data : Float32Array.from(data);
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== arr.length) throw new RangeError(`${name}: dims ${dims.join('x')} vs ${arr.length} values`);
  return emptyTensor(name, dims, TensorDataType.FLOAT, rawBytes(arr));
}

export function int64Tensor(name: string, dims: number[], data: number[]): TensorProto {
  return emptyTensor(name, dims, TensorDataType.INT64, rawBytes(BigInt64Array.from(data.map((v) => BigInt(v)))));
}

function emptyTensor(name: string, dims: number[], dataType: number, raw: Uint8Array): TensorProto {
  return {
    dims: [...dims],
    data_type: dataType,
    int32_data: [],
    string_data: [],
    int64_data: [],
    uint64_data: [],
    external_data: [],
    name,
    raw_data: raw,
  };
}

export function valueInfo(name: string, elemType: number, shape: Dim[] | undefined): ValueInfoProto {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: elemType,
        ...(shape ? { shape: { dim: shape.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } : {}),
      },
    },
  };
}

function attribute(name: string, v: AttrValue): AttributeProto {
  const a: AttributeProto = { name, floats: [], ints: [], strings: [], tensors: [], graphs: [], type_protos: [] };
  if (typeof v === 'number') {
    a.i = v;
    a.type = AttributeType.INT;
  } else if (typeof v === 'string') {
    a.s = new TextEncoder().encode(v);
    a.type = AttributeType.STRING;
  } else if (Array.isArray(v)) {
    a.ints = v;
    a.type = AttributeType.INTS;
  } else if ('ints' in v) {
    a.ints = v.ints;
    a.type = AttributeType.INTS;
  } else if ('floats' in v) {
    a.floats = v.floats;
    a.type = AttributeType.FLOATS;
  } else if ('float' in v) {
    a.f = v.float;
    a.type = AttributeType.FLOAT;
  } else {
    a.t = v;
    a.type = AttributeType.TENSOR;
  }
  return a;
}

/**
 * Accumulates nodes and initializers. Node outputs get unique names derived from the op type
 * unless a name is given.
 */
export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  readonly inputs: ValueInfoProto[] = [];
  readonly outputs: ValueInfoProto[] = [];
  private counter = 0;
  private constCounter = 0;

  input(name: string, elemType: number, shape: Dim[] | undefined): string {
    this.inputs.push(valueInfo(name, elemType, shape));
    return name;
  }

  output(name: string, elemType: number, shape: Dim[] | undefined): void {
    this.outputs.push(valueInfo(name, elemType, shape));
  }

  init(tensor: TensorProto): string {
    this.initializers.push(tensor);
    return tensor.name!;
  }

  /** A named float weight initializer. */
  weight(name: string, dims: number[], data: Float32Array | number[]): string {
    return this.init(floatTensor(name, dims, data));
  }

  /** An anonymous float / int64 constant initializer. */
  constF(data: number[], dims: number[] = [data.length]): string {
    return this.init(floatTensor(`const_f_${this.constCounter++}`, dims, data));
  }

  constI(data: number[], dims: number[] = [data.length]): string {
    return this.init(int64Tensor(`const_i_${this.constCounter++}`, dims, data));
  }

  /** Adds a node with one output; returns the output name. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outName?: string): string {
    const out = outName ?? `${opType.toLowerCase()}_${this.counter}`;
    this.opMulti(opType, inputs, [out], attrs);
    return out;
  }

  opMulti(opType: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue> = {}): string[] {
    this.nodes.push({
      input: inputs,
      output: outputs,
      name: `/${opType}_${this.counter++}`,
      op_type: opType,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outputs;
  }

  graph(name: string): GraphProto {
    return {
      node: this.nodes,
      name,
      initializer: this.initializers,
      input: this.inputs,
      output: this.outputs,
      value_info: [],
    };
  }

  model(name: string, opset = 17): ModelProto {
    return {
      ir_version: 8,
      producer_name: 'sd15-tiny',
      producer_version: '1',
      graph: this.graph(name),
      opset_import: [{ domain: '', version: opset as Int64 }],
      metadata_props: [],
    };
  }
}
