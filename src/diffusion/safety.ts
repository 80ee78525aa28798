import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import type { Checkpoint } from './checkpoint.js';
import { classifyNsfw, isExplicit } from './nsfw-classifier.js';

/** CLIP's image normalisation (openai/clip-vit-large-patch14 preprocessor). */
const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];
const CLIP_SIZE = 224;

/**
 * One flag per sample: the checkpoint's own safety_checker when it has one, otherwise the
 * nsfwjs classifier that ships inside its npm package.
 */
export async function checkImages(
  ckpt: Checkpoint,
  images: Float32Array,
  samples: number,
  width: number,
  height: number,
): Promise<boolean[]> {
  if (!ckpt.safetyChecker) return classifyEach(images, samples, width, height);
  const plane = width * height;
  const clipInput = new Float32Array(samples * 3 * CLIP_SIZE * CLIP_SIZE);
  const nhwc = new Float32Array(samples * plane * 3);
  for (let s = 0; s < samples; s++) {
    const rgb = Buffer.alloc(plane * 3);
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) {
        const v = Math.min(1, Math.max(0, (images[(s * 3 + c) * plane + i]! + 1) / 2));
        nhwc[(s * plane + i) * 3 + c] = v;
        rgb[i * 3 + c] = Math.round(v * 255);
      }
    }
    const small = await sharp(rgb, { raw: { width, height, channels: 3 } })
      .resize(CLIP_SIZE, CLIP_SIZE, { fit: 'fill', kernel: 'cubic' })
      .raw()
      .toBuffer();
    const clipPlane = CLIP_SIZE * CLIP_SIZE;
    for (let i = 0; i < clipPlane; i++) {
      for (let c = 0; c < 3; c++) {
        clipInput[(s * 3 + c) * clipPlane + i] = (small[i * 3 + c]! / 255 - CLIP_MEAN[c]!) / CLIP_STD[c]!;
      }
    }
  }
  const out = await ckpt.safetyChecker.run({
    clip_input: new ort.Tensor('float32', clipInput, [samples, 3, CLIP_SIZE, CLIP_SIZE]),
    images: new ort.Tensor('float32', nhwc, [samples, height, width, 3]),
  });
  const flags = out.has_nsfw_concepts!.data as ArrayLike<number | boolean>;
  return Array.from({ length: samples }, (_, i) => Boolean(flags[i]));
}

async function classifyEach(images: Float32Array, samples: number, width: number, height: number): Promise<boolean[]> {
  const plane = width * height;
  const flags: boolean[] = [];
  for (let s = 0; s < samples; s++) {
    const rgb = new Uint8Array(plane * 3);
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) {
        rgb[i * 3 + c] = Math.round(Math.min(1, Math.max(0, (images[(s * 3 + c) * plane + i]! + 1) / 2)) * 255);
      }
    }
    flags.push(isExplicit(await classifyNsfw(rgb, width, height)));
  }
  return flags;
}
