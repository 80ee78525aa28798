import sharp from 'sharp';
import { resize } from './image/resample.js';
import type { PreviewPixels } from './preview.js';

/**
 * Between images (bytes) and the tensors the pipeline works on. SD's convention: RGB in NCHW,
 * values in [-1, 1]; masks in [0, 1] where 1 (white) means "repaint".
 */

/** Most pixels an input image may have before resizing (guards against decompression bombs). */
export const MAX_INPUT_PIXELS = 40_000_000;

/** Decodes any image sharp reads, resizes it to width × height (cover, centred) → [1, 3, H, W] in [-1, 1]. */
export async function imageToTensor(data: Buffer, width: number, height: number): Promise<Float32Array> {
  const { data: rgb } = await sharp(data, { limitInputPixels: MAX_INPUT_PIXELS })
    .rotate()
    .removeAlpha()
    .resize(width, height, { fit: 'cover', kernel: 'lanczos3' })
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    out[i] = rgb[i * 3]! / 127.5 - 1;
    out[plane + i] = rgb[i * 3 + 1]! / 127.5 - 1;
    out[2 * plane + i] = rgb[i * 3 + 2]! / 127.5 - 1;
  }
  return out;
}

/**
 * Decodes a mask to greyscale at width × height → [1, 1, H, W] in [0, 1] (white = repaint). A mask
 * of another size is centre-cropped to the request's aspect (as the image is) and resized as
 * diffusers' mask processor does it, with Pillow's Lanczos (byte for byte); it is binarised later
 * (at 0.5, binarizeMask), so its edge lands where diffusers puts it.
 */
export async function maskToTensor(data: Buffer, width: number, height: number): Promise<Float32Array> {
  const { data: grey, info } = await sharp(data, { limitInputPixels: MAX_INPUT_PIXELS })
    .rotate()
    .flatten({ background: '#000000' })
    .greyscale()
    .extractChannel(0)
    .raw()
    .toBuffer({ resolveWithObject: true });
  const crop = coverCrop(grey, info.width, info.height, width, height);
  const resized = resize(crop.pixels, 1, crop.width, crop.height, width, height, 'lanczos');
  const out = new Float32Array(width * height);
  for (let i = 0; i < out.length; i++) out[i] = resized[i]! / 255;
  return out;
}

/** The centred part of a one-channel image with the aspect of outWidth × outHeight (fit: cover). */
function coverCrop(
  pixels: Uint8Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
): { pixels: Uint8Array; width: number; height: number } {
  const scale = Math.max(outWidth / width, outHeight / height);
  const w = Math.min(width, Math.round(outWidth / scale));
  const h = Math.min(height, Math.round(outHeight / scale));
  if (w === width && h === height) return { pixels, width, height };
  const left = Math.floor((width - w) / 2);
  const top = Math.floor((height - h) / 2);
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) out.set(pixels.subarray((top + y) * width + left, (top + y) * width + left + w), y * w);
  return { pixels: out, width: w, height: h };
}

/**
 * torch.nn.functional.interpolate(mask, size=(height / factor, width / factor)) in its default
 * 'nearest' mode: output (y, x) takes input (floor(y * scale), floor(x * scale)), scale = in / out
 * in float32, clamped to the last row/column. Values are copied (binarise the mask first).
 */
export function downsampleMask(mask: Float32Array, width: number, height: number, factor: number): Float32Array {
  const w = Math.floor(width / factor);
  const h = Math.floor(height / factor);
  const index = (dst: number, inSize: number, outSize: number) => {
    if (inSize === outSize) return dst;
    const scale = Math.fround(inSize / outSize);
    return Math.min(Math.floor(Math.fround(dst * scale)), inSize - 1);
  };
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    const sy = index(y, height, h);
    for (let x = 0; x < w; x++) out[y * w + x] = mask[sy * width + index(x, width, w)]!;
  }
  return out;
}

/** Encodes sample `index` of an NCHW batch in [-1, 1] as PNG. */
export function tensorToPng(batch: Float32Array, index: number, width: number, height: number): Promise<Buffer> {
  const plane = width * height;
  const offset = index * 3 * plane;
  const rgb = Buffer.alloc(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      // diffusers: (x / 2 + 0.5).clamp(0, 1) in float32, then numpy's (x * 255).round() (half to even).
      const t = Math.min(1, Math.max(0, Math.fround(Math.fround(batch[offset + c * plane + i]! * 0.5) + 0.5)));
      rgb[i * 3 + c] = roundHalfEven(Math.fround(t * 255));
    }
  }
  return sharp(rgb, { raw: { width, height, channels: 3 } })
    .png({ compressionLevel: 6 })
    .toBuffer();
}

function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** A black PNG: what a sample flagged by the safety checker is replaced with. */
export function blackPng(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: '#000000' } })
    .png()
    .toBuffer();
}

/** The long side of a preview, at most: small enough to stream a few a second to every watcher. */
export const PREVIEW_MAX_SIDE = 256;

/**
 * A preview (RGB at the latents' size) as a data: URL of a JPEG, enlarged to the image's aspect
 * and at most PREVIEW_MAX_SIDE on its long side (never larger than the image itself). JPEG: about
 * 5 ms for 256 x 256 here, where WebP takes 9 to 26 ms for the same size.
 */
export async function previewDataUrl(pixels: PreviewPixels, imageWidth: number, imageHeight: number): Promise<string> {
  const scale = Math.min(1, PREVIEW_MAX_SIDE / Math.max(imageWidth, imageHeight));
  const jpeg = await sharp(Buffer.from(pixels.rgb.buffer, pixels.rgb.byteOffset, pixels.rgb.byteLength), {
    raw: { width: pixels.width, height: pixels.height, channels: 3 },
  })
    .resize(Math.max(1, Math.round(imageWidth * scale)), Math.max(1, Math.round(imageHeight * scale)), { kernel: 'cubic' })
    .jpeg({ quality: 75 })
    .toBuffer();
  return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
}
