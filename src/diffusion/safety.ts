import * as ort from 'onnxruntime-node';
import type { Checkpoint } from './checkpoint.js';
import { CLIP_SIZE, clipNormalizeInto, clipResizeAndCrop, toUint8Rgb } from './image/clip-preprocess.js';
import { classifyNsfw, isExplicit } from './nsfw-classifier.js';

/**
 * One flag per sample: the checkpoint's own safety_checker when it has one, otherwise the
 * nsfwjs classifier that ships inside its npm package. The checker's clip_input is
 * CLIPImageProcessor's (image/clip-preprocess.ts: shortest edge 224 with PIL bicubic, centre crop).
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
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) {
        nhwc[(s * plane + i) * 3 + c] = Math.min(1, Math.max(0, (images[(s * 3 + c) * plane + i]! + 1) / 2));
      }
    }
    // diffusers: feature_extractor(numpy_to_pil(image)), CLIPImageProcessor on uint8 PIL images.
    const rgb = toUint8Rgb(images, s, width, height);
    clipNormalizeInto(clipResizeAndCrop(rgb, width, height), clipInput, s * 3 * CLIP_SIZE * CLIP_SIZE);
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
