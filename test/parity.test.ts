/**
 * Parity with diffusers itself: test/fixtures/parity/cases.json holds what diffusers 0.30.3's own
 * StableDiffusionPipeline, StableDiffusionImg2ImgPipeline and StableDiffusionInpaintPipeline
 * computed (torch CPU generators) on the torch modules the fixture models were exported from
 * (scripts/reference/parity/, README beside the fixtures). This engine runs the ONNX exports of
 * the same modules and must give the same noise, latents and 8-bit images.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../src/diffusion/checkpoint.js';
import { imageToTensor, maskToTensor, tensorToPng } from '../src/diffusion/image-codec.js';
import { createNoise } from '../src/diffusion/noise/index.js';
import { generate, type GenerateRequest } from '../src/diffusion/pipeline.js';
import type { SchedulerName } from '../src/diffusion/schedulers/index.js';

const DIR = path.join(import.meta.dirname, 'fixtures/parity');

interface Case {
  name: string;
  mode: 'text2image' | 'image2image' | 'inpainting';
  model: string;
  scheduler: SchedulerName;
  steps: number;
  guidance: number;
  seed: number;
  samples: number;
  width: number;
  height: number;
  strength?: number;
  image?: string;
  mask?: string;
  draws: number[][];
  timesteps: number[];
  latentShape: number[];
  tensors: string;
  images: string[];
}
interface Index {
  diffusers: string;
  prompt: string;
  negativePrompt: string;
  promptIds: number[];
  negativeIds: number[];
  cases: Case[];
}

const index = JSON.parse(readFileSync(path.join(DIR, 'cases.json'), 'utf8')) as Index;
const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** max |a - b| / max |b|: the worst element against the tensor's scale. */
function relative(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return worst / scale;
}

/** The fixture's tensors in order: the first generator draw, the initial latents, the latents after each step. */
function referenceTensors(c: Case): { firstDraw: Float32Array; initial: Float32Array; steps: Float32Array[] } {
  const raw = readFileSync(path.join(DIR, 'cases', c.tensors));
  const all = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const drawSize = size(c.draws[0]!);
  const latentSize = size(c.latentShape);
  expect(all.length).toBe(drawSize + latentSize * (1 + c.timesteps.length));
  const steps = c.timesteps.map((_, i) => all.subarray(drawSize + latentSize * (1 + i), drawSize + latentSize * (2 + i)));
  return { firstDraw: all.subarray(0, drawSize), initial: all.subarray(drawSize, drawSize + latentSize), steps };
}

async function rgb(png: Buffer): Promise<Buffer> {
  return sharp(png).removeAlpha().raw().toBuffer();
}

const checkpoints = new Map<string, Promise<Checkpoint>>();
const load = (model: string) => {
  let ckpt = checkpoints.get(model);
  if (!ckpt) checkpoints.set(model, (ckpt = Checkpoint.load(path.join(DIR, 'models', model))));
  return ckpt;
};

describe(`parity with diffusers ${index.diffusers} (tiny SD-shaped models, torch CPU generators)`, () => {
  afterAll(async () => {
    for (const ckpt of checkpoints.values()) await (await ckpt).release();
  });

  it('the fixtures cover every scheduler with and without guidance, all three modes, samples 1 and 3, non-square sizes', () => {
    const t2i = index.cases.filter((c) => c.mode === 'text2image');
    for (const cfg of [true, false]) {
      expect(new Set(t2i.filter((c) => c.guidance > 1 === cfg).map((c) => c.scheduler)).size).toBe(9);
    }
    for (const mode of ['text2image', 'image2image', 'inpainting'] as const) {
      const of = index.cases.filter((c) => c.mode === mode);
      expect(of.some((c) => c.samples === 3)).toBe(true);
      expect(of.some((c) => c.width !== c.height)).toBe(true);
    }
    expect(index.cases.some((c) => c.mode === 'inpainting' && c.model === 'inpaint')).toBe(true);
    expect(index.cases.some((c) => c.mode === 'inpainting' && c.model !== 'inpaint')).toBe(true);
  });

  it('the exports differ as real ones do: timestep float or int64, input_ids int32 or int64, both VAE encoder outputs', async () => {
    const script = await load('sd-script');
    const optimum = await load('sd-optimum');
    expect([script.timestep.type, script.inputIdsType]).toEqual(['float32', 'int32']);
    expect([optimum.timestep.type, optimum.inputIdsType]).toEqual(['int64', 'int64']);
    expect([script.vaeEncoderKind?.type, optimum.vaeEncoderKind?.type]).toEqual(['noise-input', 'parameters']);
    expect((await load('inpaint')).inpainting).toBe(true);
  });

  it("the engine's tokenizer gives the ids the reference encoded", async () => {
    const ckpt = await load('sd-script');
    expect(Array.from(ckpt.tokenizer.encodeForModel(index.prompt))).toEqual(index.promptIds);
    expect(Array.from(ckpt.tokenizer.encodeForModel(index.negativePrompt))).toEqual(index.negativeIds);
  });

  it('the comparison tells a different seed or scheduler apart (negative control)', async () => {
    const c = index.cases.find((x) => x.name === 't2i-euler_a-cfg')!;
    const ref = referenceTensors(c);
    const run = async (over: Partial<GenerateRequest>) => {
      let last: Float32Array | null = null;
      await generate(await load(c.model), {
        prompt: index.prompt,
        negativePrompt: index.negativePrompt,
        steps: c.steps,
        guidanceScale: c.guidance,
        samples: 1,
        width: c.width,
        height: c.height,
        seed: c.seed,
        scheduler: c.scheduler,
        embeddings: [],
        inspect: (i, latents) => void (i !== null && (last = new Float32Array(latents))),
        ...over,
      });
      return relative(last!, ref.steps.at(-1)!);
    };
    expect(await run({})).toBeLessThanOrEqual(1e-3);
    expect(await run({ seed: c.seed + 1 })).toBeGreaterThan(0.1);
    expect(await run({ scheduler: 'EULER' })).toBeGreaterThan(0.01);
    expect(await run({ noise: 'numpy' })).toBeGreaterThan(0.1);
  });

  describe.each(index.cases)('$name', (c) => {
    it('noise, latents after every step and the 8-bit images match diffusers', async () => {
      const ref = referenceTensors(c);
      // The first tensor diffusers draws (the noise, or the init image's posterior sample) is torch.randn's.
      const draw = createNoise('torch', c.seed).randn(ref.firstDraw.length);
      expect(relative(draw, ref.firstDraw)).toBeLessThanOrEqual(1e-6);

      const req: GenerateRequest = {
        prompt: index.prompt,
        negativePrompt: index.negativePrompt,
        steps: c.steps,
        guidanceScale: c.guidance,
        samples: c.samples,
        width: c.width,
        height: c.height,
        seed: c.seed,
        noise: 'torch',
        scheduler: c.scheduler,
        embeddings: [],
        keepUnmasked: false,
      };
      if (c.image) {
        req.initImage = await imageToTensor(readFileSync(path.join(DIR, 'inputs', c.image)), c.width, c.height);
        req.strength = c.strength;
      }
      if (c.mask) req.mask = await maskToTensor(readFileSync(path.join(DIR, 'inputs', c.mask)), c.width, c.height);
      const seen: Float32Array[] = [];
      let initial: Float32Array | null = null;
      req.inspect = (i, latents) => {
        if (i === null) initial = new Float32Array(latents);
        else seen.push(new Float32Array(latents));
      };
      const images = await generate(await load(c.model), req);

      // Text2image latents are the noise itself (times init_noise_sigma); the others pass the VAE encoder.
      expect(relative(initial!, ref.initial)).toBeLessThanOrEqual(c.mode === 'text2image' ? 1e-6 : 1e-4);
      expect(seen.length).toBe(ref.steps.length);
      const final = relative(seen.at(-1)!, ref.steps.at(-1)!);
      // PARITY_REPORT=1 prints the measured errors (the closing note and README quote them).
      if (process.env.PARITY_REPORT) {
        console.log(c.name, 'draw', relative(draw, ref.firstDraw), 'initial', relative(initial!, ref.initial).toExponential(1));
        console.log(c.name, 'steps', seen.map((s, i) => relative(s, ref.steps[i]!).toExponential(1)).join(' '));
      }
      expect(final, `final latents, relative error`).toBeLessThanOrEqual(1e-3);

      for (let k = 0; k < c.samples; k++) {
        const mine = await rgb(await tensorToPng(images, k, c.width, c.height));
        const theirs = await rgb(readFileSync(path.join(DIR, 'cases', c.images[k]!)));
        expect(mine.length).toBe(theirs.length);
        let off = 0;
        let worst = 0;
        for (let p = 0; p < mine.length; p += 3) {
          const d = Math.max(
            Math.abs(mine[p]! - theirs[p]!),
            Math.abs(mine[p + 1]! - theirs[p + 1]!),
            Math.abs(mine[p + 2]! - theirs[p + 2]!),
          );
          worst = Math.max(worst, d);
          if (d > 1) off++;
        }
        if (process.env.PARITY_REPORT) console.log(c.name, `sample ${k}: worst ${worst} levels, ${off} pixels more than 1 off`);
        expect(off / (mine.length / 3), `sample ${k}: share of pixels more than 1 level off (worst ${worst})`).toBeLessThanOrEqual(0.001);
      }
    });
  });
});
