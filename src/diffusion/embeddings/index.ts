import { readFile, stat } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { parseSafetensors, readSafetensorsFloats, type SafetensorsTensor } from './safetensors.js';
import { readTorchArchive } from './torch.js';
import {
  type Embedding,
  EmbeddingFileError,
  EmbeddingFormatProblem,
  MAX_EMBEDDING_FILE_BYTES,
  MAX_EMBEDDING_VECTORS,
  MAX_EMBEDDING_WIDTH,
  problem,
} from './types.js';
import { ModuleRecord, PyDict, type PyValue, TensorRef } from './unpickle.js';

export type { Embedding, EmbeddingFormat } from './types.js';
export { EmbeddingFileError, MAX_EMBEDDING_FILE_BYTES, MAX_EMBEDDING_VECTORS, MAX_EMBEDDING_WIDTH } from './types.js';

export const EMBEDDING_EXTENSIONS = ['.safetensors', '.pt', '.bin'] as const;

/** Reads and parses one embedding file; reads nothing but that file. */
export async function loadEmbeddingFile(path: string): Promise<Embedding> {
  const fileName = basename(path);
  checkExtension(fileName);
  let size: number;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new EmbeddingFileError(fileName, `embedding "${fileName}" is not a regular file`);
    size = info.size;
  } catch (err) {
    if (err instanceof EmbeddingFileError) throw err;
    throw new EmbeddingFileError(fileName, `embedding "${fileName}" cannot be read: ${(err as Error).message}`, { cause: err });
  }
  if (size > MAX_EMBEDDING_FILE_BYTES) throw tooLarge(fileName, size);
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    throw new EmbeddingFileError(fileName, `embedding "${fileName}" cannot be read: ${(err as Error).message}`, { cause: err });
  }
  return parseEmbedding(buf, fileName);
}

/** Parses an embedding from memory; `fileName` picks the format by extension and names the file in errors. */
export function parseEmbedding(buffer: Uint8Array, fileName: string): Embedding {
  const ext = checkExtension(fileName);
  if (buffer.byteLength === 0) throw new EmbeddingFileError(fileName, `embedding "${fileName}" is empty (0 bytes)`);
  if (buffer.byteLength > MAX_EMBEDDING_FILE_BYTES) throw tooLarge(fileName, buffer.byteLength);
  try {
    return ext === '.safetensors' ? fromSafetensors(buffer) : fromTorch(buffer);
  } catch (err) {
    if (err instanceof EmbeddingFileError) throw err;
    const detail =
      err instanceof EmbeddingFormatProblem
        ? err.message
        : err instanceof RangeError
          ? `the file is truncated or has bad offsets (${err.message})`
          : (err as Error).message;
    throw new EmbeddingFileError(fileName, `embedding "${fileName}": ${detail}`, { cause: err });
  }
}

/** Why an embedding's width may not fit: the model family its width belongs to, when it is a known one. */
export function widthHint(width: number, expected: number): string {
  if (width === 1024 && expected === 768) return ' (is it an SD 2.x embedding?)';
  if (width === 768 && expected === 1024) return ' (is it an SD 1.x embedding?)';
  if (width === 1280) return ' (is it an SDXL embedding?)';
  return '';
}

function checkExtension(fileName: string): string {
  const ext = extname(fileName).toLowerCase();
  if (!(EMBEDDING_EXTENSIONS as readonly string[]).includes(ext)) {
    throw new EmbeddingFileError(
      fileName,
      `embedding "${fileName}" has an unsupported extension "${ext || '(none)'}"; expected ${EMBEDDING_EXTENSIONS.join(', ')}`,
    );
  }
  return ext;
}

const tooLarge = (fileName: string, size: number) =>
  new EmbeddingFileError(fileName, `embedding "${fileName}" is ${size} bytes; the limit is ${MAX_EMBEDDING_FILE_BYTES}`);

function fromSafetensors(buf: Uint8Array): Embedding {
  const file = parseSafetensors(buf);
  const byName = new Map(file.tensors.map((t) => [t.name, t] as const));
  let chosen: SafetensorsTensor;
  let format: Embedding['format'];
  const emb = byName.get('emb_params');
  if (emb) {
    chosen = emb;
    format = 'safetensors-emb_params';
  } else if (file.tensors.length === 1) {
    chosen = file.tensors[0]!;
    format = 'safetensors';
  } else if (file.tensors.length === 0) {
    throw problem('the safetensors file contains no tensors');
  } else {
    throw problem(multipleTensors(file.tensors.map((t) => t.name)));
  }
  const { count, width } = rowsOf(chosen.shape, `tensor "${chosen.name}"`);
  const vectors = readSafetensorsFloats(file, chosen);
  checkFinite(vectors);
  const tokenName = chosen.name === 'emb_params' || chosen.name === '*' ? null : chosen.name;
  return { vectors, count, width, tokenName, format };
}

function fromTorch(buf: Uint8Array): Embedding {
  const archive = readTorchArchive(buf);
  const { tensor, tokenName } = selectTorchTensor(archive.root);
  const { count, width } = rowsOf(tensor.size, 'the embedding tensor');
  const vectors = archive.readFloats(tensor);
  checkFinite(vectors);
  return { vectors, count, width, tokenName, format: 'pt' };
}

/** Mirrors diffusers' load_textual_inversion and A1111's loader on the unpickled object. */
function selectTorchTensor(root: PyValue): { tensor: TensorRef; tokenName: string | null } {
  if (root instanceof TensorRef) return { tensor: root, tokenName: null };
  if (!(root instanceof PyDict)) throw problem('the pickled object is neither a tensor nor a dict');
  const map = root.map;
  if (map.has('string_to_param')) {
    // A1111 / original textual inversion: {'string_to_param': {'*': tensor}, 'name': ..., ...}
    let params: PyValue = map.get('string_to_param') ?? null;
    if (params instanceof ModuleRecord) params = params.state?.map.get('_parameters') ?? null; // nn.ParameterDict
    if (!(params instanceof PyDict)) throw problem('"string_to_param" is not a dict of tensors');
    if (params.map.size !== 1) throw problem(`"string_to_param" has ${params.map.size} entries; expected exactly one`);
    const tensor = [...params.map.values()][0]!;
    if (!(tensor instanceof TensorRef)) throw problem('"string_to_param" does not hold a tensor');
    const name = map.get('name');
    return { tensor, tokenName: typeof name === 'string' && name !== '' ? name : null };
  }
  const emb = map.get('emb_params');
  if (emb instanceof TensorRef) return { tensor: emb, tokenName: null };
  const keys = [...map.keys()].map(String);
  if (map.size === 1) {
    // diffusers: {token: tensor}
    const [key, tensor] = [...map.entries()][0]!;
    if (!(tensor instanceof TensorRef)) throw problem(`the only entry "${String(key)}" is not a tensor`);
    return { tensor, tokenName: typeof key === 'string' && key !== '*' ? key : null };
  }
  if (map.size === 0) throw problem('the pickled dict is empty');
  throw problem(multipleTensors(keys));
}

function multipleTensors(names: string[]): string {
  const shown =
    names
      .slice(0, 8)
      .map((n) => `"${n}"`)
      .join(', ') + (names.length > 8 ? ', ...' : '');
  if (names.includes('clip_l') && names.includes('clip_g')) {
    return `it holds SDXL embeddings (clip_l, clip_g); SD 1.5 needs a single-encoder embedding`;
  }
  return `it holds ${names.length} entries (${shown}); expected exactly one tensor, an "emb_params" tensor or A1111's "string_to_param"`;
}

function rowsOf(shape: readonly number[], what: string): { count: number; width: number } {
  if (shape.length === 0) throw problem(`${what} is a scalar; expected [vectors, width] or [width]`);
  if (shape.length > 2) {
    throw problem(`${what} has ${shape.length} dimensions [${shape.join(', ')}]; expected [vectors, width] or [width]`);
  }
  const count = shape.length === 2 ? shape[0]! : 1;
  const width = shape[shape.length - 1]!;
  if (count === 0 || width === 0) throw problem(`${what} is empty (shape [${shape.join(', ')}])`);
  if (count > MAX_EMBEDDING_VECTORS) {
    throw problem(`${what} has ${count} vectors; at most ${MAX_EMBEDDING_VECTORS} fit in a prompt`);
  }
  if (width > MAX_EMBEDDING_WIDTH) throw problem(`${what} has width ${width}, above the ${MAX_EMBEDDING_WIDTH} limit`);
  return { count, width };
}

function checkFinite(v: Float32Array): void {
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i]!)) {
      throw problem(`value ${i} is ${v[i]} (the embedding contains NaN or infinite values)`);
    }
  }
}
