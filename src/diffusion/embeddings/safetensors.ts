import { toFloat32 } from './dtype.js';
import { type FloatDType, problem } from './types.js';

/**
 * safetensors layout: 8-byte little-endian u64 N, N bytes of UTF-8 JSON header
 * ({name: {dtype, shape, data_offsets: [begin, end]}, optional "__metadata__": {str: str}}),
 * then the byte buffer; offsets are relative to the buffer, tensors cover it exactly with no
 * holes or overlaps, all data little-endian.
 */

/** A header larger than this is refused (the safetensors library itself caps it at 100 MB). */
export const MAX_SAFETENSORS_HEADER_BYTES = 8 * 1024 * 1024;
const MAX_DIMS = 8;

const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};

export interface SafetensorsTensor {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  tensors: SafetensorsTensor[];
  metadata: Record<string, string> | null;
  /** The byte buffer after the header. */
  data: Uint8Array;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

export function parseSafetensors(buf: Uint8Array): SafetensorsFile {
  if (buf.byteLength < 8) throw problem(`safetensors file is truncated (${buf.byteLength} bytes, no header size)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = view.getBigUint64(0, true);
  if (n < 2n) throw problem(`safetensors header size ${n} is too small`);
  if (n > BigInt(MAX_SAFETENSORS_HEADER_BYTES)) {
    throw problem(`safetensors header size ${n} exceeds the ${MAX_SAFETENSORS_HEADER_BYTES}-byte limit`);
  }
  const headerLen = Number(n);
  if (8 + headerLen > buf.byteLength) {
    throw problem(`safetensors file is truncated: header claims ${headerLen} bytes but only ${buf.byteLength - 8} follow`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + headerLen));
  } catch {
    throw problem('safetensors header is not valid UTF-8');
  }
  if (!text.startsWith('{')) throw problem('safetensors header is not a JSON object');
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    throw problem(`safetensors header is not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(header)) throw problem('safetensors header is not a JSON object');

  const data = buf.subarray(8 + headerLen);
  let metadata: Record<string, string> | null = null;
  const tensors: SafetensorsTensor[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isPlainObject(info) || !Object.values(info).every((v) => typeof v === 'string')) {
        throw problem('safetensors "__metadata__" must map strings to strings');
      }
      metadata = info as Record<string, string>;
      continue;
    }
    if (!isPlainObject(info)) throw problem(`safetensors tensor "${name}" has no description object`);
    const { dtype, shape, data_offsets: offsets } = info;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
      throw problem(`safetensors tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`);
    }
    if (!Array.isArray(shape) || shape.length > MAX_DIMS || !shape.every(isCount)) {
      throw problem(`safetensors tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      throw problem(`safetensors tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > data.byteLength) {
      throw problem(`safetensors tensor "${name}" has data_offsets [${begin}, ${end}] outside the ${data.byteLength}-byte data buffer`);
    }
    // Element count, bounded by what the buffer could hold (so no overflow).
    let elements = 1;
    for (const d of shape as number[]) {
      elements *= d;
      if (elements * DTYPE_BYTES[dtype]! > data.byteLength) {
        throw problem(`safetensors tensor "${name}" shape ${JSON.stringify(shape)} is larger than the file`);
      }
    }
    const expected = elements * DTYPE_BYTES[dtype]!;
    if (end - begin !== expected) {
      throw problem(
        `safetensors tensor "${name}" (${dtype} ${JSON.stringify(shape)}) needs ${expected} bytes but data_offsets span ${end - begin}`,
      );
    }
    tensors.push({ name, dtype, shape: shape as number[], begin, end });
  }
  // The tensors must tile the data buffer exactly: no holes, no overlaps, nothing trailing.
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const t of sorted) {
    if (t.begin !== cursor) {
      throw problem(
        t.begin < cursor
          ? `safetensors tensor "${t.name}" overlaps another tensor's data`
          : `safetensors data buffer has a hole before tensor "${t.name}"`,
      );
    }
    cursor = t.end;
  }
  if (cursor !== data.byteLength) {
    throw problem(
      `safetensors data buffer is ${data.byteLength} bytes but the tensors cover ${cursor} (file truncated or has trailing bytes)`,
    );
  }
  return { tensors, metadata, data };
}

export function isFloatDType(dtype: string): dtype is FloatDType {
  return dtype === 'F32' || dtype === 'F16' || dtype === 'BF16';
}

export function readSafetensorsFloats(file: SafetensorsFile, t: SafetensorsTensor): Float32Array {
  if (!isFloatDType(t.dtype)) {
    throw problem(`tensor "${t.name}" has dtype ${t.dtype}; only F32, F16 and BF16 are supported`);
  }
  const elements = t.shape.reduce((a, b) => a * b, 1);
  return toFloat32(file.data.subarray(t.begin, t.end), t.dtype, elements);
}
