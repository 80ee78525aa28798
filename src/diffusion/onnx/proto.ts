/**
 * Minimal hand-written protobuf codec for the subset of onnx.proto the local engine needs:
 * ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto, TypeProto
 * (tensor types only), TensorShapeProto, OperatorSetIdProto and StringStringEntryProto.
 *
 * Lossless round trip: fields the codec does not model are kept as raw bytes (tag included) and
 * re-emitted in field-number order, together with the known fields. Known fields are written in
 * field-number order, as the C++/upb serializers do, so decode→encode of a file written by
 * `onnx.save` (or by this codec) gives identical bytes. Presence is proto2-style: a field is written
 * iff it is not `undefined` (repeated: iff non-empty), so explicit zeros survive.
 *
 * int64 values are `number` when they are safe integers and `bigint` otherwise (e.g. INT64_MAX in
 * Slice attributes), see {@link Int64}.
 */

import { toFloat16 } from '../float16.js';

/* ------------------------------------------------------------------------------------------------
 * Public types
 * ---------------------------------------------------------------------------------------------- */

/** An int64/uint64 value: a `number` when it is a safe integer, a `bigint` otherwise. */
export type Int64 = number | bigint;

/** Raw bytes of fields the codec does not model (each entry: one complete field, tag included). */
export interface UnknownFields {
  _unknown?: UnknownField[];
}

export interface UnknownField {
  fieldNumber: number;
  /** The complete encoded field: tag + payload. */
  bytes: Uint8Array;
}

export interface StringStringEntryProto extends UnknownFields {
  key?: string;
  value?: string;
}

export interface OperatorSetIdProto extends UnknownFields {
  domain?: string;
  version?: Int64;
}

export interface TensorShapeDimension extends UnknownFields {
  dim_value?: Int64;
  dim_param?: string;
  denotation?: string;
}

export interface TensorShapeProto extends UnknownFields {
  dim: TensorShapeDimension[];
}

export interface TypeProtoTensor extends UnknownFields {
  elem_type?: number;
  shape?: TensorShapeProto;
}

export interface TypeProto extends UnknownFields {
  tensor_type?: TypeProtoTensor;
  denotation?: string;
}

export interface ValueInfoProto extends UnknownFields {
  name?: string;
  type?: TypeProto;
  doc_string?: string;
}

export interface TensorProto extends UnknownFields {
  dims: Int64[];
  data_type?: number;
  /** Packed floats; the bytes are kept exactly (NaN payloads included). */
  float_data?: Float32Array;
  int32_data: number[];
  string_data: Uint8Array[];
  int64_data: Int64[];
  name?: string;
  /** Little-endian raw tensor bytes. After decode this is a view into the decoded buffer. */
  raw_data?: Uint8Array;
  double_data?: Float64Array;
  uint64_data: Int64[];
  doc_string?: string;
  external_data: StringStringEntryProto[];
  /** 0 = DEFAULT, 1 = EXTERNAL. */
  data_location?: number;
}

export interface AttributeProto extends UnknownFields {
  name?: string;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  floats: number[];
  ints: Int64[];
  strings: Uint8Array[];
  tensors: TensorProto[];
  graphs: GraphProto[];
  doc_string?: string;
  tp?: TypeProto;
  type_protos: TypeProto[];
  /** {@link AttributeType}. */
  type?: number;
  ref_attr_name?: string;
}

export interface NodeProto extends UnknownFields {
  input: string[];
  output: string[];
  name?: string;
  op_type?: string;
  attribute: AttributeProto[];
  doc_string?: string;
  domain?: string;
}

export interface GraphProto extends UnknownFields {
  node: NodeProto[];
  name?: string;
  initializer: TensorProto[];
  doc_string?: string;
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  value_info: ValueInfoProto[];
}

export interface ModelProto extends UnknownFields {
  ir_version?: Int64;
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: Int64;
  doc_string?: string;
  graph?: GraphProto;
  opset_import: OperatorSetIdProto[];
  metadata_props: StringStringEntryProto[];
}

/** TensorProto.DataType values. */
export const TensorDataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
} as const;

/** AttributeProto.AttributeType values. */
export const AttributeType = {
  UNDEFINED: 0,
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
  SPARSE_TENSOR: 11,
  SPARSE_TENSORS: 12,
  TYPE_PROTO: 13,
  TYPE_PROTOS: 14,
} as const;

/** TensorProto.DataLocation values. */
export const DataLocation = { DEFAULT: 0, EXTERNAL: 1 } as const;

/* ------------------------------------------------------------------------------------------------
 * Schemas
 * ---------------------------------------------------------------------------------------------- */

type ScalarKind =
  | 'int64' // varint, signed 64 (also used for enums / int32 with sign extension)
  | 'uint64'
  | 'int32'
  | 'float' // fixed32
  | 'double' // fixed64
  | 'string'
  | 'bytes';

interface FieldSpec {
  no: number;
  name: string;
  kind: ScalarKind | 'message';
  repeated?: boolean;
  /** Repeated numeric field written packed (decode accepts both forms regardless). */
  packed?: boolean;
  msg?: () => MessageSchema;
}

interface MessageSchema {
  name: string;
  fields: FieldSpec[];
  /** Filled lazily: field number → spec. */
  byNo?: Map<number, FieldSpec>;
}

const S = {} as Record<
  | 'StringStringEntry'
  | 'OperatorSetId'
  | 'Dimension'
  | 'TensorShape'
  | 'TypeTensor'
  | 'Type'
  | 'ValueInfo'
  | 'Tensor'
  | 'Attribute'
  | 'Node'
  | 'Graph'
  | 'Model',
  MessageSchema
>;

S.StringStringEntry = {
  name: 'StringStringEntryProto',
  fields: [
    { no: 1, name: 'key', kind: 'string' },
    { no: 2, name: 'value', kind: 'string' },
  ],
};
S.OperatorSetId = {
  name: 'OperatorSetIdProto',
  fields: [
    { no: 1, name: 'domain', kind: 'string' },
    { no: 2, name: 'version', kind: 'int64' },
  ],
};
S.Dimension = {
  name: 'TensorShapeProto.Dimension',
  fields: [
    { no: 1, name: 'dim_value', kind: 'int64' },
    { no: 2, name: 'dim_param', kind: 'string' },
    { no: 3, name: 'denotation', kind: 'string' },
  ],
};
S.TensorShape = {
  name: 'TensorShapeProto',
  fields: [{ no: 1, name: 'dim', kind: 'message', repeated: true, msg: () => S.Dimension }],
};
S.TypeTensor = {
  name: 'TypeProto.Tensor',
  fields: [
    { no: 1, name: 'elem_type', kind: 'int32' },
    { no: 2, name: 'shape', kind: 'message', msg: () => S.TensorShape },
  ],
};
S.Type = {
  name: 'TypeProto',
  fields: [
    { no: 1, name: 'tensor_type', kind: 'message', msg: () => S.TypeTensor },
    { no: 6, name: 'denotation', kind: 'string' },
  ],
};
S.ValueInfo = {
  name: 'ValueInfoProto',
  fields: [
    { no: 1, name: 'name', kind: 'string' },
    { no: 2, name: 'type', kind: 'message', msg: () => S.Type },
    { no: 3, name: 'doc_string', kind: 'string' },
  ],
};
S.Tensor = {
  name: 'TensorProto',
  fields: [
    { no: 1, name: 'dims', kind: 'int64', repeated: true },
    { no: 2, name: 'data_type', kind: 'int32' },
    { no: 4, name: 'float_data', kind: 'float', repeated: true, packed: true },
    { no: 5, name: 'int32_data', kind: 'int32', repeated: true, packed: true },
    { no: 6, name: 'string_data', kind: 'bytes', repeated: true },
    { no: 7, name: 'int64_data', kind: 'int64', repeated: true, packed: true },
    { no: 8, name: 'name', kind: 'string' },
    { no: 9, name: 'raw_data', kind: 'bytes' },
    { no: 10, name: 'double_data', kind: 'double', repeated: true, packed: true },
    { no: 11, name: 'uint64_data', kind: 'uint64', repeated: true, packed: true },
    { no: 12, name: 'doc_string', kind: 'string' },
    { no: 13, name: 'external_data', kind: 'message', repeated: true, msg: () => S.StringStringEntry },
    { no: 14, name: 'data_location', kind: 'int32' },
  ],
};
S.Attribute = {
  name: 'AttributeProto',
  fields: [
    { no: 1, name: 'name', kind: 'string' },
    { no: 2, name: 'f', kind: 'float' },
    { no: 3, name: 'i', kind: 'int64' },
    { no: 4, name: 's', kind: 'bytes' },
    { no: 5, name: 't', kind: 'message', msg: () => S.Tensor },
    { no: 6, name: 'g', kind: 'message', msg: () => S.Graph },
    { no: 7, name: 'floats', kind: 'float', repeated: true },
    { no: 8, name: 'ints', kind: 'int64', repeated: true },
    { no: 9, name: 'strings', kind: 'bytes', repeated: true },
    { no: 10, name: 'tensors', kind: 'message', repeated: true, msg: () => S.Tensor },
    { no: 11, name: 'graphs', kind: 'message', repeated: true, msg: () => S.Graph },
    { no: 13, name: 'doc_string', kind: 'string' },
    { no: 14, name: 'tp', kind: 'message', msg: () => S.Type },
    { no: 15, name: 'type_protos', kind: 'message', repeated: true, msg: () => S.Type },
    { no: 20, name: 'type', kind: 'int32' },
    { no: 21, name: 'ref_attr_name', kind: 'string' },
  ],
};
S.Node = {
  name: 'NodeProto',
  fields: [
    { no: 1, name: 'input', kind: 'string', repeated: true },
    { no: 2, name: 'output', kind: 'string', repeated: true },
    { no: 3, name: 'name', kind: 'string' },
    { no: 4, name: 'op_type', kind: 'string' },
    { no: 5, name: 'attribute', kind: 'message', repeated: true, msg: () => S.Attribute },
    { no: 6, name: 'doc_string', kind: 'string' },
    { no: 7, name: 'domain', kind: 'string' },
  ],
};
S.Graph = {
  name: 'GraphProto',
  fields: [
    { no: 1, name: 'node', kind: 'message', repeated: true, msg: () => S.Node },
    { no: 2, name: 'name', kind: 'string' },
    { no: 5, name: 'initializer', kind: 'message', repeated: true, msg: () => S.Tensor },
    { no: 10, name: 'doc_string', kind: 'string' },
    { no: 11, name: 'input', kind: 'message', repeated: true, msg: () => S.ValueInfo },
    { no: 12, name: 'output', kind: 'message', repeated: true, msg: () => S.ValueInfo },
    { no: 13, name: 'value_info', kind: 'message', repeated: true, msg: () => S.ValueInfo },
  ],
};
S.Model = {
  name: 'ModelProto',
  fields: [
    { no: 1, name: 'ir_version', kind: 'int64' },
    { no: 2, name: 'producer_name', kind: 'string' },
    { no: 3, name: 'producer_version', kind: 'string' },
    { no: 4, name: 'domain', kind: 'string' },
    { no: 5, name: 'model_version', kind: 'int64' },
    { no: 6, name: 'doc_string', kind: 'string' },
    { no: 7, name: 'graph', kind: 'message', msg: () => S.Graph },
    { no: 8, name: 'opset_import', kind: 'message', repeated: true, msg: () => S.OperatorSetId },
    { no: 14, name: 'metadata_props', kind: 'message', repeated: true, msg: () => S.StringStringEntry },
  ],
};

function fieldMap(schema: MessageSchema): Map<number, FieldSpec> {
  if (!schema.byNo) schema.byNo = new Map(schema.fields.map((f) => [f.no, f]));
  return schema.byNo;
}

/* ------------------------------------------------------------------------------------------------
 * Wire-level reader
 * ---------------------------------------------------------------------------------------------- */

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

const utf8Decoder = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();
const TWO_63 = 1n << 63n;
const TWO_64 = 1n << 64n;

export class ProtoDecodeError extends Error {
  override name = 'ProtoDecodeError';
}

class Reader {
  pos: number;
  private readonly view: DataView;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** Reads a varint as an unsigned bigint (≤ 64 bits). */
  varintBig(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ProtoDecodeError('truncated varint');
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result & (TWO_64 - 1n);
      shift += 7n;
    }
    throw new ProtoDecodeError('varint too long');
  }

  /** Fast path for varints that fit in 32 bits unsigned (tags, lengths). */
  varint32(): number {
    let result = 0;
    let shift = 0;
    const start = this.pos;
    while (true) {
      if (this.pos >= this.end) throw new ProtoDecodeError('truncated varint');
      const b = this.buf[this.pos++]!;
      if (shift < 28) {
        result |= (b & 0x7f) << shift;
      } else if (shift === 28) {
        result = (result >>> 0) + (b & 0x7f) * 2 ** 28;
      } else {
        // Longer than 35 bits: fall back to bigint.
        this.pos = start;
        const big = this.varintBig();
        if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtoDecodeError('length/tag too large');
        return Number(big);
      }
      if ((b & 0x80) === 0) return shift < 28 ? result >>> 0 : result;
      shift += 7;
    }
  }

  fixed32Bytes(): Uint8Array {
    if (this.pos + 4 > this.end) throw new ProtoDecodeError('truncated fixed32');
    const out = this.buf.subarray(this.pos, this.pos + 4);
    this.pos += 4;
    return out;
  }

  float(): number {
    if (this.pos + 4 > this.end) throw new ProtoDecodeError('truncated fixed32');
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  double(): number {
    if (this.pos + 8 > this.end) throw new ProtoDecodeError('truncated fixed64');
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  lenDelimited(): Uint8Array {
    const len = this.varint32();
    if (this.pos + len > this.end) throw new ProtoDecodeError('truncated length-delimited field');
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varintBig();
        return;
      case WIRE_FIXED64:
        if (this.pos + 8 > this.end) throw new ProtoDecodeError('truncated fixed64');
        this.pos += 8;
        return;
      case WIRE_LEN:
        this.lenDelimited();
        return;
      case WIRE_FIXED32:
        if (this.pos + 4 > this.end) throw new ProtoDecodeError('truncated fixed32');
        this.pos += 4;
        return;
      default:
        throw new ProtoDecodeError(`unsupported wire type ${wire}`);
    }
  }
}

function toInt64(u: bigint, signed: boolean): Int64 {
  const v = signed && u >= TWO_63 ? u - TWO_64 : u;
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function readScalar(r: Reader, kind: ScalarKind): unknown {
  switch (kind) {
    case 'int64':
      return toInt64(r.varintBig(), true);
    case 'uint64':
      return toInt64(r.varintBig(), false);
    case 'int32': {
      // int32 negative values are sign-extended to 10-byte varints.
      const v = r.varintBig();
      return Number(BigInt.asIntN(32, v));
    }
    case 'float':
      return r.float();
    case 'double':
      return r.double();
    case 'string':
      return utf8Decoder.decode(r.lenDelimited());
    case 'bytes':
      return r.lenDelimited();
  }
}

function expectedWire(kind: ScalarKind | 'message'): number {
  switch (kind) {
    case 'float':
      return WIRE_FIXED32;
    case 'double':
      return WIRE_FIXED64;
    case 'string':
    case 'bytes':
    case 'message':
      return WIRE_LEN;
    default:
      return WIRE_VARINT;
  }
}

function emptyMessage(schema: MessageSchema): Record<string, unknown> {
  const obj: Record<string, unknown> = {};
  for (const f of schema.fields) {
    if (f.repeated && !(f.packed && (f.kind === 'float' || f.kind === 'double'))) obj[f.name] = [];
  }
  return obj;
}

function decodeMessage(schema: MessageSchema, buf: Uint8Array, start: number, end: number): Record<string, unknown> {
  const r = new Reader(buf, start, end);
  const obj = emptyMessage(schema);
  const map = fieldMap(schema);
  // Packed float/double chunks are collected then joined into one typed array.
  let floatChunks: Map<string, Uint8Array[]> | undefined;
  while (r.pos < end) {
    const fieldStart = r.pos;
    const tag = r.varint32();
    const no = Math.floor(tag / 8);
    const wire = tag & 7;
    const spec = map.get(no);
    const want = spec ? expectedWire(spec.kind) : -1;
    if (!spec || (wire !== want && !(spec.repeated && wire === WIRE_LEN && want !== WIRE_LEN))) {
      r.skip(wire);
      const unknown = ((obj._unknown as UnknownField[] | undefined) ??= []);
      unknown.push({ fieldNumber: no, bytes: buf.subarray(fieldStart, r.pos) });
      continue;
    }
    if (spec.kind === 'message') {
      const bytes = r.lenDelimited();
      const child = decodeMessage(spec.msg!(), bytes, 0, bytes.length);
      if (spec.repeated) (obj[spec.name] as unknown[]).push(child);
      else obj[spec.name] = child;
      continue;
    }
    const typedArrayField = spec.repeated && spec.packed && (spec.kind === 'float' || spec.kind === 'double');
    if (typedArrayField) {
      floatChunks ??= new Map();
      const list = floatChunks.get(spec.name) ?? [];
      floatChunks.set(spec.name, list);
      if (wire === WIRE_LEN) list.push(r.lenDelimited());
      else {
        const size = spec.kind === 'float' ? 4 : 8;
        list.push(buf.subarray(r.pos, r.pos + size));
        r.skip(wire);
      }
      continue;
    }
    if (spec.repeated) {
      const arr = obj[spec.name] as unknown[];
      if (wire === WIRE_LEN && want !== WIRE_LEN) {
        const bytes = r.lenDelimited();
        const inner = new Reader(bytes, 0, bytes.length);
        while (inner.pos < bytes.length) arr.push(readScalar(inner, spec.kind));
      } else {
        arr.push(readScalar(r, spec.kind));
      }
    } else {
      obj[spec.name] = readScalar(r, spec.kind);
    }
  }
  if (floatChunks) {
    for (const [name, chunks] of floatChunks) {
      const spec = schema.fields.find((f) => f.name === name)!;
      const total = chunks.reduce((n, c) => n + c.length, 0);
      const bytes = new Uint8Array(total);
      let o = 0;
      for (const c of chunks) {
        bytes.set(c, o);
        o += c.length;
      }
      obj[name] = spec.kind === 'float' ? new Float32Array(bytes.buffer, 0, total / 4) : new Float64Array(bytes.buffer, 0, total / 8);
    }
  }
  return obj;
}

/* ------------------------------------------------------------------------------------------------
 * Wire-level writer (large byte fields are referenced, not copied, until the final concat)
 * ---------------------------------------------------------------------------------------------- */

class Writer {
  parts: Uint8Array[] = [];
  length = 0;
  private scratch = new Uint8Array(256);
  private used = 0;
  private scratchView = new DataView(this.scratch.buffer);

  private ensure(n: number): void {
    if (this.used + n <= this.scratch.length) return;
    this.flush();
    if (n > this.scratch.length) {
      this.scratch = new Uint8Array(Math.max(n, 256));
      this.scratchView = new DataView(this.scratch.buffer);
    }
  }

  private flush(): void {
    if (this.used > 0) {
      this.parts.push(this.scratch.slice(0, this.used));
      this.used = 0;
    }
  }

  byte(b: number): void {
    this.ensure(1);
    this.scratch[this.used++] = b;
    this.length++;
  }

  varint(v: number | bigint): void {
    if (typeof v === 'number' && v >= 0 && v <= 0xffffffff && Number.isInteger(v)) {
      let n = v;
      while (n >= 0x80) {
        this.byte((n & 0x7f) | 0x80);
        n = Math.floor(n / 128);
      }
      this.byte(n);
      return;
    }
    let u = BigInt.asUintN(64, BigInt(v));
    while (u >= 0x80n) {
      this.byte(Number(u & 0x7fn) | 0x80);
      u >>= 7n;
    }
    this.byte(Number(u));
  }

  tag(no: number, wire: number): void {
    this.varint(no * 8 + wire);
  }

  float(v: number): void {
    this.ensure(4);
    this.scratchView.setFloat32(this.used, v, true);
    this.used += 4;
    this.length += 4;
  }

  double(v: number): void {
    this.ensure(8);
    this.scratchView.setFloat64(this.used, v, true);
    this.used += 8;
    this.length += 8;
  }

  /** Appends bytes by reference when large, by copy when small. */
  bytes(b: Uint8Array): void {
    if (b.length <= 64) {
      this.ensure(b.length);
      this.scratch.set(b, this.used);
      this.used += b.length;
      this.length += b.length;
      return;
    }
    this.flush();
    this.parts.push(b);
    this.length += b.length;
  }

  /** Appends another writer's content. */
  append(w: Writer): void {
    w.flush();
    this.flush();
    for (const p of w.parts) this.parts.push(p);
    this.length += w.length;
  }

  finish(): Uint8Array {
    this.flush();
    if (this.parts.length === 1) return this.parts[0]!;
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

function writeScalarPayload(w: Writer, kind: ScalarKind, v: unknown): void {
  switch (kind) {
    case 'int64':
    case 'uint64':
    case 'int32':
      w.varint(v as Int64);
      return;
    case 'float':
      w.float(v as number);
      return;
    case 'double':
      w.double(v as number);
      return;
    case 'string': {
      const b = utf8Encoder.encode(v as string);
      w.varint(b.length);
      w.bytes(b);
      return;
    }
    case 'bytes': {
      const b = v as Uint8Array;
      w.varint(b.length);
      w.bytes(b);
      return;
    }
  }
}

function typedBytes(a: Float32Array | Float64Array | number[], kind: 'float' | 'double'): Uint8Array {
  if (a instanceof Float32Array || a instanceof Float64Array) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const t = kind === 'float' ? Float32Array.from(a) : Float64Array.from(a);
  return new Uint8Array(t.buffer);
}

function encodeField(w: Writer, spec: FieldSpec, value: unknown): void {
  if (value === undefined || value === null) return;
  if (spec.kind === 'message') {
    const items = spec.repeated ? (value as Record<string, unknown>[]) : [value as Record<string, unknown>];
    for (const item of items) {
      const child = new Writer();
      encodeInto(child, spec.msg!(), item);
      w.tag(spec.no, WIRE_LEN);
      w.varint(child.length);
      w.append(child);
    }
    return;
  }
  if (!spec.repeated) {
    w.tag(spec.no, expectedWire(spec.kind));
    writeScalarPayload(w, spec.kind, value);
    return;
  }
  const arr = value as ArrayLike<unknown>;
  if (arr.length === 0) return;
  if (spec.packed) {
    w.tag(spec.no, WIRE_LEN);
    if (spec.kind === 'float' || spec.kind === 'double') {
      const b = typedBytes(value as Float32Array | Float64Array | number[], spec.kind);
      w.varint(b.length);
      w.bytes(b);
    } else {
      const inner = new Writer();
      for (let i = 0; i < arr.length; i++) writeScalarPayload(inner, spec.kind, arr[i]);
      w.varint(inner.length);
      w.append(inner);
    }
    return;
  }
  for (let i = 0; i < arr.length; i++) {
    w.tag(spec.no, expectedWire(spec.kind));
    writeScalarPayload(w, spec.kind, arr[i]);
  }
}

function encodeInto(w: Writer, schema: MessageSchema, obj: Record<string, unknown>): void {
  const unknown = (obj._unknown as UnknownField[] | undefined) ?? [];
  let ui = 0;
  // Unknown fields are merged by field number (stable), so C++-ordered inputs round-trip exactly.
  const sortedUnknown = unknown.length > 1 ? [...unknown].sort((a, b) => a.fieldNumber - b.fieldNumber) : unknown;
  for (const spec of schema.fields) {
    while (ui < sortedUnknown.length && sortedUnknown[ui]!.fieldNumber < spec.no) w.bytes(sortedUnknown[ui++]!.bytes);
    encodeField(w, spec, obj[spec.name]);
  }
  while (ui < sortedUnknown.length) w.bytes(sortedUnknown[ui++]!.bytes);
}

/* ------------------------------------------------------------------------------------------------
 * Public codec API
 * ---------------------------------------------------------------------------------------------- */

/**
 * A plain Uint8Array view of the input: Node Buffers are subclasses whose slice() does not copy,
 * so byte fields handed out by the decoder are always plain Uint8Arrays.
 */
function plainBytes(bytes: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(bytes) === Uint8Array.prototype ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decodes a serialized ModelProto. Byte fields (raw_data, …) are views into `bytes`. */
export function decodeModel(bytes: Uint8Array): ModelProto {
  const plain = plainBytes(bytes);
  return decodeMessage(S.Model, plain, 0, plain.length) as unknown as ModelProto;
}

/** Serializes a ModelProto. */
export function encodeModel(model: ModelProto): Uint8Array {
  const w = new Writer();
  encodeInto(w, S.Model, model as unknown as Record<string, unknown>);
  return w.finish();
}

/** Decodes / encodes a standalone TensorProto (e.g. a `.pb` tensor file). */
export function decodeTensor(bytes: Uint8Array): TensorProto {
  const plain = plainBytes(bytes);
  return decodeMessage(S.Tensor, plain, 0, plain.length) as unknown as TensorProto;
}

export function encodeTensor(tensor: TensorProto): Uint8Array {
  const w = new Writer();
  encodeInto(w, S.Tensor, tensor as unknown as Record<string, unknown>);
  return w.finish();
}

/* ------------------------------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------------------------------- */

export function int64ToNumber(v: Int64): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new RangeError(`int64 value ${v} is not a safe integer`);
  return n;
}

/** Dims of a tensor as plain numbers. */
export function tensorDims(tensor: TensorProto): number[] {
  return tensor.dims.map(int64ToNumber);
}

export function findInitializer(model: ModelProto, name: string): TensorProto | undefined {
  return model.graph?.initializer.find((t) => t.name === name);
}

export interface ExternalDataInfo {
  location: string;
  /** Byte offset into the file (0 when absent). */
  offset: number;
  /** Byte length; undefined when absent (= up to the end of the file). */
  length?: number;
  checksum?: string;
  /** All key/value pairs as written. */
  entries: Record<string, string>;
}

/** External-data reference of a tensor, or undefined when its data is stored inline. */
export function getExternalData(tensor: TensorProto): ExternalDataInfo | undefined {
  if (tensor.data_location !== DataLocation.EXTERNAL) return undefined;
  const entries: Record<string, string> = {};
  for (const e of tensor.external_data) if (e.key !== undefined) entries[e.key] = e.value ?? '';
  const location = entries.location;
  if (location === undefined) throw new ProtoDecodeError(`tensor ${tensor.name ?? '?'} has external data without location`);
  const info: ExternalDataInfo = { location, offset: entries.offset ? Number(entries.offset) : 0, entries };
  if (entries.length !== undefined) info.length = Number(entries.length);
  if (entries.checksum !== undefined) info.checksum = entries.checksum;
  return info;
}

/** Marks a tensor as external with the given location/offset/length (raw_data is dropped). */
export function setExternalData(tensor: TensorProto, location: string, offset: number, length: number): void {
  delete tensor.raw_data;
  tensor.float_data = undefined;
  tensor.external_data = [
    { key: 'location', value: location },
    { key: 'offset', value: String(offset) },
    { key: 'length', value: String(length) },
  ];
  tensor.data_location = DataLocation.EXTERNAL;
}

/**
 * Replaces every external-data reference by inline raw_data read through `read(location)` (the
 * whole external file). Use before re-encoding a model loaded from disk into a single buffer.
 */
export function inlineExternalData(model: ModelProto, read: (location: string) => Uint8Array): void {
  const cache = new Map<string, Uint8Array>();
  for (const t of model.graph?.initializer ?? []) {
    const ext = getExternalData(t);
    if (!ext) continue;
    let file = cache.get(ext.location);
    if (!file) {
      file = read(ext.location);
      cache.set(ext.location, file);
    }
    const end = ext.length !== undefined ? ext.offset + ext.length : file.length;
    if (end > file.length) throw new RangeError(`external data for ${t.name ?? '?'} exceeds ${ext.location}`);
    t.raw_data = plainBytes(file).subarray(ext.offset, end);
    t.external_data = [];
    delete t.data_location;
  }
}

/** Float32 contents of a FLOAT tensor stored inline (raw_data or float_data). Always a copy. */
export function tensorToFloat32(tensor: TensorProto): Float32Array {
  if (tensor.data_type !== TensorDataType.FLOAT) throw new TypeError(`tensor ${tensor.name ?? '?'} is not FLOAT`);
  if (tensor.data_location === DataLocation.EXTERNAL) throw new TypeError(`tensor ${tensor.name ?? '?'} data is external`);
  if (tensor.raw_data) {
    const copy = new Uint8Array(tensor.raw_data); // a copy, whatever the view's class
    return new Float32Array(copy.buffer, 0, copy.length / 4);
  }
  return tensor.float_data ? tensor.float_data.slice() : new Float32Array(0);
}

/** Replaces a FLOAT tensor's data (as raw_data, little-endian) and dims. */
export function setTensorFloat32(tensor: TensorProto, data: Float32Array, dims: number[]): void {
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new RangeError(`dims ${dims.join('x')} do not match ${data.length} values`);
  tensor.data_type = TensorDataType.FLOAT;
  tensor.dims = [...dims];
  tensor.raw_data = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  tensor.float_data = undefined;
  tensor.external_data = [];
  delete tensor.data_location;
}

/**
 * Raw IEEE half bits of a FLOAT16 tensor stored inline: raw_data (little-endian), or int32_data
 * (one value's bits in the low 16 bits of each entry, as onnx.numpy_helper writes them). A copy.
 */
export function tensorToFloat16Bits(tensor: TensorProto): Uint16Array {
  if (tensor.data_type !== TensorDataType.FLOAT16) throw new TypeError(`tensor ${tensor.name ?? '?'} is not FLOAT16`);
  if (tensor.data_location === DataLocation.EXTERNAL) throw new TypeError(`tensor ${tensor.name ?? '?'} data is external`);
  if (tensor.raw_data) {
    const copy = new Uint8Array(tensor.raw_data);
    return new Uint16Array(copy.buffer, 0, copy.length / 2);
  }
  return Uint16Array.from(tensor.int32_data, (v) => v & 0xffff);
}

/** Replaces a FLOAT16 tensor's data (half bits, as raw_data, little-endian) and dims. */
export function setTensorFloat16Bits(tensor: TensorProto, bits: Uint16Array, dims: number[]): void {
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== bits.length) throw new RangeError(`dims ${dims.join('x')} do not match ${bits.length} values`);
  tensor.data_type = TensorDataType.FLOAT16;
  tensor.dims = [...dims];
  tensor.raw_data = new Uint8Array(bits.buffer.slice(bits.byteOffset, bits.byteOffset + bits.byteLength));
  tensor.int32_data = [];
  tensor.external_data = [];
  delete tensor.data_location;
}

/**
 * Appends rows along dim 0 of a 2-D FLOAT or FLOAT16 initializer (e.g. the text encoder's
 * token-embedding table, for textual-inversion vectors; fp16 exports have a FLOAT16 table, and
 * the rows are rounded to half, to nearest even, as torch's .half() rounds). `rows` holds
 * `k * dims[1]` values. Also updates the first dimension of a graph input / value_info of the same
 * name if one declares a fixed size. Returns the index of the first new row.
 */
export function appendInitializerRows(model: ModelProto, name: string, rows: Float32Array): number {
  const t = findInitializer(model, name);
  if (!t) throw new Error(`initializer ${name} not found`);
  const dims = tensorDims(t);
  if (dims.length !== 2) throw new RangeError(`initializer ${name} is not 2-D`);
  const [n, d] = dims as [number, number];
  if (rows.length % d !== 0) throw new RangeError(`rows length ${rows.length} is not a multiple of ${d}`);
  const k = rows.length / d;
  if (t.data_type === TensorDataType.FLOAT16) {
    const bits = new Uint16Array((n + k) * d);
    bits.set(tensorToFloat16Bits(t), 0);
    bits.set(toFloat16(rows), n * d);
    setTensorFloat16Bits(t, bits, [n + k, d]);
  } else {
    if (t.data_type !== TensorDataType.FLOAT) {
      throw new TypeError(`initializer ${name} is of data type ${t.data_type}; rows can be added to FLOAT or FLOAT16 only`);
    }
    const data = new Float32Array((n + k) * d);
    data.set(tensorToFloat32(t), 0);
    data.set(rows, n * d);
    setTensorFloat32(t, data, [n + k, d]);
  }
  const g = model.graph!;
  for (const vi of [...g.input, ...g.value_info]) {
    if (vi.name !== name) continue;
    const dim0 = vi.type?.tensor_type?.shape?.dim[0];
    if (dim0 && dim0.dim_value !== undefined) dim0.dim_value = n + k;
  }
  return n;
}
