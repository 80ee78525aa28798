import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint, type EmbeddingRows } from '../src/diffusion/checkpoint.js';
import { tensorToPng } from '../src/diffusion/image-codec.js';
import { fromFloat16, toFloat16 } from '../src/diffusion/float16.js';
import {
  appendInitializerRows,
  decodeModel,
  encodeModel,
  findInitializer,
  type ModelProto,
  TensorDataType,
  type TensorProto,
  tensorToFloat16Bits,
  tensorToFloat32,
} from '../src/diffusion/onnx/proto.js';
import { generate, type GenerateRequest } from '../src/diffusion/pipeline.js';
import { InvalidRequestError } from '../src/diffusion/request-error.js';
import { GenerationThread } from '../src/engines/local/generation-thread.js';
import type { GenerateMessage } from '../src/engines/local/thread-protocol.js';

/**
 * Every export flavour of test/fixtures/parity/models (see its README) loads and generates:
 * sd-script (diffusers' conversion script: float32 timestep, a vae_encoder with RandomNormalLike),
 * sd-optimum (int64 timestep, latent_parameters), inpaint (a 9-channel UNet), sd-fp16 (sd-optimum
 * converted to float16 by scripts/reference/parity/fp16.py) and sd-fp16-script (sd-fp16 with the
 * float16 conversion of sd-script's vae_encoder: a RandomNormalLike without dtype). The same
 * request gives the same bytes whatever the checkpoint or the generation thread ran before.
 */

const MODELS = path.join(import.meta.dirname, 'fixtures', 'parity', 'models');
const W = 64;
const H = 64;

type Flavour = 'sd-script' | 'sd-optimum' | 'inpaint' | 'sd-fp16' | 'sd-fp16-script';
const FLAVOURS: readonly Flavour[] = ['sd-script', 'sd-optimum', 'inpaint', 'sd-fp16', 'sd-fp16-script'];

const maxDiff = (a: Float32Array, b: Float32Array) => {
  expect(a.length).toBe(b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
};

/** A smooth picture in [-1, 1] (NCHW, batch 1), so the VAE sees structure rather than noise. */
function picture(width: number, height: number): Float32Array {
  const img = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        img[(c * height + y) * width + x] = Math.sin((x + 7 * c) / 9) * Math.cos(y / 13) * 0.9;
      }
    }
  }
  return img;
}

/** 1 (repaint) in a rectangle right of the middle, 0 elsewhere. */
function rectMask(width: number, height: number): Float32Array {
  const m = new Float32Array(width * height);
  for (let y = height / 4; y < (3 * height) / 4; y++) for (let x = width / 2; x < width; x++) m[y * width + x] = 1;
  return m;
}

const request = (over: Partial<GenerateRequest> = {}): GenerateRequest => ({
  prompt: 'a red house by the sea',
  negativePrompt: 'blurry',
  steps: 4,
  guidanceScale: 7.5,
  samples: 1,
  width: W,
  height: H,
  seed: 42,
  scheduler: 'PNDM',
  embeddings: [],
  ...over,
});
const img2img = (over: Partial<GenerateRequest> = {}) => request({ initImage: picture(W, H), strength: 0.7, ...over });
const inpainting = (over: Partial<GenerateRequest> = {}) =>
  request({ initImage: picture(W, H), mask: rectMask(W, H), strength: 1, ...over });
/** The request whose bytes must not depend on what ran before: inpainting on the 9-channel UNet, image2image otherwise. */
const probe = (flavour: Flavour) => (flavour === 'inpaint' ? inpainting({ seed: 5 }) : img2img({ seed: 5 }));

const png = async (images: Float32Array) => tensorToPng(images, 0, W, H);

/** sd-fp16-script in `root`: sd-fp16 with the fp16 conversion of the conversion script's vae_encoder (same VAE weights). */
function assembleFp16Script(root: string): string {
  const dir = path.join(root, 'sd-fp16-script');
  cpSync(path.join(MODELS, 'sd-fp16'), dir, { recursive: true });
  cpSync(path.join(MODELS, 'sd-fp16-script', 'vae_encoder'), path.join(dir, 'vae_encoder'), { recursive: true });
  return dir;
}

describe('the export flavours of the parity models', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'parity-exports-'));
  const dirs = {} as Record<Flavour, string>;
  const loaded = {} as Record<Flavour, Checkpoint>;

  beforeAll(async () => {
    for (const f of ['sd-script', 'sd-optimum', 'inpaint', 'sd-fp16'] as const) dirs[f] = path.join(MODELS, f);
    dirs['sd-fp16-script'] = assembleFp16Script(root);
    for (const f of FLAVOURS) loaded[f] = await Checkpoint.load(dirs[f]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all(Object.values(loaded).map((c) => c.release()));
    rmSync(root, { recursive: true, force: true });
  });

  it('loads each flavour and reads its inputs as the exporter wrote them', () => {
    const described = Object.fromEntries(
      FLAVOURS.map((f) => {
        const c = loaded[f];
        const type = (s: Checkpoint['unet'], name: string) => s.inputMetadata.find((m) => m.name === name) as { type?: string };
        return [
          f,
          {
            inpainting: c.inpainting,
            timestep: c.timestep.type,
            vae: c.vaeEncoderKind!.type,
            sample: type(c.unet, 'sample').type,
            latent: type(c.vaeDecoder, 'latent_sample').type,
            hiddenSize: c.hiddenSize,
          },
        ];
      }),
    );
    const f32 = { sample: 'float32', latent: 'float32', hiddenSize: 16 };
    const f16 = { sample: 'float16', latent: 'float16', hiddenSize: 16 };
    expect(described).toEqual({
      'sd-script': { inpainting: false, timestep: 'float32', vae: 'noise-input', ...f32 },
      'sd-optimum': { inpainting: false, timestep: 'int64', vae: 'parameters', ...f32 },
      inpaint: { inpainting: true, timestep: 'int64', vae: 'parameters', ...f32 },
      // fp16 exports keep the timestep int64; their graphs stay float16 (see float16Boundary).
      'sd-fp16': { inpainting: false, timestep: 'int64', vae: 'parameters', ...f16 },
      'sd-fp16-script': { inpainting: false, timestep: 'int64', vae: 'noise-input', ...f16 },
    });
  });

  it("feeds a RandomNormalLike without dtype in an fp16 graph the graph's type (float16)", async () => {
    const kind = loaded['sd-fp16-script'].vaeEncoderKind!;
    expect(kind).toMatchObject({ type: 'noise-input', mean: 0, scale: 1 });
    const input = loaded['sd-fp16-script'].vaeEncoder!.inputMetadata.find((m) => m.name === (kind as { input: string }).input);
    expect(input).toMatchObject({ type: 'float16' });
    const script = loaded['sd-script'].vaeEncoder!.inputMetadata.find((m) => m.name !== 'sample');
    expect(script).toMatchObject({ type: 'float32' });

    // Without the export's trailing Cast the noise meets float16 arithmetic directly: a float32
    // input there would not even load. Removing a float16 -> float16 Cast changes no value.
    const file = path.join(dirs['sd-fp16-script'], 'vae_encoder', 'model.onnx');
    const model = decodeModel(readFileSync(file));
    const graph = model.graph!;
    const random = graph.node.find((n) => n.op_type === 'RandomNormalLike')!;
    expect(random.attribute.find((a) => a.name === 'dtype')).toBeUndefined();
    const cast = graph.node.find((n) => n.op_type === 'Cast' && n.input[0] === random.output[0])!;
    expect(cast.attribute.find((a) => a.name === 'to')?.i).toBe(TensorDataType.FLOAT16);
    for (const n of graph.node) n.input = n.input.map((i) => (i === cast.output[0] ? random.output[0]! : i));
    graph.node = graph.node.filter((n) => n !== cast);
    const bare = path.join(root, 'sd-fp16-bare-random');
    cpSync(dirs['sd-fp16-script'], bare, { recursive: true });
    writeFileSync(path.join(bare, 'vae_encoder', 'model.onnx'), encodeModel(model));
    const ckpt = await Checkpoint.load(bare);
    try {
      const req = img2img({ seed: 9 });
      expect(maxDiff(await generate(ckpt, req), await generate(loaded['sd-fp16-script'], req))).toBe(0);
    } finally {
      await ckpt.release();
    }
  });

  for (const flavour of FLAVOURS) {
    const mode = flavour === 'inpaint' ? 'inpainting' : 'text2image and image2image';
    it(`${flavour}: ${mode}, deterministic for a seed, another seed another image`, async () => {
      const ckpt = loaded[flavour];
      const runs: GenerateRequest[] = flavour === 'inpaint' ? [inpainting()] : [request(), img2img()];
      const outs: Float32Array[] = [];
      for (const req of runs) {
        const out = await generate(ckpt, req);
        expect(out.length).toBe(3 * W * H);
        expect(out.every(Number.isFinite)).toBe(true);
        expect(maxDiff(out, await generate(ckpt, req))).toBe(0);
        // Every draw is seeded, the init image's posterior too: another seed, another result.
        expect(maxDiff(out, await generate(ckpt, { ...req, seed: 43 }))).toBeGreaterThan(1e-3);
        outs.push(out);
      }
      if (flavour === 'inpaint') {
        // A 9-channel UNet cannot start from noise alone (the engine refuses text2image on it earlier).
        await expect(generate(ckpt, request())).rejects.toThrow(InvalidRequestError);
        await expect(generate(ckpt, img2img())).rejects.toThrow(/inpainting checkpoint/);
        // Outside the mask, far from its blurred edge, the init image is kept.
        expect(outs[0]![0]).toBeCloseTo(picture(W, H)[0]!, 6);
      } else {
        expect(maxDiff(outs[0]!, outs[1]!)).toBeGreaterThan(1e-3);
      }
    });
  }

  it('the inpainting of 4-channel checkpoints runs on every other flavour', async () => {
    for (const flavour of FLAVOURS.filter((f) => f !== 'inpaint')) {
      const out = await generate(loaded[flavour], inpainting({ strength: 0.9 }));
      expect(out.every(Number.isFinite), flavour).toBe(true);
    }
  });

  it('sd-fp16 generates what sd-optimum (the same weights in float32) does, within half precision', async () => {
    // Largest differences measured for these requests (onnxruntime-node 1.30, x86-64 CPU), on
    // outputs of magnitude up to ~2.5; each bound is a bit above its measurement. They come from
    // the weights rounded to half and the values rounded where they pass float16 nodes (and the
    // float16 outputs: the VAE encoder's moments differ by 1.1e-3). The 4-channel inpainting pastes
    // the known latents back at every step, which the UNet amplifies most (inside the mask).
    const cases: [string, GenerateRequest, number][] = [
      ['text2image', request(), 3e-3], // measured 1.6e-3
      ['image2image', img2img(), 5e-3], // measured 3.4e-3
      ['inpainting', inpainting({ strength: 0.9 }), 2e-2], // measured 1.47e-2
      ['text2image, another scheduler and size', request({ scheduler: 'EULER_A', width: 48, height: 64, seed: 3 }), 4e-3], // measured 2.6e-3
    ];
    for (const [name, req, bound] of cases) {
      const d = maxDiff(await generate(loaded['sd-fp16'], req), await generate(loaded['sd-optimum'], req));
      expect(d, name).toBeLessThan(bound);
      // Not the same computation: the fp16 weights are really used.
      expect(d, name).toBeGreaterThan(0);
    }

    // The conversion script's VAE encoder in fp16 (the noise fed to its random node's input) is as
    // close to its float32 original, and to sd-fp16's moments path, which draws the same noise.
    const req = img2img({ seed: 11 });
    const script = maxDiff(await generate(loaded['sd-fp16-script'], req), await generate(loaded['sd-script'], req));
    expect(script).toBeLessThan(5e-3); // measured 3.6e-3
    const paths = maxDiff(await generate(loaded['sd-fp16-script'], req), await generate(loaded['sd-fp16'], req));
    expect(paths).toBeLessThan(4e-3); // measured 2.5e-3
  });

  it('textual inversion with an fp16 text encoder: an embedding holding the rows of words means those words', async () => {
    const ckpt = loaded['sd-fp16'];
    // The float32 rows of the words "house by" from the float32 export's table; the fp16 table
    // holds them rounded to half, and so will the appended rows (both round to nearest even).
    const table = findInitializer(
      decodeModel(readFileSync(path.join(MODELS, 'sd-optimum', 'text_encoder', 'model.onnx'))),
      'token_embedding.weight',
    );
    const fp16Table = findInitializer(
      decodeModel(readFileSync(path.join(MODELS, 'sd-fp16', 'text_encoder', 'model.onnx'))),
      'token_embedding.weight',
    );
    expect(fp16Table?.data_type).toBe(TensorDataType.FLOAT16);
    const all = tensorToFloat32(table!);
    const ids = ckpt.tokenizer.encode('house by');
    expect(ids.length).toBeGreaterThan(0);
    const vectors = new Float32Array(ids.length * 16);
    ids.forEach((id, j) => vectors.set(all.subarray(id * 16, (id + 1) * 16), j * 16));
    const words: EmbeddingRows = { id: 'words', trigger: 'WordsEmbedding', vectors, count: ids.length };
    const plain = await generate(ckpt, request());
    const named = await generate(ckpt, request({ prompt: 'a red WordsEmbedding the sea', embeddings: [words] }));
    expect(maxDiff(plain, named)).toBe(0);

    // Other vectors change the image; without naming the embedding the trigger word is plain text.
    const other: EmbeddingRows = {
      id: 'other',
      trigger: 'OtherEmbedding',
      vectors: vectors.map((v, i) => v + Math.sin(i)),
      count: ids.length,
    };
    const changed = await generate(ckpt, request({ prompt: 'a red OtherEmbedding the sea', embeddings: [other, words] }));
    expect(maxDiff(plain, changed)).toBeGreaterThan(1e-3);
    expect(maxDiff(plain, await generate(ckpt, request({ prompt: 'a red OtherEmbedding the sea' })))).toBeGreaterThan(1e-3);
    // The rows stay in the cached text encoder: the first request again gives the same result.
    expect(maxDiff(named, await generate(ckpt, request({ prompt: 'a red WordsEmbedding the sea', embeddings: [words] })))).toBe(0);
  });

  it('the same image2image and inpainting request gives the same PNG on a fresh checkpoint and on a used one', async () => {
    // Last in this describe: the shared checkpoints have run every test above (other seeds, modes,
    // sizes, schedulers, embeddings); more jobs of other sizes first, then the probes.
    for (const flavour of FLAVOURS) {
      const used = loaded[flavour];
      if (flavour !== 'inpaint') {
        await generate(used, request({ seed: 77, width: 48, height: 32, scheduler: 'DDIM' }));
        await generate(used, img2img({ seed: 78, width: 32, height: 48, initImage: picture(32, 48), strength: 0.5 }));
      }
      await generate(used, inpainting({ seed: 79, width: 48, height: 48, initImage: picture(48, 48), mask: rectMask(48, 48) }));
      await generate(used, inpainting({ seed: 80, steps: 6, scheduler: 'DDIM', strength: 0.6 }));
      const fresh = await Checkpoint.load(dirs[flavour]);
      try {
        for (const req of [probe(flavour), inpainting({ seed: 6, strength: 0.8 })]) {
          const first = await png(await generate(fresh, req));
          const again = await png(await generate(used, req));
          expect(again.equals(first), `${flavour} ${req.mask ? 'inpainting' : 'image2image'}`).toBe(true);
        }
      } finally {
        await fresh.release();
      }
    }
  }, 240_000);
});

describe('textual-inversion rows in a FLOAT16 table (the codec)', () => {
  const model = (table: TensorProto[]) =>
    ({
      graph: { node: [], initializer: table, input: [], output: [], value_info: [] },
      opset_import: [],
      metadata_props: [],
    }) as unknown as ModelProto;
  const tensor = (over: Partial<TensorProto>): TensorProto => ({
    dims: [2, 3],
    data_type: TensorDataType.FLOAT16,
    name: 't',
    int32_data: [],
    string_data: [],
    int64_data: [],
    uint64_data: [],
    external_data: [],
    ...over,
  });

  it('appends rows rounded to half, whether the table is stored as raw_data or int32_data', () => {
    const old = [0.5, -1, 2, 0.25, 3, -0.125];
    const bits = toFloat16(old);
    const rows = new Float32Array([1 / 3, 70000, -1e-8]);
    for (const stored of [{ raw_data: new Uint8Array(bits.buffer) }, { int32_data: Array.from(bits) }]) {
      const m = model([tensor(stored)]);
      expect(appendInitializerRows(m, 't', rows)).toBe(2);
      const t = m.graph!.initializer[0]!;
      expect(t.dims).toEqual([3, 3]);
      expect(t.data_type).toBe(TensorDataType.FLOAT16);
      expect(Array.from(fromFloat16(tensorToFloat16Bits(t)))).toEqual([...old, 0.333251953125, Infinity, -0]);
    }
  });

  it('refuses a table of another type', () => {
    const m = model([tensor({ data_type: TensorDataType.DOUBLE, double_data: new Float64Array(6) })]);
    expect(() => appendInitializerRows(m, 't', new Float32Array(3))).toThrow(/FLOAT or FLOAT16/);
  });
});

describe('the parity flavours through the local engine: a fresh generation thread and a used one', () => {
  const logger = pino({ level: 'silent' });
  const settings = { maxLoadedCheckpoints: 2, executionProvider: 'cpu' as const, intraOpThreads: 1 };
  let used: GenerationThread;
  let jobs = 0;
  let initPng: Buffer;
  let maskPng: Buffer;

  beforeAll(async () => {
    used = new GenerationThread(settings, logger);
    const rgb = Buffer.alloc(W * H * 3);
    const pic = picture(W, H);
    for (let i = 0; i < W * H; i++) for (let c = 0; c < 3; c++) rgb[i * 3 + c] = Math.round((pic[c * W * H + i]! + 1) * 127.5);
    initPng = await sharp(rgb, { raw: { width: W, height: H, channels: 3 } })
      .png()
      .toBuffer();
    const mask = rectMask(W, H);
    maskPng = await sharp(Buffer.from(mask.map((v) => v * 255)), { raw: { width: W, height: H, channels: 1 } })
      .png()
      .toBuffer();
  });
  afterAll(() => used?.close());

  const message = (dir: string, over: Partial<GenerateMessage> = {}): GenerateMessage => ({
    type: 'generate',
    jobId: `job-${++jobs}`,
    checkpointDir: dir,
    prompt: 'a lighthouse at dusk',
    negativePrompt: '',
    steps: 4,
    guidanceScale: 7.5,
    samples: 1,
    width: W,
    height: H,
    seed: 21,
    scheduler: 'EULER_A',
    embeddings: [],
    safetyChecker: false,
    ...over,
  });

  it('gives the same image2image and inpainting bytes on a thread that ran other jobs (every flavour)', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'parity-threads-'));
    // One fresh thread (each checkpoint loaded by its first probe, all kept loaded): a thread start
    // costs seconds here, one per flavour would be most of this file's time.
    const fresh = new GenerationThread({ ...settings, maxLoadedCheckpoints: 5 }, logger);
    try {
      const dirs: [string, string][] = ['sd-script', 'sd-optimum', 'inpaint', 'sd-fp16'].map((f) => [f, path.join(MODELS, f)]);
      dirs.push(['sd-fp16-script', assembleFp16Script(root)]);
      const inpaintDir = dirs[2]![1];

      const probes = (dir: string) => [
        // image2image; on the inpainting checkpoint, inpainting at full strength instead.
        dir === inpaintDir
          ? message(dir, { initImage: initPng, maskImage: maskPng, strength: 1, seed: 31 })
          : message(dir, { initImage: initPng, strength: 0.6, seed: 31 }),
        message(dir, { initImage: initPng, maskImage: maskPng, strength: 0.9, seed: 32 }),
      ];
      const first = new Map<string, Buffer>();
      for (const [name, dir] of dirs) {
        for (const job of probes(dir)) first.set(`${name} ${job.seed}`, (await fresh.generate(job, () => {}))[0]!.data);
      }
      // The used thread keeps two checkpoints loaded, so each is evicted and loaded again; before
      // each flavour's probes it runs other jobs: other seeds, modes, sizes and checkpoints.
      // Jobs on the inpainting checkpoint are inpainting (at 64x64: the mask's size).
      const job = (at: string, over: Partial<GenerateMessage>) =>
        message(at, at === inpaintDir ? { initImage: initPng, maskImage: maskPng, seed: over.seed } : over);
      for (const [k, [name, dir]] of dirs.entries()) {
        await used.generate(job(dir, { seed: 90, width: 48, height: 32, prompt: 'a tall tower' }), () => {});
        await used.generate(job(dirs[(k + 1) % dirs.length]![1], { seed: 91, initImage: initPng, strength: 0.5 }), () => {});
        for (const probe of probes(dir)) {
          const [again] = await used.generate(probe, () => {});
          const label = `${name} ${probe.maskImage ? 'inpainting' : 'image2image'}`;
          expect(again!.data.equals(first.get(`${name} ${probe.seed}`)!), label).toBe(true);
        }
      }
    } finally {
      await fresh.close();
      rmSync(root, { recursive: true, force: true });
    }
  }, 240_000);
});
