/**
 * Local engine figures: seconds per denoising step, the share of a step spent outside ONNX
 * Runtime's session.run (our JS: scheduler maths, guidance, copies; target < 5%), the process's
 * peak memory during a generation, and what a watched live preview costs: making one in the loop
 * (the x0 estimate and RGB map, timed alone: the loop's own time varies more than that between
 * runs), the loop's time per step with a preview at every step against none (the worst case: the
 * engine makes at most one per 250 ms), and encoding one (on the main thread's libvips pool).
 * Without a watcher the loop only asks preview.due(), which is false. Runs on the tiny generated models unless
 * SD_MODEL_DIR points at a real SD 1.5 ONNX export (then the figures mean something for real use).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Checkpoint } from '../src/diffusion/checkpoint.js';
import { previewDataUrl } from '../src/diffusion/image-codec.js';
import { generate } from '../src/diffusion/pipeline.js';
import { previewPixels, type PreviewPixels } from '../src/diffusion/preview.js';
import { generateTinyPipeline } from '../scripts/tiny-models/generate.js';

export interface LocalEngineFigures {
  model: string;
  size: string;
  steps: number;
  secondsPerStep: number;
  outsideRunShare: number;
  peakRssMb: number;
  /** Making one preview in the loop (ms, mean of 200): the x0 estimate and the RGB map. */
  previewMakeMs: number;
  /** Loop time per step with a preview at every step, and without (ms). */
  stepMsWatched: number;
  stepMsUnwatched: number;
  /** Encoding one preview to a WebP data: URL (ms, mean of 20). */
  previewEncodeMs: number;
}

export async function runLocalEngineBench(): Promise<LocalEngineFigures[]> {
  const real = process.env.SD_MODEL_DIR;
  const root = real ? null : mkdtempSync(path.join(tmpdir(), 'sd-bench-models-'));
  const dir = real ?? path.join(root!, 'tiny');
  if (root) await generateTinyPipeline(dir);
  const ckpt = await Checkpoint.load(dir);
  const figures: LocalEngineFigures[] = [];
  try {
    for (const [width, height, steps] of [
      [512, 512, 20],
      [256, 256, 20],
    ] as const) {
      // One warm-up run: first runs allocate ONNX Runtime's arenas.
      await generate(ckpt, request(width, height, 2));
      const timings = { loopMs: 0, unetMs: 0, steps: 0 };
      let loop = 0;
      let unet = 0;
      let count = 0;
      let watchedLoop = 0;
      let watchedCount = 0;
      let pixels: PreviewPixels | undefined;
      const everyStep = { due: () => true, show: (p: PreviewPixels) => (pixels = p) };
      // Alternated, so that drift in the machine's speed falls on both.
      for (let r = 0; r < 3; r++) {
        await generate(ckpt, { ...request(width, height, steps), timings });
        loop += timings.loopMs;
        unet += timings.unetMs;
        count += timings.steps;
        await generate(ckpt, { ...request(width, height, steps), timings, preview: everyStep });
        watchedLoop += timings.loopMs;
        watchedCount += timings.steps;
      }
      const encodeStart = performance.now();
      for (let i = 0; i < 20; i++) await previewDataUrl(pixels!, width, height);
      const previewEncodeMs = (performance.now() - encodeStart) / 20;
      const latents = new Float32Array(4 * (width / 8) * (height / 8)).map(() => Math.random() - 0.5);
      const makeStart = performance.now();
      for (let i = 0; i < 200; i++) previewPixels(latents, latents, 3, 'epsilon', height / 8, width / 8);
      const previewMakeMs = (performance.now() - makeStart) / 200;
      figures.push({
        model: real ? path.basename(real) : 'tiny (random weights)',
        size: `${width}x${height}`,
        steps,
        secondsPerStep: loop / count / 1000,
        outsideRunShare: (loop - unet) / loop,
        peakRssMb: process.resourceUsage().maxRSS / 1024,
        previewMakeMs,
        stepMsWatched: watchedLoop / watchedCount,
        stepMsUnwatched: loop / count,
        previewEncodeMs,
      });
    }
  } finally {
    await ckpt.release();
    if (root) rmSync(root, { recursive: true, force: true });
  }
  return figures;
}

function request(width: number, height: number, steps: number) {
  return {
    prompt: 'a lighthouse on a cliff at dusk',
    negativePrompt: 'blurry',
    steps,
    guidanceScale: 7.5,
    samples: 1,
    width,
    height,
    seed: 1,
    scheduler: 'DPMPP_2M_KARRAS' as const,
    embeddings: [],
  };
}

// Run as its own process (by bench/index.ts) so that peak memory is the generation's alone.
if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  process.stdout.write(`${JSON.stringify(await runLocalEngineBench())}\n`);
}
