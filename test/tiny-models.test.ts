import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendInitializerRows,
  decodeModel,
  encodeModel,
  findInitializer,
  getExternalData,
  inlineExternalData,
  tensorDims,
  tensorToFloat32,
  TensorDataType,
} from '../src/diffusion/onnx/proto.js';
import { loadEmbeddingFile } from '../src/diffusion/embeddings/index.js';
import { buildTinyPipelineFiles, generateTinyPipeline, TINY_EMBEDDINGS } from '../scripts/tiny-models/generate.js';
import { TOKEN_EMBEDDING_NAME } from '../scripts/tiny-models/models.js';

const D = 32;
let root: string;
let base: string; // default: int64 timestep, inline weights
let floatTs: string; // float32 timestep, external UNet weights
let inpaint: string; // 9-channel UNet
let genMs = 0;

const MODELS = ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder', 'safety_checker'] as const;
const sessions = new Map<string, ort.InferenceSession>();

async function session(dir: string, model: string): Promise<ort.InferenceSession> {
  const key = `${dir}/${model}`;
  let s = sessions.get(key);
  if (!s) {
    s = await ort.InferenceSession.create(join(dir, model, 'model.onnx'));
    sessions.set(key, s);
  }
  return s;
}

const f32 = (dims: number[], fill: (i: number) => number): ort.Tensor => {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = fill(i);
  return new ort.Tensor('float32', data, dims);
};
const wave = (i: number): number => Math.sin(i * 0.37) * 0.8;
const data = (t: ort.OnnxValue | undefined): Float32Array => (t as ort.Tensor).data as Float32Array;
const allFinite = (a: Float32Array): boolean => a.every((v) => Number.isFinite(v));
const maxAbsDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
const maxAbs = (a: Float32Array): number => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

function ids(rows: number[][]): ort.Tensor {
  return new ort.Tensor('int32', Int32Array.from(rows.flat()), [rows.length, rows[0]!.length]);
}

async function encodeText(dir: string, rows: number[][]): Promise<ort.Tensor> {
  const r = await (await session(dir, 'text_encoder')).run({ input_ids: ids(rows) });
  return r.last_hidden_state as ort.Tensor;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tiny-models-'));
  base = join(root, 'tiny');
  floatTs = join(root, 'tiny-float-ext');
  inpaint = join(root, 'tiny-inpainting');
  const t0 = performance.now();
  await generateTinyPipeline(base);
  await generateTinyPipeline(floatTs, { timestepType: 'float32', externalData: true });
  await generateTinyPipeline(inpaint, { inpainting: true });
  genMs = performance.now() - t0;
});

afterAll(async () => {
  for (const s of sessions.values()) await s.release();
  await rm(root, { recursive: true, force: true });
});

describe('tiny pipeline files', () => {
  it('generates quickly and deterministically', () => {
    expect(genMs).toBeLessThan(5000);
    const a = buildTinyPipelineFiles({ externalData: true });
    const b = buildTinyPipelineFiles({ externalData: true });
    expect([...a.keys()]).toEqual([...b.keys()]);
    for (const [k, v] of a) expect(Buffer.compare(Buffer.from(v), Buffer.from(b.get(k)!)), k).toBe(0);
  });

  it('writes the diffusers layout and configs', async () => {
    const index = JSON.parse(await readFile(join(base, 'model_index.json'), 'utf8'));
    expect(index._class_name).toBe('OnnxStableDiffusionPipeline');
    for (const m of MODELS) expect(index[m]).toEqual(['diffusers', 'OnnxRuntimeModel']);
    expect(JSON.parse(await readFile(join(inpaint, 'model_index.json'), 'utf8'))._class_name).toBe('OnnxStableDiffusionInpaintPipeline');
    const sched = JSON.parse(await readFile(join(base, 'scheduler/scheduler_config.json'), 'utf8'));
    expect(sched).toMatchObject({
      num_train_timesteps: 1000,
      beta_start: 0.00085,
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      steps_offset: 1,
      set_alpha_to_one: false,
      clip_sample: false,
      prediction_type: 'epsilon',
    });
    const vocab = JSON.parse(await readFile(join(base, 'tokenizer/vocab.json'), 'utf8')) as Record<string, number>;
    const size = Object.keys(vocab).length;
    expect(vocab['!']).toBe(0);
    expect(vocab['!</w>']).toBe(256);
    expect(vocab['<|startoftext|>']).toBe(size - 2);
    expect(vocab['<|endoftext|>']).toBe(size - 1);
    expect(vocab['the</w>']).toBeGreaterThan(511);
    expect(new Set(Object.values(vocab)).size).toBe(size);
    const merges = (await readFile(join(base, 'tokenizer/merges.txt'), 'utf8')).trim().split('\n');
    expect(merges[0]).toBe('#version: 0.2');
    for (const m of merges.slice(1)) {
      const [a, b] = m.split(' ');
      expect(vocab[a!], m).toBeDefined();
      expect(vocab[b!], m).toBeDefined();
      expect(vocab[a! + b!], m).toBeDefined();
    }
    const cfg = JSON.parse(await readFile(join(base, 'tokenizer/tokenizer_config.json'), 'utf8'));
    expect(cfg.model_max_length).toBe(77);
    expect(cfg.pad_token).toBe('<|endoftext|>');
    const te = decodeModel(await readFile(join(base, 'text_encoder/model.onnx')));
    expect(tensorDims(findInitializer(te, TOKEN_EMBEDDING_NAME)!)).toEqual([size, D]);
  });

  it('writes embeddings in each supported format, readable by the loader', async () => {
    for (const e of Object.values(TINY_EMBEDDINGS)) {
      const loaded = await loadEmbeddingFile(join(base, 'embeddings', e.file));
      expect([loaded.count, loaded.width], e.file).toEqual([e.vectors, D]);
      if (!e.file.endsWith('.safetensors')) {
        expect(loaded.format).toBe('pt');
        continue;
      }
      const buf = await readFile(join(base, 'embeddings', e.file));
      const headerLen = Number(buf.readBigUInt64LE(0));
      expect(headerLen % 8).toBe(0);
      const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8'));
      expect(header[e.token]).toEqual({ dtype: 'F32', shape: [e.vectors, D], data_offsets: [0, e.vectors * D * 4] });
      expect(buf.length).toBe(8 + headerLen + e.vectors * D * 4);
    }
  });
});

describe('tiny models with onnxruntime', () => {
  it('exposes the diffusers I/O names and types', async () => {
    const expected: Record<string, [string[], string[]]> = {
      text_encoder: [['input_ids'], ['last_hidden_state', 'pooler_output']],
      unet: [['sample', 'timestep', 'encoder_hidden_states'], ['out_sample']],
      vae_encoder: [['sample'], ['latent_sample']],
      vae_decoder: [['latent_sample'], ['sample']],
      safety_checker: [
        ['clip_input', 'images'],
        ['out_images', 'has_nsfw_concepts'],
      ],
    };
    for (const m of MODELS) {
      const s = await session(base, m);
      expect([...s.inputNames], m).toEqual(expected[m]![0]);
      expect([...s.outputNames], m).toEqual(expected[m]![1]);
    }
    const types = (s: ort.InferenceSession, which: 'inputMetadata' | 'outputMetadata') =>
      Object.fromEntries(s[which].map((m) => [m.name, m.isTensor ? m.type : 'non-tensor']));
    expect(types(await session(base, 'text_encoder'), 'inputMetadata')).toEqual({ input_ids: 'int32' });
    expect(types(await session(base, 'unet'), 'inputMetadata')).toEqual({
      sample: 'float32',
      timestep: 'int64',
      encoder_hidden_states: 'float32',
    });
    expect(types(await session(floatTs, 'unet'), 'inputMetadata').timestep).toBe('float32');
    expect(types(await session(base, 'safety_checker'), 'outputMetadata')).toEqual({ out_images: 'float32', has_nsfw_concepts: 'bool' });
    const unetMeta = (await session(base, 'unet')).inputMetadata[0]!;
    expect(unetMeta.isTensor && unetMeta.shape).toEqual(['batch', 'channels', 'height', 'width']);
  });

  it('text encoder: shapes, finiteness, token sensitivity', async () => {
    const s = await session(base, 'text_encoder');
    for (const [b, len] of [
      [1, 77],
      [2, 5],
    ] as const) {
      const rows = Array.from({ length: b }, (_, r) => Array.from({ length: len }, (_, i) => (i * 7 + r) % 500));
      const r = await s.run({ input_ids: ids(rows) });
      expect(r.last_hidden_state!.dims).toEqual([b, len, D]);
      expect(r.pooler_output!.dims).toEqual([b, D]);
      expect(allFinite(data(r.last_hidden_state))).toBe(true);
    }
    const a = data(await encodeText(base, [[10, 20, 30]]));
    const b = data(await encodeText(base, [[10, 21, 30]]));
    expect(maxAbsDiff(a.subarray(0, D), b.subarray(0, D))).toBe(0);
    expect(maxAbsDiff(a.subarray(D, 2 * D), b.subarray(D, 2 * D))).toBeGreaterThan(0.1);
  });

  it('unet: shapes for two sizes/batches, sensitivity to prompt and timestep', async () => {
    const s = await session(base, 'unet');
    const ehsA = await encodeText(base, [[1, 2, 3, 4]]);
    const ehsB = await encodeText(base, [[100, 200, 300, 400]]);
    const ts = (v: number, n = 1) =>
      new ort.Tensor(
        'int64',
        BigInt64Array.from({ length: n }, () => BigInt(v)),
        [n],
      );
    for (const [b, h, w] of [
      [1, 8, 8],
      [2, 16, 12],
    ] as const) {
      const ehs =
        b === 1
          ? ehsA
          : await encodeText(base, [
              [1, 2, 3, 4],
              [5, 6, 7, 8],
            ]);
      const r = await s.run({ sample: f32([b, 4, h, w], wave), timestep: ts(500), encoder_hidden_states: ehs });
      expect(r.out_sample!.dims).toEqual([b, 4, h, w]);
      const out = data(r.out_sample);
      expect(allFinite(out)).toBe(true);
      expect(maxAbs(out)).toBeLessThan(10);
    }
    // diffusers feeds a [1]-shaped timestep with a CFG batch of 2; a [batch] one works too.
    const two = await encodeText(base, [
      [1, 2, 3, 4],
      [5, 6, 7, 8],
    ]);
    for (const t of [ts(10), ts(10, 2)]) {
      const r = await s.run({ sample: f32([2, 4, 8, 8], wave), timestep: t, encoder_hidden_states: two });
      expect(r.out_sample!.dims).toEqual([2, 4, 8, 8]);
    }
    const run = async (t: number, ehs: ort.Tensor) =>
      data((await s.run({ sample: f32([1, 4, 8, 8], wave), timestep: ts(t), encoder_hidden_states: ehs })).out_sample);
    const base1 = await run(981, ehsA);
    expect(maxAbsDiff(base1, await run(981, ehsA))).toBe(0);
    expect(maxAbsDiff(base1, await run(981, ehsB))).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(base1, await run(1, ehsA))).toBeGreaterThan(1e-3);
  });

  it('unet: float32 timestep with external weights, and the inpainting variant', async () => {
    const ehs = await encodeText(base, [[1, 2, 3]]);
    const pf = join(floatTs, 'unet/model.onnx');
    const model = decodeModel(await readFile(pf));
    const ext = model.graph!.initializer.map(getExternalData).filter((e) => e !== undefined);
    expect(ext.length).toBeGreaterThan(0);
    expect(ext[0]).toMatchObject({ location: 'weights.pb', offset: 0 });
    expect(ext[0]!.length).toBeGreaterThan(0);
    const sf = await session(floatTs, 'unet');
    const rf = await sf.run({
      sample: f32([1, 4, 8, 8], wave),
      timestep: new ort.Tensor('float32', Float32Array.from([981]), [1]),
      encoder_hidden_states: ehs,
    });
    const ri = await (
      await session(base, 'unet')
    ).run({
      sample: f32([1, 4, 8, 8], wave),
      timestep: new ort.Tensor('int64', BigInt64Array.from([981n]), [1]),
      encoder_hidden_states: ehs,
    });
    // Same seed → same weights: both variants compute the same function.
    expect(maxAbsDiff(data(rf.out_sample), data(ri.out_sample))).toBeLessThan(1e-5);
    // The external data can be inlined through the codec and loaded from a buffer.
    const weights = await readFile(join(floatTs, 'unet/weights.pb'));
    inlineExternalData(model, () => weights);
    const sb = await ort.InferenceSession.create(encodeModel(model));
    const rb = await sb.run({
      sample: f32([1, 4, 8, 8], wave),
      timestep: new ort.Tensor('float32', Float32Array.from([981]), [1]),
      encoder_hidden_states: ehs,
    });
    expect(maxAbsDiff(data(rb.out_sample), data(rf.out_sample))).toBe(0);
    await sb.release();

    const sp = await session(inpaint, 'unet');
    const r9 = await sp.run({
      sample: f32([2, 9, 16, 12], wave),
      timestep: new ort.Tensor('int64', BigInt64Array.from([5n]), [1]),
      encoder_hidden_states: await encodeText(base, [
        [1, 2],
        [3, 4],
      ]),
    });
    expect(r9.out_sample!.dims).toEqual([2, 4, 16, 12]);
    expect(allFinite(data(r9.out_sample))).toBe(true);
  });

  it('unet: scalar timestep variant runs', async () => {
    const files = buildTinyPipelineFiles({ timestepShape: 'scalar', embeddings: false });
    const s = await ort.InferenceSession.create(files.get('unet/model.onnx')!);
    const r = await s.run({
      sample: f32([1, 4, 8, 8], wave),
      timestep: new ort.Tensor('int64', BigInt64Array.from([3n]), []),
      encoder_hidden_states: await encodeText(base, [[1, 2, 3]]),
    });
    expect(r.out_sample!.dims).toEqual([1, 4, 8, 8]);
    await s.release();
  });

  it('vae encoder/decoder: shapes and ranges', async () => {
    const enc = await session(base, 'vae_encoder');
    const dec = await session(base, 'vae_decoder');
    for (const [b, H, W] of [
      [1, 64, 64],
      [2, 128, 96],
    ] as const) {
      const lat = (await enc.run({ sample: f32([b, 3, H, W], wave) })).latent_sample as ort.Tensor;
      expect(lat.dims).toEqual([b, 4, H / 8, W / 8]);
      expect(allFinite(lat.data as Float32Array)).toBe(true);
      const img = (await dec.run({ latent_sample: f32([b, 4, H / 8, W / 8], (i) => wave(i) * 5) })).sample as ort.Tensor;
      expect(img.dims).toEqual([b, 3, H, W]);
      expect(maxAbs(img.data as Float32Array)).toBeLessThanOrEqual(1);
    }
  });

  it('safety checker: bright images flagged and zeroed, others pass through', async () => {
    const s = await session(base, 'safety_checker');
    for (const [H, W] of [
      [64, 64],
      [128, 96],
    ] as const) {
      const bright = (1 - 0.48) / 0.27; // a white image after CLIP normalization
      const clip = f32([2, 3, 224, 224], (i) => (i < 3 * 224 * 224 ? bright : 0));
      const images = f32([2, H, W, 3], () => 0.7);
      const r = await s.run({ clip_input: clip, images });
      expect([...((r.has_nsfw_concepts as ort.Tensor).data as Uint8Array | boolean[])].map(Boolean)).toEqual([true, false]);
      const out = data(r.out_images);
      expect(r.out_images!.dims).toEqual([2, H, W, 3]);
      expect(maxAbs(out.subarray(0, H * W * 3))).toBe(0);
      expect(out[H * W * 3]).toBeCloseTo(0.7);
    }
  });
});

describe('ONNX codec', () => {
  it('decode→encode gives identical bytes for every generated model', async () => {
    for (const dir of [base, floatTs, inpaint]) {
      for (const m of MODELS) {
        const bytes = await readFile(join(dir, m, 'model.onnx'));
        const re = encodeModel(decodeModel(bytes));
        expect(Buffer.compare(Buffer.from(re), bytes), `${dir}/${m}`).toBe(0);
      }
    }
  });

  it('keeps unknown fields, explicit zeros and int64 extremes', () => {
    const model = decodeModel(buildTinyPipelineFiles({ embeddings: false }).get('safety_checker/model.onnx')!);
    model.graph!.node[0]!.attribute.push({
      name: 'big',
      type: 7,
      ints: [9223372036854775807n, -1, 0],
      floats: [],
      strings: [],
      tensors: [],
      graphs: [],
      type_protos: [],
    });
    model.model_version = 0;
    const bytes = encodeModel(model);
    // Append unknown fields: ModelProto.functions (25, length-delimited) and field 20 varint.
    const extra = Uint8Array.from([0xca, 0x01, 0x03, 0x0a, 0x01, 0x78, 0xa0, 0x01, 0x05]);
    const withUnknown = new Uint8Array(bytes.length + extra.length);
    withUnknown.set(bytes);
    withUnknown.set(extra, bytes.length);
    const decoded = decodeModel(withUnknown);
    expect(decoded._unknown?.map((u) => u.fieldNumber)).toEqual([25, 20]);
    expect(decoded.model_version).toBe(0);
    expect(decoded.graph!.node[0]!.attribute.at(-1)!.ints).toEqual([9223372036854775807n, -1, 0]);
    // Unknown fields are re-emitted in field-number order.
    const sorted = new Uint8Array(bytes.length + extra.length);
    sorted.set(bytes);
    sorted.set(extra.subarray(6), bytes.length);
    sorted.set(extra.subarray(0, 6), bytes.length + 3);
    expect(Buffer.compare(Buffer.from(encodeModel(decoded)), Buffer.from(sorted))).toBe(0);
    expect(Buffer.compare(Buffer.from(encodeModel(decodeModel(sorted))), Buffer.from(sorted))).toBe(0);
  });

  it('extends the token embedding table and the new ids take effect', async () => {
    const bytes = await readFile(join(base, 'text_encoder/model.onnx'));
    const model = decodeModel(bytes);
    const table = findInitializer(model, TOKEN_EMBEDDING_NAME)!;
    expect(table.data_type).toBe(TensorDataType.FLOAT);
    const [V] = tensorDims(table) as [number, number];
    const old = tensorToFloat32(table);
    // Row V = copy of token 100's vector; row V+1 = a new vector.
    const rows = new Float32Array(2 * D);
    rows.set(old.subarray(100 * D, 101 * D), 0);
    for (let i = 0; i < D; i++) rows[D + i] = Math.cos(i);
    expect(appendInitializerRows(model, TOKEN_EMBEDDING_NAME, rows)).toBe(V);
    expect(tensorDims(findInitializer(model, TOKEN_EMBEDDING_NAME)!)).toEqual([V + 2, D]);
    const s = await ort.InferenceSession.create(encodeModel(model));
    const run = async (row: number[]) => data((await s.run({ input_ids: ids([row]) })).last_hidden_state);
    const eos = V - 1;
    const viaOld = await run([V - 2, 100, eos]);
    const viaCopy = await run([V - 2, V, eos]);
    const viaNew = await run([V - 2, V + 1, eos]);
    expect(maxAbsDiff(viaOld, viaCopy)).toBeLessThan(1e-6);
    expect(maxAbsDiff(viaOld.subarray(D, 2 * D), viaNew.subarray(D, 2 * D))).toBeGreaterThan(0.1);
    // Unchanged tokens give the same result as the original model.
    const orig = data(await encodeText(base, [[V - 2, 100, eos]]));
    expect(maxAbsDiff(orig, viaOld)).toBeLessThan(1e-6);
    await s.release();
  });
});
