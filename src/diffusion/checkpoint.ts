import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import {
  appendInitializerRows,
  decodeModel,
  encodeModel,
  findInitializer,
  inlineExternalData,
  TensorDataType,
  tensorDims,
} from './onnx/proto.js';
import { widthHint } from './embeddings/index.js';
import { fromFloat16, toFloat16 } from './float16.js';
import { InvalidRequestError } from './request-error.js';
import type { NoiseSource } from './schedulers/common.js';
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
  type: 'int64' | 'float32' | 'float16';
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

/** Float tensors: float32, or float16 (fp16 exports; converted at the session boundary). */
const F = ['float32', 'float16'] as const;

const SPECS: Record<'text_encoder' | 'unet' | 'vae_encoder' | 'vae_decoder' | 'safety_checker', IoSpec> = {
  text_encoder: { inputs: { input_ids: [['int32', 'int64'], 2] }, outputs: { last_hidden_state: [F, 3] } },
  unet: {
    // timestep: a scalar, [1] or [batch] depending on the exporter, so its rank is not fixed.
    inputs: { sample: [F, 4], timestep: [['int64', 'float32', 'float16']], encoder_hidden_states: [F, 3] },
    outputs: { out_sample: [F, 4] },
  },
  // Its output (latent_sample or latent_parameters) is interpreted by vaeEncoderKind.
  vae_encoder: { inputs: { sample: [F, 4] }, outputs: {} },
  vae_decoder: { inputs: { latent_sample: [F, 4] }, outputs: { sample: [F, 4] } },
  safety_checker: {
    inputs: { clip_input: [F, 4], images: [F, 4] },
    outputs: { out_images: [F, 4], has_nsfw_concepts: [['bool'], 1] },
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
    /** How the vae_encoder's output is read (see vaeEncoderKind). */
    readonly vaeEncoderKind: VaeEncoderKind | null,
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
    let vaeEncoder: Session | null = null;
    let vaeEncoderKind: VaeEncoderKind | null = null;
    if (existsSync(vaeEncoderPath)) {
      ({ session: vaeEncoder, kind: vaeEncoderKind } = await loadVaeEncoder(vaeEncoderPath, options));
      checkIo(vaeEncoder, SPECS.vae_encoder, vaeEncoderPath);
    }
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
      vaeEncoderKind,
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
    const session = float16Boundary(
      await ort.InferenceSession.create(encodeModel(model), {
        ...this.options,
        ...(cudaUnavailable ? { executionProviders: ['cpu'] } : {}),
      }),
    );
    this.table = { session, rows, size };
    // One generation at a time per worker: nothing else is running on the old session.
    await old?.session.release();
    return this.table;
  }

  /**
   * The posterior sample of one image [1, 3, H, W] in [-1, 1] (unscaled latents [1, 4, H/8, W/8]):
   * mean + exp(0.5 * clamp(logvar, -30, 20)) * randn(1, 4, H/8, W/8), the randn drawn from `rng`
   * now, as diffusers' DiagonalGaussianDistribution.sample draws it. The export's own random node
   * is never used (onnxruntime-node's is unseeded): it is a graph input fed here, or the export
   * gives the moments and the sample is drawn here.
   */
  async encodeImage(image: Float32Array, width: number, height: number, rng: NoiseSource): Promise<Float32Array> {
    const kind = this.vaeEncoderKind!;
    const count = LATENT_CHANNELS * (height / 8) * (width / 8);
    const sample = new ort.Tensor('float32', image, [1, 3, height, width]);
    if (kind.type === 'noise-input') {
      const eps = rng.randn(count);
      const fed = kind.mean === 0 && kind.scale === 1 ? eps : eps.map((v) => kind.mean + kind.scale * v);
      const out = await this.vaeEncoder!.run({
        sample,
        [kind.input]: new ort.Tensor('float32', fed, [1, LATENT_CHANNELS, height / 8, width / 8]),
      });
      return new Float32Array(out.latent_sample!.data as Float32Array);
    }
    if (kind.type === 'sample') {
      // No random node: the export gives its latents itself; the draw is made (and unused) so the
      // job's later noise is where diffusers has it.
      const out = await this.vaeEncoder!.run({ sample });
      rng.randn(count);
      return new Float32Array(out.latent_sample!.data as Float32Array);
    }
    const out = await this.vaeEncoder!.run({ sample });
    const moments = out.latent_parameters!.data as Float32Array;
    if (moments.length !== 2 * count) {
      throw new Error(`vae_encoder: latent_parameters has ${moments.length} values; expected ${2 * count} (8 channels)`);
    }
    const eps = rng.randn(count);
    const z = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const logvar = Math.min(20, Math.max(-30, moments[count + i]!));
      const std = Math.fround(Math.exp(Math.fround(0.5 * logvar)));
      z[i] = moments[i]! + Math.fround(std * eps[i]!);
    }
    return z;
  }

  async release(): Promise<void> {
    await Promise.all(
      [this.table?.session, this.unet, this.vaeEncoder, this.vaeDecoder, this.safetyChecker].map(async (s) => s?.release()),
    );
  }
}

const LATENT_CHANNELS = 4;

/**
 * noise-input: latent_sample from a graph whose random node (the conversion script's and optimum's
 * before 1.23, vae.encode(x).latent_dist.sample()) was turned into the input `input`;
 * parameters: latent_parameters, the 8 moment channels (optimum from 1.23);
 * sample: latent_sample from a graph with no random node (deterministic).
 */
export type VaeEncoderKind =
  { type: 'noise-input'; input: string; mean: number; scale: number } | { type: 'parameters' } | { type: 'sample' };

const RANDOM_OPS = ['RandomNormalLike', 'RandomNormal', 'RandomUniformLike', 'RandomUniform', 'Multinomial', 'Bernoulli'];

async function loadVaeEncoder(
  file: string,
  options: ort.InferenceSession.SessionOptions,
): Promise<{ session: Session; kind: VaeEncoderKind }> {
  let model: ReturnType<typeof decodeModel>;
  try {
    model = decodeModel(await readFile(file));
  } catch (err) {
    throw new CheckpointError(file, `cannot be read as an ONNX model: ${(err as Error).message}`);
  }
  const graph = model.graph;
  if (!graph) throw new CheckpointError(file, 'has no graph');
  const outputs = graph.output.map((o) => o.name ?? '');
  const random = graph.node.filter((n) => RANDOM_OPS.includes(n.op_type ?? ''));
  const found = `outputs ${outputs.join(', ') || 'none'}; random nodes: ${random.map((n) => n.op_type).join(', ') || 'none'}`;
  if (outputs.includes('latent_parameters')) {
    if (random.length > 0) throw new CheckpointError(file, `gives latent_parameters but draws random numbers itself (${found})`);
    const session = await createSession(file, options);
    const meta = session.outputMetadata.find((m) => m.name === 'latent_parameters');
    const channels = meta && meta.isTensor ? meta.shape[1] : undefined;
    if (typeof channels === 'number' && channels !== 8) {
      await session.release();
      throw new CheckpointError(file, `latent_parameters has ${channels} channels; expected 8 (mean and logvar)`);
    }
    return { session, kind: { type: 'parameters' } };
  }
  if (!outputs.includes('latent_sample')) {
    throw new CheckpointError(
      file,
      `is not a VAE encoder this engine can read: expected an output latent_sample or latent_parameters (${found})`,
    );
  }
  if (random.length === 0) return { session: await createSession(file, options), kind: { type: 'sample' } };
  const node = random[0]!;
  if (random.length > 1 || (node.op_type !== 'RandomNormalLike' && node.op_type !== 'RandomNormal')) {
    throw new CheckpointError(file, `draws random numbers in a way this engine cannot reproduce (${found}); expected one RandomNormalLike`);
  }
  const attr = (name: string) => node.attribute.find((a) => a.name === name);
  const mean = attr('mean')?.f ?? 0;
  const scale = attr('scale')?.f ?? 1;
  const input = node.output[0]!;
  const elemType = randomNodeType(graph, node);
  if (elemType !== TensorDataType.FLOAT && elemType !== TensorDataType.FLOAT16) {
    throw new CheckpointError(file, `its ${node.op_type} draws numbers of ONNX data type ${elemType}; expected float32 or float16`);
  }
  // The random node's output becomes a graph input, fed with the job's noise (float32 here,
  // converted at the session boundary when the input is float16).
  graph.node = graph.node.filter((n) => n !== node);
  graph.input.push({ name: input, type: { tensor_type: { elem_type: elemType } } } as (typeof graph.input)[number]);
  inlineExternalData(model, (location) => readFileSync(path.join(path.dirname(file), location)));
  let session: Session;
  try {
    session = float16Boundary(await ort.InferenceSession.create(encodeModel(model), effectiveOptions(options)));
  } catch (err) {
    throw new CheckpointError(file, `ONNX Runtime cannot load it once its RandomNormalLike is an input: ${(err as Error).message}`);
  }
  return { session, kind: { type: 'noise-input', input, mean, scale } };
}

type Graph = NonNullable<ReturnType<typeof decodeModel>['graph']>;
type GraphNode = Graph['node'][number];

/**
 * The element type a random node draws: its dtype; without one, RandomNormal draws float32 and
 * RandomNormalLike the type of its input (the ONNX defaults): float16 in an fp16 VAE encoder whose
 * RandomNormalLike follows a float16 ConstantOfShape (sd-fp16-script in the parity fixtures). When
 * the input's type cannot be read from the graph, the graph's own float type (its sample input's).
 */
function randomNodeType(graph: Graph, node: GraphNode): number {
  const dtype = node.attribute.find((a) => a.name === 'dtype')?.i;
  if (dtype !== undefined) return Number(dtype);
  if (node.op_type === 'RandomNormal') return TensorDataType.FLOAT;
  return elemTypeOf(graph, node.input[0] ?? '') ?? elemTypeOf(graph, 'sample') ?? TensorDataType.FLOAT;
}

/** A value's element type when the graph declares it or a constant-like node gives it; undefined otherwise. */
function elemTypeOf(graph: Graph, name: string, depth = 0): number | undefined {
  const declared = [...graph.input, ...graph.value_info, ...graph.output].find((v) => v.name === name)?.type?.tensor_type?.elem_type;
  if (declared) return declared;
  const init = graph.initializer.find((t) => t.name === name);
  if (init) return init.data_type;
  const producer = graph.node.find((n) => n.output.includes(name));
  if (!producer || depth > 8) return undefined;
  const attr = (a: string) => producer.attribute.find((x) => x.name === a);
  switch (producer.op_type) {
    case 'Constant':
      return attr('value')?.t?.data_type ?? (attr('value_float') || attr('value_floats') ? TensorDataType.FLOAT : undefined);
    case 'ConstantOfShape':
      return attr('value')?.t?.data_type ?? TensorDataType.FLOAT;
    case 'Cast':
      return attr('to')?.i === undefined ? undefined : Number(attr('to')!.i);
    case 'CastLike':
      return elemTypeOf(graph, producer.input[1] ?? '', depth + 1);
    case 'Identity':
    case 'Reshape':
    case 'Expand':
    case 'Unsqueeze':
    case 'Squeeze':
    case 'Transpose':
    case 'Mul':
    case 'Add':
    case 'Sub':
    case 'Div':
      return elemTypeOf(graph, producer.input[0] ?? '', depth + 1);
    default:
      return undefined;
  }
}

/**
 * fp16 exports: float32 feeds become float16 (Uint16Array, round to nearest even) for inputs the
 * session declares float16, and float16 outputs come back as float32. Other sessions are returned as they are.
 *
 * The graph itself is handed to ONNX Runtime as it is, float16, on every provider: CUDA runs it in
 * half precision. The CPU provider (onnxruntime-node 1.30 on x86-64) has float16 kernels only for
 * data movement (Reshape, Transpose, Concat, Shape, ...), not for Conv, MatMul, Gemm, the norms or
 * Softmax, yet it loads such graphs: ONNX Runtime's own InsertCastTransformer puts Casts to float32
 * around the nodes without a float16 kernel when the session is created (at the default
 * optimization level the Casts of initializers are then folded: the weights become float32 once),
 * so those nodes compute in float32 and values are rounded to half where they pass a float16 node.
 * That is how ONNX Runtime runs the same export under diffusers' OnnxStableDiffusionPipeline on the
 * CPU too, so the engine does no upcasting of its own (which would also need external data: a
 * float32 copy of an SD 1.5 fp16 UNet, 3.4 GB, is past protobuf's 2 GB).
 * test/parity-exports.test.ts bounds the difference from the float32 export of the same weights.
 */
function float16Boundary(session: Session): Session {
  const half = (meta: readonly ort.InferenceSession.ValueMetadata[]) =>
    new Set(meta.filter((m) => m.isTensor && m.type === 'float16').map((m) => m.name));
  const halfIn = half(session.inputMetadata);
  const halfOut = half(session.outputMetadata);
  if (halfIn.size === 0 && halfOut.size === 0) return session;
  const run = async (feeds: Record<string, ort.Tensor>, ...rest: unknown[]) => {
    const converted: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      converted[name] = halfIn.has(name) && t.type === 'float32' ? new ort.Tensor('float16', toFloat16(t.data as Float32Array), t.dims) : t;
    }
    const out = await (session.run as (...args: unknown[]) => Promise<Record<string, ort.Tensor>>)(converted, ...rest);
    const result: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(out)) {
      if (t.type !== 'float16') result[name] = t;
      else {
        const data = t.data instanceof Uint16Array ? fromFloat16(t.data) : Float32Array.from(t.data as ArrayLike<number>);
        result[name] = new ort.Tensor('float32', data, t.dims);
      }
    }
    return result;
  };
  return new Proxy(session, {
    get(target, prop) {
      if (prop === 'run') return run;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

function effectiveOptions(options: ort.InferenceSession.SessionOptions): ort.InferenceSession.SessionOptions {
  return cudaUnavailable && options.executionProviders?.includes('cpu') ? { ...options, executionProviders: ['cpu'] } : options;
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
    return float16Boundary(await ort.InferenceSession.create(file, effective));
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
  if (spec.type === 'float16') return new ort.Tensor('float16', toFloat16(new Float32Array(count).fill(t)), dims);
  if (spec.type === 'int64') return new ort.Tensor('int64', new BigInt64Array(count).fill(BigInt(Math.round(t))), dims);
  return new ort.Tensor('float32', new Float32Array(count).fill(t), dims);
}
