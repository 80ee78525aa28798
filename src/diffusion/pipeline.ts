import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { timestepTensor, type Checkpoint, type EmbeddingRows } from './checkpoint.js';
import { downsampleMask } from './image-codec.js';
import { createNoise, type NoiseSourceName } from './noise/index.js';
import { InvalidRequestError } from './request-error.js';
import { previewPixels, type PreviewPixels } from './preview.js';
import { createScheduler, type NoiseSource, type SchedulerName } from './schedulers/index.js';

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
  /** inpainting: blend the result over the init image outside the mask (default true); false = diffusers' output. */
  keepUnmasked?: boolean;
  /** inpainting with keepUnmasked: the blend edge's Gaussian sigma in pixels (default 4; 0 = hard edge). See gaussianBlur. */
  maskBlur?: number;
  /**
   * After each user-facing step: step = 1, 2, ..., total, each once (total = the scheduler's
   * stepNumber of the last evaluation, so HEUN's and PNDM's extra evaluations are not counted).
   */
  onStep?: (step: number, total: number) => void;
  /** Live previews, asked for after each step; nothing is computed while due() is false. */
  preview?: { due(): boolean; show(pixels: PreviewPixels, step: number): void };
  signal?: AbortSignal;
  /** Parity tests and debugging: the initial latents (stepIndex null), then the latents after each loop iteration. */
  inspect?: (stepIndex: number | null, latents: Float32Array) => void;
  /** Filled in when given: time in the denoising loop, and the part of it inside unet.run (ms). */
  timings?: { loopMs: number; unetMs: number; steps: number };
}

export class GenerationCanceled extends Error {
  constructor() {
    super('generation canceled');
    this.name = 'GenerationCanceled';
  }
}

/**
 * Returns the samples as NCHW [samples, 3, H, W] in [-1, 1]. Every tensor diffusers v0.30.3 draws
 * from its generator is drawn here from the job's noise source, in the same order and shape:
 *   text2image: latents (n, 4, h/8, w/8), times init_noise_sigma;
 *   image2image: the init image's posterior sample (batch 1), then the noise (n, ...);
 *   inpainting: the init image's posterior (4-channel UNet, or strength < 1), the noise, then the
 *   masked image's posterior (drawn for both UNet kinds, as prepare_mask_latents does);
 *   then each step's ancestral noise inside scheduler.step.
 */
export async function generate(ckpt: Checkpoint, req: GenerateRequest): Promise<Float32Array> {
  if (ckpt.inpainting && !(req.initImage && req.mask)) {
    // A 9-channel UNet reads the mask and the masked image's latents at every step (the engine
    // refuses such requests before they get here; this keeps ONNX Runtime's shape error out).
    throw new InvalidRequestError(
      `the checkpoint "${path.basename(ckpt.dir)}" is an inpainting checkpoint: it needs an init image and a mask`,
    );
  }
  const n = req.samples;
  const h = req.height / 8;
  const w = req.width / 8;
  const latentSize = LATENT_CHANNELS * h * w;
  const rng = createNoise(req.noise ?? 'torch', req.seed);
  const scheduler = createScheduler(req.scheduler, ckpt.schedulerConfig);
  // diffusers' do_classifier_free_guidance: guidance_scale > 1; otherwise only the conditional batch runs.
  const cfg = req.guidanceScale > 1;
  const batch = cfg ? 2 * n : n;

  const textStates = await encodePrompts(ckpt, req, cfg);

  let startIndex = 0;
  if (req.initImage) {
    if (!ckpt.vaeEncoder) {
      throw new InvalidRequestError(`the checkpoint "${path.basename(ckpt.dir)}" has no vae_encoder, so it cannot start from an image`);
    }
    ({ startIndex } = scheduler.timestepsForStrength(req.steps, req.strength ?? 0.8));
  } else {
    scheduler.setTimesteps(req.steps);
  }
  const strengthMax = (req.strength ?? 0.8) === 1;

  let latents: Float32Array;
  let imageLatents: Float32Array | null = null;
  let noise: Float32Array;
  const canNoise = startIndex < scheduler.timesteps.length;
  if (req.mask && req.initImage) {
    // StableDiffusionInpaintPipeline.prepare_latents (return_image_latents for 4-channel UNets).
    if (!ckpt.inpainting || !strengthMax) imageLatents = repeat(await encodeImage(ckpt, req.initImage, req.width, req.height, rng), n);
    noise = rng.randn(n * latentSize);
    if (strengthMax) latents = scale(noise, scheduler.initNoiseSigma);
    else latents = canNoise ? scheduler.addNoise(imageLatents!, noise, startIndex) : imageLatents!;
  } else if (req.initImage) {
    // StableDiffusionImg2ImgPipeline.prepare_latents: the posterior of the batch-1 image, repeated, then the noise.
    imageLatents = repeat(await encodeImage(ckpt, req.initImage, req.width, req.height, rng), n);
    noise = rng.randn(n * latentSize);
    latents = canNoise ? scheduler.addNoise(imageLatents, noise, startIndex) : imageLatents;
  } else {
    noise = rng.randn(n * latentSize);
    latents = scale(noise, scheduler.initNoiseSigma);
  }

  // prepare_mask_latents: the binarised mask by nearest interpolation, the masked image's latents.
  let latentMask: Float32Array | null = null;
  let maskedImageLatents: Float32Array | null = null;
  if (req.mask && req.initImage) {
    const binary = binarizeMask(req.mask);
    latentMask = downsampleMask(binary, req.width, req.height, 8);
    const masked = new Float32Array(req.initImage);
    const plane = req.width * req.height;
    for (let c = 0; c < 3; c++) for (let i = 0; i < plane; i++) if (binary[i]! >= 0.5) masked[c * plane + i] = 0;
    maskedImageLatents = repeat(await encodeImage(ckpt, masked, req.width, req.height, rng), n);
  }
  req.inspect?.(null, latents);
  // Progress in user-facing steps, as diffusers' progress bar counts them, from this run's start:
  // the last evaluation completes step `total`. HEUN's first-order evaluations and PNDM's warm-up
  // complete none, so only a step number not reported yet is reported: 1, 2, ..., total, once each.
  const last = scheduler.timesteps.length - 1;
  const total = startIndex <= last ? scheduler.stepNumber(last, startIndex) : 0;
  let reported = 0;

  const loopStart = performance.now();
  let unetMs = 0;
  for (let i = startIndex; i < scheduler.timesteps.length; i++) {
    if (req.signal?.aborted) throw new GenerationCanceled();
    const scaled = scheduler.scaleModelInput(latents, i);
    let unetInput = cfg ? concatBatch(scaled, scaled) : scaled;
    let channels = LATENT_CHANNELS;
    if (ckpt.inpainting && latentMask) {
      const maskedBatch = cfg ? concatBatch(maskedImageLatents!, maskedImageLatents!) : maskedImageLatents!;
      unetInput = inpaintingInput(unetInput, latentMask, maskedBatch, batch, h, w);
      channels = 9;
    }
    const feeds = {
      sample: new ort.Tensor('float32', unetInput, [batch, channels, h, w]),
      timestep: timestepTensor(ckpt.timestep, scheduler.timesteps[i]!, batch),
      encoder_hidden_states: textStates,
    };
    const runStart = performance.now();
    const out = await ckpt.unet.run(feeds);
    unetMs += performance.now() - runStart;
    const pred = out.out_sample!.data as Float32Array;
    let guided: Float32Array;
    if (cfg) {
      // The first half of the batch is unconditioned: uncond + g * (text - uncond), in float32.
      guided = new Float32Array(n * latentSize);
      const half = n * latentSize;
      for (let j = 0; j < half; j++) guided[j] = pred[j]! + Math.fround(req.guidanceScale * Math.fround(pred[half + j]! - pred[j]!));
    } else guided = new Float32Array(pred);
    latents = scheduler.step(guided, i, latents, rng);

    // Ordinary checkpoints inpaint by putting the known part back, noised to the next level.
    if (latentMask && !ckpt.inpainting && imageLatents) {
      const known = i + 1 < scheduler.timesteps.length ? scheduler.addNoise(imageLatents, noise, i + 1) : imageLatents;
      blendLatents(latents, known, latentMask, n, h * w);
    }
    req.inspect?.(i, latents);
    const step = scheduler.stepNumber(i, startIndex);
    if (step <= reported) continue;
    reported = step;
    if (req.preview?.due()) {
      const sigma = scheduler.sigmas[i]!;
      req.preview.show(previewPixels(scaled, guided, sigma, scheduler.config.prediction_type, h, w), step);
    }
    req.onStep?.(step, total);
  }
  if (req.timings) Object.assign(req.timings, { loopMs: performance.now() - loopStart, unetMs, steps: total });
  if (req.signal?.aborted) throw new GenerationCanceled();

  const decoded = await ckpt.vaeDecoder.run({
    latent_sample: new ort.Tensor('float32', divide(latents, LATENT_SCALE), [n, LATENT_CHANNELS, h, w]),
  });
  const images = new Float32Array(decoded.sample!.data as Float32Array);
  // keepUnmasked: the init image's own pixels outside the (blurred) mask; false: diffusers' output as is.
  if (req.mask && req.initImage && (req.keepUnmasked ?? true)) {
    const weight = gaussianBlur(binarizeMask(req.mask), req.width, req.height, req.maskBlur ?? 4);
    pasteUnmasked(images, req.initImage, weight, n, req.width * req.height);
  }
  return images;
}

/** VaeImageProcessor.binarize: 1 where the mask is >= 0.5, else 0. */
export function binarizeMask(mask: Float32Array): Float32Array {
  return mask.map((v) => (v >= 0.5 ? 1 : 0));
}

/**
 * The blend weight for keepUnmasked: the binarised mask blurred by a true Gaussian of standard
 * deviation `radius` pixels (the meaning of PIL's GaussianBlur(radius), which diffusers'
 * VaeImageProcessor.blur uses; PIL approximates it with three box passes, this does not), truncated
 * at 3 sigma, normalised, edges clamped, separable (rows then columns). 0 = the hard mask. Pixels
 * farther than ceil(3 * radius) from the mask get exactly 0.
 */
export function gaussianBlur(mask: Float32Array, width: number, height: number, radius: number): Float32Array {
  if (!(radius > 0)) return new Float32Array(mask);
  const r = Math.ceil(3 * radius);
  const kernel = Array.from({ length: 2 * r + 1 }, (_, k) => Math.exp(-((k - r) ** 2) / (2 * radius * radius)));
  const sum = kernel.reduce((a, b) => a + b, 0);
  for (let k = 0; k < kernel.length; k++) kernel[k]! /= sum;
  const pass = (src: Float32Array, len: number, lines: number, at: (line: number, i: number) => number): Float32Array => {
    const out = new Float32Array(src.length);
    for (let line = 0; line < lines; line++) {
      for (let i = 0; i < len; i++) {
        let acc = 0;
        let any = false;
        for (let k = -r; k <= r; k++) {
          const v = src[at(line, Math.min(len - 1, Math.max(0, i + k)))]!;
          if (v !== 0) any = true;
          acc += kernel[k + r]! * v;
        }
        out[at(line, i)] = any ? Math.min(1, acc) : 0;
      }
    }
    return out;
  };
  const rows = pass(mask, width, height, (y, x) => y * width + x);
  return pass(rows, height, width, (x, y) => y * width + x);
}

/**
 * encode_prompt: the prompt and (with guidance) the negative prompt, each encoded alone (batch 1),
 * laid out [uncond x samples, cond x samples] (cond x samples only without guidance).
 */
async function encodePrompts(ckpt: Checkpoint, req: GenerateRequest, cfg: boolean): Promise<ort.Tensor> {
  const { session, tokenizer } = await ckpt.textEncoder(req.embeddings);
  const activeTriggers = req.embeddings.map((e) => e.trigger);
  const encode = async (text: string): Promise<Float32Array> => {
    const ids = Int32Array.from(tokenizer.encodeForModel(text, { activeTriggers }));
    const input =
      ckpt.inputIdsType === 'int64'
        ? new ort.Tensor(
            'int64',
            BigInt64Array.from(ids, (v) => BigInt(v)),
            [1, ids.length],
          )
        : new ort.Tensor('int32', ids, [1, ids.length]);
    const out = await session.run({ input_ids: input });
    return new Float32Array(out.last_hidden_state!.data as Float32Array);
  };
  const cond = await encode(req.prompt);
  const uncond = cfg ? await encode(req.negativePrompt) : null;
  const per = cond.length;
  const parts = uncond ? [uncond, cond] : [cond];
  const batch = new Float32Array(parts.length * req.samples * per);
  parts.forEach((states, p) => {
    for (let s = 0; s < req.samples; s++) batch.set(states, (p * req.samples + s) * per);
  });
  return new ort.Tensor('float32', batch, [parts.length * req.samples, per / ckpt.hiddenSize, ckpt.hiddenSize]);
}

/**
 * vae.encode + retrieve_latents (sample mode) + scaling: the posterior sample
 * mean + exp(0.5 * clamp(logvar, -30, 20)) * randn(mean.shape), randn drawn from the job's source
 * here, where DiagonalGaussianDistribution.sample draws it (see Checkpoint.encodeImage).
 */
async function encodeImage(ckpt: Checkpoint, image: Float32Array, width: number, height: number, rng: NoiseSource): Promise<Float32Array> {
  return scale(await ckpt.encodeImage(image, width, height, rng), LATENT_SCALE);
}

function divide(x: Float32Array, a: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i]! / a;
  return out;
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

/** images = init where weight is 0, the generated pixel where it is 1, mixed between. In place. */
function pasteUnmasked(images: Float32Array, init: Float32Array, weight: Float32Array, n: number, plane: number): void {
  for (let s = 0; s < n; s++) {
    for (let c = 0; c < 3; c++) {
      const base = (s * 3 + c) * plane;
      for (let i = 0; i < plane; i++) {
        const m = weight[i]!;
        const o = init[c * plane + i]!;
        if (m === 0) images[base + i] = o;
        else if (m < 1) images[base + i] = o + m * (images[base + i]! - o);
      }
    }
  }
}
