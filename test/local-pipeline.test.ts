import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint, CheckpointError, type EmbeddingRows } from '../src/diffusion/checkpoint.js';
import { generate, GenerationCanceled, type GenerateRequest } from '../src/diffusion/pipeline.js';
import { createNoise } from '../src/diffusion/noise/index.js';
import { InvalidRequestError } from '../src/diffusion/request-error.js';
import { createScheduler, SCHEDULER_NAMES } from '../src/diffusion/schedulers/index.js';
import { TokenLimitError } from '../src/diffusion/tokenizer/clip-tokenizer.js';
import { generateTinyPipeline } from '../scripts/tiny-models/generate.js';

const W = 64;
const H = 48;

describe('SD pipeline on the tiny ONNX models', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'sd-pipeline-'));
  let ckpt: Checkpoint;
  let inpaint: Checkpoint;
  const base = (over: Partial<GenerateRequest> = {}): GenerateRequest => ({
    prompt: 'a red house',
    negativePrompt: '',
    steps: 4,
    guidanceScale: 7.5,
    samples: 1,
    width: W,
    height: H,
    seed: 42,
    scheduler: 'EULER_A',
    embeddings: [],
    ...over,
  });
  const diff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
  const stripes = () => {
    const img = new Float32Array(3 * W * H);
    for (let i = 0; i < img.length; i++) img[i] = ((i % W) / W) * 2 - 1;
    return img;
  };

  beforeAll(async () => {
    await generateTinyPipeline(path.join(root, 'tiny'));
    await generateTinyPipeline(path.join(root, 'tiny-inpainting'), { inpainting: true, timestepType: 'float32' });
    ckpt = await Checkpoint.load(path.join(root, 'tiny'));
    inpaint = await Checkpoint.load(path.join(root, 'tiny-inpainting'));
  });
  afterAll(async () => {
    await ckpt?.release();
    await inpaint?.release();
    rmSync(root, { recursive: true, force: true });
  });

  it('loads and describes the checkpoints', () => {
    expect(ckpt.inpainting).toBe(false);
    expect(inpaint.inpainting).toBe(true);
    expect(ckpt.timestep.type).toBe('int64');
    expect(inpaint.timestep.type).toBe('float32');
    expect(ckpt.hiddenSize).toBe(32);
  });

  it('makes the requested samples, in [-1, 1], identical for the same seed and different for another', async () => {
    const a = await generate(ckpt, base({ samples: 2 }));
    expect(a.length).toBe(2 * 3 * W * H);
    expect(a.every((v) => Number.isFinite(v) && v >= -1 && v <= 1)).toBe(true);
    const again = await generate(ckpt, base({ samples: 2 }));
    expect(diff(a, again)).toBe(0);
    const other = await generate(ckpt, base({ samples: 2, seed: 43 }));
    expect(diff(a, other)).toBeGreaterThan(1e-3);
    // The two samples of one request differ (different noise).
    expect(diff(a.subarray(0, 3 * W * H), a.subarray(3 * W * H))).toBeGreaterThan(1e-3);
  });

  it('runs every scheduler, and the prompt, the negative prompt and guidance change the result', async () => {
    const ref = await generate(ckpt, base());
    for (const scheduler of SCHEDULER_NAMES) {
      const out = await generate(ckpt, base({ scheduler }));
      expect(out.every(Number.isFinite), scheduler).toBe(true);
    }
    expect(diff(ref, await generate(ckpt, base({ prompt: 'a blue boat' })))).toBeGreaterThan(1e-4);
    expect(diff(ref, await generate(ckpt, base({ negativePrompt: 'blurry' })))).toBeGreaterThan(1e-4);
    expect(diff(ref, await generate(ckpt, base({ guidanceScale: 1 })))).toBeGreaterThan(1e-4);
  });

  it("expands an embedding's trigger word only when the request names the embedding, in prompt and negative prompt", async () => {
    const rng = createNoise('torch', 7);
    const style: EmbeddingRows = { trigger: 'tinystyle', vectors: rng.randn(3 * 32), count: 3 };
    const plain = await generate(ckpt, base({ prompt: 'a house in tinystyle' }));
    const named = await generate(ckpt, base({ prompt: 'a house in tinystyle', embeddings: [style] }));
    expect(diff(plain, named)).toBeGreaterThan(1e-4);
    // Registered now, but not named: the word is plain text again.
    expect(diff(plain, await generate(ckpt, base({ prompt: 'a house in tinystyle' })))).toBe(0);
    const negPlain = await generate(ckpt, base({ negativePrompt: 'tinystyle' }));
    const negNamed = await generate(ckpt, base({ negativePrompt: 'tinystyle', embeddings: [style] }));
    expect(diff(negPlain, negNamed)).toBeGreaterThan(1e-4);
  });

  it('matches a trigger word whatever its case, in the registration and in the prompt', async () => {
    const vectors = createNoise('torch', 8).randn(2 * 32);
    const mixed = await generate(
      ckpt,
      base({ prompt: 'a house in MixedStyle', embeddings: [{ trigger: 'MixedStyle', vectors, count: 2 }] }),
    );
    const lower = await generate(
      ckpt,
      base({ prompt: 'a house in mixedstyle', embeddings: [{ trigger: 'mixedstyle', vectors, count: 2 }] }),
    );
    expect(diff(lower, mixed)).toBe(0);
    expect(diff(lower, await generate(ckpt, base({ prompt: 'a house in mixedstyle' })))).toBeGreaterThan(1e-4);
  });

  it("keeps each request's triggers to itself: the same word with other vectors, and a failed request, change nothing later", async () => {
    // A fresh checkpoint, so the results do not depend on what earlier tests registered.
    const own = await Checkpoint.load(path.join(root, 'tiny'));
    try {
      const a: EmbeddingRows = { id: 'a', trigger: 'Shared', vectors: createNoise('torch', 1).randn(32), count: 1 };
      const b: EmbeddingRows = { id: 'b', trigger: 'shared', vectors: createNoise('torch', 2).randn(2 * 32), count: 2 };
      const request = (embeddings: EmbeddingRows[]) => base({ prompt: 'a house, shared', embeddings });
      const withA = await generate(own, request([a]));
      const withB = await generate(own, request([b]));
      expect(diff(withA, withB)).toBeGreaterThan(1e-4);
      const plain = await generate(own, request([]));

      // Vectors of the wrong width fail this request, with the reason, and nothing else.
      const wide: EmbeddingRows = { id: 'wide-one', trigger: 'WideOne', vectors: createNoise('torch', 3).randn(48), count: 1 };
      await expect(generate(own, request([a, wide]))).rejects.toThrow(
        new InvalidRequestError(
          'the embedding "wide-one" (trigger word "WideOne") has vectors of width 48; the checkpoint "tiny" needs 32',
        ),
      );
      expect(diff(await generate(own, request([a])), withA)).toBe(0);
      expect(diff(await generate(own, request([b])), withB)).toBe(0);
      expect(diff(await generate(own, request([])), plain)).toBe(0);
      // The same as on a checkpoint that never saw the others.
      const fresh = await Checkpoint.load(path.join(root, 'tiny'));
      try {
        expect(diff(await generate(fresh, request([b])), withB)).toBe(0);
      } finally {
        await fresh.release();
      }
    } finally {
      await own.release();
    }
  });

  it('refuses a prompt over 75 tokens with the count', async () => {
    await expect(generate(ckpt, base({ prompt: Array.from({ length: 80 }, () => 'a').join(' ') }))).rejects.toThrow(TokenLimitError);
  });

  it('image2image: strength 0 keeps the init image (through the VAE), higher strength moves further from it', async () => {
    const init = stripes();
    const keep = await generate(ckpt, base({ initImage: init, strength: 0 }));
    const low = await generate(ckpt, base({ initImage: init, strength: 0.3, steps: 10 }));
    const high = await generate(ckpt, base({ initImage: init, strength: 1, steps: 10 }));
    expect(diff(keep, low)).toBeLessThan(diff(keep, high));
  });

  it('inpainting keeps unmasked pixels (exactly with maskBlur 0; beyond 3 sigma of the edge by default), and keepUnmasked false is the raw output, with both UNet kinds', async () => {
    const init = stripes();
    const mask = new Float32Array(W * H);
    for (let y = 0; y < H; y++) for (let x = W / 2; x < W; x++) mask[y * W + x] = 1;
    const keptUpTo = (out: Float32Array, xEnd: number) => {
      let bad = 0;
      for (let s = 0; s < 2; s++)
        for (let ch = 0; ch < 3; ch++)
          for (let y = 0; y < H; y++)
            for (let x = 0; x < xEnd; x++) {
              const i = ch * W * H + y * W + x;
              if (out[s * 3 * W * H + i] !== init[i]) bad++;
            }
      return bad;
    };
    for (const c of [ckpt, inpaint]) {
      const hard = await generate(c, base({ initImage: init, mask, strength: 1, samples: 2, maskBlur: 0 }));
      expect(keptUpTo(hard, W / 2)).toBe(0);
      const soft = await generate(c, base({ initImage: init, mask, strength: 1, samples: 2 }));
      // maskBlur 4: the weight is exactly 0 beyond ceil(3 * 4) = 12 pixels from the mask.
      expect(keptUpTo(soft, W / 2 - 12)).toBe(0);
      expect(diff(soft, hard)).toBeGreaterThan(0);
      const raw = await generate(c, base({ initImage: init, mask, strength: 1, samples: 2, keepUnmasked: false }));
      expect(keptUpTo(raw, W / 2)).toBeGreaterThan(0);
      // The masked half was repainted.
      expect(diff(hard.subarray(0, 3 * W * H), init)).toBeGreaterThan(1e-3);
    }
  });

  it('runs without guidance (scale <= 1: only the conditional batch; the negative prompt has no effect)', async () => {
    const a = await generate(ckpt, base({ guidanceScale: 1 }));
    const b = await generate(ckpt, base({ guidanceScale: 1, negativePrompt: 'blurry' }));
    expect(diff(a, b)).toBe(0);
  });

  it('stops between steps when canceled, and reports progress per step', async () => {
    const controller = new AbortController();
    const steps: number[] = [];
    await expect(
      generate(ckpt, base({ steps: 10, signal: controller.signal, onStep: (s) => (steps.push(s), s === 3 && controller.abort()) })),
    ).rejects.toThrow(GenerationCanceled);
    expect(steps).toEqual([1, 2, 3]);
  });

  it.each(['HEUN', 'PNDM'] as const)(
    'reports %s progress as 1..total once each, total the last step number (extra evaluations not counted), for text2image and image2image',
    async (scheduler) => {
      const steps = 6;
      for (const strength of [undefined, 0.5]) {
        const reported: [number, number][] = [];
        await generate(
          ckpt,
          base({
            scheduler,
            steps,
            ...(strength === undefined ? {} : { initImage: stripes(), strength }),
            onStep: (s, t) => reported.push([s, t]),
          }),
        );
        // The scheduler's own count of the run: diffusers' progress bar (n, or n - t_start for image2image).
        const s = createScheduler(scheduler);
        const startIndex = strength === undefined ? (s.setTimesteps(steps), 0) : s.timestepsForStrength(steps, strength).startIndex;
        const total = s.stepNumber(s.timesteps.length - 1, startIndex);
        expect(total).toBe(strength === undefined ? steps : steps - Math.trunc(steps * (1 - strength)));
        // More evaluations than steps: HEUN 2n - 1, PNDM n + 1 (its warm-up).
        expect(s.timesteps.length - startIndex).toBeGreaterThan(total);
        const label = `${scheduler}, strength ${strength ?? 'none'}`;
        expect(reported, label).toEqual(Array.from({ length: total }, (_, i) => [i + 1, total]));
      }
    },
  );

  it('runs with ORT_EXECUTION_PROVIDER=auto (CUDA, else the CPU) wherever it is', async () => {
    const auto = await Checkpoint.load(path.join(root, 'tiny'), { executionProviders: ['cuda', 'cpu'] });
    try {
      const out = await generate(auto, base());
      expect(out.every(Number.isFinite)).toBe(true);
    } finally {
      await auto.release();
    }
  });

  it('refuses a component with the wrong inputs, naming the file and the input', async () => {
    const broken = path.join(root, 'broken');
    await generateTinyPipeline(broken);
    // A VAE encoder where the decoder should be: its input is "sample", not "latent_sample".
    copyFileSync(path.join(broken, 'vae_encoder/model.onnx'), path.join(broken, 'vae_decoder/model.onnx'));
    await expect(Checkpoint.load(broken)).rejects.toThrow(/vae_decoder\/model\.onnx: has no input "latent_sample" \(its inputs: sample\)/);
  });

  it('refuses a directory that is not a checkpoint, naming the file', async () => {
    await expect(Checkpoint.load(root)).rejects.toThrow(CheckpointError);
    await expect(Checkpoint.load(root)).rejects.toThrow(/text_encoder\/model\.onnx: is missing/);
  });
});
