/**
 * transformers' CLIPImageProcessor as openai/clip-vit-large-patch14's preprocessor config sets it
 * (the safety checker's feature_extractor): resize so the shortest edge is 224 with PIL's bicubic
 * (get_resize_output_image_size, default_to_square=False), centre crop 224x224 (top/left =
 * (size - 224) // 2), rescale by 1/255 and normalise with CLIP's mean/std in float32, CHW.
 */
import { resizeBicubicRgb } from './resample.js';

export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;
export const CLIP_SIZE = 224;

/** (width, height) after resizing so the shortest edge is `size` (Python's int() of the long edge). */
export function shortestEdgeSize(width: number, height: number, size = CLIP_SIZE): [number, number] {
  const [short, long] = width <= height ? [width, height] : [height, width];
  const newLong = Math.trunc((size * long) / short);
  return width <= height ? [size, newLong] : [newLong, size];
}

/** The resized and centre-cropped `size`x`size` RGB bytes (HWC), before rescaling. */
export function clipResizeAndCrop(rgb: Uint8Array, width: number, height: number, size = CLIP_SIZE): Uint8Array {
  const [w, h] = shortestEdgeSize(width, height, size);
  const resized = resizeBicubicRgb(rgb, width, height, w, h);
  const top = Math.floor((h - size) / 2);
  const left = Math.floor((w - size) / 2);
  const out = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    const from = ((y + top) * w + left) * 3;
    out.set(resized.subarray(from, from + size * 3), y * size * 3);
  }
  return out;
}

/**
 * Writes the processor's pixel_values for one image (CHW float32, 3 x size x size) at `offset`:
 * float32(v * (1/255)), then (x - mean) / std in float32, as transformers' rescale and normalize.
 */
export function clipNormalizeInto(pixels: Uint8Array, out: Float32Array, offset = 0, size = CLIP_SIZE): void {
  const plane = size * size;
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const mean = f(CLIP_MEAN[c]!);
    const std = f(CLIP_STD[c]!);
    for (let i = 0; i < plane; i++) {
      const x = f(pixels[i * 3 + c]! * (1 / 255));
      out[offset + c * plane + i] = f(f(x - mean) / std);
    }
  }
}

/**
 * diffusers' numpy_to_pil on the decoder's [-1, 1] output (CHW plane of one sample): float32
 * (x / 2 + 0.5) clamped to [0, 1], times 255, rounded half to even (numpy's round), as uint8 HWC.
 */
export function toUint8Rgb(images: Float32Array, sample: number, width: number, height: number): Uint8Array {
  const plane = width * height;
  const f = Math.fround;
  const rgb = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    const base = (sample * 3 + c) * plane;
    for (let i = 0; i < plane; i++) {
      let v = f(f(images[base + i]! / 2) + 0.5);
      v = v < 0 ? 0 : v > 1 ? 1 : v;
      const s = f(v * 255);
      const r = Math.round(s);
      rgb[i * 3 + c] = r - s === 0.5 && r % 2 === 1 ? r - 1 : r;
    }
  }
  return rgb;
}
