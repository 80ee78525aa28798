/**
 * The safety checker's input against Pillow 9.4 + CLIPImageProcessor's steps
 * (test/fixtures/safety/clip-input.json, made by scripts/reference/clip-preprocess-fixtures.py).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { clipNormalizeInto, clipResizeAndCrop, shortestEdgeSize, toUint8Rgb } from '../src/diffusion/image/clip-preprocess.js';
import { resizeBicubicRgb } from '../src/diffusion/image/resample.js';

interface Case {
  width: number;
  height: number;
  resized: [number, number];
  resizedSha256: string;
  pixelsSha256: string;
  firstRow: number[];
  clipInputSha256: string;
  samples: [number, number][];
}
const fixture = JSON.parse(readFileSync(new URL('./fixtures/safety/clip-input.json', import.meta.url), 'utf8')) as { cases: Case[] };
const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** The fixture script's pattern (same formula). */
function pattern(width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < 3; c++) out[(y * width + x) * 3 + c] = (x * x * 3 + y * y * 5 + x * y * 7 + c * 85 + ((x * 13) ^ (y * 29))) % 256;
  return out;
}

describe('CLIPImageProcessor parity (Pillow 9.4 bicubic, centre crop, float32 normalisation)', () => {
  it.each(fixture.cases.map((c) => [`${c.width}x${c.height}`, c] as const))('%s', (_label, c) => {
    const rgb = pattern(c.width, c.height);
    expect(shortestEdgeSize(c.width, c.height)).toEqual(c.resized);
    expect(sha(resizeBicubicRgb(rgb, c.width, c.height, c.resized[0], c.resized[1]))).toBe(c.resizedSha256);
    const pixels = clipResizeAndCrop(rgb, c.width, c.height);
    expect([...pixels.subarray(0, 48)]).toEqual(c.firstRow);
    expect(sha(pixels)).toBe(c.pixelsSha256);
    const input = new Float32Array(3 * 224 * 224);
    clipNormalizeInto(pixels, input);
    for (const [i, v] of c.samples) expect(Math.abs(input[i]! - v)).toBeLessThanOrEqual(1e-6);
    expect(sha(new Uint8Array(input.buffer))).toBe(c.clipInputSha256);
  });

  it("maps the decoder's [-1, 1] output to uint8 as numpy_to_pil (clamped, rounded)", () => {
    const x = new Float32Array([-1, 0, 1, -2, 2]);
    expect([...toUint8Rgb(x, 0, 5, 1).filter((_, i) => i % 3 === 0)]).toEqual([0, 128, 255, 0, 255]);
  });
});
