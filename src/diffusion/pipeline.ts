import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { timestepTensor, type Checkpoint, type EmbeddingRows } from './checkpoint.js';
import { downsampleMask } from './image-codec.js';
import { createNoise, type NoiseSourceName } from './noise/index.js';
import { InvalidRequestError } from './request-error.js';
import { previewPixels, type PreviewPixels } from './preview.js';
import { createScheduler, type SchedulerName } from './schedulers/index.js';

/**
 * The SD 1.5 denoising pipeline around ONNX Runtime sessions: text encoding (with textual
 * inversion), classifier-free guidance, the scheduler loop, VAE decoding. Modes differ only in
 * where the loop starts and what is mixed in at each step.
 */

/** SD 1.5's VAE latent scale. */
export const LATENT_SCALE = 0.18215;
const LATENT_CHANNELS = 4;

export interface GenerateRequest {
  prompt: string;
  negativePrompt: string;
  steps: number;
  guidanceScale: number;
  samples: number;
  width: number;
  height: number;
  seed: number;
  /** Whose generator the seed drives: torch's CPU generator (default) or numpy's RandomState. */
  noise?: NoiseSourceName;
  scheduler: SchedulerName;
  /** Embeddings the request names: only their trigger words expand. */
  embeddings: readonly EmbeddingRows[];
  /** image2image / inpainting: [1, 3, height, width] in [-1, 1], already at the request's size. */
  initImage?: Float32Array;
  /** inpainting: [height, width] in [0, 1], 1 = repaint. */
  mask?: Float32Array;
  /** 0..1; how far the init image is noised (image2image, inpainting). */
  strength?: number;
  onStep?: (step: number, total: number) => void;
  /** Live previews, asked for after each step; nothing is computed while due() is false. */
  preview?: { due(): boolean; show(pixels: PreviewPixels, step: number): void };
  signal?: AbortSignal;
  /** Filled in when given: time in the denoising loop, and the part of it inside unet.run (ms). */
  timings?: { loopMs: number; unetMs: number; steps: number };
}

export class GenerationCanceled extends Error {
  constructor() {
    super('generation canceled');
    this.name = 'GenerationCanceled';
  }
}

/** Returns the samples as NCHW [samples, 3, H, W] in [-1, 1]. */
export async function generate(ckpt: Checkpoint, req: GenerateRequest): Promise<Float32Array> {
  const n = req.samples;
  const h = req.height / 8;
  const w = req.width / 8;
  const latentSize = LATENT_CHANNELS * h * w;
  const rng = createNoise(req.noise ?? 'torch', req.seed);
  const scheduler = createScheduler(req.scheduler, ckpt.schedulerConfig);

  const textStates = await encodePrompts(ckpt, req);

  // Where the loop starts: pure noise, or the init image's latents noised to the strength.
  let startIndex = 0;
  let initLatents: Float32Array | null = null;
  let noise: Float32Array;
  if (req.initImage) {
    if (!ckpt.vaeEncoder) {
      throw new InvalidRequestError(`the checkpoint "${path.basename(ckpt.dir)}" has no vae_encoder, so it cannot start from an image`);
    }
    initLatents = repeat(await encodeImage(ckpt, req.initImage, req.width, req.height), n);
    const strength = req.strength ?? 0.8;
    ({ startIndex } = scheduler.timestepsForStrength(req.steps, strength));
    noise = rng.randn(n * latentSize);
  } else {
    scheduler.setTimesteps(req.steps);
    noise = rng.randn(n * latentSize);
  }
  let latents: Float32Array;
  if (initLatents && startIndex < scheduler.timesteps.length) latents = scheduler.addNoise(initLatents, noise, startIndex);
  else if (initLatents) latents = initLatents;
  else latents = scale(noise, scheduler.initNoiseSigma);

  // Inpainting: the latent-size mask, and for 9-channel UNets the masked image's latents.
  let latentMask: Float32Array | null = null;
  let maskedImageLatents: Float32Array | null = null;
  if (req.mask) {
    latentMask = downsampleMask(req.mask, req.width, req.height, 8);
    if (ckpt.inpainting) {
      const masked = new Float32Array(req.initImage!);
      const plane = req.width * req.height;
      for (let c = 0; c < 3; c++) for (let i = 0; i < plane; i++) if (req.mask[i]! >= 0.5) masked[c * plane + i] = 0;
      maskedImageLatents = repeat(await encodeImage(ckpt, masked, req.width, req.height), n);
    }
  }

  const total = scheduler.timesteps.length - startIndex;
  const loopStart = performance.now();
  let unetMs = 0;
  for (let i = startIndex; i < scheduler.timesteps.length; i++) {
    if (req.signal?.aborted) throw new GenerationCanceled();
    const scaled = scheduler.scaleModelInput(latents, i);
    let unetInput = concatBatch(scaled, scaled);
    let channels = LATENT_CHANNELS;
    if (ckpt.inpainting && latentMask) {
      unetInput = inpaintingInput(unetInput, latentMask, concatBatch(maskedImageLatents!, maskedImageLatents!), 2 * n, h, w);
      channels = 9;
    }
    const feeds = {
      sample: new ort.Tensor('float32', unetInput, [2 * n, channels, h, w]),
      timestep: timestepTensor(ckpt.timestep, scheduler.timesteps[i]!, 2 * n),
      encoder_hidden_states: textStates,
    };
    const runStart = performance.now();
    const out = await ckpt.unet.run(feeds);
    unetMs += performance.now() - runStart;
    const pred = out.out_sample!.data as Float32Array;
    // Classifier-free guidance: the first half of the batch is unconditioned.
    const guided = new Float32Array(n * latentSize);
    const half = n * latentSize;
    for (let j = 0; j < half; j++) guided[j] = pred[j]! + req.guidanceScale * (pred[half + j]! - pred[j]!);
    latents = scheduler.step(guided, i, latents, rng);

    // Ordinary checkpoints inpaint by putting the known part back, noised to the next level.
    if (latentMask && !ckpt.inpainting && initLatents) {
      const known = i + 1 < scheduler.timesteps.length ? scheduler.addNoise(initLatents, noise, i + 1) : initLatents;
      blendLatents(latents, known, latentMask, n, h * w);
    }
    if (req.preview?.due()) {
      const sigma = scheduler.sigmas[i]!;
      req.preview.show(previewPixels(scaled, guided, sigma, scheduler.config.prediction_type, h, w), i - startIndex + 1);
    }
    req.onStep?.(i - startIndex + 1, total);
  }
  if (req.timings) Object.assign(req.timings, { loopMs: performance.now() - loopStart, unetMs, steps: total });
  if (req.signal?.aborted) throw new GenerationCanceled();

  const decoded = await ckpt.vaeDecoder.run({
    latent_sample: new ort.Tensor('float32', scale(latents, 1 / LATENT_SCALE), [n, LATENT_CHANNELS, h, w]),
  });
  const images = new Float32Array(decoded.sample!.data as Float32Array);
  // Unmasked pixels are the init image's own, exactly: the VAE round trip would blur them.
  if (req.mask && req.initImage) pasteUnmasked(images, req.initImage, req.mask, n, req.width * req.height);
  return images;
}

async function encodePrompts(ckpt: Checkpoint, req: GenerateRequest): Promise<ort.Tensor> {
  const { session, tokenizer } = await ckpt.textEncoder(req.embeddings);
  const activeTriggers = req.embeddings.map((e) => e.trigger);
  const uncond = tokenizer.encodeForModel(req.negativePrompt, { activeTriggers });
  const cond = tokenizer.encodeForModel(req.prompt, { activeTriggers });
  const length = cond.length;
  const ids = new Int32Array(2 * length);
  ids.set(uncond, 0);
  ids.set(cond, length);
  const input =
    ckpt.inputIdsType === 'int64'
      ? new ort.Tensor(
          'int64',
          BigInt64Array.from(ids, (v) => BigInt(v)),
          [2, length],
        )
      : new ort.Tensor('int32', ids, [2, length]);
  const out = await session.run({ input_ids: input });
  const states = out.last_hidden_state!.data as Float32Array;
  const per = length * ckpt.hiddenSize;
  // Batch layout: [uncond × samples, cond × samples].
  const batch = new Float32Array(2 * req.samples * per);
  for (let s = 0; s < req.samples; s++) {
    batch.set(states.subarray(0, per), s * per);
    batch.set(states.subarray(per, 2 * per), (req.samples + s) * per);
  }
  return new ort.Tensor('float32', batch, [2 * req.samples, length, ckpt.hiddenSize]);
}

async function encodeImage(ckpt: Checkpoint, image: Float32Array, width: number, height: number): Promise<Float32Array> {
  const out = await ckpt.vaeEncoder!.run({ sample: new ort.Tensor('float32', image, [1, 3, height, width]) });
  return scale(out.latent_sample!.data as Float32Array, LATENT_SCALE);
}

function scale(x: Float32Array, a: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i]! * a;
  return out;
}

function repeat(x: Float32Array, times: number): Float32Array {
  const out = new Float32Array(x.length * times);
  for (let i = 0; i < times; i++) out.set(x, i * x.length);
  return out;
}

function concatBatch(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** [batch, 4 + 1 + 4, h, w]: latents, mask, masked-image latents, per sample. */
function inpaintingInput(
  latents: Float32Array,
  mask: Float32Array,
  masked: Float32Array,
  batch: number,
  h: number,
  w: number,
): Float32Array {
  const plane = h * w;
  const out = new Float32Array(batch * 9 * plane);
  for (let b = 0; b < batch; b++) {
    out.set(latents.subarray(b * 4 * plane, (b + 1) * 4 * plane), b * 9 * plane);
    out.set(mask, b * 9 * plane + 4 * plane);
    out.set(masked.subarray(b * 4 * plane, (b + 1) * 4 * plane), b * 9 * plane + 5 * plane);
  }
  return out;
}

/** latents = known where mask is 0, generated where mask is 1. In place. */
function blendLatents(latents: Float32Array, known: Float32Array, mask: Float32Array, n: number, plane: number): void {
  for (let s = 0; s < n; s++) {
    for (let c = 0; c < LATENT_CHANNELS; c++) {
      const base = (s * LATENT_CHANNELS + c) * plane;
      for (let i = 0; i < plane; i++) if (mask[i]! < 0.5) latents[base + i] = known[base + i]!;
    }
  }
}

function pasteUnmasked(images: Float32Array, init: Float32Array, mask: Float32Array, n: number, plane: number): void {
  for (let s = 0; s < n; s++) {
    for (let c = 0; c < 3; c++) {
      const base = (s * 3 + c) * plane;
      for (let i = 0; i < plane; i++) if (mask[i]! < 0.5) images[base + i] = init[c * plane + i]!;
    }
  }
}
