import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { appendInitializerRows, decodeModel, encodeModel, findInitializer, inlineExternalData, tensorDims } from './onnx/proto.js';
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
  trigger: string;
  vectors: Float32Array;
  count: number;
}

export class Checkpoint {
  private textEncoderSession: Session | null = null;
  private textEncoderTriggers = '';

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
   * Registers embeddings' trigger words with the tokenizer (once each) and returns a text-encoder
   * session whose token table has their vectors as extra rows, ids matching the tokenizer's.
   * Rebuilt only when the set of embeddings grows.
   */
  async textEncoder(embeddings: readonly EmbeddingRows[]): Promise<Session> {
    for (const e of embeddings) {
      if (e.vectors.length !== e.count * this.hiddenSize) {
        throw new Error(`embedding "${e.trigger}" has vectors of width ${e.vectors.length / e.count}; this checkpoint needs ${this.hiddenSize}`);
      }
      if (!this.tokenizer.triggerIds(e.trigger)) this.tokenizer.addTriggerTokens(e.trigger, e.count);
    }
    const key = [...this.tokenizer.triggerTokens.keys()].join('\u0000');
    if (this.textEncoderSession && key === this.textEncoderTriggers) return this.textEncoderSession;

    const textEncoderPath = path.join(this.dir, 'text_encoder/model.onnx');
    const model = decodeModel(await readFile(textEncoderPath));
    inlineExternalData(model, (location) => readFileSync(path.join(path.dirname(textEncoderPath), location)));
    // Rows in id order: the tokenizer hands out ids after the base vocabulary, in registration order.
    const byTrigger = new Map(embeddings.map((e) => [e.trigger, e]));
    const known = this.registeredRows;
    for (const [trigger, ids] of this.tokenizer.triggerTokens) {
      const e = byTrigger.get(trigger) ?? known.get(trigger);
      if (!e) throw new Error(`no vectors for the registered trigger "${trigger}"`);
      const first = appendInitializerRows(model, this.tokenTable.name, e.vectors);
      if (first !== ids[0]) throw new Error(`token ids of "${trigger}" do not match the text encoder's rows`);
      known.set(trigger, e);
    }
    const session = await ort.InferenceSession.create(encodeModel(model), {
      ...this.options,
      ...(cudaUnavailable ? { executionProviders: ['cpu'] } : {}),
    });
    const previous = this.textEncoderSession;
    this.textEncoderSession = session;
    this.textEncoderTriggers = key;
    await previous?.release();
    return session;
  }

  private readonly registeredRows = new Map<string, EmbeddingRows>();

  async release(): Promise<void> {
    await Promise.all(
      [this.textEncoderSession, this.unet, this.vaeEncoder, this.vaeDecoder, this.safetyChecker].map((s) => s?.release()),
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
      await unet.run({
        sample: new ort.Tensor('float32', new Float32Array(channels * 64), [1, channels, 8, 8]),
        timestep: timestepTensor(timestep, 500, 1),
        encoder_hidden_states: new ort.Tensor('float32', new Float32Array(77 * hiddenSize), [1, 77, hiddenSize]),
      }, { logSeverityLevel: 4 }); // the failing guess is expected: keep it out of the log
      return channels;
    } catch (err) {
      errors.push(`${channels} channels: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new CheckpointError(file, `does not run on 4- or 9-channel latents with ${hiddenSize}-wide text states (${errors.join('; ')})`);
}

/** The timestep input as this UNet wants it. */
export function timestepTensor(spec: TimestepInput, t: number, batch: number): ort.Tensor {
  const count = spec.shape === 'batch' ? batch : 1;
  const dims = spec.shape === 'scalar' ? [] : [count];
  if (spec.type === 'int64') return new ort.Tensor('int64', new BigInt64Array(count).fill(BigInt(Math.round(t))), dims);
  return new ort.Tensor('float32', new Float32Array(count).fill(t), dims);
}
