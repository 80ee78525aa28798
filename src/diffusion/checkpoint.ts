import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { appendInitializerRows, decodeModel, encodeModel, findInitializer, inlineExternalData, tensorDims } from './onnx/proto.js';
import { widthHint } from './embeddings/index.js';
import { InvalidRequestError } from './request-error.js';
import { ClipTokenizer } from './tokenizer/clip-tokenizer.js';

/**
 * One SD 1.5 checkpoint in the diffusers ONNX export layout, loaded and checked:
 *   text_encoder/ unet/ vae_decoder/ tokenizer/ scheduler/  (required)
 *   vae_encoder/ (image2image, inpainting)   safety_checker/ (optional)
 * Every component's input/output names and element types are read from the session's metadata
 * and checked, so a broken or foreign model is refused at load with the file and the problem,
 * not in the middle of a request.
 */

export class CheckpointError extends Error {
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'CheckpointError';
  }
}

export interface TimestepInput {
  type: 'int64' | 'float32';
  /** 'scalar' (rank 0), 'single' ([1]) or 'batch' ([batch]). */
  shape: 'scalar' | 'single' | 'batch';
}

type Session = ort.InferenceSession;

/** Element types allowed, and the rank (number of dimensions) when it is fixed. */
type ValueSpec = readonly [types: readonly string[], rank?: number];

interface IoSpec {
  inputs: Record<string, ValueSpec>;
  outputs: Record<string, ValueSpec>;
}

const SPECS: Record<'text_encoder' | 'unet' | 'vae_encoder' | 'vae_decoder' | 'safety_checker', IoSpec> = {
  text_encoder: { inputs: { input_ids: [['int32', 'int64'], 2] }, outputs: { last_hidden_state: [['float32'], 3] } },
  unet: {
    // timestep: a scalar, [1] or [batch] depending on the exporter, so its rank is not fixed.
    inputs: { sample: [['float32'], 4], timestep: [['int64', 'float32']], encoder_hidden_states: [['float32'], 3] },
    outputs: { out_sample: [['float32'], 4] },
  },
  vae_encoder: { inputs: { sample: [['float32'], 4] }, outputs: { latent_sample: [['float32'], 4] } },
  vae_decoder: { inputs: { latent_sample: [['float32'], 4] }, outputs: { sample: [['float32'], 4] } },
  safety_checker: {
    inputs: { clip_input: [['float32'], 4], images: [['float32'], 4] },
    outputs: { out_images: [['float32'], 4], has_nsfw_concepts: [['bool'], 1] },
  },
};

/** A trigger word's vectors, to be added as rows of the text encoder's token-embedding table. */
export interface EmbeddingRows {
  /** The embedding's catalogue id (for messages). */
  id?: string;
  trigger: string;
  vectors: Float32Array;
  count: number;
}

/** A text encoder for one request: the session, and a tokenizer that maps its triggers to the session's rows. */
export interface TextEncoder {
  session: Session;
  tokenizer: ClipTokenizer;
}

/**
 * Extra rows a cached text encoder may hold before it is rebuilt with only the rows a request
 * needs (about 3 KB each at SD 1.5's width), so uploads cannot grow it without bound.
 */
const MAX_EXTRA_ROWS = 2048;

/** The cached text encoder: its extra rows, by the content of the vectors they hold. */
interface RowTable {
  session: Session;
  rows: Map<string, { first: number; vectors: Float32Array }>;
  size: number;
}

export class Checkpoint {
  private table: RowTable | null = null;

  private constructor(
    readonly dir: string,
    readonly tokenizer: ClipTokenizer,
    readonly hiddenSize: number,
    private readonly tokenTable: { name: string; rows: number },
    readonly inputIdsType: 'int32' | 'int64',
    readonly unet: Session,
    readonly unetInChannels: 4 | 9,
    readonly timestep: TimestepInput,
    readonly vaeEncoder: Session | null,
    readonly vaeDecoder: Session,
    readonly safetyChecker: Session | null,
    readonly schedulerConfig: unknown,
    private readonly options: ort.InferenceSession.SessionOptions,
  ) {}

  get inpainting(): boolean {
    return this.unetInChannels === 9;
  }

  static async load(dir: string, options: ort.InferenceSession.SessionOptions = {}): Promise<Checkpoint> {
    const file = (...parts: string[]) => path.join(dir, ...parts);
    for (const required of ['text_encoder/model.onnx', 'unet/model.onnx', 'vae_decoder/model.onnx', 'scheduler/scheduler_config.json']) {
      if (!existsSync(file(required))) throw new CheckpointError(file(required), 'is missing (not a diffusers ONNX export?)');
    }
    const tokenizer = await ClipTokenizer.fromFiles(file('tokenizer'));
    const schedulerConfig = await readJson(file('scheduler/scheduler_config.json'));

    // The text encoder is loaded through the codec: textual-inversion rows are added to its table.
    const textEncoderPath = file('text_encoder/model.onnx');
    const textModel = decodeModel(await readFile(textEncoderPath));
    const table = findTokenTable(textModel, textEncoderPath);
    const [rows, hiddenSize] = tensorDims(table) as [number, number];
    if (rows !== tokenizer.baseVocabSize) {
      throw new CheckpointError(
        textEncoderPath,
        `the token table has ${rows} rows but tokenizer/vocab.json has ${tokenizer.baseVocabSize} tokens`,
      );
    }
    const textEncoder = await createSession(textEncoderPath, options);
    const inputIdsType = checkIo(textEncoder, SPECS.text_encoder, textEncoderPath).input_ids as 'int32' | 'int64';
    await textEncoder.release();

    const unetPath = file('unet/model.onnx');
    const unet = await createSession(unetPath, options);
    const unetTypes = checkIo(unet, SPECS.unet, unetPath);
    const timestep: TimestepInput = {
      type: unetTypes.timestep as TimestepInput['type'],
      shape: timestepShape(unet),
    };
    const unetInChannels = await probeUnetChannels(unet, timestep, hiddenSize, unetPath);

    const vaeDecoderPath = file('vae_decoder/model.onnx');
    const vaeDecoder = await createSession(vaeDecoderPath, options);
    checkIo(vaeDecoder, SPECS.vae_decoder, vaeDecoderPath);
    const vaeEncoderPath = file('vae_encoder/model.onnx');
    const vaeEncoder = existsSync(vaeEncoderPath) ? await createSession(vaeEncoderPath, options) : null;
    if (vaeEncoder) checkIo(vaeEncoder, SPECS.vae_encoder, vaeEncoderPath);
    const safetyPath = file('safety_checker/model.onnx');
    const safetyChecker = existsSync(safetyPath) ? await createSession(safetyPath, options) : null;
    if (safetyChecker) checkIo(safetyChecker, SPECS.safety_checker, safetyPath);

    return new Checkpoint(
      dir,
      tokenizer,
      hiddenSize,
      { name: table.name ?? '', rows },
      inputIdsType,
      unet,
      unetInChannels,
      timestep,
      vaeEncoder,
      vaeDecoder,
      safetyChecker,
      schedulerConfig,
      options,
    );
  }

  /**
   * A text-encoder session whose token table has the embeddings' vectors as extra rows, and a
   * tokenizer for this request alone that maps their trigger words to those rows. The session is
   * cached with every row it has held (rows are keyed by their vectors, so a trigger word reused
   * by other vectors gets rows of its own); nothing of a request outlives it except rows in that
   * cache, and a request that fails before its session exists leaves the cache as it was.
   */
  async textEncoder(embeddings: readonly EmbeddingRows[]): Promise<TextEncoder> {
    for (const e of embeddings) {
      const width = e.vectors.length / e.count;
      if (width !== this.hiddenSize) {
        const name = e.id && e.id !== e.trigger ? `"${e.id}" (trigger word "${e.trigger}")` : `"${e.trigger}"`;
        throw new InvalidRequestError(
          `the embedding ${name} has vectors of width ${width}; the checkpoint "${path.basename(this.dir)}" needs ${this.hiddenSize}${widthHint(width, this.hiddenSize)}`,
        );
      }
    }
    const keys = embeddings.map(rowKey);
    let table = this.table;
    const missing = embeddings.filter((_, i) => !table?.rows.has(keys[i]!));
    if (!table || missing.length > 0) table = await this.buildTable(missing, keys);
    const tokenizer = this.tokenizer.withTriggers(
      embeddings.map((e, i) => {
        const { first } = table.rows.get(keys[i]!)!;
        return { trigger: e.trigger, ids: Array.from({ length: e.count }, (_, j) => first + j) };
      }),
    );
    return { session: table.session, tokenizer };
  }

  /** A session with the cached rows (unless too many) and the missing ones; swapped in only once it exists. */
  private async buildTable(missing: readonly EmbeddingRows[], needed: readonly string[]): Promise<RowTable> {
    const old = this.table;
    let kept = [...(old?.rows ?? new Map()).entries()];
    const added = missing.reduce((n, e) => n + e.count, 0);
    if ((old?.size ?? 0) + added > MAX_EXTRA_ROWS) kept = kept.filter(([key]) => needed.includes(key));

    const textEncoderPath = path.join(this.dir, 'text_encoder/model.onnx');
    const model = decodeModel(await readFile(textEncoderPath));
    inlineExternalData(model, (location) => readFileSync(path.join(path.dirname(textEncoderPath), location)));
    // Laid out first, then appended in one copy: the table itself is ~150 MB for SD 1.5.
    const rows = new Map<string, { first: number; vectors: Float32Array }>();
    let size = 0;
    for (const [key, vectors] of [
      ...kept.map(([key, row]) => [key, row.vectors] as const),
      ...missing.map((e) => [rowKey(e), e.vectors] as const),
    ]) {
      if (rows.has(key)) continue;
      rows.set(key, { first: this.tokenTable.rows + size, vectors });
      size += vectors.length / this.hiddenSize;
    }
    const extra = new Float32Array(size * this.hiddenSize);
    for (const { first, vectors } of rows.values()) extra.set(vectors, (first - this.tokenTable.rows) * this.hiddenSize);
    if (size > 0 && appendInitializerRows(model, this.tokenTable.name, extra) !== this.tokenTable.rows) {
      throw new Error(`the text encoder's token table does not have ${this.tokenTable.rows} rows`);
    }
    const session = await ort.InferenceSession.create(encodeModel(model), {
      ...this.options,
      ...(cudaUnavailable ? { executionProviders: ['cpu'] } : {}),
    });
    this.table = { session, rows, size };
    // One generation at a time per worker: nothing else is running on the old session.
    await old?.session.release();
    return this.table;
  }

  async release(): Promise<void> {
    await Promise.all(
      [this.table?.session, this.unet, this.vaeEncoder, this.vaeDecoder, this.safetyChecker].map(async (s) => s?.release()),
    );
  }
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new CheckpointError(file, `cannot be read as JSON: ${(err as Error).message}`);
  }
}

/**
 * Set once a CUDA session could not be created (or the CUDA provider library is not installed,
 * as on CPU machines, where trying would only log a loud error), so later sessions use the CPU.
 */
let cudaUnavailable = !cudaProviderInstalled();

function cudaProviderInstalled(): boolean {
  try {
    const bin = path.join(path.dirname(createRequire(import.meta.url).resolve('onnxruntime-node')), '..', 'bin');
    return readdirSync(bin, { recursive: true }).some((f) => String(f).includes('onnxruntime_providers_cuda'));
  } catch {
    return false;
  }
}

/**
 * Creates a session. With ['cuda', 'cpu'] (ORT_EXECUTION_PROVIDER=auto) a CUDA provider that
 * cannot load (no CUDA libraries, no GPU) falls back to the CPU; with ['cuda'] alone it is an error.
 */
async function createSession(file: string, options: ort.InferenceSession.SessionOptions): Promise<Session> {
  const providers = options.executionProviders ?? [];
  const wantsCuda = providers.includes('cuda');
  const canFallBack = wantsCuda && providers.includes('cpu');
  const effective = canFallBack && cudaUnavailable ? { ...options, executionProviders: ['cpu'] } : options;
  try {
    return await ort.InferenceSession.create(file, effective);
  } catch (err) {
    if (canFallBack && !cudaUnavailable) {
      cudaUnavailable = true;
      process.emitWarning(`CUDA is not available (${(err as Error).message.split('\n')[0]}); using the CPU`);
      return createSession(file, options);
    }
    throw new CheckpointError(file, `ONNX Runtime cannot load it: ${(err as Error).message}`);
  }
}

/** Checks names, element types and ranks; returns the element type of each expected input. */
function checkIo(session: Session, spec: IoSpec, file: string): Record<string, string> {
  const types: Record<string, string> = {};
  const check = (kind: 'input' | 'output', wanted: Record<string, ValueSpec>, meta: readonly ort.InferenceSession.ValueMetadata[]) => {
    for (const [name, [allowed, rank]] of Object.entries(wanted)) {
      const m = meta.find((x) => x.name === name);
      if (!m) {
        throw new CheckpointError(file, `has no ${kind} "${name}" (its ${kind}s: ${meta.map((x) => x.name).join(', ') || 'none'})`);
      }
      const type = m.isTensor ? m.type : 'non-tensor';
      if (!allowed.includes(type)) {
        throw new CheckpointError(file, `${kind} "${name}" is ${type}; expected ${allowed.join(' or ')}`);
      }
      // Shapes are dynamic in these exports (batch, height, width), but the rank is not (an
      // export without shape information reports none, and is not refused for it).
      if (rank !== undefined && m.isTensor && m.shape.length > 0 && m.shape.length !== rank) {
        throw new CheckpointError(file, `${kind} "${name}" has ${m.shape.length} dimensions [${m.shape.join(', ')}]; expected ${rank}`);
      }
      types[name] = type;
    }
  };
  check('input', spec.inputs, session.inputMetadata);
  check('output', spec.outputs, session.outputMetadata);
  return types;
}

function timestepShape(unet: Session): TimestepInput['shape'] {
  const meta = unet.inputMetadata.find((m) => m.name === 'timestep');
  const shape = meta && meta.isTensor ? meta.shape : undefined;
  if (!shape || shape.length === 0) return shape ? 'scalar' : 'batch';
  return shape[0] === 1 ? 'single' : 'batch';
}

/** The Gather that reads input_ids: its data input is the token-embedding table. */
function findTokenTable(model: ReturnType<typeof decodeModel>, file: string) {
  const graph = model.graph;
  if (!graph) throw new CheckpointError(file, 'has no graph');
  const reachesIds = new Set(['input_ids']);
  for (const node of graph.node) {
    // input_ids may pass through a Cast before the lookup.
    if (node.op_type === 'Cast' && reachesIds.has(node.input[0] ?? '')) node.output.forEach((o) => reachesIds.add(o));
    if (node.op_type === 'Gather' && reachesIds.has(node.input[1] ?? '')) {
      const table = findInitializer(model, node.input[0] ?? '');
      if (table && tensorDims(table).length === 2) return table;
    }
  }
  const byName = graph.initializer.find((t) => /token_embedding\.weight$/.test(t.name ?? '') && tensorDims(t).length === 2);
  if (byName) return byName;
  throw new CheckpointError(file, 'has no token-embedding table (a 2-D initializer gathered by input_ids)');
}

/** Runs the UNet once on a tiny latent to learn whether it takes 4 channels or 9 (inpainting). */
async function probeUnetChannels(unet: Session, timestep: TimestepInput, hiddenSize: number, file: string): Promise<4 | 9> {
  const errors: string[] = [];
  for (const channels of [4, 9] as const) {
    try {
      await unet.run(
        {
          sample: new ort.Tensor('float32', new Float32Array(channels * 64), [1, channels, 8, 8]),
          timestep: timestepTensor(timestep, 500, 1),
          encoder_hidden_states: new ort.Tensor('float32', new Float32Array(77 * hiddenSize), [1, 77, hiddenSize]),
        },
        { logSeverityLevel: 4 },
      ); // the failing guess is expected: keep it out of the log
      return channels;
    } catch (err) {
      errors.push(`${channels} channels: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new CheckpointError(file, `does not run on 4- or 9-channel latents with ${hiddenSize}-wide text states (${errors.join('; ')})`);
}

/** Rows are shared by requests whose vectors are the same, whatever their trigger words. */
function rowKey(e: EmbeddingRows): string {
  const bytes = Buffer.from(e.vectors.buffer, e.vectors.byteOffset, e.vectors.byteLength);
  return `${e.count}:${createHash('sha256').update(bytes).digest('base64')}`;
}

/** The timestep input as this UNet wants it. */
export function timestepTensor(spec: TimestepInput, t: number, batch: number): ort.Tensor {
  const count = spec.shape === 'batch' ? batch : 1;
  const dims = spec.shape === 'scalar' ? [] : [count];
  if (spec.type === 'int64') return new ort.Tensor('int64', new BigInt64Array(count).fill(BigInt(Math.round(t))), dims);
  return new ort.Tensor('float32', new Float32Array(count).fill(t), dims);
}
