import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../src/diffusion/checkpoint.js';
import { classifyNsfw, isExplicit } from '../src/diffusion/nsfw-classifier.js';
import { checkImages } from '../src/diffusion/safety.js';
import { generateTinyPipeline } from '../scripts/tiny-models/generate.js';

describe('safety checking', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'sd-safety-'));
  let withChecker: Checkpoint;
  let withoutChecker: Checkpoint;

  beforeAll(async () => {
    await generateTinyPipeline(path.join(root, 'with'));
    await generateTinyPipeline(path.join(root, 'without'));
    rmSync(path.join(root, 'without', 'safety_checker'), { recursive: true });
    withChecker = await Checkpoint.load(path.join(root, 'with'));
    withoutChecker = await Checkpoint.load(path.join(root, 'without'));
  });
  afterAll(async () => {
    await withChecker?.release();
    await withoutChecker?.release();
    rmSync(root, { recursive: true, force: true });
  });

  const batch = (values: number[], w: number, h: number) => {
    const out = new Float32Array(values.length * 3 * w * h);
    values.forEach((v, s) => out.fill(v, s * 3 * w * h, (s + 1) * 3 * w * h));
    return out;
  };

  it("uses the checkpoint's own safety_checker when it has one (the tiny one flags bright images)", async () => {
    expect(await checkImages(withChecker, batch([0.95, -0.9], 32, 32), 2, 32, 32)).toEqual([true, false]);
  });

  it('flags on the explicit classes only', () => {
    expect(isExplicit({ Porn: 0.3, Hentai: 0.25, Sexy: 0, Neutral: 0.45, Drawing: 0 })).toBe(true);
    expect(isExplicit({ Porn: 0.1, Hentai: 0.1, Sexy: 0.7, Neutral: 0.1, Drawing: 0 })).toBe(false);
  });

  it('falls back to the nsfwjs classifier shipped in its npm package, offline', async () => {
    const w = 64;
    const rgb = new Uint8Array(w * w * 3);
    for (let i = 0; i < w * w; i++) rgb.set([i % 256, (i >> 6) * 4, 128], i * 3);
    const scores = await classifyNsfw(rgb, w, w);
    const total = Object.values(scores).reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(0.99);
    expect(total).toBeLessThan(1.01);
    expect(await checkImages(withoutChecker, batch([0, -0.5], 32, 32), 2, 32, 32)).toEqual([false, false]);
  }, 60_000);
});
