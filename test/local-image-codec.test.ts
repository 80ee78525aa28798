import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { binarizeMask } from '../src/diffusion/pipeline.js';
import { blackPng, downsampleMask, imageToTensor, maskToTensor, tensorToPng } from '../src/diffusion/image-codec.js';

describe('image codec', () => {
  it('round-trips an NCHW tensor through PNG within one grey level, and picks the sample by index', async () => {
    const w = 16;
    const h = 8;
    const batch = new Float32Array(2 * 3 * w * h);
    for (let i = 0; i < batch.length; i++) batch[i] = Math.sin(i) * 0.9;
    const png = await tensorToPng(batch, 1, w, h);
    expect((await sharp(png).metadata()).format).toBe('png');
    const back = await imageToTensor(png, w, h);
    const second = batch.subarray(3 * w * h);
    for (let i = 0; i < back.length; i++) expect(Math.abs(back[i]! - second[i]!)).toBeLessThanOrEqual(1 / 127.5 + 1e-6);
  });

  it('clamps values outside [-1, 1]', async () => {
    const t = new Float32Array(3 * 4).fill(5);
    t[0] = -7;
    const { data } = await sharp(await tensorToPng(t, 0, 2, 2))
      .raw()
      .toBuffer({ resolveWithObject: true });
    expect([...data.subarray(0, 3)]).toEqual([0, 255, 255]);
  });

  it('reads masks as white = 1 (repaint), resized to the output size, and downsamples them to latents', async () => {
    const raw = Buffer.alloc(16 * 16, 0);
    for (let y = 0; y < 16; y++) for (let x = 8; x < 16; x++) raw[y * 16 + x] = 255;
    const png = await sharp(raw, { raw: { width: 16, height: 16, channels: 1 } })
      .png()
      .toBuffer();
    const mask = await maskToTensor(png, 32, 32);
    expect(mask[0]).toBe(0);
    expect(mask[31]).toBe(1);
    // The pipeline binarises at 0.5 before bringing the mask to latent size (a resized edge is grey).
    const latent = downsampleMask(binarizeMask(mask), 32, 32, 8);
    expect([...latent]).toEqual([0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]);
  });

  it('resizes a mask of another size as diffusers does (Lanczos, then 1 where >= 0.5)', async () => {
    // test/fixtures/mask-resize: Pillow's LANCZOS resize of mask-24.png to 64x64, binarised (scripts/reference/mask-resize.py).
    const dir = path.join(import.meta.dirname, 'fixtures/mask-resize');
    const mask = await maskToTensor(readFileSync(path.join(dir, 'mask-24.png')), 64, 64);
    const expected = await sharp(readFileSync(path.join(dir, 'mask-24-to-64-binary.png')))
      .extractChannel(0)
      .raw()
      .toBuffer();
    let differ = 0;
    for (let i = 0; i < mask.length; i++) if ((mask[i]! >= 0.5 ? 255 : 0) !== expected[i]) differ++;
    expect(differ).toBe(0);
    expect(expected.filter((v) => v === 255).length).toBeGreaterThan(400);
  });

  it('makes black PNGs of the requested size', async () => {
    const meta = await sharp(await blackPng(24, 16)).stats();
    expect(meta.channels.every((c) => c.max === 0)).toBe(true);
  });
});
